"""The lead API's bodies as pydantic models: they make /api/v1/openapi.json. Requests are read
by campaign.app.intake's own rules (so JSON and form posts, and CSV rows, agree); these models
describe them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

MAX_BATCH = 1000


class LeadPayload(BaseModel):
    """One lead, as JSON or form-encoded: the CSV's fields, the consent wording (or its version)
    and UTM tags. Unknown fields are ignored; a field left out keeps an existing lead's value."""

    email: str = Field(description="Required. The same address in any letter case is one lead.")
    first_name: str | None = None
    last_name: str | None = None
    anxiety_type: str | None = Field(
        None, description='The form\'s free-text answer ("GAD", "social phobia", "nothing has worked" ...).'
    )
    prior_treatments: int | str | None = Field(
        None, description='A number, a number word, or a list ("SSRIs; therapy" counts 2).'
    )
    consent: bool | str | None = Field(
        None, description="yes/no, true/false, 1/0, on/off. Left out or no: stored, never emailed."
    )
    consent_text: str | None = Field(
        None, description="The exact consent wording the person agreed to; its SHA-256 is kept."
    )
    consent_version: str | None = Field(
        None, description="Your name for that wording's version, kept instead of the hash."
    )
    consent_ip: str | None = Field(None, description="The submitter's IP address, where a form relays it.")
    timezone: str | None = Field(None, description="An IANA name; else from the state; else the clinic's.")
    state: str | None = None
    source: str | None = None
    booked: bool | str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None


class BatchPayload(BaseModel):
    leads: list[LeadPayload] = Field(max_length=MAX_BATCH, description="Up to 1,000 leads.")


class LeadResult(BaseModel):
    """Where a lead stands after a post."""

    id: str = Field(description="The lead's opaque public id.")
    outcome: str = Field(description="created, updated or unchanged.")
    audience: str | None
    campaign: str | None
    status: str = Field(description="enrolled, not yet enrolled, waiting for consent, unsubscribed ...")
    first_email_at: datetime | None = Field(description="When its first email went or is planned.")
    first_email_reason: str | None = Field(description="Why first_email_at is null.")


class BatchItem(BaseModel):
    """One batch item's answer: a LeadResult's fields, or outcome "invalid" with `fields`."""

    index: int
    outcome: str
    id: str | None = None
    audience: str | None = None
    campaign: str | None = None
    status: str | None = None
    first_email_at: datetime | None = None
    first_email_reason: str | None = None
    fields: dict[str, str] | None = Field(None, description="For an invalid item: field -> what is wrong.")


class BatchResult(BaseModel):
    results: list[BatchItem]
    counts: dict[str, int] = Field(description="created, updated, unchanged, invalid.")


class Step(BaseModel):
    step: str
    day: int
    at: str = Field(description="In the lead's time zone.")
    status: str = Field(description="sent, failed, unknown ... (the ledger), planned, or if enrolled now.")


class Consent(BaseModel):
    given: bool
    at: datetime | None
    via: str | None = Field(description="csv, api or form.")
    ref: str | None = Field(description="The file and row, the API token's name, or the form.")
    version: str | None = Field(description="The wording's version, or sha256:<hash of the exact text>.")
    client: str | None


class LeadStatus(BaseModel):
    """A lead for a CRM to sync: where it stands, its steps sent and planned. Never raw events."""

    id: str
    email: str
    status: str
    audience: str | None
    campaign: str | None
    first_email_at: datetime | None
    first_email_reason: str | None
    consent: Consent
    steps: list[Step]


class ErrorBody(BaseModel):
    error: str
    fields: dict[str, str] | None = Field(None, description="For 422: one message per bad field.")
