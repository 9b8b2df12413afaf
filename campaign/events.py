"""SendGrid Event Webhook events, normalized. Pure: no I/O, no clock, no database.

Modelled on django-anymail's SendGrid webhook: a lookup table maps SendGrid's raw event
types to our own kinds, and the raw event is kept beside the normalized one (the store saves
it as it came). Quirks handled here, each where it matters:

- Delivery is at-least-once and duplicates have been seen with *different* ``sg_event_id``
  values, so every event also gets a dedupe key over (sg_message_id, event, timestamp, email).
- Our custom_args come back as top-level keys: ``send_id`` names the ledger row. Bounces that
  return through Return-Path carry no custom_args; the store then links them by the
  X-Message-Id prefix of ``sg_message_id``.
- ``bounce`` covers both hard bounces and ``type: "blocked"`` (the receiver refused for now:
  reputation, content, rate). Only a hard bounce suppresses; a blocked or soft (4.x.x status)
  bounce does not.
- ``dropped`` is read through its ``reason`` (as anymail does): a drop for the address (invalid,
  bounced, unsubscribed, spam-reporting) suppresses; a drop for our own message ("Spam Content",
  "Invalid SMTPAPI header", the account's quota) does not, and is reported instead.
- Unknown event types (SendGrid adds some from time to time) are kept with kind ``unknown``
  rather than refused: a refusal would make SendGrid retry the whole batch for 24 hours.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from campaign.models import SendStatus

UTC = UTC

# raw SendGrid event type -> normalized kind
EVENT_KINDS: dict[str, str] = {
    "processed": "processed",
    "delivered": "delivered",
    "deferred": "deferred",
    "bounce": "bounced",
    "dropped": "rejected",
    "open": "opened",
    "click": "clicked",
    "spamreport": "complained",
    "unsubscribe": "unsubscribed",
    "group_unsubscribe": "unsubscribed",
    "group_resubscribe": "resubscribed",
}
UNKNOWN = "unknown"

# Kinds after which the address must never be mailed again (a bounce only when hard).
SUPPRESSING_KINDS = frozenset({"bounced", "rejected", "complained", "unsubscribed"})
# Kinds that prove SendGrid accepted the message: an 'unknown' ledger row was really sent.
ACCEPTED_KINDS = frozenset({"processed", "delivered"})
# When one post ends a lead's sequences for several reasons, the first of these is the exit reason.
EXIT_PRECEDENCE = ("bounced", "complained", "rejected", "unsubscribed")

# SendGrid's documented `reason`s on a dropped event (casefolded) -> whose problem it is. A drop
# for the address means never mail it again; a drop for our own message or account ("content")
# is reported, never held against the lead. A reason not in the table, or none, counts as the
# address's: mailing an address SendGrid refuses costs reputation, a wrong suppression one lead.
DROP_REASONS: dict[str, str] = {
    "invalid": "address",
    "bounced address": "address",
    "unsubscribed address": "address",
    "spam reporting address": "address",
    "spam content": "content",
    "invalid smtpapi header": "content",
    "recipient list over package quota": "content",
}

# Column widths in the events table (store.events).
MAX_SEND_ID = 32
MAX_SG_EVENT_ID = 128
MAX_EMAIL = 320


class MalformedEvents(ValueError):
    """The body is not a JSON array of SendGrid events. The message names the position and
    the field, never a value (values hold addresses)."""


@dataclass(frozen=True)
class NormalizedEvent:
    kind: str  # one of EVENT_KINDS' values, or "unknown"
    raw_event: str  # SendGrid's event type as sent
    email: str  # stripped and casefolded, as the leads table keeps it
    occurred_at: datetime  # aware UTC
    timestamp: int  # SendGrid's Unix time, as sent
    dedupe_key: str  # sha256 hex over (sg_message_id, event, timestamp, email)
    sg_event_id: str | None
    sg_message_id: str | None
    message_id: str | None  # the X-Message-Id prefix of sg_message_id (what sends.message_id holds)
    send_id: str | None  # our custom_args send_id, when it came back
    bounce_type: str | None  # "bounce" or "blocked" on bounce events
    status: str | None  # the SMTP enhanced status code on bounces, e.g. "5.1.1"
    drop_reason: str | None  # why SendGrid dropped it, on dropped events, e.g. "Bounced Address"
    raw: dict = field(compare=False, repr=False)  # the event exactly as SendGrid sent it

    @property
    def suppresses(self) -> bool:
        return suppresses(self)


def dedupe_key(sg_message_id: str | None, event: str, timestamp: int, email: str) -> str:
    # JSON keeps the fields apart unambiguously (no delimiter that a value could contain).
    material = json.dumps([sg_message_id, event, timestamp, email], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def message_id_of(sg_message_id: str | None) -> str | None:
    """'14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0' -> '14c5d75ce93': the part before the
    first dot is the X-Message-Id the Mail Send API answered with."""
    if not sg_message_id:
        return None
    prefix = sg_message_id.split(".", 1)[0]
    return prefix or None


def is_soft_bounce(event: NormalizedEvent) -> bool:
    """A blocked bounce, or a bounce whose SMTP status is transient (4.x.x)."""
    return event.bounce_type == "blocked" or bool(event.status and event.status.startswith("4"))


def is_content_drop(event: NormalizedEvent) -> bool:
    """A drop for our own message (content, headers, quota), not for the recipient's address."""
    reason = (event.drop_reason or "").strip().casefold()
    return event.kind == "rejected" and DROP_REASONS.get(reason, "address") == "content"


def suppresses(event: NormalizedEvent) -> bool:
    """Whether this event means: never mail this address again."""
    if event.kind == "bounced":
        return not is_soft_bounce(event)
    if is_content_drop(event):
        return False
    return event.kind in SUPPRESSING_KINDS


