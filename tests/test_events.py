"""SendGrid events: the pure normalization (literal SendGrid JSON in, every field checked), what
each event does (the pure `effects`, no database), then the store applying them on SQLite and
PostgreSQL (dedupe, ledger links, suppression, forgetting)."""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from store_support import enrollment_row

from campaign.events import (
    DROP_REASONS,
    EVENT_KINDS,
    EXIT_PRECEDENCE,
    SUPPRESSING_KINDS,
    Effects,
    LinkedEvent,
    MalformedEvents,
    dedupe_key,
    effects,
    is_content_drop,
    message_id_of,
    normalize,
    parse_events,
    suppresses,
)
from campaign.models import LeadIn, SendResult, SendStatus
from campaign.store import email_hash, enrollments, events, leads, sends, suppressions

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
TS = 1772463600  # 2026-03-02T15:00:00Z
SG_MESSAGE_ID = "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.000000000000000000000"


def sendgrid_event(event: str, **extra) -> dict:
    """One event the way SendGrid's documentation shows it (plus our custom_args send_id)."""
    base = {
        "email": "example@test.com",
        "timestamp": TS,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": ["education"],
        "sg_event_id": f"sg-{event}-rbtnWrG1DVDGGGFHFyun0A",
        "sg_message_id": SG_MESSAGE_ID,
        "send_id": "0123456789abcdef0123456789abcdef",
    }
    base.update(extra)
    return base


# ---- normalization ----------------------------------------------------------------------------

RAW_TYPES = [
    # raw type, extra fields, normalized kind, suppresses?
    ("processed", {}, "processed", False),
    ("delivered", {"response": "250 OK"}, "delivered", False),
    ("deferred", {"response": "400 try again later", "attempt": "5"}, "deferred", False),
    ("bounce", {"reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce"}, "bounced", True),
    ("bounce", {"reason": "550 blocked by policy", "status": "5.7.1", "type": "blocked"}, "bounced", False),
    ("bounce", {"reason": "452 mailbox full", "status": "4.2.2", "type": "bounce"}, "bounced", False),
    ("dropped", {"reason": "Bounced Address", "status": "5.0.0"}, "rejected", True),
    ("dropped", {"reason": "Invalid"}, "rejected", True),
    ("dropped", {"reason": "Unsubscribed Address"}, "rejected", True),
    ("dropped", {"reason": "Spam Reporting Address"}, "rejected", True),
    ("dropped", {"reason": "Spam Content"}, "rejected", False),
    ("dropped", {"reason": "Invalid SMTPAPI header"}, "rejected", False),
    ("dropped", {"reason": "Recipient List over Package Quota"}, "rejected", False),
    ("open", {"useragent": "Mozilla/5.0", "ip": "255.255.255.255"}, "opened", False),
    (
        "click",
        {"useragent": "Mozilla/5.0", "ip": "255.255.255.255", "url": "https://example.org/"},
        "clicked",
        False,
    ),
    ("spamreport", {}, "complained", True),
    ("unsubscribe", {}, "unsubscribed", True),
    ("group_unsubscribe", {"asm_group_id": 10, "url": "https://example.org/"}, "unsubscribed", True),
    ("group_resubscribe", {"asm_group_id": 10}, "resubscribed", False),
]


@pytest.mark.parametrize(
    "raw_type, extra, kind, suppressing",
    RAW_TYPES,
    ids=[f"{r[0]}-{r[1].get('type', '')}{r[1].get('status', '')}{r[1].get('reason', '')}" for r in RAW_TYPES],
)
def test_each_sendgrid_type_normalizes_to_its_kind(raw_type, extra, kind, suppressing):
    raw = sendgrid_event(raw_type, **extra)
    ev = normalize(raw)
    assert (ev.kind, ev.raw_event) == (kind, raw_type)
    assert suppresses(ev) is suppressing and ev.suppresses is suppressing


