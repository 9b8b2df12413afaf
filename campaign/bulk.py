"""Bulk composition: one render per distinct email, each recipient's values as substitutions.

A step's email differs between leads only by the first name, the unsubscribe URL and what the
lead reported (anxiety type, prior treatments: the body branches on them). So the email is
rendered once per (template, anxiety type, prior treatments, name given or not) with
placeholder name and URL, and recipients are grouped by the hash of the result. Each recipient
then carries its own values as SendGrid substitutions (the name escaped for HTML and plain for
text, the unsubscribe URL in both forms), its own subject, List-Unsubscribe and send id.

Substitution is only used where it gives exactly what a per-lead render would: a template that
transforms the name or URL (a filter, title case in a heading) renders differently with two
different placeholders, and its leads are sent one email each. So are leads whose values hold
the tag marker, and URLs with characters HTML would escape. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

from campaign.audiences import Audience
from campaign.compose import outbound
from campaign.delivery.payload import clean_display_name
from campaign.models import SendResult, SendStatus
from campaign.render import Renderer, TemplateError
from campaign.store import Claim, DueEnrollment
from campaign.tokens import unsubscribe_url_maker

if TYPE_CHECKING:
    from datetime import datetime

    from campaign.engine import Context, TickReport

# Below this many recipients of one email, per-email sending is as quick and simpler to trace.
BULK_MIN_RECIPIENTS = 10

# The tags SendGrid replaces in the content. "%%" never appears in rendered content (checked)
# and a recipient whose values hold it is sent on its own, so no value can form another tag.
TAG_MARK = "%%"
NAME_HTML = "%%first_name_html%%"
NAME_TEXT = "%%first_name_text%%"
URL_HTML = "%%unsubscribe_url_html%%"
URL_TEXT = "%%unsubscribe_url_text%%"

# Placeholders for the render: lower-case letters only, so Markdown, HTML escaping and CSS
# inlining leave them alone, and any case change (a title-cased heading) is caught.
_NAME_A, _NAME_B = "zqxnamealphaqz", "zqxnamebravoqz"
_URL_A, _URL_B = (
    "https://zqxurlalphaqz.invalid/u/zqxurlalphaqz",
    "https://zqxurlbravoqz.invalid/u/zqxurlbravoqz",
)
# A URL made of these reads the same in HTML and in text (no & < > " ' to escape, nothing for
# Markdown's link normalizer to percent-encode).
_PLAIN_URL = re.compile(r"\A[A-Za-z0-9:/._~\-]+\Z")
_UNSEEN = object()


@dataclass(frozen=True)
class BulkTemplate:
    """One rendered email with tags in place of the recipient's values."""

    subject: str  # holds _NAME_A / _URL_A: each recipient's subject is spelled out in full
    html: str
    text: str
    digest: str  # of the three: recipients of equal digests get the same email


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


@dataclass(slots=True)  # a million of them in a step: made quickly, never changed
class BulkRecipient:
    send_id: str
    to_email: str
    to_name: str
    subject: str
    unsubscribe_url: str
    substitutions: dict[str, str]


@dataclass
class BulkEmail:
    """Everything one group's requests share, and its recipients (any number: the transport
    splits them into requests)."""

    from_email: str
    from_name: str
    reply_to: str | None
    html: str
    text: str
    category: str
    sandbox: bool
    recipients: list[BulkRecipient] = field(default_factory=list)


def send_step_size(ctx: Context) -> int:
    """Due enrollments per send step: CAMPAIGN_BULK_BATCH_SIZE where the transport sends in
    bulk (bigger groups, fuller requests), else CAMPAIGN_BATCH_SIZE."""
    if ctx.transport.supports_bulk and ctx.settings.bulk_sending:
        return ctx.settings.bulk_batch_size
    return ctx.settings.batch_size


