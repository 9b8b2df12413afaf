"""Delivery use cases: one test email through the configured transport, outside the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign.accounts import Actor
    from campaign.audiences import Audience
    from campaign.settings import Settings
    from campaign.store.accounts import AccountStore


class UnsentTestEmail(Exception):
    """The test email did not go: it does not render, the transport stopped, or it failed."""


@dataclass
class SentTestEmail:
    audience: str
    step: str
    address: str
    send_id: str
    message_id: str | None
    transport: str  # where it went, e.g. "SendGrid at https://api.sendgrid.com"


def send_test_email(
    settings: Settings, audiences: list[Audience], audience: str, step: str, to: str, first_name: str
) -> SentTestEmail:
    """Send one email of AUDIENCE's STEP to `to`, marked as a test: no lead, no claim, a random
    send id. Raises ValueError for an invalid address, LookupError for an unknown audience or
    step, UnsentTestEmail when it was not sent."""
    from email_validator import EmailNotValidError, validate_email

    from campaign.compose import make_test_email
    from campaign.delivery import BatchStopped
    from campaign.render import Renderer, TemplateError
    from campaign.runtime import make_transport, transport_label

    try:
        address = validate_email(to.strip(), check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"--to {to!r} is not an email address: {exc}") from None
    found = {a.name: a for a in audiences}
    if audience not in found:
        raise LookupError(f"no audience {audience!r}; the audiences: {', '.join(sorted(found))}")
    renderer = Renderer(settings.templates_dir, settings.clinic)
    try:
        email = make_test_email(settings, renderer, found[audience], step, address, first_name)
    except TemplateError as exc:
        raise UnsentTestEmail(f"the email does not render: {exc}") from None
    transport = make_transport(settings)
    try:
        [result] = transport.send_batch([email])
    except BatchStopped as exc:  # the transport's stops (a refused key): say why
        raise UnsentTestEmail(str(exc)) from None
    if result.status.value != "sent":
        raise UnsentTestEmail(f"test email not sent ({result.status.value}): {result.error}")
    return SentTestEmail(audience, step, address, email.send_id, result.message_id, transport_label(settings))


def send_test_audited(
    settings: Settings,
    accounts: AccountStore,
    actor: Actor,
    audiences: list[Audience],
    *,
    audience: str,
    step: str,
    to: str,
    first_name: str,
    now: datetime,
) -> SentTestEmail:
    """send_test_email from the console, audited whether it went or not (the audit names the
    email and the transport, never the body). Raises what send_test_email raises."""
    from campaign.accounts import audit

    template = f"{audience}/{step}"
    try:
        sent = send_test_email(settings, audiences, audience, step, to, first_name)
    except (ValueError, LookupError, UnsentTestEmail) as problem:
        audit(
            accounts,
            actor,
            "test_send.failed",
            now=now,
            object_type="email",
            object_id=template,
            detail=str(problem),
        )
        raise
    audit(
        accounts,
        actor,
        "test_send",
        now=now,
        object_type="email",
        object_id=template,
        detail=f"to {sent.address} through {sent.transport}; send id {sent.send_id}",
    )
    return sent