def test_the_table_covers_every_documented_type():
    assert set(EVENT_KINDS) == {
        "processed",
        "delivered",
        "deferred",
        "bounce",
        "dropped",
        "open",
        "click",
        "spamreport",
        "unsubscribe",
        "group_unsubscribe",
        "group_resubscribe",
    }


def test_normalize_fills_every_field_and_keeps_the_raw_event():
    raw = sendgrid_event(
        "bounce",
        email="  Jane.Doe@Example.COM ",
        reason="500 unknown recipient",
        status="5.1.1",
        type="bounce",
    )
    original = copy.deepcopy(raw)
    ev = normalize(raw)
    assert ev.kind == "bounced"
    assert ev.raw_event == "bounce"
    assert ev.email == "jane.doe@example.com"
    assert ev.occurred_at == NOW and ev.occurred_at.tzinfo is not None
    assert ev.timestamp == TS
    assert ev.sg_event_id == "sg-bounce-rbtnWrG1DVDGGGFHFyun0A"
    assert ev.sg_message_id == SG_MESSAGE_ID
    assert ev.message_id == "14c5d75ce93"
    assert ev.send_id == "0123456789abcdef0123456789abcdef"
    assert (ev.bounce_type, ev.status) == ("bounce", "5.1.1")
    assert ev.raw == original  # kept as sent, address and all (the store holds it, nobody logs it)
    expected = hashlib.sha256(
        json.dumps([SG_MESSAGE_ID, "bounce", TS, "jane.doe@example.com"], separators=(",", ":")).encode()
    ).hexdigest()
    assert ev.dedupe_key == expected


def test_dedupe_key_ignores_sg_event_id_but_not_the_four_fields():
    a = normalize(sendgrid_event("delivered"))
    b = normalize(sendgrid_event("delivered", sg_event_id="another-id-for-the-same-delivery"))
    assert a.dedupe_key == b.dedupe_key
    others = [
        sendgrid_event("delivered", timestamp=TS + 1),
        sendgrid_event("processed"),
        sendgrid_event("delivered", email="other@test.com"),
        sendgrid_event("delivered", sg_message_id="zzz.filter"),
    ]
    assert len({a.dedupe_key, *(normalize(o).dedupe_key for o in others)}) == 5
    assert dedupe_key(None, "delivered", TS, "a@b.c") != dedupe_key("", "delivered", TS, "a@b.c")


def test_send_id_comes_only_from_a_top_level_string_custom_arg():
    assert normalize(sendgrid_event("open", send_id=None)).send_id is None
    no_arg = sendgrid_event("open")
    del no_arg["send_id"]
    assert normalize(no_arg).send_id is None
    assert normalize(sendgrid_event("open", send_id=12345)).send_id is None
    assert normalize(sendgrid_event("open", send_id="x" * 33)).send_id is None  # not one of ours
    nested = sendgrid_event("open", custom_args={"send_id": "abc"})
    del nested["send_id"]
    assert normalize(nested).send_id is None


def test_message_id_is_the_part_before_the_first_dot():
    assert message_id_of("abc123.filter0001.1.2") == "abc123"
    assert message_id_of("abc123") == "abc123"
    assert message_id_of(None) is None and message_id_of("") is None
    missing = sendgrid_event("delivered")
    del missing["sg_message_id"]
    assert normalize(missing).message_id is None


def test_an_unknown_event_type_is_kept_and_does_nothing():
    ev = normalize(sendgrid_event("machine_opened"))
    assert (ev.kind, ev.raw_event, suppresses(ev)) == ("unknown", "machine_opened", False)


def test_bounce_fields_are_read_only_on_bounces():
    ev = normalize(sendgrid_event("dropped", type="blocked", status="4.0.0"))
    assert (ev.bounce_type, ev.status) == (None, None)
    assert suppresses(ev)  # a drop without a reason suppresses whatever its other fields say


