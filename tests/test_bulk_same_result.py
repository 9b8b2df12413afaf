"""The bulk step's quick paths leave what the per-email path leaves.

One tick of the same leads twice, on a fresh SQLite file each time: with bulk requests (grouped
recipients, the quick personalization check, the recorder settling sends, last emails and next
steps in one transaction as answers come) and one email per request. A lead unsubscribes after
its claim (skipped, then exited) and one address is refused (failed). Each lead must read the
same email, byte for byte but its own link's token and send id, and the ledger, the
enrollments, the leads' last email and the trigger-kept counts must be the same.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sendgrid_fixtures import KEY

from campaign.delivery.sendgrid_transport import SendGridTransport
from campaign.engine import run_tick
from campaign.models import AnxietyType, LeadIn
from campaign.runtime import build_context
from campaign.store.tables import enrollments, leads, send_counts
from campaign.tokens import read_token

MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)
KINDS = [AnxietyType.gad, AnxietyType.social, AnxietyType.gad, AnxietyType.treatment_resistant]
LEFT = "lead7@example.com"  # unsubscribes after the claim, before its request
REFUSED = "lead13@example.com"  # the server refuses its address
URL = re.compile(r"https://clinic\.example\.org/unsubscribe/([A-Za-z0-9._-]+)")


def the_leads() -> list[LeadIn]:
    # Names with nothing to escape: the per-email HTML escapes as the renderer does, the bulk
    # HTML as html.escape does (the same text, other entities for quotes).
    return [
        LeadIn(
            email=f"lead{i}@example.com",
            first_name=f"Lee{i}" if i % 5 else "",
            last_name="Park",
            anxiety_type=KINDS[i % 4] if i < 100 else AnxietyType.unspecified,
            prior_treatments=i % 3 if i % 4 == 3 else None,
            consent=True,
        )
        for i in range(104)  # four "unspecified": fewer than a bulk group, one email each
    ]


def one_tick(make_settings, sg, tmp_path, name: str, bulk: bool) -> dict:
    settings = make_settings(
        SENDGRID_API_KEY=KEY,
        SENDGRID_API_HOST=sg.url,
        database_url=f"sqlite:///{tmp_path / name}",
        bulk_sending=bulk,
    )
    ctx = build_context(settings)
    ctx.transport = SendGridTransport(KEY, host=sg.url, max_attempts=2, backoff_base=0.001, seed=1)
    store = ctx.store
    store.upsert_leads(the_leads(), MONDAY_10)
    claim = store.claim

    def claim_then_one_leaves(*args):
        claims = claim(*args)
        store.unsubscribe_lead(store.lead_by_email(LEFT).public_id, MONDAY_10)
        return claims

    store.claim = claim_then_one_leaves
    sg.reset()
    sg.set_faults(invalid_addresses=(REFUSED,))
    report = run_tick(ctx, MONDAY_10)
    secret = ctx.settings.secret_key.get_secret_value()
    public_ids = {
        lead.public_id: lead.email for lead in map(store.lead_by_email, (x.email for x in the_leads()))
    }

    def own_link(match: re.Match) -> str:
        return f"<link of {public_ids[read_token(match.group(1), secret)]}>"

    ledger = {r["email"]: r for r in store.ledger()}
    emails = {}
    for email, row in ledger.items():
        if row["status"] == "sent":
            payload = dict(sg.message_for(row["send_id"]).payload)
            assert payload.pop("custom_args") == {"send_id": row["send_id"]}
            emails[email] = URL.sub(own_link, json.dumps(payload, sort_keys=True, ensure_ascii=False))
    with store.engine.connect() as conn:
        state = conn.execute(
            sa.select(leads.c.email, leads.c.last_email_at, enrollments.c.state, enrollments.c.exit_reason)
            .add_columns(enrollments.c.next_due_at)
            .join(enrollments, enrollments.c.lead_id == leads.c.id)
            .order_by(leads.c.email)
        ).all()
        counts = conn.execute(sa.select(send_counts).order_by(*send_counts.primary_key)).all()
    store.close()
    return {
        "report": {
            k: sorted(v.items()) for k, v in report.as_dict().items() if k in ("sent", "failed", "skipped")
        },
        "ledger": sorted((email, r["status"], r["step_key"]) for email, r in ledger.items()),
        "emails": emails,
        "enrollments": [tuple(r) for r in state],
        "counts": [tuple(r) for r in counts],
        "requests": sg.counters.accepted,
    }


def test_a_bulk_tick_leaves_what_the_per_email_tick_leaves(make_settings, sg, tmp_path):
    bulk = one_tick(make_settings, sg, tmp_path, "bulk.db", bulk=True)
    alone = one_tick(make_settings, sg, tmp_path, "alone.db", bulk=False)

    assert bulk["requests"] * 2 < alone["requests"] == 102  # the two paths were taken
    statuses = {email: status for email, status, _ in bulk["ledger"]}
    assert statuses[LEFT] == "skipped" and statuses[REFUSED] == "failed"
    assert len(bulk["emails"]) == 102
    for email, text in bulk["emails"].items():
        assert text == alone["emails"][email], email
    assert bulk["emails"].keys() == alone["emails"].keys()
    for key in ("report", "ledger", "enrollments", "counts"):
        assert bulk[key] == alone[key], key
    # And what they leave is right: each sent lead emailed now and its next step ahead.
    for email, last_email_at, state, reason, next_due_at in bulk["enrollments"]:
        if email == LEFT:
            assert (state, reason, next_due_at) == ("exited", "unsubscribed", None)
        elif email == REFUSED:
            assert last_email_at is None and next_due_at > MONDAY_10  # a final failure: on to the next
        else:
            assert last_email_at == MONDAY_10 and state == "active" and next_due_at > MONDAY_10, email
    assert sum(n for *_, status, n in bulk["counts"] if status == "sent") == 102
