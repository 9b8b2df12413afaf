"""Delivery: transports that take OutboundEmails and report SendResults.

A transport has ``name`` and ``send_batch(emails, before_send=None) -> list[SendResult]``.
``before_send(send_id)`` is asked right before each email leaves; False skips it (an
unsubscribe that landed after the claim).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from campaign.models import OutboundEmail, SendResult


class Transport(Protocol):
    name: str

    def send_batch(
        self, emails: list[OutboundEmail], before_send: Callable[[str], bool] | None = None
    ) -> list[SendResult]: ...

    def finish(self) -> None:
        """The end of a tick (or a test send): write what is written once per tick (the outbox's
        index.html). Nothing to do for SendGrid."""