def test_the_drop_reason_is_read_only_on_drops_and_in_any_letter_case():
    assert normalize(sendgrid_event("dropped", reason="Spam Content")).drop_reason == "Spam Content"
    bounce = normalize(sendgrid_event("bounce", reason="Spam Content", type="bounce", status="5.1.1"))
    assert bounce.drop_reason is None and suppresses(bounce)
    shouting = normalize(sendgrid_event("dropped", reason="  SPAM CONTENT "))
    assert is_content_drop(shouting) and not suppresses(shouting)


@pytest.mark.parametrize("reason", [None, "", "Some reason SendGrid added later", 12])
def test_a_drop_for_an_unknown_reason_suppresses(reason):
    """Mailing an address SendGrid refuses costs reputation: when in doubt, suppress."""
    ev = normalize(sendgrid_event("dropped", reason=reason))
    assert not is_content_drop(ev) and suppresses(ev)


def test_the_drop_reason_table_is_casefolded_and_says_address_or_content():
    assert all(r == r.casefold().strip() for r in DROP_REASONS)
    assert set(DROP_REASONS.values()) == {"address", "content"}
    assert set(EXIT_PRECEDENCE) == SUPPRESSING_KINDS  # every exit reason has its place


@pytest.mark.parametrize(
    "body, where",
    [
        (b"", "not JSON"),
        (b"{not json", "not JSON"),
        (b'{"event": "open"}', "not a JSON array"),
        (b"[1]", "event 0: not a JSON object"),
        (
            json.dumps([sendgrid_event("open"), {"email": "a@b.c", "timestamp": TS}]).encode(),
            "event 1: 'event'",
        ),
        (json.dumps([{"event": "open", "timestamp": TS}]).encode(), "'email'"),
        (
            json.dumps(
                [{"event": "open", "email": "secret.person@example.com", "timestamp": "yesterday"}]
            ).encode(),
            "'timestamp'",
        ),
        (
            json.dumps([{"event": "open", "email": "secret.person@example.com", "timestamp": True}]).encode(),
            "'timestamp'",
        ),
        (
            json.dumps(
                [{"event": "open", "email": "secret.person@example.com", "timestamp": 10**20}]
            ).encode(),
            "'timestamp'",
        ),
        (b"\xff\xfe[]", "not JSON"),
        (b'[{"event": "open", "email": "a@b.c", "timestamp": 1772463600, "ip": NaN}]', "not JSON"),
    ],
)
def test_parse_events_refuses_malformed_bodies_without_naming_values(body, where):
    with pytest.raises(MalformedEvents) as caught:
        parse_events(body)
    assert where in str(caught.value)
    assert "secret.person" not in str(caught.value)


def test_parse_events_reads_an_array():
    body = json.dumps([sendgrid_event("processed"), sendgrid_event("delivered")]).encode()
    assert [e.kind for e in parse_events(body)] == ["processed", "delivered"]
    assert parse_events(b"[]") == []


# ---- what events do (pure) --------------------------------------------------------------------


def linked(raw_type: str, lead_id: int | None = 7, send_status: str | None = "sent", **extra) -> LinkedEvent:
    """One event as the store hands it to `effects`: tied to lead 7 and its ledger row 'S1'."""
    ev = normalize(sendgrid_event(raw_type, email="jane@example.com", **extra))
    if send_status is None:
        return LinkedEvent(ev, lead_id=lead_id)
    return LinkedEvent(ev, lead_id, "S1", send_status, "14c5d75ce93")


NOTHING = Effects()

