"""Sign-up forms and double opt-in: create, list and disable forms; take a form's post (bots and
floods dropped, the rest through the one lead intake, stored unconfirmed); send the confirmation
email once; confirm.

A public form can be filled in with anyone's address, so what the poster sees never depends on
the address: every post that is not refused for its own content (a bad address, no consent) gets
the same thank-you, whether the lead was new, known, suppressed, forgotten, a bot or over a limit.
Only a new address (or one still unconfirmed) is stored, unconfirmed, and gets a confirmation
email; a known lead is never changed by a public form.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from campaign.compose import _email
from campaign.forms_tokens import (
    CONFIRM_MAX_AGE,
    make_confirm_token,
    read_confirm_token,
    seconds_since_shown,
)
from campaign.lead_fields import InvalidLead, consent_text_version
from campaign.models import SendResult, SendStatus
from campaign.settings import Settings
from campaign.store import Form, Store, email_hash
from campaign.store.forms import Confirmation
from campaign.tokens import InvalidToken, unsubscribe_url

from .intake import Submission, prepare

CONFIRM_TEMPLATE = "system/confirm"
HONEYPOT = "website"  # a field people never see (hidden by CSS) and bots fill in
SHOWN = "shown"  # the signed "form rendered at"
DEFAULT_QUESTION = "What type of anxiety do you experience?"
# The web form's four answers: lead_fields.parse_anxiety_type maps each to its audience.
ANSWERS = (
    "Generalized Anxiety Disorder (GAD)",
    "Social anxiety",
    "Treatment-resistant anxiety",
    "Not sure",
)
PRIOR_TREATMENTS = (("0", "None yet"), ("1", "One"), ("2", "Two"), ("3+", "Three or more"))
ADDRESS_WINDOW = timedelta(hours=24)


def default_consent_text(clinic_name: str) -> str:
    return (
        f"Yes, {clinic_name} may email me information about anxiety and treatment options. "
        "I can unsubscribe at any time."
    )


class FormProblem(ValueError):
    """A form that cannot be created or changed; the message says why."""


def create_form(
    store: Store, settings: Settings, name: str, question: str | None, consent_text: str | None, now: datetime
) -> Form:
    name = " ".join(name.split())
    if not 1 <= len(name) <= 100 or not name.isprintable():
        raise FormProblem("a form's name is 1 to 100 printable characters")
    question = " ".join((question or DEFAULT_QUESTION).split())
    consent_text = " ".join((consent_text or default_consent_text(settings.clinic.name)).split())
    if not 1 <= len(question) <= 300:
        raise FormProblem("--audience-question is 1 to 300 characters")
    if not 10 <= len(consent_text) <= 2000:
        raise FormProblem("--consent-text is 10 to 2,000 characters")
    from campaign.store import FormExists

    try:
        return store.create_form(name, question, consent_text, consent_text_version(consent_text), now)
    except FormExists as exc:
        raise FormProblem(str(exc)) from None


def form_url(settings: Settings, form: Form) -> str:
    return f"{settings.public_url.rstrip('/')}/forms/{form.key}"


# ---- a post --------------------------------------------------------------------------------------


class ClientLimiter:
    """At most `per_minute` posts per client address in any minute (in this process)."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute, self.clock = per_minute, clock
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = self.clock()
        with self._lock:
            if len(self._seen) > 10_000:  # forget idle clients
                self._seen = {c: q for c, q in self._seen.items() if q and now - q[-1] < 60}
            recent = self._seen.setdefault(client, deque())
            while recent and now - recent[0] >= 60:
                recent.popleft()
            if len(recent) >= self.per_minute:
                return False
            recent.append(now)
            return True


@dataclass
class Outcome:
    """What a post gets: `thanks` (the same page for every address), `invalid` (the form again
    with `problems`), or `review` (the form again, filled in, with a fresh "shown at": a copy of
    the form on another site carries none). `confirmation` is the email to send after the answer
    (never sent while the poster waits: the time taken tells nothing either)."""

    kind: str
    problems: dict[str, str] = field(default_factory=dict)
    confirmation: Confirmation | None = None
    dropped: str = ""  # why nothing was stored (for the log: never an address)


