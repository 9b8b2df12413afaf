"""Send OutboundEmails through SendGrid with the official client (sendgrid-python).

One HTTP call per email (``send_batch``), or per up to 1,000 recipients of one email
(``send_bulk``, in campaign.delivery.sendgrid_bulk), a bounded number in flight, and an error
policy that keeps "not sent" apart from "maybe sent" (the send policy, pacing and the pause
after failures, is the caller's):

======================  ==============================================================
202 / 200               sent (X-Message-Id kept; sandbox 200 has none)
429                     wait until X-RateLimit-Reset (capped), all workers pause, retry
5xx, reset, timeout     back off with full jitter, retry up to ``max_attempts``; then
                        unknown if any attempt may have reached SendGrid (timeout, reset
                        after the request went out), else failed ("retryable: ...")
400 / 403 / 413         failed, final, SendGrid's error message kept
401                     Unauthorized raised at once; nothing more is sent
======================  ==============================================================

There is no idempotency key at SendGrid: a retry after a timeout can deliver twice. Set
``retry_ambiguous=False`` to turn such emails into ``unknown`` at once and let the ledger's
reconciliation (events carry ``send_id``) settle them instead.

Errors from python-http-client, urllib and sockets are converted here into SendResults or
our own exceptions; nothing of theirs escapes. Status codes are compared, not exception
classes (a pickled TooManyRequestsError comes back as a plain HTTPError).
"""

from __future__ import annotations

import http.client
import logging
import random
import threading
import time
import urllib.error
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from python_http_client.exceptions import HTTPError as _ClientHTTPError
from sendgrid import SendGridAPIClient

from campaign.delivery import (
    AfterSend,
    BatchStopped,
    BeforeSend,
    DeliveryError,
    Unauthorized,
    stop_from_hook,
)
from campaign.delivery.payload import build_payload, check_limits
from campaign.delivery.sendgrid_answers import Attempt, classify_http_error, describe
from campaign.models import OutboundEmail, SendResult, SendStatus

if TYPE_CHECKING:
    from campaign.bulk import BulkEmail
    from campaign.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_HOST = "https://api.sendgrid.com"