EFFECTS = [
    # raw type, extra fields, what it does (lead 7, address jane@example.com)
    ("processed", {}, NOTHING),
    ("delivered", {}, NOTHING),
    ("deferred", {"response": "400 try again later"}, NOTHING),
    ("open", {}, NOTHING),
    ("click", {"url": "https://example.org/"}, NOTHING),
    ("group_resubscribe", {"asm_group_id": 10}, NOTHING),
    ("machine_opened", {}, NOTHING),
    ("bounce", {"type": "blocked", "status": "5.7.1"}, NOTHING),
    ("bounce", {"type": "bounce", "status": "4.2.2"}, NOTHING),
    (
        "bounce",
        {"type": "bounce", "status": "5.1.1"},
        Effects(suppress={"jane@example.com": "bounce"}, exit={7: "bounced"}),
    ),
    ("spamreport", {}, Effects(suppress={"jane@example.com": "spamreport"}, exit={7: "complained"})),
    (
        "unsubscribe",
        {},
        Effects(
            suppress={"jane@example.com": "unsubscribe"}, exit={7: "unsubscribed"}, unsubscribe=frozenset({7})
        ),
    ),
    (
        "group_unsubscribe",
        {"asm_group_id": 10},
        Effects(
            suppress={"jane@example.com": "group_unsubscribe"},
            exit={7: "unsubscribed"},
            unsubscribe=frozenset({7}),
        ),
    ),
    *[
        (
            "dropped",
            {"reason": reason},
            Effects(suppress={"jane@example.com": "dropped"}, exit={7: "rejected"}),
        )
        for reason in ("Invalid", "Bounced Address", "Unsubscribed Address", "Spam Reporting Address", None)
    ],
    *[
        ("dropped", {"reason": reason}, Effects(content_drops=1))
        for reason in ("Spam Content", "Invalid SMTPAPI header", "Recipient List over Package Quota")
    ],
]


@pytest.mark.parametrize(
    "raw_type, extra, expected",
    EFFECTS,
    ids=[f"{r[0]}-{r[1].get('type', '')}{r[1].get('status', '')}{r[1].get('reason', '')}" for r in EFFECTS],
)
def test_what_each_event_does(raw_type, extra, expected):
    assert effects([linked(raw_type, **extra)]) == expected


def test_accepted_events_settle_only_unknown_ledger_rows():
    assert effects([linked("processed", send_status="unknown")]).settle == {"S1": "14c5d75ce93"}
    assert effects([linked("delivered", send_status="unknown")]).settle == {"S1": "14c5d75ce93"}
    for status in ("sent", "claimed", "failed"):
        assert effects([linked("delivered", send_status=status)]).settle == {}
    assert effects([linked("open", send_status="unknown")]).settle == {}
    assert effects([linked("delivered", send_status=None)]).settle == {}  # not tied to the ledger


def test_a_settled_row_without_a_message_id_takes_the_events():
    ev = normalize(sendgrid_event("processed"))
    assert effects([LinkedEvent(ev, 7, "S1", "unknown", None)]).settle == {"S1": "14c5d75ce93"}


def test_an_unknown_address_is_suppressed_without_a_lead_to_exit():
    done = effects([linked("spamreport", lead_id=None, send_status=None)])
    assert done == Effects(suppress={"jane@example.com": "spamreport"})


def test_several_reasons_for_one_lead_give_one_exit_in_a_fixed_order():
    posted = [
        linked("unsubscribe"),
        linked("spamreport", sg_event_id="s"),
        linked("dropped", sg_event_id="d"),
    ]
    for order in (posted, posted[::-1]):
        done = effects(order)
        assert done.exit == {7: "complained"} and done.unsubscribe == frozenset({7})
    # the address keeps the first reason it was suppressed for
    assert effects(posted).suppress == {"jane@example.com": "unsubscribe"}
    assert effects(posted[::-1]).suppress == {"jane@example.com": "dropped"}


def test_content_drops_are_counted_and_touch_nobody():
    posted = [
        linked("dropped", reason="Spam Content", sg_event_id="a"),
        linked("dropped", reason="Invalid SMTPAPI header", sg_event_id="b", lead_id=8),
        linked("open", sg_event_id="c"),
    ]
    assert effects(posted) == Effects(content_drops=2)


# ---- the store --------------------------------------------------------------------------------