def _same_but_values(a, b, has_name: bool) -> bool:
    """Does render `a` turn into render `b` by swapping the placeholders alone?"""

    def swap(s: str) -> str:
        s = s.replace(_URL_A, _URL_B)
        return s.replace(_NAME_A, _NAME_B) if has_name else s

    return all(swap(getattr(a, f)) == getattr(b, f) for f in ("subject", "html", "text"))


class BulkComposer:
    """Renders each distinct email once (memoized by everything that changes its text) and
    groups recipients by the result."""

    def __init__(self, renderer: Renderer) -> None:
        self.renderer = renderer
        self._templates: dict[tuple, BulkTemplate | None] = {}

    def template(
        self,
        name: str,
        anxiety_type,
        prior_treatments: int | None,
        has_name: bool,
        review_credit: str | None = None,
    ) -> BulkTemplate | None:
        """The email with tags, or None when substitution would not give the per-lead text.
        `review_credit` is the footer's "Medically reviewed by ..." line (the same for every
        recipient of the template)."""
        key = (name, getattr(anxiety_type, "value", anxiety_type), prior_treatments, has_name, review_credit)
        if key not in self._templates:
            self._templates[key] = self._make(name, anxiety_type, prior_treatments, has_name, review_credit)
        return self._templates[key]

    def _make(
        self, name: str, anxiety_type, prior_treatments, has_name: bool, review_credit: str | None
    ) -> BulkTemplate | None:
        def render(first: str, url: str):
            return self.renderer.render(
                name,
                first_name=first if has_name else "",
                unsubscribe_url=url,
                anxiety_type=anxiety_type,
                prior_treatments=prior_treatments,
                review_credit=review_credit,
            )

        try:
            a, b = render(_NAME_A, _URL_A), render(_NAME_B, _URL_B)
        except TemplateError:
            return None  # the per-email path reports it
        if not _same_but_values(a, b, has_name) or any(TAG_MARK in s for s in (a.subject, a.html, a.text)):
            return None
        body_html = a.html.replace(_NAME_A, NAME_HTML).replace(_URL_A, URL_HTML)
        text = a.text.replace(_NAME_A, NAME_TEXT).replace(_URL_A, URL_TEXT)
        return BulkTemplate(a.subject, body_html, text, _digest(a.subject, body_html, text))


def recipient_subject(template: BulkTemplate, first_name: str, url: str) -> str:
    if _URL_A in template.subject:
        return _subject(template.subject, first_name, url)
    return _subject(template.subject, first_name, "")  # the same for every recipient of a name


@lru_cache(maxsize=4096)
def _subject(subject: str, first_name: str, url: str) -> str:
    # As the renderer does it: values in, then whitespace collapsed.
    return " ".join(subject.replace(_NAME_A, first_name).replace(_URL_A, url).split())


@lru_cache(maxsize=4096)  # names repeat: clean each once
def _display_name(first: str | None, last: str | None) -> str:
    return clean_display_name(" ".join(p for p in (first, last) if p))


