"""The sign-up form and double opt-in for real: create_app on uvicorn (test_api.serve, with a clock
the test moves), httpx posting as a browser does, a SQLite file, the outbox, real ticks.

The store's part (no enrollment before the opt-in, expiry) also runs on PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import SECRET, utc
from forms_support import (
    PERSON,
    confirm_link,
    lead_count,
    lead_row,
    new_form,
    outbox_to,
    page_client,
    shown_token,
    sign_up,
    wait_for_email,
    wait_until,
)
from test_api import NOW, serve
from typer.testing import CliRunner

from campaign.app.leads import lead_rows
from campaign.audiences import load_audiences
from campaign.cli import app as cli
from campaign.engine import run_tick
from campaign.forms_tokens import make_confirm_token
from campaign.lint.vocabulary import DEFAULT_HEALTH_TERMS
from campaign.models import ConsentProof, LeadIn
from campaign.runtime import build_context
from campaign.store import Incoming, email_hash
from campaign.store.tables import confirmations

runner = CliRunner()


@pytest.fixture
def live(make_settings):
    with serve(make_settings) as running:
        yield running


def tick(live, now) -> list[str]:
    """A real tick at `now`: the addresses it mailed."""
    before = len(outbox_index(live))
    ctx = build_context(live.settings, now=now)
    try:
        report = run_tick(ctx, now)
    finally:
        ctx.store.close()
    live.last_report = report
    return [e["to"] for e in outbox_index(live)[before:]]


def outbox_index(live):
    from campaign.delivery.outbox import read_index

    return read_index(live.settings.outbox_dir)


# ---- the form page -----------------------------------------------------------------------------


def test_the_form_page_is_plain_accessible_html_with_the_public_pages_headers(live):
    form = new_form(live)
    with page_client(live) as client:
        page = client.get(f"/forms/{form.key}")
    assert page.status_code == 200
    html = page.text
    for name in ("email", "first_name", "anxiety_type", "prior_treatments", "consent", "website"):
        assert f'<label for="{name}">' in html and f'id="{name}"' in html  # every field has a label
    assert form.consent_text in html and "988" in html and "<script" not in html
    for answer in ("Generalized Anxiety Disorder (GAD)", "Social anxiety", "Treatment-resistant anxiety"):
        assert f'<option value="{answer}">' in html
    # The honeypot is moved off screen by CSS, not hidden by its type (bots skip type=hidden).
    assert 'id="website" name="website" type="text" tabindex="-1"' in html
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store" and page.headers["x-frame-options"] == "DENY"
    assert shown_token(page_client(live), form)


def test_a_sign_up_is_stored_unconfirmed_with_its_proof_and_gets_one_neutral_confirmation(live):
    form = new_form(live)
    response = sign_up(live, form)
    assert response.status_code == 200 and "Please check your email" in response.text
    assert "988" in response.text
    row = lead_row(live, "pat@example.com")
    assert row["unconfirmed_since"] is not None and row["confirmed_at"] is None
    assert (row["anxiety_type"], row["prior_treatments"], row["consent"]) == ("gad", 2, True)
    assert (row["consent_via"], row["consent_ref"]) == ("form", f"form website ({form.key})")
    assert (row["consent_version"], row["consent_client"]) == (form.consent_version, "127.0.0.1")

    message = wait_for_email(live, "pat@example.com")
    subject = message["Subject"]
    assert subject == "Please confirm your email for Fresh Start"
    text = message.get_body(("plain",)).get_content()
    for term in DEFAULT_HEALTH_TERMS:  # no condition or treatment word in the subject
        assert term.lower() not in subject.lower()
    assert "anxiety" not in text.lower() and "worry" not in text.lower()
    assert "988" in text and live.settings.clinic.postal_address in text
    assert str(message["List-Unsubscribe"]).startswith(f"<{live.url}/unsubscribe/")
    assert confirm_link(message).startswith(f"{live.url}/confirm/")
    assert wait_until(lambda: live.store.confirmation_counts() == {"sent": 1}, "the email settled")
    (listed,) = lead_rows(live.store, load_audiences(live.settings.audiences_dir))
    assert listed["status"] == "waiting for confirmation"  # campaign leads


def test_an_unconfirmed_lead_gets_nothing_and_expires_a_confirmed_one_gets_its_welcome(live):
    form = new_form(live)
    sign_up(live, form)
    sign_up(live, form, email="lee@example.com", first_name="Lee")
    wait_for_email(live, "lee@example.com")
    pats = wait_for_email(live, "pat@example.com")  # both sent, so the tick counts only its own
    assert tick(live, NOW) == []  # neither confirmed: no sequence email

    with page_client(live) as client:
        link = confirm_link(pats).removeprefix(live.url)
        page = client.get(link)
        assert page.status_code == 200 and "Confirm my email" in page.text
        assert lead_row(live, "pat@example.com")["unconfirmed_since"] is not None  # GET changes nothing
        done = client.post(link)
    assert done.status_code == 200 and "Your email is confirmed" in done.text
    assert tick(live, NOW + timedelta(minutes=15)) == ["pat@example.com"]

    later = NOW + timedelta(days=7, hours=1)
    assert "lee@example.com" not in tick(live, later)
    assert live.last_report.reconciled["unconfirmed expired"] == 1
    assert lead_row(live, "lee@example.com") is None and lead_row(live, "pat@example.com") is not None


# ---- bots and probing --------------------------------------------------------------------------


def test_the_honeypot_and_the_fill_time_trap_drop_bots_with_the_same_answer(live):
    form = new_form(live)
    person = sign_up(live, form, email="real@example.com")
    honeypot = sign_up(live, form, email="bot1@example.com", website="http://spam.example")
    too_fast = sign_up(live, form, wait=1, email="bot2@example.com")
    assert honeypot.content == too_fast.content == person.content
    assert honeypot.status_code == too_fast.status_code == 200
    assert lead_row(live, "bot1@example.com") is None and lead_row(live, "bot2@example.com") is None
    assert lead_count(live) == 1


def test_the_answer_is_the_same_bytes_for_new_known_suppressed_unsubscribed_and_forgotten(live):
    form = new_form(live)
    store = live.store
    store.upsert_leads([LeadIn(email="known@example.com", first_name="Kim", consent=True)], NOW)
    store.upsert_leads([LeadIn(email="left@example.com", consent=True)], NOW)
    store.unsubscribe_lead(store.lead_by_email("left@example.com").public_id, NOW)
    store.suppress("bounced@example.com", "bounce", NOW)
    store.upsert_leads([LeadIn(email="gone@example.com", consent=True)], NOW)
    store.forget_lead("gone@example.com", NOW)

    answers = {
        who: sign_up(live, form, email=f"{who}@example.com", first_name="Mallory")
        for who in ("new", "known", "left", "bounced", "gone")
    }
    first = answers["new"]
    for who, response in answers.items():
        assert (response.status_code, response.content) == (first.status_code, first.content), who
    wait_for_email(live, "new@example.com")
    assert lead_row(live, "known@example.com")["first_name"] == "Kim"  # a public form never rewrites a lead
    assert lead_row(live, "bounced@example.com") is None and lead_row(live, "gone@example.com") is None
    assert lead_row(live, "left@example.com")["unsubscribed_at"] is not None
    for who in ("known", "left", "bounced", "gone"):
        assert outbox_to(live, f"{who}@example.com") == []


def test_three_confirmation_emails_per_address_a_day(live):
    form = new_form(live)
    answers = {sign_up(live, form).content for _ in range(5)}
    assert len(answers) == 1
    wait_for_email(live, "pat@example.com", count=3)
    with live.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(confirmations)).scalar() == 3
    live.clock.now += timedelta(hours=24)
    sign_up(live, form)
    wait_for_email(live, "pat@example.com", count=4)


def test_posts_past_the_client_limit_are_dropped(make_settings):
    with serve(make_settings, form_posts_per_client_minute=2) as live:
        form = new_form(live)
        answers = [sign_up(live, form, email=f"p{i}@example.com").content for i in range(3)]
        assert len(set(answers)) == 1
        assert lead_row(live, "p1@example.com") is not None and lead_row(live, "p2@example.com") is None


# ---- the form again: bad input, and a copy of the form on another site --------------------------


def test_a_bad_address_or_no_consent_shows_the_form_again_with_the_problems(live):
    form = new_form(live)
    response = sign_up(live, form, email="not an address", consent="", website="")
    assert response.status_code == 422
    assert 'role="alert"' in response.text and 'aria-invalid="true"' in response.text
    assert "valid email address" in response.text and "tick the box" in response.text
    assert 'value="not an address"' in response.text and 'name="shown" value="' in response.text
    assert lead_count(live) == 0


def test_a_post_from_the_snippet_gets_the_form_filled_in_to_check_and_send(live):
    form = new_form(live)
    with page_client(live) as client:
        review = client.post(f"/forms/{form.key}", data=PERSON)
        assert review.status_code == 200 and "Please check your details" in review.text
        assert 'value="Pat@Example.com"' in review.text and 'value="2" selected' in review.text
        assert lead_count(live) == 0
        shown = shown_token(client, form)
    live.clock.now += timedelta(seconds=5)
    with page_client(live) as client:
        sent = client.post(f"/forms/{form.key}", data={**PERSON, "shown": shown})
    assert "Please check your email" in sent.text
    assert lead_row(live, "pat@example.com") is not None


# ---- the confirmation link -----------------------------------------------------------------------


def test_an_expired_link_and_a_link_for_another_address_are_refused_with_a_clear_page(live):
    form = new_form(live)
    sign_up(live, form)
    sign_up(live, form, email="other@example.com")
    link = confirm_link(wait_for_email(live, "pat@example.com")).removeprefix(live.url)
    pat = live.store.lead_by_email("pat@example.com")
    forged = make_confirm_token(pat.public_id, email_hash("other@example.com", SECRET), SECRET, live.clock())
    with page_client(live) as client:
        wrong = client.post(f"/confirm/{forged}")
        assert wrong.status_code == 400 and "made for another address" in wrong.text
        cut = client.post(link[:-3])
        assert cut.status_code == 400 and "This link does not work" in cut.text
        live.clock.now += timedelta(days=7, minutes=1)
        expired = client.get(link)
        assert expired.status_code == 410 and "This link has expired" in expired.text
        assert "988" in expired.text
        assert client.post(link).status_code == 410
    assert lead_row(live, "pat@example.com")["unconfirmed_since"] is not None


def test_a_disabled_or_unknown_form_is_not_found(live, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", live.settings.database_url)
    monkeypatch.setenv("CAMPAIGN_PUBLIC_URL", live.url)
    created = runner.invoke(cli, ["form", "create", "instagram", "--consent-text", "Yes, you may email me."])
    assert created.exit_code == 0, created.output
    assert f'action="{live.url}/forms/' in created.stdout and "Yes, you may email me." in created.stdout
    listed = json.loads(runner.invoke(cli, ["form", "list", "--json"]).stdout)
    key = listed[0]["key"]
    assert listed[0]["name"] == "instagram" and listed[0]["disabled_at"] is None
    assert runner.invoke(cli, ["form", "create", "instagram"]).exit_code == 2  # names are unique
    with page_client(live) as client:
        assert client.get(f"/forms/{key}").status_code == 200
        assert runner.invoke(cli, ["form", "disable", "instagram"]).exit_code == 0
        assert client.get(f"/forms/{key}").status_code == 404
        assert client.post(f"/forms/{key}", data=PERSON).status_code == 404
        assert client.get("/forms/no-such-key").status_code == 404
    assert runner.invoke(cli, ["form", "disable", "instagram"]).exit_code == 2


# ---- CAMPAIGN_DOUBLE_OPT_IN for the API ---------------------------------------------------------


def test_double_opt_in_applies_to_api_leads_when_switched_on(make_settings):
    with serve(make_settings, double_opt_in=True) as live:
        with live.client(live.token("crm")) as api:
            made = api.post(
                "/leads", json={"email": "api@example.com", "consent": True, "anxiety_type": "gad"}
            )
            again = api.post("/leads", json={"email": "api@example.com", "consent": True, "first_name": "Al"})
            batch = [
                {"email": "b1@example.com", "consent": True},
                {"email": "oops"},
                {"email": "b2@example.com"},
            ]
            batched = api.post("/leads/batch", json={"leads": batch})
        assert made.status_code == 201 and made.json()["status"] == "waiting for confirmation"
        assert made.json()["first_email_at"] is None
        assert again.status_code == 200
        assert [r["outcome"] for r in batched.json()["results"]] == ["created", "invalid", "created"]
        message = wait_for_email(live, "api@example.com")
        wait_for_email(live, "b1@example.com")
        assert tick(live, NOW) == []
        with page_client(live) as client:
            assert client.post(confirm_link(message).removeprefix(live.url)).status_code == 200
        assert tick(live, NOW + timedelta(minutes=15)) == ["api@example.com"]
        # One confirmation (a known lead's update asks for none), then the welcome.
        assert len(outbox_to(live, "api@example.com")) == 2
        assert outbox_to(live, "b2@example.com") == []  # no consent: no confirmation email either


# ---- the store, on both databases ---------------------------------------------------------------


def test_enrollment_skips_unconfirmed_leads_and_expiry_deletes_them(store):
    now = utc(2026, 3, 2, 15)
    lead = LeadIn(email="u@example.com", consent=True)
    store.upsert_leads([Incoming(lead, unconfirmed=True), LeadIn(email="c@example.com", consent=True)], now)
    campaign = store.campaign("evergreen")
    assert [x.email for x in store.unenrolled_leads(campaign["id"], 0, 100)] == ["c@example.com"]
    public_id = store.lead_by_email("u@example.com").public_id
    (claim,) = store.claim_confirmations(
        [public_id, "no-such-id"], now, since=now - timedelta(days=1), limit=1
    )
    assert claim.lead.email == "u@example.com"
    assert store.claim_confirmations([public_id], now, since=now - timedelta(days=1), limit=1) == []
    assert store.expire_unconfirmed(now) == 0
    assert store.expire_unconfirmed(now + timedelta(seconds=1)) == 1
    assert store.lead_by_email("u@example.com") is None and store.lead_by_email("c@example.com") is not None


def test_a_trusted_source_giving_consent_confirms_a_waiting_lead(store):
    now = utc(2026, 3, 2, 15)
    waiting = LeadIn(email="w@example.com", consent=True)
    form_proof = ConsentProof(via="form", ref="form website (k)")
    store.upsert_leads([Incoming(waiting, form_proof, unconfirmed=True)], now)
    store.upsert_leads([Incoming(waiting, form_proof, unconfirmed=True)], now)  # the form again
    assert store.lead_by_email("w@example.com").unconfirmed_since is not None
    store.upsert_leads([LeadIn(email="w@example.com", consent=False)], now)  # no consent: still waiting
    assert store.lead_by_email("w@example.com").unconfirmed_since is not None
    store.upsert_leads([Incoming(waiting, ConsentProof(via="csv", ref="leads.csv row 2"))], now)
    assert store.lead_by_email("w@example.com").unconfirmed_since is None


def test_admins_see_the_forms_in_the_console(console_server):
    from campaign.app.forms import create_form

    settings = console_server.settings
    made = create_form(console_server.store, settings, "website", None, None, NOW)
    page = console_server.login("admin").get("/console/users")
    assert page.status_code == 200
    assert f"{settings.public_url}/forms/{made.key}" in page.text and made.consent_text in page.text
