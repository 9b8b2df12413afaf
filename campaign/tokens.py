"""Signed tokens for unsubscribe links: they name a lead by its opaque public id only.

Never the address, never the anxiety type. itsdangerous signs them with CAMPAIGN_SECRET_KEY,
so they cannot be forged or altered; they expire after a year (CAN-SPAM asks for 30 days).

The undo ("resubscribe") token also names the moment of the unsubscribe it undoes: the store
honours it only while the lead is still unsubscribed since that moment, so it works once and
only until the lead's next subscription change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


def make_token(public_id: str, secret: str, purpose: str = "unsubscribe") -> str:
    return _serializer(secret, purpose).dumps(public_id)


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
    public_id = _load(token, secret, purpose, max_age)
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