def group_for_bulk(
    ctx: Context,
    claims: list[Claim],
    wanted: dict,
    campaigns: dict[int, dict],
    composer: BulkComposer,
    credits: dict[str, str] | None = None,
) -> tuple[list[BulkEmail], list[Claim]]:
    """Split claims into bulk groups (at least BULK_MIN_RECIPIENTS recipients of one email)
    and the claims to send one email each. Per recipient only its own values are made (the
    link's token, its subject, its substitutions): everything shared is looked up once."""
    settings = ctx.settings
    clinic = settings.clinic
    url_for = unsubscribe_url_maker(settings.public_url, settings.secret_key.get_secret_value())
    credits = credits or {}
    groups: dict[tuple, BulkEmail] = {}
    single: list[Claim] = []
    members: dict[tuple, list[Claim]] = {}

    def target(audience: Audience, step_key: str, lead, has_name: bool, campaign_id: int):
        """(template, its group's recipients, their claims), or None: one email each."""
        name = audience.step(step_key).template
        template = composer.template(
            name, lead.anxiety_type, lead.prior_treatments, has_name, credits.get(name)
        )
        if template is None:
            return None
        campaign = campaigns[campaign_id]
        key = (template.digest, f"campaign-{campaign['id']}", bool(campaign["sandbox"]))
        group = groups.get(key)
        if group is None:
            group = groups[key] = BulkEmail(
                from_email=clinic.sender_email,
                from_name=clinic.sender_name,
                reply_to=clinic.reply_to,
                html=template.html,
                text=template.text,
                category=key[1],
                sandbox=key[2],
            )
            members[key] = []
        return template, group.recipients, members[key]

    # What decides a recipient's email and group -> target(...): one lookup per recipient.
    targets: dict[tuple, tuple | None] = {}
    match_plain_url = _PLAIN_URL.match
    for claim in claims:
        due: DueEnrollment
        audience: Audience
        due, audience, _ = wanted[claim.enrollment_id]
        lead = due.lead
        first = (lead.first_name or "").strip()
        url = url_for(lead.public_id)
        step, campaign_id = claim.step_key, due.campaign_id
        which = (id(audience), step, lead.anxiety_type, lead.prior_treatments, bool(first), campaign_id)
        found = targets.get(which, _UNSEEN)
        if found is _UNSEEN:
            found = targets[which] = target(audience, step, lead, bool(first), campaign_id)
        if found is None or TAG_MARK in first or not match_plain_url(url):
            single.append(claim)
            continue
        template, recipients, group_claims = found
        recipients.append(
            BulkRecipient(  # positional: a million of them
                claim.send_id,
                lead.email,
                _display_name(lead.first_name, lead.last_name),
                recipient_subject(template, first, url),
                url,
                substitutions(first, url),
            )
        )
        group_claims.append(claim)
    bulk = []
    for key, group in groups.items():
        if len(group.recipients) >= BULK_MIN_RECIPIENTS:
            bulk.append(group)
        else:
            single.extend(members[key])
    return bulk, single


@lru_cache(maxsize=4096)
def _name_substitutions(first_name: str) -> dict[str, str]:  # read only: copied into each recipient's
    return {NAME_HTML: html.escape(first_name, quote=True), NAME_TEXT: first_name} if first_name else {}


def substitutions(first_name: str, url: str) -> dict[str, str]:
    """A recipient's values: the name escaped for HTML and plain for text (escaped once per
    name), the URL in both forms (one that matches _PLAIN_URL reads the same escaped)."""
    values = {URL_HTML: url, URL_TEXT: url}
    if first_name:
        values.update(_name_substitutions(first_name))
    return values


# ---- a send step's claims made ready ------------------------------------------------------------


@dataclass
class Prepared:
    """Claimed sends made ready (grouped, rendered): what send_claims sends."""

    bulk: list  # campaign.bulk.BulkEmail groups
    emails: list  # one email each
    results: list[SendResult]  # settled already: renders that failed


def prepare(ctx: Context, claims: list[Claim], wanted: dict, now: datetime, report: TickReport) -> Prepared:
    """Group claims for bulk requests (where the transport can: SendGrid) and render the rest."""
    results: list[SendResult] = []
    campaigns = {c["id"]: c for c in ctx.store.campaigns()} if claims else {}
    credits = ctx.review_credits(now) if claims else {}
    bulk: list = []
    single = claims
    if claims and ctx.transport.supports_bulk and ctx.settings.bulk_sending:
        bulk, single = group_for_bulk(ctx, claims, wanted, campaigns, ctx.bulk_composer, credits)
    emails = []
    for claim in single:
        due, audience, _ = wanted[claim.enrollment_id]
        try:
            emails.append(outbound(ctx, due, audience, claim, campaigns[due.campaign_id], credits))
        except TemplateError as exc:
            results.append(SendResult(send_id=claim.send_id, status=SendStatus.failed, error=str(exc)))
            if str(exc) not in report.errors:
                report.errors.append(str(exc))
    return Prepared(bulk, emails, results)
