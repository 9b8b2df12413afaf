"""Composing emails: a claimed step for its lead, or a test email for `campaign test-send`.

Pure: settings, renderer and facts in, an OutboundEmail out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from campaign.audiences import Audience
from campaign.models import OutboundEmail
from campaign.render import Renderer
from campaign.settings import Settings
from campaign.store import Claim, DueEnrollment, new_public_id, new_send_id
from campaign.tokens import unsubscribe_url

if TYPE_CHECKING:
    from campaign.engine import Context


def outbound(
    ctx: Context,
    due: DueEnrollment,
    audience: Audience,
    claim: Claim,
    campaign: dict,
    credits: dict[str, str] | None = None,
) -> OutboundEmail:
    """The email of a claimed step; `credits` maps a template to its footer's "Medically
    reviewed by ..." line (only templates approved in their current form have one)."""
    clinic = ctx.settings.clinic
    step = audience.step(claim.step_key)
    url = unsubscribe_url(
        ctx.settings.public_url, due.lead.public_id, ctx.settings.secret_key.get_secret_value()
    )
    lead = due.lead
    content = ctx.renderer.render(
        step.template,
        first_name=lead.first_name,
        unsubscribe_url=url,
        anxiety_type=lead.anxiety_type,
        prior_treatments=lead.prior_treatments,
        review_credit=(credits or {}).get(step.template),
    )
    return _email(
        clinic,
        content,
        send_id=claim.send_id,
        to_email=due.lead.email,
        to_name=" ".join(p for p in (due.lead.first_name, due.lead.last_name) if p),
        unsubscribe_url=url,
        # Opaque: ESP metadata names no audience, and not the campaign's name either (names
        # of campaigns launched before names were checked may hold condition words). Events
        # link to sends by send id, never by category.
        category=f"campaign-{campaign['id']}",
        sandbox=campaign["sandbox"],
    )


def make_test_email(
    settings: Settings,
    renderer: Renderer,
    audience: Audience,
    step_key: str,
    to_email: str,
    first_name: str = "",
    anxiety_type: str | None = None,
    prior_treatments: int | None = None,
) -> OutboundEmail:
    """One email of a step for `campaign test-send`: marked as a test, with a random send id and
    no lead behind it (its unsubscribe link names no one), never in the ledger. Without a
    reported type or count the email says nothing the lead would have told us."""
    step = audience.step(step_key)
    if step is None:
        raise LookupError(
            f"audience {audience.name} has no step {step_key!r}; its steps: "
            + ", ".join(s.key for s in audience.steps)
        )
    clinic = settings.clinic
    url = unsubscribe_url(settings.public_url, new_public_id(), settings.secret_key.get_secret_value())
    content = renderer.render(
        step.template,
        first_name=first_name,
        unsubscribe_url=url,
        anxiety_type=anxiety_type,
        prior_treatments=prior_treatments,
    )
    return _email(
        clinic,
        content,
        send_id=new_send_id(),
        to_email=to_email,
        to_name=first_name,
        unsubscribe_url=url,
        category="education",
        is_test=True,
    )


def _email(clinic, content, **recipient) -> OutboundEmail:
    """The message around rendered content: the clinic's sender lines, then the recipient's."""
    return OutboundEmail(
        from_email=clinic.sender_email,
        from_name=clinic.sender_name,
        reply_to=clinic.reply_to,
        subject=content.subject,
        preheader=content.preheader,
        html=content.html,
        text=content.text,
        **recipient,
    )
