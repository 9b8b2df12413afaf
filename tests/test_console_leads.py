"""The console's lead pages over real HTTP (uvicorn, a SQLite file): the list with its search,
filters and pages by key; a lead's page with the rule that matched, the timeline and events;
the actions (booked, unsubscribe, forget) with their role checks and audit entries."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from html import unescape

import pytest
from console_support import START

from campaign.accounts import list_audit
from campaign.app.lead_pages import delivery_of, lead_status
from campaign.engine import run_tick
from campaign.events import parse_events
from campaign.models import AnxietyType, LeadIn
from campaign.runtime import build_context

LEAD_LINK = re.compile(r'href="/console/leads/([0-9a-f]{32})"')


def leads_of(html: str) -> list[str]:
    return LEAD_LINK.findall(html)


def add_leads(server, *leads: LeadIn) -> None:
    server.store.upsert_leads(list(leads), START)


def public_id(server, email: str) -> str:
    return server.store.lead_by_email(email).public_id


def audit_entries(server, action: str) -> list:
    return list_audit(server.accounts, action=action).entries


# ---- the list ---------------------------------------------------------------------------------


def test_the_list_searches_by_the_start_of_an_address_or_a_name(console_server):
    add_leads(
        console_server,
        LeadIn(email="sam.smith@example.com", first_name="Sam", last_name="Smith", consent=True),
        LeadIn(email="priya@example.com", first_name="Priya", last_name="Garcia"),
        LeadIn(email="jo@example.org", first_name="Jo", last_name="Samuels"),
    )
    client = console_server.login("reviewer")  # every role reads the list
    every = client.get("/console/leads")
    assert every.status_code == 200
    assert len(leads_of(every.text)) == 3 and "priya@example.com" in every.text

    def found(**query) -> set[str]:
        page = client.get("/console/leads", params=query)
        assert page.status_code == 200
        return {e for e in ("sam.smith@example.com", "priya@example.com", "jo@example.org") if e in page.text}

    assert found(q="sam") == {"sam.smith@example.com", "jo@example.org"}  # first name, last name
    assert found(q="GARC") == {"priya@example.com"}
    assert found(q="priya@") == {"priya@example.com"}
    assert found(q="sam smi") == {"sam.smith@example.com"}  # first and last name
    assert found(q="example.com") == set()  # the start, not the middle
    assert found(status="no_consent") == {"priya@example.com", "jo@example.org"}
    assert found(status="not_enrolled") == {"sam.smith@example.com"}


def test_the_list_pages_by_key_without_gaps_or_repeats(console_server):
    add_leads(console_server, *[LeadIn(email=f"lead{i:03}@example.com") for i in range(120)])
    client = console_server.login("coordinator")
    seen, path, pages = [], "/console/leads", 0
    while path:
        page = client.get(path)
        assert page.status_code == 200
        seen += leads_of(page.text)
        following = re.search(r'href="(/console/leads\?[^"]*after=[^"]*)">Next page', page.text)
        path = unescape(following.group(1)) if following else None
        pages += 1
    assert pages == 3 and len(seen) == 120 and len(set(seen)) == 120
    newest = console_server.store.lead_by_email("lead119@example.com").public_id
    assert seen[0] == newest  # newest first


def test_unknown_filter_values_are_named_and_ignored(console_server):
    add_leads(console_server, LeadIn(email="a@example.com"))
    page = console_server.login("coordinator").get(
        "/console/leads", params={"audience": "nope", "campaign": "gone", "status": "odd"}
    )
    assert page.status_code == 200 and "a@example.com" in page.text
    assert "no audience called" in unescape(page.text) and "no campaign" in unescape(page.text)


def test_audience_and_campaign_filters_follow_enrollments(console_server):
    settings = console_server.settings
    add_leads(
        console_server,
        LeadIn(email="worry@example.com", anxiety_type=AnxietyType.gad, consent=True),
        LeadIn(email="shy@example.com", anxiety_type=AnxietyType.social, consent=True),
        LeadIn(email="later@example.com", anxiety_type=AnxietyType.gad),  # no consent: not enrolled
    )
    ctx = build_context(settings, now=START, store=console_server.store)
    run_tick(ctx, START)
    client = console_server.login("coordinator")

    def found(**query) -> set[str]:
        text = client.get("/console/leads", params=query).text
        return {e for e in ("worry@example.com", "shy@example.com", "later@example.com") if e in text}

    assert found(audience="gad") == {"worry@example.com"}
    assert found(campaign="evergreen") == {"worry@example.com", "shy@example.com"}
    assert found(status="in_sequence") == {"worry@example.com", "shy@example.com"}
    assert found(status="no_consent") == {"later@example.com"}
    page = client.get("/console/leads", params={"audience": "social"}).text
    assert "In a sequence" in page and "social" in page


# ---- one lead ---------------------------------------------------------------------------------


def test_a_leads_page_explains_its_audience_and_is_audited_without_health_data(console_server):
    add_leads(
        console_server,
        LeadIn(
            email="tr@example.com",
            first_name="Tess",
            anxiety_type=AnxietyType.gad,
            prior_treatments=3,
            consent=True,
        ),
    )
    lead_id = public_id(console_server, "tr@example.com")
    page = console_server.login("reviewer").get(f"/console/leads/{lead_id}")
    assert page.status_code == 200
    text = unescape(page.text)
    assert "tr@example.com" in text and "Tess" in text
    assert "belongs to <strong>treatment_resistant</strong>" in text
    assert "prior treatments is 3, at least 2" in text
    assert "Not yet in a sequence" in text and "welcome" in text  # the timeline if enrolled now
    (entry,) = audit_entries(console_server, "lead.view")
    assert (entry.actor, entry.object_type, entry.object_id) == ("reviewer@clinic.example", "lead", lead_id)
    assert "gad" not in entry.detail and "tr@example.com" not in json.dumps(vars(entry), default=str)


def test_an_unknown_lead_is_a_404_page(console_server):
    page = console_server.login("coordinator").get("/console/leads/" + "0" * 32)
    assert page.status_code == 404 and "no such lead" in page.text.lower()
    assert audit_entries(console_server, "lead.view") == []


def test_the_timeline_shows_delivery_from_events_and_the_planned_steps(console_server):
    settings = console_server.settings
    add_leads(console_server, LeadIn(email="gad@example.com", anxiety_type=AnxietyType.gad, consent=True))
    ctx = build_context(settings, now=START, store=console_server.store)
    run_tick(ctx, START)
    store = console_server.store
    lead = store.lead_by_email("gad@example.com")
    (send_id,) = [r["send_id"] for r in store.ledger()]
    raw = {
        "email": lead.email,
        "timestamp": int((START + timedelta(minutes=5)).timestamp()),
        "event": "delivered",
        "sg_event_id": "ev-1",
        "sg_message_id": "m1.filter",
        "send_id": send_id,
    }
    store.record_events(parse_events(json.dumps([raw])), START + timedelta(minutes=6))
    text = console_server.login("coordinator").get(f"/console/leads/{lead.public_id}").text
    cell = r'<td data-label="{}"[^>]*>([^<]+)</td>'
    row = "<tr>" + "".join(cell.format(label) for label in ("Email", "Day", "When", "Status", "Delivery"))
    rows = [(step, day, status, delivery) for step, day, _, status, delivery in re.findall(row, text)]
    assert rows[0] == ("welcome", "0", "sent", "delivered")
    assert [r[0] for r in rows[1:]] == ["brain", "ketamine", "treatment", "questions"]
    assert {r[2] for r in rows[1:]} == {"planned"}
    assert (
        '<td data-label="What">delivered</td><td data-label="Email">welcome</td>' in text
    )  # the event: kind and time only, no payload
    assert "m1.filter" not in text


def test_statuses_and_delivery_words_are_one_rule():
    lead = {"unsubscribed_at": None, "booked": False, "consent": True}
    assert lead_status(lead, None) == "not_enrolled"
    assert lead_status({**lead, "consent": False}, None) == "no_consent"
    assert lead_status(lead, {"state": "exited", "exit_reason": "bounced"}) == "stopped"
    assert lead_status({**lead, "booked": True}, {"state": "exited"}) == "booked"
    assert lead_status({**lead, "unsubscribed_at": START, "booked": True}, None) == "unsubscribed"
    assert delivery_of({"processed", "delivered", "opened"}) == "delivered, opened"
    assert delivery_of({"delivered", "bounced"}) == "bounced"
    assert delivery_of(set()) == ""


# ---- actions ----------------------------------------------------------------------------------


def test_a_reviewer_sees_no_action_and_cannot_post_one(console_server):
    add_leads(console_server, LeadIn(email="x@example.com", consent=True))
    lead_id = public_id(console_server, "x@example.com")
    reviewer = console_server.login("reviewer")
    page = reviewer.get(f"/console/leads/{lead_id}").text
    assert "Mark as booked" not in page and "Forget this lead" not in page and "/unsubscribe" not in page
    for action in ("booked", "unsubscribe", "forget"):
        refused = reviewer.post_form(
            f"/console/leads/{lead_id}/{action}",
            {"confirm_address": "x@example.com"},
            page=f"/console/leads/{lead_id}",
        )
        assert refused.status_code == 403, action
    lead = console_server.store.lead_by_email("x@example.com")
    assert lead is not None and not lead.booked and lead.unsubscribed_at is None
    assert audit_entries(console_server, "lead.booked") == []


def test_a_coordinator_marks_booked_and_unsubscribes(console_server):
    add_leads(console_server, LeadIn(email="x@example.com", consent=True))
    lead_id = public_id(console_server, "x@example.com")
    coordinator = console_server.login("coordinator")
    page = coordinator.get(f"/console/leads/{lead_id}").text
    assert "Mark as booked" in page and "Forget this lead" in page
    done = coordinator.post_form(f"/console/leads/{lead_id}/booked", page=f"/console/leads/{lead_id}")
    assert done.status_code == 303 and done.headers["location"] == f"/console/leads/{lead_id}?done=booked"
    assert console_server.store.lead_by_email("x@example.com").booked
    after = coordinator.get(done.headers["location"]).text
    assert "Marked as booked" in after and "Mark as booked</button>" not in after
    coordinator.post_form(f"/console/leads/{lead_id}/unsubscribe", page=f"/console/leads/{lead_id}")
    assert console_server.store.lead_by_email("x@example.com").unsubscribed_at == START
    for action in ("lead.booked", "lead.unsubscribed"):
        (entry,) = audit_entries(console_server, action)
        assert (entry.actor, entry.object_id) == ("coordinator@clinic.example", lead_id)


def test_an_action_without_a_csrf_token_changes_nothing(console_server):
    add_leads(console_server, LeadIn(email="x@example.com", consent=True))
    lead_id = public_id(console_server, "x@example.com")
    refused = console_server.login("coordinator").post(f"/console/leads/{lead_id}/booked", data={})
    assert refused.status_code == 403
    assert not console_server.store.lead_by_email("x@example.com").booked


def test_forget_needs_the_typed_address_and_leaves_no_address_in_the_log(console_server):
    add_leads(console_server, LeadIn(email="gone@example.com", anxiety_type=AnxietyType.social))
    lead_id = public_id(console_server, "gone@example.com")
    admin = console_server.login("admin")
    wrong = admin.post_form(
        f"/console/leads/{lead_id}/forget",
        {"confirm_address": "other@example.com"},
        page=f"/console/leads/{lead_id}",
    )
    assert wrong.status_code == 400 and "Nothing was deleted" in wrong.text
    assert console_server.store.lead_by_email("gone@example.com") is not None
    done = admin.post_form(
        f"/console/leads/{lead_id}/forget",
        {"confirm_address": " Gone@Example.com "},
        page=f"/console/leads/{lead_id}",
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/leads?done=forgotten"
    assert console_server.store.lead_by_email("gone@example.com") is None
    assert "forgotten" in admin.get(done.headers["location"]).text
    assert admin.get(f"/console/leads/{lead_id}").status_code == 404
    (entry,) = audit_entries(console_server, "lead.forget")
    assert entry.object_id == lead_id and entry.detail.startswith("deleted 1 leads")
    logged = json.dumps(
        [vars(e) for e in list_audit(console_server.accounts, limit=500).entries], default=str
    )
    assert "gone@example.com" not in logged and "social" not in logged


# ---- audiences ----------------------------------------------------------------------------------


def test_the_audiences_page_shows_rules_counts_and_days(console_server):
    page = console_server.login("reviewer").get("/console/audiences")
    assert page.status_code == 200
    text = unescape(page.text)
    for name in ("treatment_resistant", "social", "gad", "general"):
        assert f'id="audience-{name}"' in text
    assert "prior_treatments >= 2" in text and "everyone" in text
    assert '<td>ketamine</td><td class="num">7</td>' in text
    # the order is the priority order
    assert text.index('id="audience-treatment_resistant"') < text.index('id="audience-general"')


@pytest.mark.parametrize("role", ["coordinator", "reviewer", "admin"])
def test_every_role_sees_leads_and_audiences_in_the_nav(console_server, role):
    nav = console_server.login(role).get("/console/").text
    assert 'href="/console/leads"' in nav and 'href="/console/audiences"' in nav
    assert ('href="/console/import"' in nav) == (role != "reviewer")


def test_a_broken_audience_file_leaves_the_lead_pages_readable(make_settings, tmp_path):
    from console_support import Clock, serve_console
    from test_engine import copy_content

    content = copy_content(tmp_path)
    (content / "audiences" / "gad.yaml").write_text("priority: [not a number\n")
    with serve_console(make_settings(content_dir=content), Clock()) as server:
        add_leads(server, LeadIn(email="x@example.com", consent=True))
        client = server.login("coordinator")
        assert client.get("/console/leads").status_code == 200
        page = client.get(f"/console/leads/{public_id(server, 'x@example.com')}")
        assert page.status_code == 200 and "audience files have problems" in page.text
        audiences = client.get("/console/audiences")
        assert audiences.status_code == 200 and "gad.yaml: not valid YAML" in audiences.text


def test_a_leads_page_shows_the_proof_of_consent(console_server, tmp_path):
    """When, from where (file and row, API token), the wording's version, the client address;
    a consent from before proof was kept says so, and no consent shows no proof."""
    from campaign.app.leads import import_file
    from campaign.models import ConsentProof
    from campaign.store import Incoming

    form = tmp_path / "form.csv"
    form.write_text(
        "Email,May we email you?,Consent version,IP address\n"
        "old@example.com,no,,\n"
        "ann@example.com,yes,2026-02 v3,203.0.113.7\n"
    )
    import_file(console_server.store, console_server.settings, form, START)
    console_server.store.upsert_leads(
        [Incoming(LeadIn(email="api@example.com", consent=True), ConsentProof(via="api", ref="crm-sync"))],
        START + timedelta(hours=1),
    )
    add_leads(console_server, LeadIn(email="legacy@example.com", consent=True))
    client = console_server.login("reviewer")

    def proof(email: str) -> dict[str, str] | None:
        text = unescape(client.get(f"/console/leads/{public_id(console_server, email)}").text)
        if "Proof of consent" not in text:
            return None
        text = text.split("Proof of consent</h3>")[1].split("</dl>")[0].split("<h2")[0]
        found = re.findall(
            r"<dt>(When|Source|Consent text version|Client address)</dt><dd>([^<]*)</dd>", text
        )
        return dict(found) or {"none": text.split("</p>")[0].strip()}

    ann = proof("ann@example.com")
    assert ann["Source"] == "Imported from form.csv row 3"
    assert ann["Consent text version"] == "2026-02 v3" and ann["Client address"] == "203.0.113.7"
    assert ann["When"] and ann["When"] != "-"
    api = proof("api@example.com")
    assert api["Source"] == "The lead API, token crm-sync"
    assert api["Consent text version"] == "not given" and api["Client address"] == "not relayed"
    assert ann["When"] != api["When"]  # each its own time
    assert "before proof was kept" in proof("legacy@example.com")["none"]
    assert proof("old@example.com") is None  # no consent: nothing to prove