def take_post(
    store: Store,
    settings: Settings,
    form: Form,
    values: Mapping[str, str],
    client: str,
    now: datetime,
    limiter: ClientLimiter,
) -> Outcome:
    secret = settings.secret_key.get_secret_value()
    if values.get(HONEYPOT, "").strip():
        return Outcome("thanks", dropped="honeypot")
    try:
        elapsed = seconds_since_shown(values.get(SHOWN, ""), form.key, secret, now)
    except InvalidToken:
        return Outcome("review")
    if elapsed < settings.form_min_fill_seconds:
        return Outcome("thanks", dropped="too fast")
    if not limiter.allow(client):
        return Outcome("thanks", dropped="client limit")
    problems = {}
    if values.get("consent") != "yes":
        problems["consent"] = "Please tick the box to say we may email you."
    submission = Submission(
        {
            "email": values.get("email", ""),
            "first_name": values.get("first_name", ""),
            "anxiety_type": values.get("anxiety_type", ""),
            "prior_treatments": values.get("prior_treatments", ""),
            "consent": "yes",
            "consent_version": form.consent_version,
            "consent_ip": client,
            "source": f"form {form.name}"[:100],
        },
        "form",
        f"form {form.name} ({form.key})",
    )
    try:
        incoming = prepare(submission, default_timezone=settings.clinic.timezone, strict=False)
    except InvalidLead:
        problems["email"] = "Please enter a valid email address, like name@example.com."
    if problems:
        return Outcome("invalid", problems)
    return Outcome(
        "thanks", confirmation=_store_unconfirmed(store, settings, replace(incoming, unconfirmed=True), now)
    )


def _store_unconfirmed(store: Store, settings: Settings, incoming, now: datetime) -> Confirmation | None:
    """A new (or still unconfirmed) address: stored unconfirmed, and a confirmation email claimed
    within the per-address limit. A known, suppressed or forgotten address: nothing."""
    email = incoming.lead.email
    if store.suppressed_hashes([email_hash(email, store.secret_key)]):
        return None
    known = store.lead_by_email(email)
    if known is not None and known.unconfirmed_since is None:
        return None
    (stored,) = store.intake_leads([incoming], now)
    return next(iter(claim(store, settings, [stored.lead.public_id], now)), None)


def claim(store: Store, settings: Settings, public_ids: list[str], now: datetime) -> list[Confirmation]:
    """The confirmation emails to send to these leads, within the per-address limit."""
    return store.claim_confirmations(
        public_ids, now, since=now - ADDRESS_WINDOW, limit=settings.form_confirmations_per_address
    )


# ---- the confirmation email -----------------------------------------------------------------------


class ConfirmationMailer:
    """Sends claimed confirmation emails through the configured transport (SendGrid, or the
    outbox without a key) and settles each claim: an email is sent once."""

    def __init__(self, settings: Settings, store: Store, clock: Callable[[], datetime]):
        self.settings, self.store, self.clock = settings, store, clock
        self._lock = threading.Lock()
        self._parts = None

    def _transport_and_renderer(self):
        with self._lock:
            if self._parts is None:
                from campaign.render import Renderer
                from campaign.runtime import make_transport

                self._parts = (
                    make_transport(self.settings, self.clock),
                    Renderer(self.settings.templates_dir, self.settings.clinic),
                )
            return self._parts

    def email(self, confirmation: Confirmation):
        settings, lead = self.settings, confirmation.lead
        secret = settings.secret_key.get_secret_value()
        _, renderer = self._transport_and_renderer()
        token = make_confirm_token(
            lead.public_id, email_hash(lead.email, self.store.secret_key), secret, self.clock()
        )
        links = {"confirm_url": f"{settings.public_url.rstrip('/')}/confirm/{token}"}
        url = unsubscribe_url(settings.public_url, lead.public_id, secret)
        content = renderer.render(
            CONFIRM_TEMPLATE, first_name=lead.first_name, unsubscribe_url=url, links=links
        )
        return _email(
            settings.clinic,
            content,
            send_id=confirmation.send_id,
            to_email=lead.email,
            to_name=lead.first_name,
            unsubscribe_url=url,
            category="confirmation",
        )

    def send(self, confirmations: list[Confirmation]) -> None:
        if not confirmations:
            return
        transport, _ = self._transport_and_renderer()
        try:
            results = transport.send_batch([self.email(c) for c in confirmations])
        except Exception as exc:  # a stopped batch: whatever settled is in it
            results = list(getattr(exc, "results", []))
        settled = {r.send_id for r in results}
        for c in confirmations:
            if c.send_id not in settled:
                results.append(SendResult(send_id=c.send_id, status=SendStatus.unknown, error="not settled"))
        for result in results:
            self.store.settle_confirmation(result, self.clock())
        transport.finish()


# ---- confirming ---------------------------------------------------------------------------------


def confirm(store: Store, settings: Settings, token: str, now: datetime, apply: bool) -> str:
    """A confirmation link: "valid" (GET: the lead may confirm), "confirmed", "already",
    "expired" or "invalid" (forged, cut short, another address's, or the lead is gone)."""
    secret = settings.secret_key.get_secret_value()
    try:
        public_id, hash16, _ = read_confirm_token(token, secret, now)
    except InvalidToken as exc:
        return "expired" if exc.expired else "invalid"
    if not apply:
        return "valid"
    found = store.confirm_lead(public_id, hash16, now, since=now - CONFIRM_MAX_AGE)
    return {"refused": "invalid"}.get(found, found)