def enrolled_send(store, email: str, status: SendStatus, message_id: str | None):
    """A lead with one enrollment and one settled ledger row; returns (lead, send_id)."""
    store.upsert_leads([LeadIn(email=email, consent=True)], NOW)
    lead = store.lead_by_email(email)
    campaign = store.campaign("evergreen")
    store.add_enrollments([enrollment_row(campaign["id"], lead.id, NOW)])
    enrollment_id = store.enrollment_for_lead(lead.id)["id"]
    (claim,) = store.claim([(enrollment_id, "welcome")], NOW, "sendgrid")
    store.settle([SendResult(send_id=claim.send_id, status=status, message_id=message_id)], NOW)
    return lead, claim.send_id


def stored_events(store) -> list[dict]:
    with store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(events).order_by(events.c.id)).mappings()]


def send_row(store, send_id) -> dict:
    with store.engine.connect() as conn:
        return dict(conn.execute(sa.select(sends).where(sends.c.send_id == send_id)).mappings().one())


def test_record_events_stores_normalized_and_raw(store):
    lead, send_id = enrolled_send(store, "jane@example.com", SendStatus.sent, "14c5d75ce93")
    raw = sendgrid_event("open", email="Jane@Example.com", send_id=send_id)
    counts = store.record_events(parse_events(json.dumps([raw]).encode()), NOW)
    assert (counts.received, counts.stored, counts.duplicates, counts.linked) == (1, 1, 0, 1)
    (row,) = stored_events(store)
    assert (row["event"], row["raw_event"], row["send_id"], row["lead_id"]) == (
        "opened",
        "open",
        send_id,
        lead.id,
    )
    assert row["email_hash"] == email_hash("jane@example.com", store.secret_key)
    assert row["occurred_at"] == NOW and row["raw"] == raw


def test_a_replayed_post_is_stored_once_and_changes_nothing_more(store):
    enrolled_send(store, "example@test.com", SendStatus.sent, "14c5d75ce93")
    batch = parse_events(json.dumps([sendgrid_event("delivered"), sendgrid_event("spamreport")]).encode())
    first = store.record_events(batch, NOW)
    again = store.record_events(batch, NOW)
    assert (first.stored, first.suppressed, first.exited) == (2, 1, 1)
    assert (again.stored, again.duplicates, again.suppressed, again.exited) == (0, 2, 0, 0)
    assert len(stored_events(store)) == 2


def test_duplicates_are_caught_by_event_id_and_by_dedupe_key(store):
    one = sendgrid_event("delivered")
    same_delivery_new_id = sendgrid_event("delivered", sg_event_id="a-different-id")
    same_id_other_fields = sendgrid_event("open", sg_event_id=one["sg_event_id"], timestamp=TS + 60)
    within = store.record_events(parse_events(json.dumps([one, one]).encode()), NOW)
    later = store.record_events(
        parse_events(json.dumps([same_delivery_new_id, same_id_other_fields]).encode()), NOW
    )
    assert (within.stored, within.duplicates) == (1, 1)
    assert (later.stored, later.duplicates) == (0, 2)
    assert len(stored_events(store)) == 1


def test_bounce_without_custom_args_links_by_message_id_prefix(store):
    lead, send_id = enrolled_send(store, "jane@example.com", SendStatus.sent, "14c5d75ce93")
    other, other_send = enrolled_send(
        store, "sam@example.com", SendStatus.sent, "14c5d75ce93"
    )  # same request
    bounce = sendgrid_event("bounce", email="sam@example.com", type="bounce", status="5.1.1")
    del bounce["send_id"]  # bounces through Return-Path carry no custom_args
    counts = store.record_events(parse_events(json.dumps([bounce]).encode()), NOW)
    (row,) = stored_events(store)
    assert (row["send_id"], row["lead_id"], counts.linked) == (other_send, other.id, 1)


