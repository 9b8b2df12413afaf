"""The activity log and the users page over real HTTP: filters, pages by key, the audited CSV
download (formula-safe), adding and disabling users (audited), and the demo's user."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

from console_support import EMAILS, PASSWORD, START, login_with

from campaign.accounts import CLI, audit, list_users
from campaign.demo import add_demo_user
from campaign.store import Store

ROWS = re.compile(r"<tr><td>[^<]*</td><td>([^<]*)</td><td>[^<]*</td><td>[^<]*</td>\s*<td>([^<]*)</td>")


def shown(html: str) -> list[tuple[str, str]]:
    """(actor, action) of each row in the activity table."""
    return ROWS.findall(html)


def test_activity_filters_by_actor_action_and_days(console_server, console_clock):
    accounts = console_server.accounts
    for day in range(3):  # 10:00 in New York on March 2, 3 and 4
        audit(accounts, CLI, "campaign.pause", now=START + timedelta(days=day), object_id=f"day{day}")
    reviewer = console_server.login("reviewer")
    only_pauses = shown(reviewer.get("/console/activity?action=campaign.pause").text)
    assert only_pauses == [("cli", "campaign.pause")] * 3
    by_reviewer = shown(reviewer.get("/console/activity", params={"actor": EMAILS["reviewer"]}).text)
    assert by_reviewer == [(EMAILS["reviewer"], "login")]
    one_day = reviewer.get("/console/activity?action=campaign.pause&since=2026-03-03&until=2026-03-03").text
    assert (
        "campaign.pause" in one_day and "day1" in one_day and "day0" not in one_day and "day2" not in one_day
    )
    bad = reviewer.get("/console/activity?since=March")
    assert bad.status_code == 400 and "use YYYY-MM-DD" in bad.text


def test_activity_pages_by_key_without_gaps_or_repeats(console_server):
    for i in range(120):
        audit(console_server.accounts, CLI, "test.entry", now=START, object_id=str(i))
    admin = console_server.login("admin")
    seen, path = [], "/console/activity?action=test.entry"
    while path:
        html = admin.get(path).text
        seen += re.findall(r"<td>test\.entry</td><td>(\d+)</td>", html)
        older = re.search(r'<a href="(/console/activity\?[^"]+)">Older entries</a>', html)
        path = older.group(1).replace("&amp;", "&") if older else None
    assert seen == [str(i) for i in reversed(range(120))]


def test_activity_csv_is_formula_safe_filtered_and_its_download_is_audited(console_server):
    audit(console_server.accounts, CLI, "test.entry", now=START, detail='=HYPERLINK("http://x","y")')
    admin = console_server.login("admin")
    response = admin.get("/console/activity.csv?action=test.entry")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["action"] for r in rows] == ["test.entry"]
    assert rows[0]["detail"] == '\'=HYPERLINK("http://x","y")'
    exports = console_server.accounts.audit_page(limit=5, action="activity.export")
    assert len(exports) == 1 and exports[0].actor == EMAILS["admin"]
    assert exports[0].detail.startswith("1 rows; action=test.entry")
    assert "activity.export" in admin.get("/console/activity").text


def test_a_coordinator_cannot_read_or_download_the_activity(console_server):
    coordinator = console_server.login("coordinator")
    assert coordinator.get("/console/activity").status_code == 403
    assert coordinator.get("/console/activity.csv").status_code == 403
    assert console_server.accounts.audit_page(limit=5, action="activity.export") == []


def test_an_admin_adds_a_user_who_can_then_log_in(console_server):
    admin = console_server.login("admin")
    new = {
        "email": "Sam@Clinic.example",
        "name": "Sam Lee",
        "role": "reviewer",
        "password": "another long password",
    }
    done = admin.post_form("/console/users", new)
    assert done.status_code == 303
    assert "Added sam@clinic.example." in admin.get(done.headers["location"]).text
    added = next(u for u in list_users(console_server.accounts) if u.email == "sam@clinic.example")
    assert added.role == "reviewer" and added.name == "Sam Lee"
    entry = console_server.accounts.audit_page(limit=1, action="user.add")[0]
    assert (entry.actor, entry.object_id, entry.detail) == (
        EMAILS["admin"],
        "sam@clinic.example",
        "role reviewer",
    )
    assert "another long password" not in entry.detail
    assert (
        login_with(console_server.client(), "sam@clinic.example", "another long password").status_code == 303
    )


def test_adding_a_user_with_a_short_password_says_why_and_adds_nobody(console_server):
    admin = console_server.login("admin")
    before = len(list_users(console_server.accounts))
    refused = admin.post_form(
        "/console/users", {"email": "x@clinic.example", "role": "admin", "password": "short"}
    )
    assert refused.status_code == 400 and "too short" in refused.text
    assert (
        'value="x@clinic.example"' in refused.text
        and "short" not in refused.text.split("too short")[0][-200:]
    )
    assert len(list_users(console_server.accounts)) == before


def test_an_admin_disables_a_user_and_their_session_ends(console_server):
    admin, reviewer = console_server.login("admin"), console_server.login("reviewer")
    done = admin.post_form("/console/users/disable", {"email": EMAILS["reviewer"]}, page="/console/users")
    assert done.status_code == 303
    assert reviewer.get("/console/").status_code == 303  # back to the login page
    entry = console_server.accounts.audit_page(limit=1, action="user.disable")[0]
    assert (entry.actor, entry.object_id) == (EMAILS["admin"], EMAILS["reviewer"])
    again = admin.post_form("/console/users/disable", {"email": EMAILS["reviewer"]}, page="/console/users")
    assert again.status_code == 400 and "already disabled" in again.text


def test_the_demo_user_logs_in_to_the_console(console_server, tmp_path):
    email, password = add_demo_user(console_server.store)
    assert len(password) >= 12 and password != PASSWORD
    assert login_with(console_server.client(), email, password).status_code == 303
    with Store.open(f"sqlite:///{tmp_path / 'other-demo.db'}", secret_key="k") as other:
        assert add_demo_user(other) != (email, password)  # a new random password each demo
