"""Signed tokens for unsubscribe links: they name a lead by its opaque public id only.

Never the address, never the anxiety type. itsdangerous signs them with CAMPAIGN_SECRET_KEY,
so they cannot be forged or altered; they expire after a year (CAN-SPAM asks for 30 days).
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

UNSUBSCRIBE_MAX_AGE = 365 * 24 * 3600


class InvalidToken(Exception):
    def __init__(self, expired: bool = False):
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=f"campaign.{purpose}")


def make_token(public_id: str, secret: str, purpose: str = "unsubscribe") -> str:
    return _serializer(secret, purpose).dumps(public_id)


def read_token(
    token: str, secret: str, purpose: str = "unsubscribe", max_age: int = UNSUBSCRIBE_MAX_AGE
) -> str:
    try:
        return _serializer(secret, purpose).loads(token, max_age=max_age)
    except SignatureExpired:
        raise InvalidToken(expired=True) from None
    except BadSignature:
        raise InvalidToken() from None


def unsubscribe_url(public_url: str, public_id: str, secret: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{make_token(public_id, secret)}"
