"""Delivery: transports that take OutboundEmails and report SendResults.

A transport has ``name`` and ``send_batch(emails, before_send=None, after_send=None)``, which
returns one SendResult per email it settled, in input order. It only sends: the send policy
(pacing, the consecutive-failure pause) belongs to the caller, through two hooks:

- ``before_send(send_id)`` runs right before an email leaves (once, not on retries); False
  skips it (an unsubscribe that landed after the claim).
- ``after_send(result)`` runs as each email settles.

A hook stops the batch by raising BatchStopped (or a subclass): the transport fills in
``results`` and ``not_sent`` and raises it. These errors are the same for every transport, so
callers never import a transport's module to handle them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from campaign.models import OutboundEmail, SendResult

BeforeSend = Callable[[str], bool]
AfterSend = Callable[[SendResult], None]


class DeliveryError(Exception):
    """Base of the delivery errors."""


class BatchStopped(DeliveryError):
    """A batch stopped early. ``results`` holds every email that settled (sent, failed,
    unknown, skipped); ``not_sent`` the send_ids that were never sent (not attempted, or
    refused before delivery): their ledger claims can be released."""

    def __init__(
        self, message: str, results: list[SendResult] | None = None, not_sent: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.results = list(results or [])
        self.not_sent = list(not_sent or [])

    def with_outcome(self, results: list[SendResult], not_sent: list[str]) -> BatchStopped:
        self.results = list(results)
        self.not_sent = list(not_sent)
        return self


class Unauthorized(BatchStopped):
    """The provider refused the credentials (bad or revoked key): stop the whole tick."""


class TooManyFailures(BatchStopped):
    """Too many failed or unknown sends in a row: the caller pauses the campaigns."""


def stop_from_hook(exc: Exception, hook: str) -> BatchStopped:
    """A hook's BatchStopped as it is; any other error of a hook (the caller's code failed) as a
    BatchStopped caused by it: the batch stops rather than send while nobody collects results."""
    if isinstance(exc, BatchStopped):
        return exc
    stopped = BatchStopped(f"sending stopped: {hook} raised {exc!r}")
    stopped.__cause__ = exc
    return stopped


class Transport(Protocol):
    name: str

    def send_batch(
        self,
        emails: Sequence[OutboundEmail],
        before_send: BeforeSend | None = None,
        after_send: AfterSend | None = None,
    ) -> list[SendResult]: ...