def _optional_str(raw: Mapping, name: str, max_len: int) -> str | None:
    value = raw.get(name)
    if isinstance(value, str) and value and len(value) <= max_len:
        return value
    return None


def normalize(raw: Any, position: int = 0) -> NormalizedEvent:
    """One SendGrid event (a dict from the posted array) -> NormalizedEvent.

    Requires ``event`` (a string), ``email`` (a string) and ``timestamp`` (a Unix time);
    anything else missing or odd is simply None."""
    if not isinstance(raw, dict):
        raise MalformedEvents(f"event {position}: not a JSON object")
    event = raw.get("event")
    if not isinstance(event, str) or not event or len(event) > 32:
        raise MalformedEvents(f"event {position}: 'event' missing or not a short string")
    email = raw.get("email")
    if not isinstance(email, str) or not email.strip() or len(email) > MAX_EMAIL:
        raise MalformedEvents(f"event {position}: 'email' missing or not a string")
    email = email.strip().casefold()
    timestamp = raw.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp):
        raise MalformedEvents(f"event {position}: 'timestamp' missing or not a Unix time")
    try:
        occurred_at = datetime.fromtimestamp(int(timestamp), UTC)
    except (OverflowError, OSError, ValueError):
        raise MalformedEvents(f"event {position}: 'timestamp' out of range") from None
    sg_message_id = _optional_str(raw, "sg_message_id", 1000)
    kind = EVENT_KINDS.get(event, UNKNOWN)
    return NormalizedEvent(
        kind=kind,
        raw_event=event,
        email=email,
        occurred_at=occurred_at,
        timestamp=int(timestamp),
        dedupe_key=dedupe_key(sg_message_id, event, int(timestamp), email),
        sg_event_id=_optional_str(raw, "sg_event_id", MAX_SG_EVENT_ID),
        sg_message_id=sg_message_id,
        message_id=message_id_of(sg_message_id),
        send_id=_optional_str(raw, "send_id", MAX_SEND_ID),
        bounce_type=_optional_str(raw, "type", 32) if event == "bounce" else None,
        status=_optional_str(raw, "status", 32) if event == "bounce" else None,
        drop_reason=_optional_str(raw, "reason", 200) if event == "dropped" else None,
        raw=raw,
    )


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_events(body: bytes | str) -> list[NormalizedEvent]:
    """A webhook body (already signature-checked) -> events. Raises MalformedEvents for
    anything but a JSON array of well-formed events; then nothing of it may be stored."""
    try:
        # NaN / Infinity are not JSON (PostgreSQL's json type refuses them): malformed, not a 500.
        data = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise MalformedEvents("the body is not JSON") from None
    if not isinstance(data, list):
        raise MalformedEvents("the body is not a JSON array")
    return [normalize(raw, i) for i, raw in enumerate(data)]


@dataclass(frozen=True)
class RecordedEvents:
    """What one webhook post did (counts only: safe for logs and the HTTP answer)."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0  # already stored, or repeated within the post
    linked: int = 0  # stored events tied to a ledger row
    settled: int = 0  # 'unknown' ledger rows now known to be sent
    suppressed: int = 0  # distinct addresses put on the suppression list by this post
    exited: int = 0  # enrollments ended by this post
    content_drops: int = 0  # drops for our own message ("Spam Content" ...): nobody suppressed

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


# ---- what events do ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkedEvent:
    """An event this post stored, with what the store tied it to."""

    event: NormalizedEvent
    lead_id: int | None = None  # the lead with this address, else the ledger row's lead
    send_id: str | None = None  # the ledger row (by custom_args send_id, else message id and address)
    send_status: str | None = None  # that row's status when the event came
    send_message_id: str | None = None  # that row's message id


@dataclass(frozen=True)
class Effects:
    """What a batch of new events does; campaign.store applies it in the same transaction."""

    settle: dict[str, str | None] = field(default_factory=dict)  # 'unknown' send id -> message id
    suppress: dict[str, str] = field(default_factory=dict)  # address -> suppression reason
    exit: dict[int, str] = field(default_factory=dict)  # lead id -> why its active sequences end
    unsubscribe: frozenset[int] = frozenset()  # leads whose unsubscribed_at is set
    content_drops: int = 0  # drops for our own message: reported, nobody suppressed


def effects(linked: Iterable[LinkedEvent]) -> Effects:
    """Every consequence of these events, decided in one place:

    - processed / delivered for an 'unknown' ledger row: the request did reach SendGrid (sent);
    - a suppressing event (hard bounce, address drop, spam report, unsubscribe) puts the address
      on the suppression list (known lead or not) and ends the lead's active sequences, with
      the event's kind as the reason; an unsubscribe also marks the lead unsubscribed;
    - a drop for our own message is counted, and changes nothing for the lead.
    """
    settle: dict[str, str | None] = {}
    suppress: dict[str, str] = {}
    exits: dict[int, str] = {}
    unsubscribed: set[int] = set()
    content_drops = 0
    for item in linked:
        ev = item.event
        if ev.kind in ACCEPTED_KINDS and item.send_id and item.send_status == SendStatus.unknown.value:
            settle.setdefault(item.send_id, item.send_message_id or ev.message_id)
        content_drops += is_content_drop(ev)
        if not suppresses(ev):
            continue
        suppress.setdefault(ev.email, ev.raw_event[:32])  # the column is 32 wide
        if item.lead_id is not None:
            exits[item.lead_id] = min(exits.get(item.lead_id, ev.kind), ev.kind, key=EXIT_PRECEDENCE.index)
            if ev.kind == "unsubscribed":
                unsubscribed.add(item.lead_id)
    return Effects(settle, suppress, exits, frozenset(unsubscribed), content_drops)
