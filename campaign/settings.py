"""Settings: one object built on demand from the environment (and clinic.yaml).

Secrets are SecretStr and never printed. Nothing is read at import time.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# A fixed development key keeps the demo working with nothing configured; preflight refuses it
# for live sends.
DEV_SECRET_KEY = "dev-only-secret-change-me"


class CostAndCommitment(BaseModel):
    """What a first consultation and a course of treatment ask of a patient, as the emails state
    them. A coordinator fills each in; None (``null`` in clinic.yaml) means not set yet: the emails
    then say the clinic will tell the reader, and the live-send preflight lists it to fill."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    consultation_format: str | None = None  # e.g. "a video call, or a visit in person"
    consultation_length: str | None = None  # e.g. "about 30 minutes"
    consultation_fee: str | None = None  # e.g. "$150" or "free"
    infusion_fee: str | None = None  # e.g. "$450 for each infusion"
    usual_infusions: str | None = None  # e.g. "six infusions over two to three weeks"
    visit_length: str | None = None  # the whole visit, recovery included, e.g. "about two hours"

    def unset(self) -> list[str]:
        return [field for field, value in self if not (value or "").strip()]


class Clinic(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str  # the legal name, in every footer (CAN-SPAM)
    # A neutral name for the banner and the From line, which show on lock screens and in inbox
    # lists: no treatment or condition in it. Defaults to ``name`` so older clinic files load.
    display_name: str = ""
    city: str
    state: str
    postal_address: str
    postal_address_is_example: bool = False
    phone: str
    sender_email: str
    sender_name: str = ""  # the From name; defaults to display_name
    reply_to: str | None = None
    booking_url: str
    website_url: str
    timezone: str = "America/New_York"
    # When the care team reads replies, e.g. "Monday to Friday, 9 am to 5 pm Eastern time".
    office_hours: str | None = None
    cost_and_commitment: CostAndCommitment = CostAndCommitment()

    @model_validator(mode="after")
    def _default_names(self) -> Clinic:
        # Frozen model: fill the defaults once, at validation.
        if not self.display_name.strip():
            object.__setattr__(self, "display_name", self.name)
        if not self.sender_name.strip():
            object.__setattr__(self, "sender_name", self.display_name)
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAMPAIGN_", extra="ignore")

    database_url: str = "sqlite:///campaign.db"
    secret_key: SecretStr = SecretStr(DEV_SECRET_KEY)
    public_url: str = "http://localhost:8000"
    outbox_dir: Path = Path("outbox")
    content_dir: Path = PROJECT_ROOT  # holds audiences/ and templates/
    clinic_file: Path | None = None
    sandbox: bool = False
    # Due enrollments per walked batch (a send step: a log line in the tick's flow run); 1000
    # keeps the tick within 0.85 of the bare send rate (bench/RESULTS.md).
    batch_size: int = Field(1000, ge=1, le=1000)
    # SendGrid: the standard variable names, no CAMPAIGN_ prefix.
    sendgrid_api_key: SecretStr | None = Field(None, validation_alias="SENDGRID_API_KEY")
    sendgrid_api_host: str = Field("https://api.sendgrid.com", validation_alias="SENDGRID_API_HOST")
    # The web app (campaign serve). SendGrid's Event Webhook verification key (base64, from
    # Mail Settings > Signed Event Webhook). Without it the webhook refuses every post, unless
    # webhook_insecure_dev explicitly allows unsigned posts for local development.
    sendgrid_webhook_public_key: str | None = Field(None, validation_alias="SENDGRID_WEBHOOK_PUBLIC_KEY")
    webhook_max_age_seconds: int = Field(300, ge=1)  # older signed posts are refused (replays)
    webhook_insecure_dev: bool = False
    # Request bodies larger than these are refused with 413 before they are read whole.
    # SendGrid posts events in batches of about 768 KB: 8 MB leaves ample room.
    sendgrid_max_body_bytes: int = Field(8 * 1024 * 1024, ge=1)  # CAMPAIGN_SENDGRID_MAX_BODY_BYTES
    # Every other post (unsubscribe, undo, booking webhook) is a few hundred bytes.
    max_body_bytes: int = Field(64 * 1024, ge=1)  # CAMPAIGN_MAX_BODY_BYTES
    # The lead API: requests a second per token (per server process), and the body limit of a
    # batch of up to 1,000 leads (a single lead's is max_body_bytes).
    api_rate_limit: float = Field(20.0, gt=0)  # CAMPAIGN_API_RATE_LIMIT
    api_batch_max_body_bytes: int = Field(2 * 1024 * 1024, ge=1)  # CAMPAIGN_API_BATCH_MAX_BODY_BYTES
    # Sending through SendGrid (issue 3).
    # A campaign pauses after this many failed or unknown sends in a row (CAMPAIGN_MAX_CONSECUTIVE_FAILURES).
    max_consecutive_failures: int = Field(20, ge=1)
    # A global ceiling on emails per second, e.g. to warm up a new domain (unset: no ceiling).
    max_per_second: float | None = Field(None, gt=0)
    # HTTP calls in flight at once per batch.
    send_concurrency: int = Field(4, ge=1, le=128)
    # Up to 1,000 recipients of the same email per SendGrid request (personalizations); off:
    # one request per email (CAMPAIGN_BULK_SENDING=0), e.g. while checking a new account.
    bulk_sending: bool = True
    # A bulk tick joins the due walk's batches up to this many due enrollments before it plans,
    # claims and sends them (CAMPAIGN_BULK_BATCH_SIZE): spread over audiences and stories, the
    # groups of one email then fill requests of close to 1,000 recipients.
    bulk_batch_size: int = Field(10_000, ge=1, le=100_000)
    # An 'unknown' send (maybe reached SendGrid) with no processed/delivered event after this
    # many hours is sent again.
    unknown_resend_after_hours: float = Field(2.0, gt=0)
    # Resends of one ledger row (CAMPAIGN_MAX_RESENDS): a row still unknown after this many is
    # never sent again; the tick report and `campaign status` count it.
    max_resends: int = Field(1, ge=0)
    # Look each unknown send up in SendGrid's Email Activity (GET /v3/messages) before resending
    # it (CAMPAIGN_SENDGRID_ACTIVITY_LOOKUP): needs the paid Email Activity history add-on.
    sendgrid_activity_lookup: bool = False
    # The console's lead file uploads: the largest accepted file (CAMPAIGN_CONSOLE_UPLOAD_MAX_BYTES),
    # and where an upload waits between its check and its import (default: a folder in the
    # system's temporary directory). Each is deleted after the import, or 2 hours after upload.
    console_upload_max_bytes: int = Field(50 * 1024 * 1024, ge=1)
    console_upload_dir: Path | None = None
    # Sign-up forms (/forms/{key}) and double opt-in (campaign.app.forms). CAMPAIGN_DOUBLE_OPT_IN=1:
    # the API's new leads confirm their address too (a form's always do).
    double_opt_in: bool = False
    form_min_fill_seconds: float = Field(3.0, ge=0)  # a faster post is a bot's: dropped
    form_confirmations_per_address: int = Field(3, ge=1)  # confirmation emails per address per 24 h
    form_posts_per_client_minute: int = Field(10, ge=1)  # form posts per client address per minute

    @property
    def audiences_dir(self) -> Path:
        return self.content_dir / "audiences"

    @property
    def templates_dir(self) -> Path:
        return self.content_dir / "templates"

    @cached_property
    def clinic(self) -> Clinic:
        path = self.clinic_file or (self.content_dir / "clinic.yaml")
        return Clinic.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


def get_settings(**overrides) -> Settings:
    return Settings(**overrides)