class _DropPayloadLogs(logging.Filter):
    """python-http-client logs every request body (addresses, email text) at DEBUG level.

    Those bodies are health-adjacent content: never let them reach a log handler.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.startswith("PAYLOAD") or msg.startswith("HEADERS") or "Response:" in msg)


_client_logger = logging.getLogger("python_http_client.client")
if not any(isinstance(f, _DropPayloadLogs) for f in _client_logger.filters):
    _client_logger.addFilter(_DropPayloadLogs())


# -- the account-wide 429 wait ------------------------------------------------------------


class RateLimitPause:
    """After a 429 every worker holds until SendGrid's reset: the limit is per account, not per
    thread. (The emails-per-second ceiling is the caller's send policy, not this.)"""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._paused_until = 0.0

    def pause_until(self, when: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, when)

    def wait(self) -> None:
        with self._lock:
            wait = self._paused_until - self._clock()
        if wait > 0:
            self._sleep(wait)


# -- the transport -------------------------------------------------------------------------


class SendGridTransport:
    """Send a batch of emails; see the module docstring for the error policy."""

    name = "sendgrid"
    supports_bulk = True  # personalizations: up to 1,000 recipients of one email per request

    def finish(self) -> None:
        """Nothing to write at the end of a tick: every answer was settled as it came back."""

    def __init__(
        self,
        api_key: str,
        *,
        host: str = DEFAULT_HOST,
        sandbox: bool = False,
        asm_group_id: int | None = None,
        track_opens: bool = False,
        track_clicks: bool = False,
        concurrency: int = 4,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
        max_rate_limit_waits: int = 5,
        rate_limit_wait_cap: float = 30.0,
        retry_ambiguous: bool = True,
        seed: int | None = None,
    ) -> None:
        if concurrency < 1 or max_attempts < 1:
            raise ValueError("concurrency and max_attempts must be at least 1")
        self._api_key = api_key
        self.host = host.rstrip("/")
        self.sandbox = sandbox
        self.asm_group_id = asm_group_id
        self.track_opens = track_opens
        self.track_clicks = track_clicks
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_rate_limit_waits = max_rate_limit_waits
        self.rate_limit_wait_cap = rate_limit_wait_cap
        self.retry_ambiguous = retry_ambiguous
        self.rate_limit_pause = RateLimitPause()
        self._random = random.Random(seed)
        self._random_lock = threading.Lock()
        self._local = threading.local()

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> SendGridTransport:
        """From SENDGRID_API_KEY / SENDGRID_API_HOST / CAMPAIGN_SANDBOX; options override."""
        if settings.sendgrid_api_key is None:
            raise DeliveryError("SENDGRID_API_KEY is not set")
        options.setdefault("host", settings.sendgrid_api_host)
        options.setdefault("sandbox", settings.sandbox)
        return cls(settings.sendgrid_api_key.get_secret_value(), **options)

    def __repr__(self) -> str:  # never show the key
        return f"SendGridTransport(host={self.host!r}, sandbox={self.sandbox})"

    def payload_for(self, email: OutboundEmail) -> dict[str, Any]:
        return build_payload(
            email,
            sandbox=self.sandbox or email.sandbox,
            asm_group_id=self.asm_group_id,
            track_opens=self.track_opens,
            track_clicks=self.track_clicks,
        )

    def send_batch(
        self,
        emails: Sequence[OutboundEmail],
        before_send: BeforeSend | None = None,
        after_send: AfterSend | None = None,
    ) -> list[SendResult]:
        """Send each email once; results in input order.

        ``before_send(send_id)`` runs once per email, right before its first HTTP call (not
        again on retries, so it may also claim a ledger row); False skips the email.
        ``after_send(result)`` runs as each email settles. Raises Unauthorized on a 401, the
        BatchStopped a hook raised, or BatchStopped when a hook failed otherwise (its error as
        ``__cause__``); all carry ``results`` and ``not_sent``.
        """
        stop = threading.Event()
        stop_reason: list[BatchStopped] = []
        stop_lock = threading.Lock()

        def halt(exc: BatchStopped) -> None:
            with stop_lock:
                if not stop_reason:
                    stop_reason.append(exc)
                    log.info("SendGrid batch stopped: %s", exc)  # raised too: the caller reports it
            stop.set()

        def one(email: OutboundEmail) -> SendResult | None:
            if stop.is_set():
                return None
            try:
                result = self._send_one(email, before_send, stop)
            except _Unauthorized as exc:
                halt(
                    Unauthorized(
                        f"SendGrid refused the API key ({exc.error}): check SENDGRID_API_KEY "
                        "(or the account's credits); sending stopped"
                    )
                )
                result = exc.result
            except Exception as exc:  # before_send, before any HTTP call for this email
                halt(stop_from_hook(exc, "before_send"))
                return None
            if result is not None and after_send is not None:
                try:
                    after_send(result)
                except Exception as exc:
                    halt(stop_from_hook(exc, "after_send"))
            return result

        with ThreadPoolExecutor(
            max_workers=min(self.concurrency, max(1, len(emails))),
            thread_name_prefix="sendgrid-send",
        ) as pool:
            outcomes = list(pool.map(one, emails))

        results = [r for r in outcomes if r is not None]
        if stop_reason:
            not_sent = [e.send_id for e, r in zip(emails, outcomes) if r is None]
            raise stop_reason[0].with_outcome(results, not_sent)
        return results

    def send_bulk(
        self,
        emails: Sequence[BulkEmail],
        before_send: BeforeSend | None = None,
        after_send: AfterSend | None = None,
        before_request=None,
        after_request=None,
    ) -> list[SendResult]:
        """Many recipients of one email per request (campaign.delivery.sendgrid_bulk)."""
        from campaign.delivery.sendgrid_bulk import send_bulk

        return send_bulk(self, emails, before_send, after_send, before_request, after_request)

    def _client(self) -> SendGridAPIClient:
        # The official client's request_headers dict is shared by a client and all its
        # children, and mutated on every call: one client per worker thread.
        client = getattr(self._local, "client", None)
        if client is None:
            client = SendGridAPIClient(api_key=self._api_key, host=self.host)
            self._local.client = client
        return client

    def _send_one(
        self,
        email: OutboundEmail,
        before_send: BeforeSend | None,
        stop: threading.Event,
    ) -> SendResult | None:
        send_id = email.send_id
        payload = self.payload_for(email)
        problems = check_limits(payload, now=time.time())
        if problems:
            return SendResult(send_id=send_id, status=SendStatus.failed, error="; ".join(problems))

        self.rate_limit_pause.wait()
        if stop.is_set():
            return None
        if before_send is not None:
            if not before_send(send_id):
                return SendResult(
                    send_id=send_id,
                    status=SendStatus.skipped,
                    error="unsubscribed or suppressed before sending",
                )
            if stop.is_set():  # the hook may have waited (pacing) while another worker stopped
                return None

        attempt, maybe_delivered = self.post_until_settled(payload, stop, send_id)
        if attempt.kind == "stopped":
            # Another worker hit a 401: this email was not sent (or may have been).
            if maybe_delivered:
                error = "stopped after: " + (attempt.error or "")
                return SendResult(send_id=send_id, status=SendStatus.unknown, error=error)
            return None
        if attempt.kind == "sent":
            return SendResult(send_id=send_id, status=SendStatus.sent, message_id=attempt.message_id)
        if attempt.kind == "final":
            return SendResult(send_id=send_id, status=SendStatus.failed, error=attempt.error)
        if attempt.kind == "unauthorized":
            # An earlier attempt may have gone through before the key was revoked: then
            # the email is unknown, else it was simply not sent.
            raise _Unauthorized(
                attempt.error or "401",
                SendResult(send_id=send_id, status=SendStatus.unknown, error=attempt.error)
                if maybe_delivered
                else None,
            )
        return self._gave_up(send_id, attempt, maybe_delivered)

    def post_until_settled(
        self, payload: dict[str, Any] | bytes, stop: threading.Event, label: str
    ) -> tuple[Attempt, bool]:
        """POST with the retry policy until the request settles. Returns the last attempt
        (kind "sent", "final", "unauthorized", a "retry"/"rate_limited" given up on, or "stopped"
        when another worker stopped the batch meanwhile), and whether any attempt may have
        reached SendGrid. ``label`` (a send id) names the request in logs."""
        maybe_delivered = False
        attempts = 0
        rate_limit_waits = 0
        while True:
            attempt = self._post(payload)
            if attempt.kind in ("sent", "final", "unauthorized"):
                return attempt, maybe_delivered
            if attempt.kind == "rate_limited":
                rate_limit_waits += 1
                if rate_limit_waits > self.max_rate_limit_waits:
                    return attempt, maybe_delivered
                delay = self._rate_limit_delay(attempt.reset_at)
                # Everyone waits: the limit is per account, not per thread.
                self.rate_limit_pause.pause_until(time.monotonic() + delay)
            else:  # retry
                maybe_delivered = maybe_delivered or attempt.maybe_delivered
                attempts += 1
                if attempts >= self.max_attempts or (attempt.maybe_delivered and not self.retry_ambiguous):
                    return attempt, maybe_delivered
                # send_id only: never an address or content in logs.
                log.info("SendGrid send %s: %s; retrying", label, attempt.error)
                time.sleep(self._backoff(attempts))
            if stop.is_set():
                return Attempt("stopped", error=attempt.error), maybe_delivered
            self.rate_limit_pause.wait()

    @staticmethod
    def _gave_up(send_id: str, attempt: Attempt, maybe_delivered: bool) -> SendResult:
        if maybe_delivered:
            return SendResult(send_id=send_id, status=SendStatus.unknown, error=attempt.error)
        return SendResult(
            send_id=send_id, status=SendStatus.failed, error=f"retryable: {attempt.error}", retryable=True
        )

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**n)].
        with self._random_lock:
            return self._random.uniform(0, min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1)))

    def _rate_limit_delay(self, reset_at: float | None) -> float:
        if reset_at is None:
            delay = self.backoff_base
        else:
            delay = reset_at - time.time()
        with self._random_lock:
            jitter = self._random.uniform(0, min(0.25, self.rate_limit_wait_cap / 10))
        return max(0.0, min(delay, self.rate_limit_wait_cap)) + jitter

    def _post(self, payload: dict[str, Any] | bytes) -> Attempt:
        """One HTTP call; every outcome, including the client's exceptions, as an Attempt.
        `payload`: a dict (the client serializes it) or a body serialized already (bulk)."""
        if isinstance(payload, bytes):  # the client takes a str as it is under another JSON type
            body, headers = _Serialized(payload), _SERIALIZED
        else:
            body, headers = payload, _JSON  # said each time: the client keeps headers between calls
        try:
            response = self._client().client.mail.send.post(
                request_body=body, request_headers=headers, timeout=self.timeout
            )
        except _ClientHTTPError as exc:
            return classify_http_error(exc)
        except urllib.error.URLError as exc:
            # urllib wraps OSErrors raised while connecting and sending the request: the
            # request did not (fully) reach the server, so it cannot have been accepted.
            reason = exc.reason
            return Attempt("retry", error=f"network error before the request was sent: {describe(reason)}")
        except TimeoutError as exc:
            return Attempt(
                "retry", error=f"timed out waiting for SendGrid: {describe(exc)}", maybe_delivered=True
            )
        except (OSError, http.client.HTTPException) as exc:
            # Raised while reading the answer: the request went out, the answer did not come.
            return Attempt(
                "retry", error=f"connection lost after sending: {describe(exc)}", maybe_delivered=True
            )
        except (TypeError, ValueError) as exc:
            # json.dumps of the payload: our bug, nothing was sent.
            return Attempt("final", error=f"could not serialize the payload: {exc}")

        status = response.status_code
        if status in (200, 202):
            return Attempt("sent", status=status, message_id=response.headers.get("X-Message-Id"))
        # python-http-client raises for >= 400; another 2xx/3xx is unexpected but not an error
        # we can act on: the request was accepted in some form.
        return Attempt("retry", status=status, error=f"unexpected HTTP {status}", maybe_delivered=True)


class _Body(bytes):
    """A request body that formats as its size: python-http-client formats its body into a
    debug line on every request, logging on or off (1.6 ms for a 400 KB bulk request)."""

    def __format__(self, spec: str) -> str:
        return f"<{len(self)} bytes>"


class _Serialized(str):
    """A body serialized already, as the client takes it (a str): its encode() gives those
    bytes back instead of encoding the text again."""

    def __new__(cls, body: bytes) -> _Serialized:
        text = super().__new__(cls, body.decode("utf-8"))
        text.body = _Body(body)
        return text

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        if encoding.replace("-", "").lower() == "utf8":
            return self.body
        return str(self).encode(encoding, errors)


_JSON = {"Content-Type": "application/json"}
_SERIALIZED = {"Content-Type": "application/json; charset=utf-8"}


class _Unauthorized(Exception):
    """Internal: a worker met a 401. ``result`` is set when the email may have gone anyway."""

    def __init__(self, error: str, result: SendResult | None) -> None:
        super().__init__(error)
        self.error = error
        self.result = result
