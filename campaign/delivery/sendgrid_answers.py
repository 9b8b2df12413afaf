"""What one HTTP call to SendGrid came to: the answer (or the client's exception) classified
for the transport's error policy (campaign.delivery.sendgrid_transport has the table), and
SendGrid's error body turned into one readable line."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from typing import Any

from python_http_client.exceptions import HTTPError as ClientHTTPError

FINAL_STATUSES = {400, 403, 404, 405, 413, 415}


@dataclass(frozen=True)
class Attempt:
    """What one HTTP call came to."""

    kind: str  # "sent" | "final" | "unauthorized" | "rate_limited" | "retry" | "stopped"
    status: int | None = None
    message_id: str | None = None
    error: str | None = None
    maybe_delivered: bool = False  # the request may have reached SendGrid
    reset_at: float | None = None  # 429: X-RateLimit-Reset (Unix time)


def classify_http_error(exc: ClientHTTPError) -> Attempt:
    status = int(getattr(exc, "status_code", 0) or 0)
    text = error_text(status, getattr(exc, "body", b""))
    if status == 401:
        return Attempt("unauthorized", status=status, error=text)
    if status == 429:
        reset = header(exc, "X-RateLimit-Reset")
        try:
            reset_at = float(reset) if reset is not None else None
        except ValueError:
            reset_at = None
        return Attempt("rate_limited", status=status, error=text, reset_at=reset_at)
    if status >= 500:
        # SendGrid answered: per policy this counts as "not accepted".
        return Attempt("retry", status=status, error=text)
    if status in FINAL_STATUSES or 400 <= status < 500:
        return Attempt("final", status=status, error=text)
    return Attempt("retry", status=status, error=text, maybe_delivered=True)


def header(exc: ClientHTTPError, name: str) -> str | None:
    headers = getattr(exc, "headers", None)
    if headers is None:
        return None
    try:
        return headers.get(name)
    except AttributeError:
        return None


def error_text(status: int, body: Any) -> str:
    """'400: The from email does not contain a valid address. (from.email)' from an error body."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    messages: list[str] = []
    try:
        for err in json.loads(body or "{}").get("errors") or []:
            msg = str(err.get("message") or "").strip()
            if err.get("field"):
                msg += f" ({err['field']})"
            if msg:
                messages.append(msg)
    except (ValueError, AttributeError):
        pass
    if not messages:
        messages = [http.client.responses.get(status, "HTTP error")]
    return f"{status}: " + "; ".join(messages)


def describe(exc: BaseException | str) -> str:
    if isinstance(exc, BaseException):
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return str(exc)
