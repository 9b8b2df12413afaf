"""Signed tokens for unsubscribe links: they name a lead by its opaque public id only.

Never the address, never the anxiety type. They are signed with CAMPAIGN_SECRET_KEY, so they
cannot be forged or altered; they expire after a year (CAN-SPAM asks for 30 days).

An unsubscribe token is ``<public id>.<issued, Unix seconds in hex>.<signature>``: the signature
is HMAC-SHA256 over the first two parts under a key derived once per secret and purpose,
truncated to 128 bits, base64url without padding. A bulk tick makes one per recipient, so it is
made with ``hmac.digest`` directly (about 2 us; itsdangerous' serializer took 100-130 us).
Tokens issued before (itsdangerous ``URLSafeTimedSerializer``: base64 JSON, timestamp,
signature) still verify: a token that is not a valid token of the current form is read the old
way.

The undo ("resubscribe") token also names the moment of the unsubscribe it undoes: the store
honours it only while the lead is still unsubscribed since that moment, so it works once and
only until the lead's next subscription change.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

UNSUBSCRIBE_MAX_AGE = 365 * 24 * 3600
UNDO_MAX_AGE = 30 * 24 * 3600  # the undo offered on the confirmation page
UNDO_PURPOSE = "resubscribe"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class InvalidToken(Exception):
    def __init__(self, expired: bool = False):
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=f"campaign.{purpose}")


@lru_cache(maxsize=32)
def signing_key(secret: str, purpose: str) -> bytes:
    return hmac.digest(secret.encode("utf-8"), f"campaign.{purpose}.hmac-v2".encode(), "sha256")


_SIGNATURE_BYTES = 16
_SIGNATURE_CHARS = 22  # base64 of 16 bytes, without the "==" padding


def signature(key: bytes, signed: str) -> str:
    """HMAC-SHA256 of `signed`, truncated to 128 bits, base64url: every signed value of the app."""
    mac = hmac.digest(key, signed.encode("utf-8"), "sha256")[:_SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def make_token(
    public_id: str, secret: str, purpose: str = "unsubscribe", issued_at: float | None = None
) -> str:
    """``issued_at`` (Unix time) defaults to now; tests pass an old one to make an expired token."""
    issued = int(time.time() if issued_at is None else issued_at)
    signed = f"{public_id}.{issued:x}"
    return f"{signed}.{signature(signing_key(secret, purpose), signed)}"


def make_legacy_token(public_id: str, secret: str, purpose: str = "unsubscribe") -> str:
    """A token of the form issued before (itsdangerous): only to test that those still work."""
    return _serializer(secret, purpose).dumps(public_id)


def _read_current(token: str, secret: str, purpose: str, max_age: int) -> str | None:
    """The public id of a valid current-form token; None when it is not one (then the old form
    is tried). Raises InvalidToken(expired=True) for a genuine token past ``max_age``."""
    parts = token.rsplit(".", 2)
    if len(parts) != 3 or len(parts[2]) != _SIGNATURE_CHARS or not parts[0]:
        return None
    public_id, issued_hex, given = parts
    try:
        issued = int(issued_hex, 16)
    except ValueError:
        return None
    if issued_hex != f"{issued:x}":  # one spelling per moment: no "+1f", "0x1f" or "01f"
        return None
    expected = signature(signing_key(secret, purpose), f"{public_id}.{issued_hex}")
    if not hmac.compare_digest(expected, given):
        return None
    if time.time() - issued > max_age:
        raise InvalidToken(expired=True)
    return public_id


def _load(token: str, secret: str, purpose: str, max_age: int):
    try:
        return _serializer(secret, purpose).loads(token, max_age=max_age)
    except SignatureExpired:
        raise InvalidToken(expired=True) from None
    except BadSignature:
        raise InvalidToken() from None


def read_token(
    token: str, secret: str, purpose: str = "unsubscribe", max_age: int = UNSUBSCRIBE_MAX_AGE
) -> str:
    public_id = _read_current(token, secret, purpose, max_age)
    if public_id is not None:
        return public_id
    public_id = _load(token, secret, purpose, max_age)  # a token issued before
    if not isinstance(public_id, str):
        raise InvalidToken()
    return public_id


def make_undo_token(public_id: str, unsubscribed_at: datetime, secret: str) -> str:
    """The undo link's token: the lead and its unsubscribed_at, exact to the microsecond
    (an integer, so no float rounding can make it miss the stored value)."""
    micros = (unsubscribed_at.astimezone(UTC) - _EPOCH) // _MICROSECOND
    return _serializer(secret, UNDO_PURPOSE).dumps([public_id, micros])


def read_undo_token(token: str, secret: str, max_age: int = UNDO_MAX_AGE) -> tuple[str, datetime]:
    """(public id, the unsubscribed_at it undoes). A token of another shape (an unsubscribe
    token, or an undo token from before the moment was signed in) is invalid."""
    payload = _load(token, secret, UNDO_PURPOSE, max_age)
    match payload:
        case [str() as public_id, int() as micros] if not isinstance(micros, bool):
            try:
                return public_id, _EPOCH + micros * _MICROSECOND
            except OverflowError:
                pass
    raise InvalidToken()


def unsubscribe_url(public_url: str, public_id: str, secret: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{make_token(public_id, secret)}"


def unsubscribe_url_maker(public_url: str, secret: str) -> Callable[[str], str]:
    """unsubscribe_url for many leads at one moment: the prefix, key and issue time made once."""
    prefix = f"{public_url.rstrip('/')}/unsubscribe/"
    key = signing_key(secret, "unsubscribe")
    issued = f".{int(time.time()):x}"

    def url(public_id: str) -> str:
        signed = public_id + issued
        return f"{prefix}{signed}.{signature(key, signed)}"

    return url
