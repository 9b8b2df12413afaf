"""Signed values of the sign-up form: the confirmation link's token and the form's "shown at".

HMAC-SHA256 with CAMPAIGN_SECRET_KEY (campaign.tokens.signature) over a JSON payload, each
kind with its own purpose (a token of one kind is never valid as another). The time inside is
the app's clock (so tests move it), checked against a maximum age by the reader.

- confirmation: the lead's opaque public id, 16 hex digits of its address's keyed hash (a link
  made for one address never confirms another) and when it was made. No address, no health data.
- shown: the form's key and when the page was rendered: the minimum fill time is measured from it.
"""

from __future__ import annotations

import base64
import hmac
import json
from datetime import UTC, datetime, timedelta

from campaign.tokens import InvalidToken, signature, signing_key

CONFIRM_MAX_AGE = timedelta(days=7)
SHOWN_MAX_AGE = timedelta(days=1)  # a form left open longer is shown again, fresh


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, body: str) -> str:
    return signature(signing_key(secret, f"forms.{purpose}"), body)  # the app's one HMAC signing


def sign(payload: list, secret: str, purpose: str) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_mac(secret, purpose, body)}"


def unsign(token: str, secret: str, purpose: str) -> list:
    body, _, mac = token.partition(".")
    if (
        not body
        or len(token) > 500
        or not hmac.compare_digest(mac.encode(), _mac(secret, purpose, body).encode())
    ):
        raise InvalidToken()
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken() from None
    if not isinstance(payload, list):
        raise InvalidToken()
    return payload


def _at(seconds: object) -> datetime:
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        raise InvalidToken()
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidToken() from None


def make_confirm_token(public_id: str, email_hash: str, secret: str, now: datetime) -> str:
    return sign([public_id, email_hash[:16], int(now.timestamp())], secret, "confirm")


def read_confirm_token(token: str, secret: str, now: datetime) -> tuple[str, str, datetime]:
    """(public id, the address hash's first 16 hex digits, when it was made); InvalidToken
    (expired=True past CONFIRM_MAX_AGE)."""
    match unsign(token, secret, "confirm"):
        case [str() as public_id, str() as hash16, made]:
            made_at = _at(made)
            if now - made_at > CONFIRM_MAX_AGE:
                raise InvalidToken(expired=True)
            return public_id, hash16, made_at
    raise InvalidToken()


def make_shown_token(form_key: str, secret: str, now: datetime) -> str:
    return sign([form_key, now.timestamp()], secret, "shown")


def seconds_since_shown(token: str, form_key: str, secret: str, now: datetime) -> float:
    """How long ago this form's page was rendered; InvalidToken for another form's token, a
    forged one, or one older than SHOWN_MAX_AGE (expired=True)."""
    match unsign(token, secret, "shown"):
        case [str() as key, shown] if hmac.compare_digest(key.encode(), form_key.encode()):
            elapsed = (now - _at(shown)).total_seconds()
            if elapsed > SHOWN_MAX_AGE.total_seconds():
                raise InvalidToken(expired=True)
            return elapsed
    raise InvalidToken()
