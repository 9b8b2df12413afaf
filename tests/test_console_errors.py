"""The console's error pages: an unknown page is a friendly 404, and an unexpected error is a
plain 500 page (no traceback, the security headers) logged without any lead data."""

from __future__ import annotations

import logging
import re

import sqlalchemy as sa

from campaign.console.security import SECURITY_HEADERS
from campaign.models import LeadIn

SECRET = "ann.private@example.com"


def assert_security_headers(response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, name


def test_an_unknown_page_is_a_friendly_404_with_the_headers(console_server):
    for client in (console_server.client(), console_server.login("coordinator")):
        page = client.get("/console/no-such-page")
        assert page.status_code == 404
        assert "There is no such page in the console." in page.text
        assert "Back to the overview" in page.text and "Traceback" not in page.text
        assert_security_headers(page)


def test_an_unexpected_error_is_a_plain_page_and_a_log_line_without_lead_data(console_server, caplog):
    console_server.store.upsert_leads([LeadIn(email=SECRET, first_name="Ann")], console_server.clock())
    coordinator = console_server.login("coordinator")
    assert coordinator.get("/console/leads", params={"q": SECRET}).status_code == 200
    # A real failure: the database loses a table the leads page reads (SQLAlchemy's error
    # message quotes the statement and its parameters, the searched address among them).
    with console_server.store.engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE enrollments"))
    with caplog.at_level(logging.ERROR, logger="campaign.console"):
        page = coordinator.get("/console/leads", params={"q": SECRET})
    assert page.status_code == 500
    assert "Something went wrong" in page.text
    for leaked in ("Traceback", "OperationalError", "enrollments", SECRET):
        assert leaked not in page.text, leaked
    assert_security_headers(page)
    reference = re.search(r"the reference ([0-9a-f]{8})", page.text).group(1)
    logged = [r.getMessage() for r in caplog.records if r.name == "campaign.console"]
    assert len(logged) == 1
    assert logged[0].startswith(f"console error {reference} on GET /console/leads: OperationalError at ")
    assert " in " in logged[0] and "site-packages" not in logged[0]  # the page's own frame
    assert SECRET not in caplog.text and "ann.private" not in caplog.text
    # The console keeps serving other pages.
    assert coordinator.get("/console/import").status_code == 200
