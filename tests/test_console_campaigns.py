"""/console/campaigns over real HTTP: launch after the preflight checklist, pause with a reason,
resume, stop (confirmed), a test email to one's own address; each audited, each refused (403,
no button) for a reviewer."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime

import pytest
from console_pages_support import audit_actions
from console_support import csrf_from, serve_console
from test_console_security import assert_security_headers

LAUNCH = "/console/campaigns/launch"
SPRING = {"name": "Spring 2026", "audiences": ["gad", "social"], "start": "2026-03-10T09:00"}


def check_launch(client, values: dict):
    return client.get(LAUNCH, params={**values, "check": "1"})


def confirm_launch(client, values: dict):
    checklist = check_launch(client, values)
    return client.post(LAUNCH, data={**values, "csrf_token": csrf_from(checklist.text)})


def campaign_state(server, slug: str) -> dict:
    return server.store.campaign(slug)


def test_the_list_shows_each_campaign_and_a_coordinator_its_actions(console_server):
    page = console_server.login("coordinator").get("/console/campaigns")
    assert page.status_code == 200
    assert_security_headers(page)
    assert "Evergreen education" in page.text and 'class="state-active"' in page.text
    for control in (
        "/campaigns/evergreen/pause",
        "/campaigns/evergreen/stop",
        "Launch a campaign",
        "Send the test",
    ):
        assert control in page.text
    assert '<label for="reason-evergreen">' in page.text


def test_a_reviewer_sees_no_campaign_buttons_and_every_post_is_refused(console_server):
    reviewer = console_server.login("reviewer")
    page = reviewer.get("/console/campaigns")
    assert page.status_code == 200 and "Evergreen education" in page.text
    for control in ("/pause", "/stop", "/resume", "Launch a campaign", "Send the test", "test-send"):
        assert control not in page.text
    token = csrf_from(page.text)
    assert reviewer.get(LAUNCH).status_code == 403
    assert reviewer.get("/console/campaigns/evergreen/stop").status_code == 403
    for path, data in (
        ("/console/campaigns/evergreen/pause", {"reason": "no"}),
        ("/console/campaigns/evergreen/stop", {"confirm": "yes"}),
        ("/console/campaigns/test-send", {"email": "gad/welcome"}),
        (LAUNCH, {"name": "Reviewer launch", "audiences": "gad"}),
    ):
        assert reviewer.post(path, data={**data, "csrf_token": token}).status_code == 403, path
    assert campaign_state(console_server, "evergreen")["state"] == "active"
    assert console_server.store.campaign("reviewer-launch") is None
    assert not (console_server.settings.outbox_dir).exists() or not list(
        console_server.settings.outbox_dir.iterdir()
    )


def test_launch_shows_the_checklist_before_the_confirm_then_launches_and_audits(console_server):
    coordinator = console_server.login("coordinator")
    form = coordinator.get(LAUNCH)
    assert (
        form.status_code == 200 and "Check this launch" in form.text and "Confirm and launch" not in form.text
    )
    checklist = check_launch(coordinator, SPRING)
    assert checklist.status_code == 200
    items = re.findall(r'<li class="(pass|fail)"><strong>([^<]+)</strong>', checklist.text)
    assert ("fail", "Every email approved in its current form") in items and len(items) == 8
    assert "the outbox folder on the server" in checklist.text
    assert "Confirm and launch Spring 2026" in checklist.text
    assert console_server.store.campaign("spring-2026") is None  # checking writes nothing
    done = confirm_launch(coordinator, SPRING)
    assert (
        done.status_code == 303
        and done.headers["location"] == "/console/campaigns?done=launched&campaign=spring-2026"
    )
    created = campaign_state(console_server, "spring-2026")
    assert created["audiences"] == "social,gad" and created["state"] == "active" and not created["sandbox"]
    assert created["starts_at"] == datetime(2026, 3, 10, 13, 0, tzinfo=UTC)  # 09:00 in New York (EDT)
    [entry] = audit_actions(console_server, "campaign.launch")
    assert (entry.actor, entry.object_type, entry.object_id) == (
        "coordinator@clinic.example",
        "campaign",
        "spring-2026",
    )
    assert "audiences social,gad" in entry.detail and "sandbox False" in entry.detail
    listing = coordinator.get(done.headers["location"])
    assert "Launched spring-2026." in listing.text and "Spring 2026" in listing.text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"name": "Spring 2026"}, "Choose at least one audience."),
        ({"name": "", "audiences": ["gad"]}, "Give the campaign a name"),
        ({"name": "Anxiety relief", "audiences": ["gad"]}, "must not name a condition or a treatment"),
        ({"name": "Spring", "audiences": ["gad"], "start": "next tuesday"}, "is not a date and time"),
        ({"name": "Evergreen", "audiences": ["gad"]}, "exists"),
    ],
)
def test_a_launch_with_problems_shows_them_and_writes_nothing(console_server, values, message):
    coordinator = console_server.login("coordinator")
    checklist = check_launch(coordinator, values)
    assert checklist.status_code == 400 and message in checklist.text
    assert "Confirm and launch" not in checklist.text
    before = len(console_server.store.campaigns())
    refused = coordinator.post(LAUNCH, data={**values, "csrf_token": csrf_from(checklist.text)})
    assert refused.status_code == 400 and message in refused.text
    assert len(console_server.store.campaigns()) == before
    assert audit_actions(console_server, "campaign.launch") == []


def test_a_live_launch_is_refused_until_the_checklist_passes(make_settings, console_clock):
    live = make_settings(SENDGRID_API_KEY="SG.not-a-real-key", SENDGRID_API_HOST="https://api.sendgrid.com")
    with serve_console(live, console_clock) as server:
        coordinator = server.login("coordinator")
        checklist = check_launch(coordinator, SPRING)
        assert "SendGrid, live: the emails reach real people" in checklist.text
        assert "A live launch is refused until every item passes" in checklist.text
        assert "Confirm and launch" not in checklist.text
        refused = coordinator.post(LAUNCH, data={**SPRING, "csrf_token": csrf_from(checklist.text)})
        assert refused.status_code == 400 and server.store.campaign("spring-2026") is None
        sandboxed = check_launch(coordinator, {**SPRING, "sandbox": "yes"})
        assert "SendGrid&#39;s sandbox" in sandboxed.text and "Confirm and launch" in sandboxed.text


def test_pause_needs_a_reason_then_resume_then_stop_after_the_confirm(console_server):
    coordinator = console_server.login("coordinator")
    base = "/console/campaigns/evergreen"
    no_reason = coordinator.post_form(base + "/pause", {"reason": "  "}, page="/console/campaigns")
    assert no_reason.status_code == 400 and "Say why you pause it" in no_reason.text
    assert campaign_state(console_server, "evergreen")["state"] == "active"

    paused = coordinator.post_form(
        base + "/pause", {"reason": "Waiting for the new address"}, page="/console/campaigns"
    )
    assert paused.status_code == 303
    assert campaign_state(console_server, "evergreen")["paused_reason"] == "Waiting for the new address"
    page = coordinator.get(paused.headers["location"])
    assert "Paused evergreen." in page.text and "Paused: Waiting for the new address" in page.text
    assert "Resume Evergreen education" in page.text and "/evergreen/pause" not in page.text

    resumed = coordinator.post_form(base + "/resume", page="/console/campaigns")
    assert resumed.status_code == 303 and campaign_state(console_server, "evergreen")["state"] == "active"
    again = coordinator.post_form(base + "/resume", page="/console/campaigns")
    assert again.status_code == 400 and "it cannot resume" in again.text

    confirm = coordinator.get(base + "/stop")
    assert confirm.status_code == 200 and "is for good" in confirm.text
    unconfirmed = coordinator.post(base + "/stop", data={"csrf_token": csrf_from(confirm.text)})
    assert unconfirmed.status_code == 400 and campaign_state(console_server, "evergreen")["state"] == "active"
    stopped = coordinator.post(base + "/stop", data={"csrf_token": csrf_from(confirm.text), "confirm": "yes"})
    assert stopped.status_code == 303 and campaign_state(console_server, "evergreen")["state"] == "stopped"

    actions = [
        e.action for e in console_server.accounts.audit_page(limit=50) if e.action.startswith("campaign.")
    ]
    assert list(reversed(actions)) == ["campaign.pause", "campaign.resume", "campaign.stop"]
    [pause] = audit_actions(console_server, "campaign.pause")
    assert pause.detail == "Waiting for the new address" and pause.object_id == "evergreen"
    assert coordinator.get("/console/campaigns/nope/stop").status_code == 404


def test_a_test_email_goes_to_the_users_own_address_and_is_audited(console_server):
    coordinator = console_server.login("coordinator")
    sent = coordinator.post_form(
        "/console/campaigns/test-send", {"email": "gad/welcome"}, page="/console/campaigns"
    )
    assert sent.status_code == 303
    [eml] = list(console_server.settings.outbox_dir.glob("*.eml"))
    message = email.message_from_bytes(eml.read_bytes())
    assert (
        message["To"].endswith("coordinator@clinic.example>") or message["To"] == "coordinator@clinic.example"
    )
    page = coordinator.get(sent.headers["location"])
    assert "Sent a test of gad/welcome to your address, coordinator@clinic.example." in page.text
    [entry] = audit_actions(console_server, "test_send")
    assert entry.object_id == "gad/welcome" and "coordinator@clinic.example" in entry.detail

    unknown = coordinator.post_form(
        "/console/campaigns/test-send", {"email": "gad/nope"}, page="/console/campaigns"
    )
    assert unknown.status_code == 400 and "The test email was not sent" in unknown.text
    assert len(list(console_server.settings.outbox_dir.glob("*.eml"))) == 1
    assert [e.object_id for e in audit_actions(console_server, "test_send.failed")] == ["gad/nope"]


def test_a_post_without_the_csrf_token_changes_nothing(console_server):
    coordinator = console_server.login("coordinator")
    refused = coordinator.post("/console/campaigns/evergreen/pause", data={"reason": "forged"})
    assert refused.status_code == 403 and campaign_state(console_server, "evergreen")["state"] == "active"
