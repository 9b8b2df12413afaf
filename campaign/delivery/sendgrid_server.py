"""A SendGrid-compatible HTTP server for tests, the demo and benchmarks.

It speaks the part of SendGrid's v3 API we use (``POST /v3/mail/send``) closely enough that
the official client cannot tell the difference: Bearer auth, SendGrid-shaped errors, 202 with
``X-Message-Id``, 200 in sandbox mode. It records what it accepted, injects faults on demand
(seeded, so runs repeat), and posts signed Event Webhook batches shaped like SendGrid's.

Development endpoints (no auth; bind to loopback):

* ``GET  /_dev/messages``  accepted messages as JSON
* ``POST /_dev/reset``     forget messages and counters
* ``GET|POST /_dev/faults`` read / replace the fault settings (JSON of ``Faults``)
* ``GET  /_dev/public-key`` the webhook verification key (base64 DER, as SendGrid shows it)
* ``POST /_dev/events``    ``{"url", "send_id" | "message_id", "events": ["delivered", ...]}``
  posts signed events for one accepted message to ``url``
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import queue
import re
import secrets
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from random import Random
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

DEFAULT_API_KEY = "SG.dev-key"
MAIL_SEND_PATH = "/v3/mail/send"
MAX_BODY_BYTES = 30 * 1024 * 1024
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
EVENT_TYPES = (
    "processed",
    "delivered",
    "deferred",
    "open",
    "click",
    "bounce",
    "blocked",
    "dropped",
    "spamreport",
    "unsubscribe",
    "group_unsubscribe",
    "group_resubscribe",
)
_EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault settings: {sorted(unknown)}")
        return cls(**data)


# -- records -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedMessage:
    message_id: str
    payload: dict[str, Any]
    received_at: float

    @property
    def send_id(self) -> str | None:
        return (self.payload.get("custom_args") or {}).get("send_id")

    @property
    def to_emails(self) -> list[str]:
        return [r["email"] for p in self.payload["personalizations"] for r in p.get("to", [])]

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "received_at": self.received_at,
            "payload": self.payload,
        }


@dataclass
class Counters:
    requests: int = 0
    accepted: int = 0
    sandbox: int = 0
    unauthorized: int = 0
    invalid: int = 0
    too_large: int = 0
    forbidden: int = 0
    faults: dict[str, int] = field(default_factory=dict)


class _State:
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

    def record(self, payload: dict[str, Any]) -> RecordedMessage:
        # SendGrid's X-Message-Id: 22 characters of URL-safe base64 (16 random bytes).
        msg = RecordedMessage(secrets.token_urlsafe(16), payload, time.time())
        with self.lock:
            self.messages.append(msg)
            self.counters.accepted += 1
        return msg

    def count(self, name: str) -> None:
        with self.lock:
            setattr(self.counters, name, getattr(self.counters, name) + 1)

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.counters = Counters()
            self.rng = Random(self.faults.seed)


# -- validation (independent of campaign.delivery.payload on purpose: a second opinion) -----


def _err(message: str, field_name: str | None) -> dict[str, Any]:
    return {"message": message, "field": field_name, "help": None}


def _valid_address(value: Any) -> bool:
    return isinstance(value, str) and bool(_EMAIL_RE.match(value))


def validate_mail_send(body: Any) -> list[dict[str, Any]]:
    """SendGrid-shaped errors for a /mail/send body; empty when it would be accepted.

    Messages follow SendGrid's wording where we know it.
    """
    if not isinstance(body, dict):
        return [_err("Bad Request", None)]
    errors: list[dict[str, Any]] = []

    sender = body.get("from")
    if not isinstance(sender, dict) or "email" not in sender:
        errors.append(
            _err(
                "The from object must be provided for every email send. It is an object that "
                "requires the email parameter, but may also contain a name parameter.",
                "from",
            )
        )
    elif not _valid_address(sender["email"]):
        errors.append(_err("The from email does not contain a valid address.", "from.email"))

    reply_to = body.get("reply_to")
    if reply_to is not None and not (isinstance(reply_to, dict) and _valid_address(reply_to.get("email"))):
        errors.append(_err("The reply_to email does not contain a valid address.", "reply_to.email"))

    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            _err(
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
            )
        )
        personalizations = []
    elif len(personalizations) > 1000:
        errors.append(_err("The personalizations field must have at most 1000 items.", "personalizations"))

    recipients = 0
    seen: set[str] = set()
    for i, p in enumerate(personalizations):
        if not isinstance(p, dict) or not isinstance(p.get("to"), list) or not p["to"]:
            errors.append(
                _err(
                    "The to array is required for all personalization objects, and must have "
                    "at least one email object with a valid email address.",
                    f"personalizations.{i}.to",
                )
            )
            continue
        for kind in ("to", "cc", "bcc"):
            for j, r in enumerate(p.get(kind) or []):
                recipients += 1
                addr = r.get("email") if isinstance(r, dict) else None
                if not _valid_address(addr):
                    errors.append(
                        _err("Does not contain a valid address.", f"personalizations.{i}.{kind}.{j}.email")
                    )
                    continue
                if addr.lower() in seen:
                    errors.append(
                        _err(
                            "Each email address in the personalization block should be unique "
                            "between to, cc, and bcc. We found the first duplicate instance of "
                            f"[{addr}] in the personalizations.{i}.{kind} field.",
                            f"personalizations.{i}.{kind}",
                        )
                    )
                seen.add(addr.lower())
        if "custom_args" in p:
            errors += _validate_custom_args(p["custom_args"], f"personalizations.{i}.custom_args")
    if recipients > 1000:
        errors.append(_err("The total number of recipients must be no more than 1000.", "personalizations"))

    def _nonempty(s: Any) -> bool:
        return isinstance(s, str) and s != ""

    if not body.get("template_id"):
        subject_everywhere = bool(personalizations) and all(
            isinstance(p, dict) and _nonempty(p.get("subject")) for p in personalizations
        )
        if not _nonempty(body.get("subject")) and not subject_everywhere:
            errors.append(
                _err(
                    "The subject is required. You can get around this requirement if you use a "
                    "template with a subject defined or if every personalization has a subject "
                    "defined.",
                    "subject",
                )
            )
        content = body.get("content")
        if not isinstance(content, list) or not content:
            errors.append(
                _err(
                    "Unless a valid template_id is provided, the content parameter is required. "
                    "There must be at least one defined content block.",
                    "content",
                )
            )
        else:
            for i, part in enumerate(content):
                if not isinstance(part, dict) or not _nonempty(part.get("value")):
                    errors.append(
                        _err(
                            "The content value must be a string at least one character in length.",
                            f"content.{i}.value",
                        )
                    )
                if not isinstance(part, dict) or not _nonempty(part.get("type")):
                    errors.append(_err("The content type is required.", f"content.{i}.type"))
            types = [p.get("type") for p in content if isinstance(p, dict)]
            order = [t for t in ("text/plain", "text/html") if t in types]
            if types[: len(order)] != order:
                errors.append(
                    _err(
                        "If present, text/plain and text/html may only be provided once, and "
                        "text/plain must be first, followed by text/html.",
                        "content",
                    )
                )

    if "custom_args" in body:
        errors += _validate_custom_args(body["custom_args"], "custom_args")

    categories = body.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            errors.append(_err("Categories must be an array of strings.", "categories"))
        elif len(categories) > 10:
            errors.append(_err("Too many categories. You may only have up to 10.", "categories"))
        elif any(len(c) > 255 for c in categories):
            errors.append(_err("A category cannot exceed 255 characters.", "categories"))

    headers = body.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            errors.append(_err("Invalid type. Expected: object.", "headers"))
        else:
            for name, value in headers.items():
                if not isinstance(value, str):
                    errors.append(_err("Invalid type. Expected: string, given: other.", f"headers.{name}"))

    asm = body.get("asm")
    if asm is not None and not (isinstance(asm, dict) and type(asm.get("group_id")) is int):
        errors.append(_err("Invalid type. Expected: integer.", "asm.group_id"))

    sandbox = (body.get("mail_settings") or {}).get("sandbox_mode")
    if sandbox is not None and type((sandbox or {}).get("enable")) is not bool:
        errors.append(
            _err(
                f"Invalid type. Expected: boolean, given: {type((sandbox or {}).get('enable')).__name__}.",
                "mail_settings.sandbox_mode.enable",
            )
        )

    send_at = body.get("send_at")
    if send_at is not None and (type(send_at) is not int or send_at > time.time() + 72 * 3600):
        errors.append(
            _err("The send_at parameter must be a Unix time no more than 72 hours ahead.", "send_at")
        )
    return errors


def _validate_custom_args(custom_args: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(custom_args, dict):
        return [_err("Invalid type. Expected: object.", where)]
    # Real SendGrid answers a non-string value with {"message": "Bad Request", "field": null}
    # (cryptic, see django-anymail); we name the field, which is kinder and what tests need.
    errors = [
        _err("Invalid type. Expected: string.", f"{where}.{key}")
        for key, value in custom_args.items()
        if not isinstance(value, str)
    ]
    if len(json.dumps(custom_args).encode("utf-8")) >= 10_000:
        errors.append(_err("The custom_args field must be less than 10000 bytes.", where))
    return errors


def is_sandbox(body: dict[str, Any]) -> bool:
    return ((body.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable") is True


# -- event webhook -------------------------------------------------------------------------


def public_key_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    """The verification key as SendGrid shows it: base64 of DER SubjectPublicKeyInfo."""
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode("ascii")


def sign_event_body(private_key: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    """SendGrid's signature: ECDSA P-256/SHA-256 over timestamp + raw body, base64 DER."""
    signature = private_key.sign(timestamp.encode("utf-8") + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(signature).decode("ascii")


def build_event(
    message: RecordedMessage, event: str, *, timestamp: int | None = None, **extra: Any
) -> dict[str, Any]:
    """One Event Webhook entry for an accepted message, shaped like SendGrid's.

    custom_args come back as top-level keys; ``category`` is a string for one category and a
    list for several (SendGrid does that too). ``sg_message_id`` starts with X-Message-Id.
    """
    if event not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event!r}")
    payload = message.payload
    personalization = payload["personalizations"][0]
    custom_args = {**(payload.get("custom_args") or {}), **(personalization.get("custom_args") or {})}
    ev: dict[str, Any] = {
        "email": personalization["to"][0]["email"],
        "timestamp": int(timestamp if timestamp is not None else time.time()),
        "event": event,
        "sg_event_id": base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="),
        "sg_message_id": (
            f"{message.message_id}.filterdrecv-{secrets.token_hex(5)}-"
            f"{secrets.randbelow(10)}-{secrets.token_hex(4).upper()}-{secrets.randbelow(99)}.0"
        ),
        "smtp-id": f"<{message.message_id}@geopod-ismtpd-{secrets.randbelow(10)}>",
    }
    categories = payload.get("categories") or []
    if categories:
        ev["category"] = categories[0] if len(categories) == 1 else list(categories)
    if payload.get("asm"):
        ev["asm_group_id"] = payload["asm"]["group_id"]
    # Per-event fields SendGrid adds.
    if event == "delivered":
        ev.update(response="250 2.0.0 OK", ip="149.72.1.1", tls=1)
    elif event in ("open", "click"):
        ev.update(useragent="Mozilla/5.0", ip="203.0.113.7", sg_machine_open=False)
        if event == "click":
            ev.pop("sg_machine_open")
            ev.update(url="https://example.com/", url_offset={"index": 0, "type": "html"})
    elif event in ("bounce", "blocked"):
        ev.update(
            event="bounce",
            type="blocked" if event == "blocked" else "bounce",
            status="5.1.1" if event == "bounce" else "5.7.1",
            reason="550 5.1.1 The email account that you tried to reach does not exist.",
            bounce_classification="Invalid Address" if event == "bounce" else "Reputation",
            ip="149.72.1.1",
            tls=1,
        )
    elif event == "dropped":
        ev.update(reason="Bounced Address", status="5.0.0")
    elif event == "deferred":
        ev.update(response="400 try again later", attempt="1")
    # Custom args last but without overwriting SendGrid's own keys (SendGrid does the same).
    for key, value in custom_args.items():
        ev.setdefault(key, value)
    ev.update(extra)
    return ev


