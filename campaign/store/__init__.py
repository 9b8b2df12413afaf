"""The campaign store: the only package that talks SQL.

SQLite by default, PostgreSQL by URL; schema changes go through Alembic (campaign/migrations).
`Store` is the one entry point. Each area's queries live in their own part over one shared
engine, and Store's methods are those parts' methods:

  tables       the schema, address hashes, ids
  lead_import  a lead file's import, set-based (a staging table, COPY on PostgreSQL)
  leads        the upsert every intake shares (proof of consent, audit rows), reads by address,
               the suppression list, is_reachable
  intake       the lead API's reads (where leads stand) and its Idempotency-Key table
  enrollments  who is in which sequence, what is due
  enroll       set-based enrollment: the audiences' rules compiled to SQL, INSERT ... SELECT
  ledger       claims and settlements, one row per (enrollment, step): at most one email each
  events       webhook events and their effects, unsubscribe, booked, forget
  campaigns    campaigns and their state, approvals
  reports      reads for the CLI, reports and the demo
  browse       the console's lead list (search, filters, pages by key) and one lead's page
  forms        sign-up forms, confirmation emails, double opt-in (opted_in: never enroll before it)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from campaign.store.browse import Browse, LeadQuery
from campaign.store.campaigns import Campaigns
from campaign.store.enroll import CompiledAudiences, Enroll, compile_audiences
from campaign.store.enrollments import DueEnrollment, Enrollments
from campaign.store.events import EventLog
from campaign.store.forms import Form, FormExists, Forms, opted_in
from campaign.store.intake import Intake, Remembered
from campaign.store.lead_import import FileImport, LeadImport, Staged
from campaign.store.leads import ImportCounts, Incoming, Leads, Upserted
from campaign.store.ledger import Claim, Ledger, UnknownSend
from campaign.store.reports import Reports
from campaign.store.tables import (
    ALL_AUDIENCES,
    EVERGREEN,
    approvals,
    campaigns,
    email_hash,
    enrollments,
    events,
    idempotency_keys,
    leads,
    metadata,
    new_public_id,
    new_send_id,
    sends,
    suppressions,
)

__all__ = [
    "ALL_AUDIENCES",
    "EVERGREEN",
    "FileImport",
    "Form",
    "FormExists",
    "Claim",
    "DueEnrollment",
    "ImportCounts",
    "Incoming",
    "Remembered",
    "Staged",
    "LeadQuery",
    "Store",
    "UnknownSend",
    "Upserted",
    "alembic_config",
    "approvals",
    "campaigns",
    "email_hash",
    "enrollments",
    "events",
    "idempotency_keys",
    "leads",
    "metadata",
    "new_public_id",
    "new_send_id",
    "opted_in",
    "sends",
    "suppressions",
]


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent.parent / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")  # readers (the web app) never block the tick
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class _PartMethod:
    """A Store method that is one part's method: `store.claim(...)` runs `store._ledger.claim(...)`."""

    def __init__(self, part: str, method: Callable):
        self.part = part
        self.name = method.__name__
        self.__doc__ = method.__doc__
        self.__wrapped__ = method  # help() and inspect.signature show the part's signature

    def __get__(self, store, owner=None):
        if store is None:
            return self
        return getattr(getattr(store, self.part), self.name)


