"""The dev server's shared state: fault settings, what it accepted, counters.

Faults are drawn from a seeded generator in arrival order, so a sequential client sees the
same faults on every run.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from random import Random
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

DEFAULT_API_KEY = "SG.dev-key"
MAIL_SEND_PATH = "/v3/mail/send"
MAX_BODY_BYTES = 30 * 1024 * 1024


# -- faults --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Faults:
    """What goes wrong, and how often. Rates are probabilities per request in [0, 1].

    Decisions are drawn from ``random.Random(seed)`` in arrival order, so a sequential client
    sees the same faults on every run.
    """

    latency_ms: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    reset_before_body: float = 0.0  # close the connection without reading the request
    reset_after_body: float = 0.0  # read the request, record nothing, close without answer
    hang: float = 0.0  # read the request, record nothing, never answer
    rate_limit_reset_s: int = 1  # X-RateLimit-Reset = now + this (whole seconds, like SendGrid)
    seed: int = 0
    # Addresses answered with a 400 as invalid: SendGrid's rules can refuse what passed our checks.
    invalid_addresses: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        if "invalid_addresses" in data:
            data = {**data, "invalid_addresses": tuple(a.lower() for a in data["invalid_addresses"])}
        return cls(**data)


# -- records -------------------------------------------------------------------------------


class StoredBody:
    """An accepted request body kept as its bytes: a million recipients' parsed dicts would
    hold gigabytes and make every garbage collection walk them. Parsed again (once) when a
    test or the activity search looks at it."""

    __slots__ = ("raw", "_parsed")

    def __init__(self, raw: bytes, parsed: dict[str, Any] | None = None) -> None:
        self.raw = raw
        self._parsed = parsed

    @property
    def parsed(self) -> dict[str, Any]:
        if self._parsed is None:
            self._parsed = json.loads(self.raw)
        return self._parsed


@dataclass(frozen=True, slots=True)
class RecordedMessage:
    """What one recipient was sent. A request with several personalizations records one per
    personalization; ``payload`` then shows that recipient's email alone, substitutions
    applied, computed when asked (a million recipients share one request body in memory).
    The send id and addresses are taken out when recorded, so counting a million needs no
    body."""

    message_id: str
    stored: StoredBody
    received_at: float
    index: int | None  # the personalization, for a request of several
    send_id: str | None
    to: tuple[str, ...]

    @property
    def body(self) -> dict[str, Any]:
        return self.stored.parsed

    @property
    def payload(self) -> dict[str, Any]:
        if self.index is None:
            return self.body
        return personalized(self.body, self.index)

    @property
    def to_emails(self) -> list[str]:
        return list(self.to)

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "received_at": self.received_at,
            "payload": self.payload,
        }


def substitute(text: str, substitutions: dict[str, str]) -> str:
    """Every tag replaced by its value in one pass: a value is never searched for tags again,
    so no recipient's value can turn into a tag."""
    if not substitutions:
        return text
    pattern = re.compile("|".join(re.escape(k) for k in sorted(substitutions, key=len, reverse=True)))
    return pattern.sub(lambda m: substitutions[m.group(0)], text)


def personalized(body: dict[str, Any], index: int) -> dict[str, Any]:
    """The email personalization `index` receives, as a one-personalization body: its subject,
    content and reply-to with its substitutions applied; headers and custom_args merged with the
    request's (substitutions do not apply to headers)."""
    p = body["personalizations"][index]
    subs = p.get("substitutions") or {}
    out = {k: v for k, v in body.items() if k != "personalizations"}
    own = {k: v for k, v in p.items() if k not in ("substitutions", "headers", "custom_args", "subject")}
    out["personalizations"] = [own]
    subject = p.get("subject", body.get("subject"))
    if subject is not None:
        out["subject"] = substitute(subject, subs)
    out["content"] = [
        {**part, "value": substitute(part["value"], subs)} for part in body.get("content") or []
    ]
    if body.get("headers") or p.get("headers"):
        out["headers"] = {**(body.get("headers") or {}), **(p.get("headers") or {})}
    if body.get("custom_args") or p.get("custom_args"):
        out["custom_args"] = {**(body.get("custom_args") or {}), **(p.get("custom_args") or {})}
    return out


@dataclass
class Counters:
    requests: int = 0
    accepted: int = 0  # requests
    recipients: int = 0  # messages recorded (one per personalization)
    sandbox: int = 0
    unauthorized: int = 0
    invalid: int = 0
    too_large: int = 0
    forbidden: int = 0
    faults: dict[str, int] = field(default_factory=dict)


class ServerState:
    """Everything the handler threads share, behind one lock."""

    def __init__(
        self,
        api_key: str,
        faults: Faults,
        max_body_bytes: int,
        verified_senders: frozenset[str] | None = None,
    ) -> None:
        self.lock = threading.Lock()
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.verified_senders = verified_senders
        self.messages: list[RecordedMessage] = []
        self.counters = Counters()
        self.stopping = threading.Event()
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.set_faults(faults)

    def set_faults(self, faults: Faults) -> None:
        with self.lock:
            self.faults = faults
            self.rng = Random(faults.seed)

    def draw_fault(self) -> str | None:
        """One decision per request, from the seeded generator, in a fixed order."""
        with self.lock:
            self.counters.requests += 1
            f = self.faults
            for name, rate in (
                ("hang", f.hang),
                ("reset_before_body", f.reset_before_body),
                ("reset_after_body", f.reset_after_body),
                ("429", f.rate_429),
                ("500", f.rate_500),
                ("502", f.rate_502),
                ("503", f.rate_503),
            ):
                # Always draw, even at rate 0, so changing one rate does not shift the others.
                if self.rng.random() < rate:
                    self.counters.faults[name] = self.counters.faults.get(name, 0) + 1
                    return name
            return None

    def record(self, payload: dict[str, Any], raw: bytes | None = None) -> str:
        """Record an accepted request, one message per recipient; returns its X-Message-Id
        (SendGrid's: 22 characters of URL-safe base64, one for the whole request). ``raw``
        is the body as received: kept instead of ``payload`` (see StoredBody)."""
        message_id = secrets.token_urlsafe(16)
        now = time.time()
        stored = StoredBody(raw, None) if raw is not None else StoredBody(b"", payload)
        personalizations = payload["personalizations"]
        base = (payload.get("custom_args") or {}).get("send_id")

        def send_id(p: dict[str, Any]) -> str | None:
            return (p.get("custom_args") or {}).get("send_id", base)

        def to(p: dict[str, Any]) -> tuple[str, ...]:
            return tuple(r["email"] for r in p.get("to", []))

        if len(personalizations) == 1 and "substitutions" not in personalizations[0]:
            p = personalizations[0]
            messages = [RecordedMessage(message_id, stored, now, None, send_id(p), to(p))]
        else:
            messages = [
                RecordedMessage(message_id, stored, now, i, send_id(p), to(p))
                for i, p in enumerate(personalizations)
            ]
        with self.lock:
            self.messages.extend(messages)
            self.counters.accepted += 1
            self.counters.recipients += len(messages)
        return message_id

    def count(self, name: str) -> None:
        with self.lock:
            setattr(self.counters, name, getattr(self.counters, name) + 1)

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.counters = Counters()
            self.rng = Random(self.faults.seed)