def test_processed_settles_an_unknown_send_as_sent_and_open_does_not(store):
    _, unknown_send = enrolled_send(store, "jane@example.com", SendStatus.unknown, None)
    _, other_unknown = enrolled_send(store, "sam@example.com", SendStatus.unknown, None)
    posted = [
        sendgrid_event("processed", email="jane@example.com", send_id=unknown_send),
        sendgrid_event("open", email="sam@example.com", send_id=other_unknown, sg_event_id="o-1"),
    ]
    counts = store.record_events(parse_events(json.dumps(posted).encode()), NOW)
    assert counts.settled == 1
    settled = send_row(store, unknown_send)
    assert (settled["status"], settled["message_id"], settled["settled_at"]) == ("sent", "14c5d75ce93", NOW)
    assert send_row(store, other_unknown)["status"] == "unknown"


@pytest.mark.parametrize(
    "raw_type, extra, reason",
    [
        ("bounce", {"type": "bounce", "status": "5.1.1"}, "bounced"),
        ("dropped", {"reason": "Bounced Address"}, "rejected"),
        ("spamreport", {}, "complained"),
        ("unsubscribe", {}, "unsubscribed"),
        ("group_unsubscribe", {"asm_group_id": 10}, "unsubscribed"),
    ],
)
def test_suppressing_events_suppress_and_exit_the_lead(store, raw_type, extra, reason):
    lead, send_id = enrolled_send(store, "jane@example.com", SendStatus.sent, "14c5d75ce93")
    assert store.is_reachable(lead.id)
    counts = store.record_events(
        [normalize(sendgrid_event(raw_type, email="jane@example.com", **extra))], NOW
    )
    assert (counts.suppressed, counts.exited) == (1, 1)
    assert not store.is_reachable(lead.id)
    enrollment = store.enrollment_for_lead(lead.id)
    assert (enrollment["state"], enrollment["exit_reason"], enrollment["next_due_at"]) == (
        "exited",
        reason,
        None,
    )
    assert (store.lead_by_email("jane@example.com").unsubscribed_at is not None) == (reason == "unsubscribed")


@pytest.mark.parametrize(
    "raw_type, extra",
    [
        ("deferred", {"response": "400 try again later"}),
        ("bounce", {"type": "blocked", "status": "5.7.1"}),
        ("bounce", {"type": "bounce", "status": "4.2.2"}),
        ("open", {}),
        ("click", {"url": "https://example.org"}),
        ("delivered", {}),
        ("group_resubscribe", {}),
    ],
)
def test_other_events_leave_the_lead_reachable(store, raw_type, extra):
    lead, _ = enrolled_send(store, "jane@example.com", SendStatus.sent, "14c5d75ce93")
    counts = store.record_events(
        [normalize(sendgrid_event(raw_type, email="jane@example.com", **extra))], NOW
    )
    assert (counts.stored, counts.suppressed, counts.exited) == (1, 0, 0)
    assert store.is_reachable(lead.id)
    assert store.enrollment_for_lead(lead.id)["state"] == "active"


def test_a_content_drop_is_stored_and_reported_and_the_lead_stays(store):
    lead, send_id = enrolled_send(store, "jane@example.com", SendStatus.sent, "14c5d75ce93")
    dropped = sendgrid_event("dropped", email="jane@example.com", send_id=send_id, reason="Spam Content")
    counts = store.record_events([normalize(dropped)], NOW)
    assert (counts.stored, counts.linked, counts.content_drops) == (1, 1, 1)
    assert (counts.suppressed, counts.exited) == (0, 0)
    (row,) = stored_events(store)
    assert (row["event"], row["raw"]["reason"]) == ("rejected", "Spam Content")
    assert store.is_reachable(lead.id) and store.is_reachable(lead.id, "jane@example.com")
    assert store.enrollment_for_lead(lead.id)["state"] == "active"
    assert store.lead_by_email("jane@example.com").unsubscribed_at is None
    # the same drop replayed is a duplicate, not a second report
    assert store.record_events([normalize(dropped)], NOW).content_drops == 0