class Store:
    """One database. `Store.open(url)` migrates it to the latest schema first; a context manager
    (`with open_store(settings) as store:`) closes it at the end."""

    def __init__(self, engine: sa.Engine, secret_key: str):
        self.engine = engine
        self.secret_key = secret_key
        self._leads = Leads(engine, secret_key)
        self._enrollments = Enrollments(engine, secret_key)
        self._ledger = Ledger(engine, secret_key)
        self._events = EventLog(engine, secret_key)
        self._campaigns = Campaigns(engine, secret_key)
        self._reports = Reports(engine, secret_key)
        self._intake = Intake(engine, secret_key)
        self._browse = Browse(engine, secret_key)
        self._enroll = Enroll(engine, secret_key)
        self._forms = Forms(engine, secret_key)
        self._lead_import = LeadImport(engine, secret_key)

    @classmethod
    def open(cls, url: str, *, secret_key: str, migrate: bool = True) -> Store:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, future=True)
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", sqlite_pragmas)
        store = cls(engine, secret_key)
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> None:
        from alembic import command

        cfg = alembic_config(str(self.engine.url.render_as_string(hide_password=False)))
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
        self.ensure_evergreen(datetime.now(UTC))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # ---- leads and the suppression list ------------------------------------------------------
    upsert_leads = _PartMethod("_leads", Leads.upsert_leads)
    lead_by_email = _PartMethod("_leads", Leads.lead_by_email)
    unenrolled_leads = _PartMethod("_leads", Leads.unenrolled_leads)
    suppressed_hashes = _PartMethod("_leads", Leads.suppressed_hashes)
    is_reachable = _PartMethod("_leads", Leads.is_reachable)
    reachable_among = _PartMethod("_leads", Leads.reachable_among)
    suppress = _PartMethod("_leads", Leads.suppress)
    intake_leads = _PartMethod("_leads", Leads.intake_leads)
    import_leads = _PartMethod("_lead_import", LeadImport.import_leads)  # a lead file, set-based

    # ---- the lead API: where leads stand, Idempotency-Key ------------------------------------
    standing_of = _PartMethod("_intake", Intake.standing_of)
    remember_request = _PartMethod("_intake", Intake.remember_request)
    remember_response = _PartMethod("_intake", Intake.remember_response)
    forget_request = _PartMethod("_intake", Intake.forget_request)

    # ---- enrollments -------------------------------------------------------------------------
    add_enrollments = _PartMethod("_enrollments", Enrollments.add_enrollments)
    enrolled_audiences = _PartMethod("_enrollments", Enrollments.enrolled_audiences)
    refresh_sequence_version = _PartMethod("_enrollments", Enrollments.refresh_sequence_version)
    due_bounds = _PartMethod("_enrollments", Enrollments.due_bounds)
    due_enrollments = _PartMethod("_enrollments", Enrollments.due_enrollments)
    lease_due_enrollments = _PartMethod("_enrollments", Enrollments.lease_due_enrollments)
    release_leases = _PartMethod("_enrollments", Enrollments.release_leases)
    release_walk = _PartMethod("_enrollments", Enrollments.release_walk)
    hold_lease = _PartMethod("_enrollments", Enrollments.hold_lease)
    leased_by_others = _PartMethod("_enrollments", Enrollments.leased_by_others)
    enrollments_by_id = _PartMethod("_enrollments", Enrollments.enrollments_by_id)
    update_enrollments = _PartMethod("_enrollments", Enrollments.update_enrollments)

    # ---- set-based enrollment (rules compiled to SQL) ----------------------------------------
    fill_email_hashes = _PartMethod("_enroll", Enroll.fill_email_hashes)
    enrollment_zones = _PartMethod("_enroll", Enroll.enrollment_zones)
    enroll_matching = _PartMethod("_enroll", Enroll.enroll_matching)
    enroll_campaign = _PartMethod("_enroll", Enroll.enroll_campaign)

    def compile_audiences(self, audiences) -> CompiledAudiences:
        """The audiences' match rules as SQL for this database (campaign.store.enroll)."""
        return compile_audiences(audiences, self.dialect)

    # ---- the send ledger ---------------------------------------------------------------------
    claim = _PartMethod("_ledger", Ledger.claim)
    settle = _PartMethod("_ledger", Ledger.settle)
    mark_emailed = _PartMethod("_ledger", Ledger.mark_emailed)
    release = _PartMethod("_ledger", Ledger.release)
    mark_stale_claims_unknown = _PartMethod("_ledger", Ledger.mark_stale_claims_unknown)
    confirm_unknown_from_events = _PartMethod("_ledger", Ledger.confirm_unknown_from_events)
    unknown_sends = _PartMethod("_ledger", Ledger.unknown_sends)
    reclaim_unknown = _PartMethod("_ledger", Ledger.reclaim_unknown)
    capped_unknown = _PartMethod("_ledger", Ledger.capped_unknown)
    unclaim_resends = _PartMethod("_ledger", Ledger.unclaim_resends)

    # ---- events, unsubscribes, bookings, forgetting ------------------------------------------
    record_events = _PartMethod("_events", EventLog.record_events)
    unsubscribe_lead = _PartMethod("_events", EventLog.unsubscribe_lead)
    resubscribe_lead = _PartMethod("_events", EventLog.resubscribe_lead)
    mark_booked = _PartMethod("_events", EventLog.mark_booked)
    forget_lead = _PartMethod("_events", EventLog.forget_lead)

    # ---- campaigns and approvals -------------------------------------------------------------
    ensure_evergreen = _PartMethod("_campaigns", Campaigns.ensure_evergreen)
    campaign = _PartMethod("_campaigns", Campaigns.campaign)
    campaigns = _PartMethod("_campaigns", Campaigns.campaigns)
    active_campaigns = _PartMethod("_campaigns", Campaigns.active_campaigns)
    create_campaign = _PartMethod("_campaigns", Campaigns.create_campaign)
    set_campaign_state = _PartMethod("_campaigns", Campaigns.set_campaign_state)
    pause_campaigns = _PartMethod("_campaigns", Campaigns.pause_campaigns)
    record_approval = _PartMethod("_campaigns", Campaigns.record_approval)
    approvals_for = _PartMethod("_campaigns", Campaigns.approvals_for)
    approval_record = _PartMethod("_campaigns", Campaigns.approval_record)

    # ---- reads for the CLI and reports -------------------------------------------------------
    campaign_statuses = _PartMethod("_reports", Reports.campaign_statuses)
    report_facts = _PartMethod("_reports", Reports.report_facts)
    enrollment_counts = _PartMethod("_reports", Reports.enrollment_counts)
    lead_overview = _PartMethod("_reports", Reports.lead_overview)
    sends_of = _PartMethod("_reports", Reports.sends_of)
    sent_keys = _PartMethod("_reports", Reports.sent_keys)
    enrollment_for_lead = _PartMethod("_reports", Reports.enrollment_for_lead)
    audience_counts = _PartMethod("_reports", Reports.audience_counts)
    send_matrix = _PartMethod("_reports", Reports.send_matrix)
    send_counts_drift = _PartMethod("_reports", Reports.send_counts_drift)
    enrollment_counts_drift = _PartMethod("_reports", Reports.enrollment_counts_drift)
    ledger = _PartMethod("_reports", Reports.ledger)
    next_due_at = _PartMethod("_reports", Reports.next_due_at)

    # ---- the console's lead pages ------------------------------------------------------------
    search_leads = _PartMethod("_browse", Browse.search_leads)
    public_id_to_id = _PartMethod("_browse", Browse.public_id_to_id)
    latest_enrollments = _PartMethod("_browse", Browse.latest_enrollments)
    lead_record = _PartMethod("_browse", Browse.lead_record)
    lead_enrollments = _PartMethod("_browse", Browse.lead_enrollments)
    lead_events = _PartMethod("_browse", Browse.lead_events)

    # ---- sign-up forms and double opt-in -----------------------------------------------------
    create_form = _PartMethod("_forms", Forms.create_form)
    forms = _PartMethod("_forms", Forms.forms)
    form_by_key = _PartMethod("_forms", Forms.form_by_key)
    disable_form = _PartMethod("_forms", Forms.disable_form)
    claim_confirmations = _PartMethod("_forms", Forms.claim_confirmations)
    settle_confirmation = _PartMethod("_forms", Forms.settle_confirmation)
    confirmation_counts = _PartMethod("_forms", Forms.confirmation_counts)
    confirm_lead = _PartMethod("_forms", Forms.confirm_lead)
    expire_unconfirmed = _PartMethod("_forms", Forms.expire_unconfirmed)
