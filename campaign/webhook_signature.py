"""Checking SendGrid's signed Event Webhook (ECDSA P-256 over timestamp + raw body).

Checked over the raw body, before any JSON parsing. sendgrid-python's EventWebhook does the
cryptography but not the timestamp's age: replay protection is ours (a timestamp older than
``max_age`` seconds, or as far in the future, is refused). Every failure raises the same
exception with the same message, and the web app gives every failure the same 403: a caller
learns nothing about which check failed.
"""

from __future__ import annotations

import binascii
import re
import time
from collections.abc import Callable

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
DEFAULT_MAX_AGE = 300

# Anything else is refused before it is parsed: a timestamp is Unix seconds (10 digits until
# the year 2286; thousands of digits made int() or the float subtraction raise), and an ECDSA
# P-256 DER signature is at most 72 bytes, 96 characters of padded standard base64.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{4,200}={0,2}")


class SignatureRejected(Exception):
    def __init__(self) -> None:
        super().__init__("signature rejected")


class InvalidPublicKey(ValueError):
    """The configured SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER P-256 public key."""


class WebhookVerifier:
    """Built once from SendGrid's base64 public key (the key is parsed here, so a bad key fails
    at start-up, not on the first post)."""

    def __init__(
        self, public_key_b64: str, *, max_age: int = DEFAULT_MAX_AGE, clock: Callable[[], float] = time.time
    ):
        from sendgrid.helpers.eventwebhook import EventWebhook

        try:
            self._webhook = EventWebhook(public_key_b64.strip())
        except Exception as exc:  # cryptography raises ValueError, binascii.Error, UnsupportedAlgorithm ...
            raise InvalidPublicKey(
                f"SENDGRID_WEBHOOK_PUBLIC_KEY is not a usable public key ({type(exc).__name__})"
            ) from None
        if self._webhook.public_key is None:
            raise InvalidPublicKey("SENDGRID_WEBHOOK_PUBLIC_KEY is empty")
        self.max_age = max_age
        self.clock = clock

    def verify(self, body: bytes, signature: str | None, timestamp: str | None) -> None:
        """Return quietly for a good, fresh signature; raise SignatureRejected otherwise."""
        if not well_formed(signature, timestamp):
            raise SignatureRejected()
        if abs(self.clock() - int(timestamp)) > self.max_age:
            raise SignatureRejected()
        try:
            # EventWebhook takes text and encodes it as UTF-8 again: the same bytes for any body
            # that is valid UTF-8, which every real (JSON) body is.
            payload = body.decode("utf-8")
            good = self._webhook.verify_signature(payload, signature, timestamp)
        except Exception:  # undecodable body, signature that is not base64 or not DER ...
            good = False
        if not good:
            raise SignatureRejected()


def well_formed(signature: str | None, timestamp: str | None) -> bool:
    """The headers have the shape SendGrid sends (nothing about whether they are right)."""
    if not signature or not timestamp:
        return False
    if not _TIMESTAMP.fullmatch(timestamp) or not _SIGNATURE.fullmatch(signature):
        return False
    try:
        binascii.a2b_base64(signature, strict_mode=True)
    except binascii.Error:  # wrong length or padding
        return False
    return True