def test_events_for_unknown_addresses_are_kept_and_still_suppress(store):
    counts = store.record_events(
        [normalize(sendgrid_event("spamreport", email="Stranger@Example.org", send_id=None))], NOW
    )
    (row,) = stored_events(store)
    assert (row["lead_id"], row["send_id"], counts.stored, counts.suppressed) == (None, None, 1, 1)
    assert store.suppressed_hashes([email_hash("stranger@example.org", store.secret_key)])
    # ...so a later import of that address is never enrolled or reached.
    store.upsert_leads([LeadIn(email="stranger@example.org", consent=True)], NOW)
    assert not store.is_reachable(store.lead_by_email("stranger@example.org").id)


def test_thousands_of_events_in_one_call(store):
    posted = [
        sendgrid_event("delivered", email=f"lead{i}@example.com", sg_event_id=f"e{i}") for i in range(3000)
    ]
    posted += [
        sendgrid_event(
            "bounce", email=f"lead{i}@example.com", sg_event_id=f"b{i}", type="bounce", status="5.1.1"
        )
        for i in range(500)
    ]
    parsed = parse_events(json.dumps(posted).encode())
    counts = store.record_events(parsed, NOW)
    assert (counts.stored, counts.suppressed) == (3500, 500)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(events)).scalar() == 3500


# ---- forgetting -------------------------------------------------------------------------------


def count(store, table, *where) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar()


def test_forget_deletes_everything_and_keeps_only_the_hash(store):
    lead, send_id = enrolled_send(store, "jane@example.com", SendStatus.sent, "14c5d75ce93")
    keep, _ = enrolled_send(store, "sam@example.com", SendStatus.sent, "99999999999")
    store.record_events(
        [
            normalize(sendgrid_event("open", email="jane@example.com", send_id=send_id)),
            normalize(sendgrid_event("open", email="sam@example.com", sg_event_id="s")),
        ],
        NOW,
    )
    # an event that reached us under the address before it was ever linked to the lead
    with store.engine.begin() as conn:
        conn.execute(sa.update(events).where(events.c.send_id == send_id).values(lead_id=None, send_id=None))

    counts = store.forget_lead("  JANE@example.com", NOW)
    assert counts == {"leads": 1, "enrollments": 1, "sends": 1, "events": 1}
    hashed = email_hash("jane@example.com", store.secret_key)
    assert store.lead_by_email("jane@example.com") is None
    assert count(store, leads) == 1 and count(store, enrollments) == 1 and count(store, sends) == 1
    assert count(store, events) == 1  # sam's
    assert count(store, events, events.c.email_hash == hashed) == 0
    assert count(store, suppressions, suppressions.c.email_hash == hashed) == 1
    # nothing readable is left: the address appears in no column of any table
    with store.engine.connect() as conn:
        for table in (leads, enrollments, sends, events, suppressions):
            for row in conn.execute(sa.select(table)).mappings():
                assert "jane" not in json.dumps(dict(row), default=str).lower()
    # re-importing the address later: stored again, but never reachable
    store.upsert_leads([LeadIn(email="jane@example.com", consent=True)], NOW)
    assert not store.is_reachable(store.lead_by_email("jane@example.com").id)
    assert store.is_reachable(keep.id)


def test_forget_an_unknown_address_still_suppresses_it(store):
    assert store.forget_lead("nobody@example.com", NOW) == {
        "leads": 0,
        "enrollments": 0,
        "sends": 0,
        "events": 0,
    }
    assert store.suppressed_hashes([email_hash("nobody@example.com", store.secret_key)])


def test_foreign_keys_cascade_from_a_lead(sqlite_store):
    """The schema's ON DELETE CASCADE is live on SQLite (the store turns foreign keys on)."""
    lead, send_id = enrolled_send(sqlite_store, "jane@example.com", SendStatus.sent, "m")
    sqlite_store.record_events(
        [normalize(sendgrid_event("open", email="jane@example.com", send_id=send_id))], NOW
    )
    with sqlite_store.engine.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        conn.execute(sa.delete(leads).where(leads.c.id == lead.id))
    assert [count(sqlite_store, t) for t in (enrollments, sends, events)] == [0, 0, 0]
