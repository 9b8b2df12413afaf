"""Bulk sending: a tick whose due recipients share an email goes out as requests of many
personalizations, through the official client to the project's SendGrid-compatible server,
which records what each lead would read. Exactly once per recipient on 202, timeout and 400."""

from __future__ import annotations

import html
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from sendgrid_fixtures import KEY

from campaign.bulk import BULK_MIN_RECIPIENTS, NAME_HTML, BulkComposer
from campaign.delivery.payload import check_limits, check_personalization
from campaign.delivery.sendgrid_transport import SendGridTransport
from campaign.devserver.state import personalized, substitute
from campaign.engine import run_tick
from campaign.models import AnxietyType, LeadIn
from campaign.runtime import build_context
from campaign.tokens import read_token

NY = ZoneInfo("America/New_York")
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=NY).astimezone(UTC)
HOSTILE = ["<script>alert(1)</script>", "-{{x}}", "Ann & Bo", 'Zoë "Z" O\'Neil', "Lee <b>bold</b>"]


def context(make_settings, sg, timeout=5.0, **overrides):
    settings = make_settings(SENDGRID_API_KEY=KEY, SENDGRID_API_HOST=sg.url, **overrides)
    ctx = build_context(settings)
    ctx.transport = SendGridTransport(
        KEY, host=sg.url, timeout=timeout, max_attempts=2, backoff_base=0.001, backoff_max=0.002, seed=1
    )
    return ctx


def gad_leads(n: int, names: list[str] = ()) -> list[LeadIn]:
    """n leads of one audience and one reported story: one email for all of them."""
    names = list(names) + [f"Lee{i}" for i in range(len(names), n)]
    return [
        LeadIn(email=f"lead{i}@example.com", first_name=names[i], anxiety_type=AnxietyType.gad, consent=True)
        for i in range(n)
    ]


def statuses(store) -> Counter:
    return Counter(row["status"] for row in store.ledger())


