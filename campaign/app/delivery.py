"""Delivery use cases: one test email through the configured transport, outside the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign.accounts import Actor
    from campaign.audiences import Audience
    from campaign.settings import Settings
    from campaign.store import Store


class UnsentTestEmail(Exception):
    """The test email did not go: it does not render, the live preflight refused it, the
    transport stopped, or it failed."""


DRAFT_MARK = "[TEST DRAFT] "


@dataclass
class SentTestEmail:
    audience: str
    step: str
    address: str
    send_id: str
    message_id: str | None
    transport: str  # where it went, e.g. "SendGrid at https://api.sendgrid.com"


def send_test_email(
    settings: Settings,
    audiences: list[Audience],
    audience: str,
    step: str,
    to: str,
    first_name: str,
    *,
    store: Store | None,
    draft: bool = False,
) -> SentTestEmail:
    """Send one email of AUDIENCE's STEP to `to`, marked as a test: no lead, no claim, a random
    send id. A live send (real SendGrid) passes the live preflight first (`store` holds the
    approvals; None is fine when the send is not live): settings problems
    always refuse it; content problems (lint, approval) too, unless `draft`, which sends it
    with "[TEST DRAFT]" before its subject. Raises ValueError for an invalid address,
    LookupError for an unknown audience or step, UnsentTestEmail when it was not sent."""
    from email_validator import EmailNotValidError, validate_email

    from campaign.campaigns import test_send_problems
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
    sequence = [st.template for st in found[audience].steps]
    content, setup = test_send_problems(settings, store, found[audience].step(step).template, sequence)
    if setup or (content and not draft):
        hint = "" if setup else " (--draft sends it anyway, marked as a draft test)"
        raise UnsentTestEmail(f"a live send needs these fixed first{hint}: " + "; ".join(setup + content))
    if content:
        email = email.model_copy(update={"subject": DRAFT_MARK + email.subject})
    # The outbox's index shows which email this was (local only; never in the message).
    label = {email.send_id: {"audience": audience, "step": step, "campaign": "test"}}
    transport = make_transport(settings, describe=lambda _send_ids: label)
    try:
        [result] = transport.send_batch([email])
    except BatchStopped as exc:  # the transport's stops (a refused key): say why
        raise UnsentTestEmail(str(exc)) from None
    finally:
        transport.finish()
    if result.status.value != "sent":
        raise UnsentTestEmail(f"test email not sent ({result.status.value}): {result.error}")
    return SentTestEmail(audience, step, address, email.send_id, result.message_id, transport_label(settings))


def send_test_audited(
    settings: Settings,
    store: Store,
    actor: Actor,
    audiences: list[Audience],
    *,
    audience: str,
    step: str,
    to: str,
    first_name: str,
    now: datetime,
    draft: bool = False,
) -> SentTestEmail:
    """send_test_email from the console or the command line (only it sends drafts), audited
    whether it went or not (the audit names the email and the transport, never the body).
    Raises what send_test_email raises."""
    from campaign.app.activity import record

    template = f"{audience}/{step}"
    try:
        sent = send_test_email(settings, audiences, audience, step, to, first_name, store=store, draft=draft)
    except (ValueError, LookupError, UnsentTestEmail) as problem:
        record(
            store.engine,
            actor,
            "test_send.failed",
            now=now,
            object_type="email",
            object_id=template,
            detail=str(problem),
        )
        raise
    record(
        store.engine,
        actor,
        "test_send",
        now=now,
        object_type="email",
        object_id=template,
        detail=f"to {sent.address} through {sent.transport}; send id {sent.send_id}",
    )
    return sent