def post_signed_events(
    private_key: ec.EllipticCurvePrivateKey,
    url: str,
    events: list[dict[str, Any]],
    *,
    timestamp: str | None = None,
    timeout: float = 10.0,
) -> int:
    """POST a signed JSON array of events to ``url``; returns the HTTP status."""
    body = json.dumps(events, separators=(",", ":")).encode("utf-8")
    ts = timestamp if timestamp is not None else str(int(time.time()))
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "SendGrid Event API",
            SIGNATURE_HEADER: sign_event_body(private_key, body, ts),
            TIMESTAMP_HEADER: ts,
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


# -- HTTP ----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"  # what SendGrid answers with
    sys_version = ""
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the benchmark would spend its time printing

    # -- helpers ---------------------------------------------------------------------------

    def _send_json(self, status: int, data: Any = None, headers: dict[str, str] | None = None) -> None:
        body = b"" if data is None else json.dumps(data).encode("utf-8")
        self.send_response(status)
        if data is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _errors(
        self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None
    ) -> None:
        self._send_json(status, {"errors": errors}, headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drain(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def _abort(self) -> None:
        """Close with RST and no answer: SO_LINGER 0, and skip the polite shutdown."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.server.mark_aborted(self.connection)

    # -- routes ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_dev/messages":
            with state.lock:
                messages = [m.as_json() for m in state.messages]
                counters = dataclasses.asdict(state.counters)
            self._send_json(200, {"messages": messages, "counters": counters})
        elif self.path == "/_dev/faults":
            self._send_json(200, dataclasses.asdict(state.faults))
        elif self.path == "/_dev/public-key":
            self._send_json(200, {"public_key": public_key_b64(state.private_key)})
        else:
            self._errors(404, [_err("Not Found", None)])

    def do_POST(self) -> None:
        if self.path == MAIL_SEND_PATH:
            self._mail_send()
        elif self.path.startswith("/_dev/"):
            self._dev_post()
        else:
            self._drain(int(self.headers.get("Content-Length") or 0))
            self._errors(404, [_err("Not Found", None)])

    def _dev_post(self) -> None:
        state = self.server.state
        raw = self._read_body()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return self._errors(400, [_err("Bad Request", None)])
        if self.path == "/_dev/reset":
            state.reset()
            return self._send_json(200, {"ok": True})
        if self.path == "/_dev/faults":
            try:
                state.set_faults(Faults.from_dict(data))
            except (TypeError, ValueError) as exc:
                return self._errors(400, [_err(str(exc), None)])
            return self._send_json(200, dataclasses.asdict(state.faults))
        if self.path == "/_dev/events":
            with state.lock:
                matches = [
                    m
                    for m in state.messages
                    if m.message_id == data.get("message_id")
                    or (data.get("send_id") and m.send_id == data.get("send_id"))
                ]
            if not matches or not data.get("url"):
                return self._errors(400, [_err("need url and a known send_id or message_id", None)])
            try:
                events = [build_event(matches[-1], kind) for kind in data.get("events") or ["delivered"]]
            except ValueError as exc:
                return self._errors(400, [_err(str(exc), "events")])
            status = post_signed_events(state.private_key, data["url"], events)
            return self._send_json(200, {"status": status, "events": events})
        self._errors(404, [_err("Not Found", None)])

    def _mail_send(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        fault = state.draw_fault()

        if fault == "reset_before_body":
            return self._abort()

        # Auth comes before the body is looked at (SendGrid answers 401 to any body).
        auth = self.headers.get("Authorization", "")
        if auth != f"Bearer {state.api_key}":
            self._drain(length)
            state.count("unauthorized")
            return self._errors(
                401,
                [_err("The provided authorization grant is invalid, expired, or revoked", None)],
            )

        if length > state.max_body_bytes:
            # Read it anyway: closing on an unread upload makes the client see a reset
            # instead of the 413.
            self._drain(length)
            state.count("too_large")
            return self._errors(413, [_err("Payload Too Large", None)])

        raw = self.rfile.read(length) if length else b""

        if fault == "reset_after_body":
            return self._abort()
        if fault == "hang":
            # Never answer; let go only when the server stops.
            state.stopping.wait()
            return self._abort()

        latency = state.faults.latency_ms
        if latency:
            time.sleep(latency / 1000)

        if fault == "429":
            f = state.faults
            return self._errors(
                429,
                [_err("too many requests", None)],
                {
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(time.time()) + f.rate_limit_reset_s),
                },
            )
        if fault in ("500", "502", "503"):
            return self._errors(int(fault), [_err("Internal server error", None)])

        try:
            body = json.loads(raw)
        except ValueError:
            state.count("invalid")
            return self._errors(
                400,
                [_err("Invalid JSON, or a body this endpoint cannot read.", None)],
            )
        errors = validate_mail_send(body)
        if errors:
            state.count("invalid")
            return self._errors(400, errors)

        senders = state.verified_senders
        if senders is not None and body["from"]["email"].lower() not in senders:
            state.count("forbidden")
            return self._errors(
                403,
                [
                    _err(
                        "The from address does not match a verified Sender Identity. Mail "
                        "cannot be sent until this error is resolved. Visit "
                        "https://sendgrid.com/docs/for-developers/sending-email/sender-identity/"
                        " to see the Sender Identity requirements",
                        "from",
                    )
                ],
            )

        if is_sandbox(body):
            # Validated and answered, nothing delivered, no events, no X-Message-Id.
            state.count("sandbox")
            return self._send_json(200)
        message = state.record(body)
        self._send_json(202, None, {"X-Message-Id": message.message_id})


class _Server(HTTPServer):
    """HTTPServer with a pool of reused handler threads.

    ThreadingHTTPServer starts a thread per connection, and the official client opens a
    connection per request: thread start-up was about a quarter of the time per request.
    Here idle threads wait on a queue; a new one starts only when none is idle (a hanging
    request therefore never starves the others).
    """

    request_queue_size = 512  # the default backlog of 5 turns bursts into refused connections

    def __init__(self, address: tuple[str, int], state: _State) -> None:
        self.state = state
        self._aborted: set[int] = set()
        self._aborted_lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self._idle = 0
        self._workers: list[threading.Thread] = []
        self._pool_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        with self._pool_lock:
            if self._idle == 0:
                t = threading.Thread(target=self._work, daemon=True, name="sendgrid-dev-handler")
                self._workers.append(t)
                self._idle += 1
                t.start()
            self._idle -= 1
        self._queue.put((request, client_address))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                with self._pool_lock:
                    self._idle += 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, reset) is business as usual here, not a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        with self._pool_lock:
            workers = list(self._workers)
        for _ in workers:
            self._queue.put(None)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()

    def mark_aborted(self, request: socket.socket) -> None:
        with self._aborted_lock:
            self._aborted.add(id(request))

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._aborted_lock:
            aborted = id(request) in self._aborted
            self._aborted.discard(id(request))
        if aborted:
            self.close_request(request)  # no FIN first: SO_LINGER 0 turns this into a RST
        else:
            super().shutdown_request(request)


# -- running it ----------------------------------------------------------------------------


class SendGridServer:
    """A running server (see ``running_server``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str = DEFAULT_API_KEY,
        faults: Faults | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        verified_senders: Iterable[str] | None = None,
    ) -> None:
        senders = None if verified_senders is None else frozenset(s.lower() for s in verified_senders)
        self.state = _State(api_key, faults or Faults(), max_body_bytes, senders)
        self._httpd = _Server((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_key(self) -> str:
        return self.state.api_key

    @property
    def messages(self) -> list[RecordedMessage]:
        """A snapshot of the accepted (non-sandbox) messages, in arrival order."""
        with self.state.lock:
            return list(self.state.messages)

    @property
    def counters(self) -> Counters:
        with self.state.lock:
            c = self.state.counters
            return dataclasses.replace(c, faults=dict(c.faults))

    @property
    def public_key_b64(self) -> str:
        return public_key_b64(self.state.private_key)

    def set_faults(self, faults: Faults | None = None, **changes: Any) -> Faults:
        """Replace the faults (and reseed), or change some fields: ``set_faults(rate_503=0.5)``."""
        new = faults or dataclasses.replace(self.state.faults, **changes)
        self.state.set_faults(new)
        return new

    def reset(self) -> None:
        self.state.reset()

    def set_api_key(self, api_key: str) -> None:
        """Accept a different key from now on (a revoked key, as far as clients can tell)."""
        with self.state.lock:
            self.state.api_key = api_key

    def message_for(self, send_id: str) -> RecordedMessage:
        matches = [m for m in self.messages if m.send_id == send_id]
        if not matches:
            raise KeyError(send_id)
        return matches[-1]

    def events_for(self, send_id: str, *kinds: str, **extra: Any) -> list[dict[str, Any]]:
        message = self.message_for(send_id)
        return [build_event(message, kind, **extra) for kind in kinds]

    def post_events(self, url: str, events: list[dict[str, Any]], *, timestamp: str | None = None) -> int:
        """Sign and POST an event batch like SendGrid's Event Webhook; returns the status."""
        return post_signed_events(self.state.private_key, url, events, timestamp=timestamp)

    def start(self) -> SendGridServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self.state.stopping.set()  # releases hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)


@contextlib.contextmanager
def running_server(
    port: int = 0,
    api_key: str = DEFAULT_API_KEY,
    faults: Faults | None = None,
    *,
    host: str = "127.0.0.1",
    max_body_bytes: int = MAX_BODY_BYTES,
    verified_senders: Iterable[str] | None = None,
) -> Iterator[SendGridServer]:
    """A SendGrid-compatible server on a background thread for the duration of the block.

    ``verified_senders``: when given, a from address outside it is answered 403 (SendGrid's
    Sender Identity check).
    """
    server = SendGridServer(
        host,
        port,
        api_key=api_key,
        faults=faults,
        max_body_bytes=max_body_bytes,
        verified_senders=verified_senders,
    ).start()
    try:
        yield server
    finally:
        server.stop()


def main(port: int = 3030, api_key: str = DEFAULT_API_KEY, host: str = "127.0.0.1") -> None:
    """Serve until interrupted (``campaign dev-sendgrid``)."""
    server = SendGridServer(host, port, api_key=api_key)
    print(f"SendGrid-compatible server at {server.url}", flush=True)
    print(f"  SENDGRID_API_HOST={server.url}", flush=True)
    print(f"  SENDGRID_API_KEY={api_key}", flush=True)
    print(f"  webhook public key: {server.public_key_b64}", flush=True)
    print(f"  accepted messages: {server.url}/_dev/messages", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.state.stopping.set()
        server._httpd.server_close()


if __name__ == "__main__":  # pragma: no cover
    main()