def test_a_bulk_tick_gives_each_lead_its_own_name_link_header_and_send_id(make_settings, sg):
    ctx = context(make_settings, sg)
    ctx.store.upsert_leads(gad_leads(40, HOSTILE), MONDAY_10)
    report = run_tick(ctx, MONDAY_10)

    assert sum(report.sent.values()) == 40
    assert sg.counters.accepted == 1  # one request for all forty
    ledger = ctx.store.ledger()
    assert {r["status"] for r in ledger} == {"sent"} and len({r["message_id"] for r in ledger}) == 1
    secret = ctx.settings.secret_key.get_secret_value()
    leads = {r["email"]: ctx.store.lead_by_email(r["email"]) for r in ledger}
    # Each lead's link, from its own List-Unsubscribe (the token holds the time it was made).
    urls = {
        r["email"]: sg.message_for(r["send_id"]).payload["headers"]["List-Unsubscribe"][1:-1] for r in ledger
    }
    prefix = ctx.settings.public_url.rstrip("/") + "/unsubscribe/"
    for email, url in urls.items():
        assert url.startswith(prefix) and read_token(url[len(prefix) :], secret) == leads[email].public_id
    for row in ledger:
        message = sg.message_for(row["send_id"])
        lead = leads[row["email"]]
        payload = message.payload
        text, body_html = (part["value"] for part in payload["content"])
        # What a per-lead render gives, word for word in the text part.
        alone = ctx.renderer.render(
            "gad/welcome",
            first_name=lead.first_name,
            unsubscribe_url=urls[row["email"]],
            anxiety_type=lead.anxiety_type,
            prior_treatments=lead.prior_treatments,
        )
        assert text == alone.text
        if lead.first_name.isalnum():  # nothing to escape: the HTML is the per-lead HTML too
            assert body_html == alone.html
        assert payload["subject"] == alone.subject
        assert f"Hi {html.escape(lead.first_name, quote=True)}," in body_html
        assert f'href="{urls[row["email"]]}"' in body_html
        assert payload["headers"]["List-Unsubscribe"] == f"<{urls[row['email']]}>"
        assert payload["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert payload["custom_args"] == {"send_id": row["send_id"]}
        assert message.to_emails == [row["email"]]
        # Its events carry its own send id (from the personalization's custom_args).
        (event,) = sg.events_for(row["send_id"], "delivered")
        assert event["send_id"] == row["send_id"] and event["email"] == row["email"]
        # Nobody else's name or link, and no tag left over.
        others = [u for e, u in urls.items() if e != row["email"]]
        assert not any(u in text or u in body_html for u in others)
        assert "%%" not in text + body_html
        if lead.first_name.startswith("<script>"):
            assert "<script>" not in body_html and "&lt;script&gt;alert(1)&lt;/script&gt;" in body_html
        if lead.first_name == "Lee7":
            assert "Lee7" in text and "Lee17" not in text


def test_a_name_holding_a_tag_goes_alone_and_cannot_reach_another_recipient(make_settings, sg):
    ctx = context(make_settings, sg)
    ctx.store.upsert_leads(gad_leads(20, [NAME_HTML, "%%unsubscribe_url_text%%"]), MONDAY_10)
    run_tick(ctx, MONDAY_10)

    assert statuses(ctx.store) == Counter(sent=20)
    assert sg.counters.accepted == 3  # 18 in one request, the two tag-shaped names one each
    for message in sg.messages:
        text = message.payload["content"][0]["value"]
        email = message.to_emails[0]
        if email in ("lead0@example.com", "lead1@example.com"):
            assert len(message.body["personalizations"]) == 1
        else:
            assert "%%" not in text


def test_the_devserver_substitutes_in_one_pass_so_a_value_never_becomes_a_tag():
    subs = {"%%a%%": "%%b%%", "%%b%%": "<B>"}
    assert substitute("x %%a%% y %%b%%", subs) == "x %%b%% y <B>"
    body = {
        "personalizations": [
            {"to": [{"email": "a@x.org"}], "subject": "Hi %%a%%", "substitutions": {"%%a%%": "Ann"}},
            {"to": [{"email": "b@x.org"}], "subject": "Hi %%a%%", "substitutions": {"%%a%%": "-{{x}}"}},
        ],
        "content": [{"type": "text/plain", "value": "Dear %%a%%"}],
        "headers": {"X-Top": "1"},
    }
    assert personalized(body, 1)["content"][0]["value"] == "Dear -{{x}}"
    assert personalized(body, 0)["subject"] == "Hi Ann" and personalized(body, 0)["headers"] == {"X-Top": "1"}


def test_202_settles_every_recipient_and_a_small_group_goes_one_email_each(make_settings, sg):
    ctx = context(make_settings, sg)
    n = BULK_MIN_RECIPIENTS - 1
    ctx.store.upsert_leads(gad_leads(n), MONDAY_10)
    run_tick(ctx, MONDAY_10)
    assert sg.counters.accepted == n and statuses(ctx.store) == Counter(sent=n)
    assert all(len(m.body["personalizations"]) == 1 for m in sg.messages)


def test_a_timeout_makes_every_recipient_of_the_request_unknown(make_settings, sg):
    ctx = context(make_settings, sg, timeout=0.3)
    ctx.store.upsert_leads(gad_leads(25), MONDAY_10)
    sg.set_faults(hang=1.0)
    report = run_tick(ctx, MONDAY_10)
    sg.set_faults(hang=0.0)
    assert sum(report.unknown.values()) == 25
    assert statuses(ctx.store) == Counter(unknown=25)  # each reconciled by its own send id
    assert len({r["send_id"] for r in ctx.store.ledger()}) == 25


def test_a_400_splits_the_request_until_the_bad_recipient_is_alone(make_settings, sg):
    ctx = context(make_settings, sg)
    ctx.store.upsert_leads(gad_leads(30), MONDAY_10)
    sg.set_faults(invalid_addresses=("lead13@example.com",))
    run_tick(ctx, MONDAY_10)

    ledger = {r["email"]: r for r in ctx.store.ledger()}
    assert ledger["lead13@example.com"]["status"] == "failed"
    assert Counter(r["status"] for r in ledger.values()) == Counter(sent=29, failed=1)
    assert Counter(e for m in sg.messages for e in m.to_emails) == Counter(
        {f"lead{i}@example.com": 1 for i in range(30) if i != 13}
    )
    assert sg.counters.invalid == 6  # 30, 15, 8, 4, 2, 1: one refused request per halving


def test_a_recipient_that_breaks_a_per_personalization_limit_fails_alone(make_settings):
    from campaign.bulk import BulkRecipient
    from campaign.delivery.bulk_payload import bulk_personalization

    too_long = BulkRecipient(
        send_id="snd_x",
        to_email="a@example.com",
        to_name="A",
        subject="Hi",
        unsubscribe_url="https://x.org/u/1",
        substitutions={"%%first_name_text%%": "x" * 10_000},
    )
    problems = check_personalization(bulk_personalization(too_long))
    assert problems and "10,000" in problems[0]
    payload = {
        "from": {"email": "c@x.org"},
        "personalizations": [bulk_personalization(too_long)],
        "content": [{"type": "text/plain", "value": "x"}],
    }
    assert any("substitutions" in p for p in check_limits(payload))


@pytest.mark.parametrize("has_name", [True, False])
def test_a_template_that_changes_the_name_is_not_sent_in_bulk(tmp_path, settings, has_name):
    """A heading title-cases its words: 'lee' would become 'Lee' in a per-lead render, so the
    email is not substitution-safe and its leads go one email each."""
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(settings.content_dir / "templates", templates)
    (templates / "gad" / "welcome.md").write_text(
        '---\nsubject: "Hello"\npreheader: "p"\n---\n## hello {{ first_name }}\n\nBody.\n', encoding="utf-8"
    )
    from campaign.render import Renderer

    composer = BulkComposer(Renderer(templates, settings.clinic))
    template = composer.template("gad/welcome", "gad", None, has_name)
    assert (template is None) is has_name


def test_reachable_among_agrees_with_is_reachable(store):
    now = MONDAY_10
    store.upsert_leads(gad_leads(5), now)
    leads = [store.lead_by_email(f"lead{i}@example.com") for i in range(5)]
    store.unsubscribe_lead(leads[1].public_id, now)
    store.suppress(leads[2].email, "bounce", now)
    store.mark_booked(leads[3].email, now)
    pairs = [(lead.id, lead.email) for lead in leads]
    assert store.reachable_among(pairs) == {leads[0].id, leads[4].id}
    assert [store.is_reachable(i, e) for i, e in pairs] == [True, False, False, False, True]
    # The address changed since the claim: not this lead's any more.
    assert store.reachable_among([(leads[0].id, "someone.else@example.com")]) == set()


def test_a_lead_who_left_after_the_claim_is_skipped_and_the_rest_go(make_settings, sg, monkeypatch):
    ctx = context(make_settings, sg)
    ctx.store.upsert_leads(gad_leads(15), MONDAY_10)
    leaver = ctx.store.lead_by_email("lead4@example.com")
    reachable_among = ctx.store.reachable_among

    def unsubscribe_then_check(pairs):
        # The lead unsubscribes between the claim and the request.
        ctx.store.unsubscribe_lead(leaver.public_id, MONDAY_10)
        return reachable_among(pairs)

    monkeypatch.setattr(ctx.store, "reachable_among", unsubscribe_then_check)
    run_tick(ctx, MONDAY_10)
    assert statuses(ctx.store) == Counter(sent=14, skipped=1)
    assert "lead4@example.com" not in {e for m in sg.messages for e in m.to_emails}


def test_a_bulk_tick_joins_the_due_walks_batches_into_full_requests(make_settings, sg):
    """45 due leads of one email, walked 10 at a time: before, 4 requests of 10 and 5 single
    emails; joined into steps of up to CAMPAIGN_BULK_BATCH_SIZE, one request of 45. Each step
    still claims before it sends and settles after: every lead once, every row sent."""
    ctx = context(make_settings, sg, batch_size=10, bulk_batch_size=1000)
    ctx.store.upsert_leads(gad_leads(45), MONDAY_10)
    report = run_tick(ctx, MONDAY_10)
    assert sum(report.sent.values()) == 45
    assert sg.counters.accepted == 1 and len(sg.messages[0].body["personalizations"]) == 45
    assert statuses(ctx.store) == Counter(sent=45)
    assert Counter(e for m in sg.messages for e in m.to_emails) == Counter(
        {f"lead{i}@example.com": 1 for i in range(45)}
    )


def test_joined_steps_stop_at_the_bulk_batch_size(make_settings, sg):
    ctx = context(make_settings, sg, batch_size=10, bulk_batch_size=20)
    ctx.store.upsert_leads(gad_leads(45), MONDAY_10)
    run_tick(ctx, MONDAY_10)
    # Steps of 20, 20 and 5: two requests of 20, and the last 5 (a small group) one email each.
    sizes = sorted(len(m.body["personalizations"]) for m in sg.messages if m.index in (None, 0))
    assert sizes == [1, 1, 1, 1, 1, 20, 20]
    assert statuses(ctx.store) == Counter(sent=45) and len(sg.messages) == 45


def test_without_bulk_the_due_walks_batches_go_as_they_come(make_settings, sg):
    ctx = context(make_settings, sg, batch_size=10, bulk_sending=False)
    ctx.store.upsert_leads(gad_leads(25), MONDAY_10)
    batches = []

    def run(step, *args):
        if step.__name__ == "send_due_batch":
            batches.append(len(args[1]))
        return step(*args)

    run_tick(ctx, MONDAY_10, run=run)
    assert batches == [10, 10, 5] and sg.counters.accepted == 25


@pytest.mark.parametrize("limit", [1, 2])
def test_a_timed_out_request_counts_once_toward_the_failure_limit(make_settings, sg, limit):
    """25 recipients of one request, all unknown after a timeout: one failed request, not 25
    failures in a row. With CAMPAIGN_MAX_CONSECUTIVE_FAILURES=2 the campaign keeps going (it
    paused on the first ambiguous request before); with 1 it pauses."""
    ctx = context(make_settings, sg, timeout=0.3, max_consecutive_failures=limit)
    ctx.store.upsert_leads(gad_leads(25), MONDAY_10)
    sg.set_faults(hang=1.0)
    report = run_tick(ctx, MONDAY_10)
    sg.set_faults(hang=0.0)
    assert statuses(ctx.store) == Counter(unknown=25)
    assert bool(report.paused) is (limit == 1)
    assert (ctx.store.campaign("evergreen")["state"] == "active") is (limit == 2)
