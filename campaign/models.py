"""Plain value types shared by the pure core and the edges.

Nothing here does I/O. The store turns rows into these; the flows pass them around.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field


class AnxietyType(str, enum.Enum):
    """What the lead reported on the web form (sensitive health data: never leaves the store)."""

    gad = "gad"
    social = "social"
    treatment_resistant = "treatment_resistant"
    unspecified = "unspecified"


class LeadIn(BaseModel):
    """A normalized lead as parsed from one CSV row (before it has a database id)."""

    model_config = ConfigDict(frozen=True)

    email: str
    first_name: str = ""
    last_name: str = ""
    anxiety_type: AnxietyType = AnxietyType.unspecified
    prior_treatments: int | None = None
    consent: bool = False
    timezone: str = "America/New_York"
    state: str = ""
    source: str = ""
    booked: bool = False
    utm_source: str = ""
    utm_medium: str = ""
    utm_campaign: str = ""
    utm_term: str = ""
    utm_content: str = ""


class ConsentProof(BaseModel):
    """How a lead's consent was given, kept with the lead: through what (`via`: csv, api, form),
    which exactly (`ref`: "leads.csv row 12", the API token's name, the form's key), the version
    of the wording shown (given, or "sha256:" + the hash of the exact text) and the submitter's
    network address where a form relays it. The time is the store's: when it was recorded."""

    model_config = ConfigDict(frozen=True)

    via: str
    ref: str
    version: str = ""
    client: str = ""


class Lead(LeadIn):
    """A stored lead."""

    id: int
    public_id: str  # random, opaque; the only lead identifier that leaves the building
    unsubscribed_at: datetime | None = None
    last_email_at: datetime | None = None
    consent_at: datetime | None = None  # when the consent below was recorded (None: not recorded)
    consent_proof: ConsentProof | None = None
    unconfirmed_since: datetime | None = None  # double opt-in not done yet: never enrolled


class SendWindow(BaseModel):
    """Hours (local to the lead) and weekdays in which an email may go out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start_hour: int = Field(9, ge=0, le=23)
    end_hour: int = Field(18, ge=1, le=24)
    # ISO weekdays: Monday=1 ... Sunday=7
    weekdays: tuple[int, ...] = (1, 2, 3, 4, 5, 6)


class Step(BaseModel):
    """One email of a sequence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str
    delay: timedelta
    template: str  # path under templates/, without extension


class RenderedEmail(BaseModel):
    """What a template produces for one lead: the content, nothing about delivery."""

    model_config = ConfigDict(frozen=True)

    subject: str
    preheader: str
    html: str
    text: str


class OutboundEmail(BaseModel):
    """One email ready for a transport. Holds no health data beyond the body itself:

    no audience, no anxiety type. ``send_id`` is random and is the only identifier that a
    transport may put in ESP metadata (custom_args)."""

    model_config = ConfigDict(frozen=True)

    send_id: str
    to_email: str
    to_name: str = ""
    from_email: str
    from_name: str
    reply_to: str | None = None
    subject: str
    preheader: str = ""
    html: str
    text: str
    unsubscribe_url: str
    category: str = "education"  # a non-health campaign slug
    is_test: bool = False
    sandbox: bool = False  # this email's campaign runs in SendGrid's sandbox (validated, not delivered)


class SendStatus(str, enum.Enum):
    claimed = "claimed"  # ledger row written, HTTP call not yet settled
    sent = "sent"
    failed = "failed"  # final failure (4xx), the ESP's message kept
    unknown = "unknown"  # the request may or may not have reached the ESP
    skipped = "skipped"  # suppressed or unsubscribed between claim and send


class SendResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    send_id: str
    status: SendStatus
    message_id: str | None = None
    error: str | None = None
    retryable: bool = False  # a failure the ESP never accepted that may pass later (5xx, network)
