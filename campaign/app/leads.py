"""Lead use cases: import a CSV or .xlsx file (or check it: a preview and a dry run), the leads
overview, one lead's timeline, booked, forget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from campaign.app.intake import consent_record, take_file
from campaign.audiences import Audience, load_audiences, match_audience
from campaign.lead_fields import FIELDS, UTM_FIELDS, header_key
from campaign.leads import (
    SKIP,
    RejectedRow,
    RejectsFile,
    map_headers,
    open_lead_file,
    preview_rows,
    repeated_addresses,
)
from campaign.models import Lead
from campaign.progress import advance
from campaign.schedule import timeline
from campaign.settings import Settings
from campaign.store import FileImport, Store, email_hash

if TYPE_CHECKING:
    from campaign.accounts import Actor


@dataclass
class ImportSummary:
    file: str
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejected_file: str | None = None
    warnings: list[str] = field(default_factory=list)
    dry_run: bool = False  # counted, nothing written
    first_rejected: list[RejectedRow] = field(default_factory=list)  # up to SHOWN_REJECTS, to show

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "first_rejected"} | {
            "warnings": list(self.warnings)
        }


SHOWN_REJECTS = 20


def import_file(
    store: Store | Callable[[], Store],
    settings: Settings,
    path: Path,
    now: datetime,
    overrides: dict[str, str] | None = None,
    rejects_path: Path | None = None,
    *,
    dry_run: bool = False,
    display_name: str | None = None,
    actor: Actor | None = None,
    audit_object: tuple[str, str] | None = None,
) -> ImportSummary:
    """Parse, write rejected rows (beside the file unless `rejects_path`), upsert. An unreadable
    file raises ImportFileError before anything is written. `store` may be an opener: it is
    called only when the file holds leads, so a failed import creates no database, and the
    store it returns is closed here. `dry_run`: the same counts and rejects, nothing written
    (no leads, no rejects file). `display_name` names the file in messages (default: its path).
    Audited as `actor` ("import", on `audit_object` (type, id), by default the file's name)
    whenever there is a database to write to: an opener that is never called audits nothing."""
    path = Path(path)
    name = display_name or str(path)
    lead_file = open_lead_file(
        path, filename=name, overrides=overrides, default_timezone=settings.clinic.timezone
    )
    summary = ImportSummary(file=name, warnings=list(lead_file.warnings), dry_run=dry_run)
    target = Path(rejects_path) if rejects_path else _beside(path)
    # Written as they come: a rejects file that cannot be written stops the import (rolled back).
    rejects = None if dry_run else RejectsFile(target, path, lead_file.headers)
    audited_on = audit_object or ("file", path.name)

    def reject(row: RejectedRow) -> None:
        summary.rejected += 1
        if len(summary.first_rejected) < SHOWN_REJECTS:
            summary.first_rejected.append(row)
        if rejects is not None:
            rejects.add(row)

    def done(opened: Store, taken: FileImport) -> None:
        counts = taken.counts
        summary.new, summary.updated, summary.unchanged = counts.new, counts.updated, counts.unchanged
        if not dry_run:  # in the open store, before an opened one is closed
            _audit_import(opened, actor, audited_on, summary, now)

    try:
        # Proof of consent names the file by its name (not the folder it was imported from).
        taken = take_file(
            store, lead_file, path.name, now, on_reject=reject, on_chunk=advance, dry_run=dry_run, then=done
        )
    finally:
        if rejects is not None:
            rejects.close()
    if rejects is not None and rejects.written:
        summary.rejected_file = str(target)
    if taken is None and isinstance(store, Store) and not dry_run:  # rejects alone: audited too
        _audit_import(store, actor, audited_on, summary, now)
    repeats = repeated_addresses(taken.repeated, taken.first_repeats) if taken else repeated_addresses()
    summary.warnings += lead_file.row_warnings(repeats)
    return summary


def _audit_import(
    store: Store, actor: Actor | None, on: tuple[str, str], summary: ImportSummary, now
) -> None:
    from campaign.app.activity import record

    counts = f"{summary.new} new, {summary.updated} updated, {summary.unchanged} unchanged"
    detail = f"{Path(summary.file).name}: {counts}, {summary.rejected} rejected"
    record(store.engine, actor, "import", now=now, object_type=on[0], object_id=on[1], detail=detail)


@dataclass
class ImportColumn:
    index: int
    header: str
    field: str  # the field this column gives, or SKIP
    automatic: str  # what the header alone would give (SKIP: nothing)


@dataclass
class ImportPreview:
    columns: list[ImportColumn]
    rows: list[list[str]]  # the first rows, one cell per column
    warnings: list[str]  # about the mapping (several columns for one field ...)

    @property
    def has_email(self) -> bool:
        return any(c.field == "email" for c in self.columns)

    @property
    def choices(self) -> tuple[str, ...]:
        return (*FIELDS, SKIP)


def preview_import(
    path: Path, overrides: dict[str, str] | None = None, *, display_name: str | None = None, count: int = 5
) -> ImportPreview:
    """The header and first rows of a lead file, and the field each column maps to with these
    overrides (header -> field or SKIP). Raises ImportFileError for an unreadable file."""
    name = display_name or str(path)
    headers, rows = preview_rows(Path(path), filename=name, count=count)
    chosen, warnings = map_headers(headers, overrides or {}, filename=name)
    automatic = _automatic_fields(headers)
    columns = [
        ImportColumn(i, header, _field_of(chosen, i), automatic[i]) for i, header in enumerate(headers)
    ]
    width = len(headers)
    return ImportPreview(columns, [(r + [""] * width)[:width] for r in rows], warnings)


def column_overrides(headers: list[str], choices: list[str]) -> dict[str, str]:
    """The overrides (header -> field or SKIP) under which each column gives its chosen field.
    Raises ValueError for a choice that is no field, or two columns of one name given different
    fields (overrides go by header)."""
    named: dict[str, str] = {}
    for index, (header, choice) in enumerate(zip(headers, choices, strict=True)):
        if choice not in FIELDS and choice != SKIP:
            raise ValueError(f"column {index + 1} ({header!r}): {choice!r} is not a field")
        if named.setdefault(header_key(header), choice) != choice:
            raise ValueError(f"two columns are named {header!r}: give them the same field")
    automatic = _automatic_fields(headers)
    # A field given by an override is read only from overridden columns (map_headers): every
    # column choosing such a field is overridden, even where its header alone gives it.
    overridden = {c for c, a in zip(choices, automatic) if c != a}
    return {h: c for h, c, a in zip(headers, choices, automatic) if c != a or c in overridden}


def _automatic_fields(headers: list[str]) -> list[str]:
    """The field each column gives by its header alone (SKIP: none)."""
    automatic, _ = map_headers(headers, {})
    return [_field_of(automatic, i) for i in range(len(headers))]


def _field_of(mapping: dict[str, list[int]], index: int) -> str:
    return next((f for f, indexes in mapping.items() if index in indexes), SKIP)


def _beside(path: Path) -> Path:
    """leads.csv -> leads.rejected.csv; leads.xlsx -> leads.xlsx.rejected.csv."""
    return (
        path.with_suffix(".rejected.csv")
        if path.suffix == ".csv"
        else path.with_name(path.name + ".rejected.csv")
    )


def has_leads(store: Store) -> bool:
    """Whether any lead is stored (one row read, not a count of them all)."""
    rows = store.lead_overview()
    try:
        return next(rows, None) is not None
    finally:
        rows.close()  # ends the streamed query and gives its connection back


LEAD_COLUMNS = ("email", "audience", "status", "steps_sent", "next_step", "next_at")
# How each lead's consent was given, and its UTM tags: in the JSON and CSV exports.
CONSENT_COLUMNS = ("consent", "consent_at", "consent_via", "consent_ref", "consent_version", "consent_client")
EXPORT_COLUMNS = LEAD_COLUMNS + CONSENT_COLUMNS + UTM_FIELDS


def lead_rows(store: Store, audiences: list[Audience], chunk: int = 1000) -> list[dict]:
    """One row per lead: email, audience, status, steps sent, next step and its time."""
    rows, pending = [], []
    for r in store.lead_overview():
        pending.append(r)
        if len(pending) >= chunk:
            rows.extend(_lead_rows_chunk(store, {a.name: a for a in audiences}, pending))
            pending = []
    rows.extend(_lead_rows_chunk(store, {a.name: a for a in audiences}, pending))
    return rows


def _lead_rows_chunk(store: Store, audiences: dict[str, Audience], overview: list[dict]) -> list[dict]:
    # The sent steps of the chunk's active enrollments, in one query rather than one per lead.
    sent = store.sends_of([r["enrollment_id"] for r in overview if r["enrollment_state"] == "active"])
    rows = []
    for r in overview:
        if r["enrollment_id"] is None:
            if r["unsubscribed_at"]:
                status = "unsubscribed"
            elif r["booked"]:
                status = "booked"
            elif r["unconfirmed_since"]:
                status = "waiting for confirmation"
            else:
                status = "waiting for consent" if not r["consent"] else "not yet enrolled"
            rows.append(
                {
                    "email": r["email"],
                    "audience": "",
                    "status": status,
                    "steps_sent": 0,
                    "next_step": "",
                    "next_at": "",
                    **_provenance(r),
                }
            )
            continue
        status = {"active": "enrolled", "finished": "finished"}.get(
            r["enrollment_state"], f"exited ({r['exit_reason']})"
        )
        next_step, next_at = "", ""
        audience = audiences.get(r["audience"])
        if r["enrollment_state"] == "active" and audience is not None:
            pending = [s.key for s in audience.steps if s.key not in sent[r["enrollment_id"]]]
            next_step = pending[0] if pending else ""
            next_at = (
                r["next_due_at"].astimezone(ZoneInfo(r["timezone"])).isoformat(timespec="minutes")
                if r["next_due_at"]
                else ""
            )
        rows.append(
            {
                "email": r["email"],
                "audience": r["audience"],
                "status": status,
                "steps_sent": r["steps_sent"],
                "next_step": next_step,
                "next_at": next_at,
                **_provenance(r),
            }
        )
    return rows


def _provenance(r: dict) -> dict:
    at = r["consent_at"]
    return {
        "consent": bool(r["consent"]),
        "consent_at": at.isoformat() if at else None,
        **{c: r[c] for c in CONSENT_COLUMNS[2:]},
        **{f: r[f] for f in UTM_FIELDS},
    }


@dataclass
class Timeline:
    email: str
    audience: str
    steps: list[dict]  # step, day, at (the lead's local time), status
    # Why no (further) email will go to this lead, or None when its sequence goes on.
    will_not_email: str | None = None
    consent: dict = field(default_factory=dict)  # given, at, via, ref, version, client

    def as_dict(self) -> dict:
        return asdict(self)


def why_not_emailed(lead: Lead, *, suppressed: bool, enrollment: dict | None) -> str | None:
    """Why this lead gets no more email, in the order the send path checks it; None if it does."""
    if suppressed:
        return "the address is on the suppression list (a bounce, a spam report, or a request to forget it)"
    if lead.unsubscribed_at is not None:
        return f"they unsubscribed on {lead.unsubscribed_at:%Y-%m-%d}"
    if lead.booked:
        return "they booked a consultation, and sequences stop at booking"
    if not lead.consent:
        return "there is no consent to email them (the form's consent answer was not yes)"
    if enrollment is not None and enrollment["state"] == "exited":
        return f"their sequence ended ({enrollment['exit_reason']})"
    if enrollment is not None and enrollment["state"] == "finished":
        return "they received their whole sequence"
    return None


def lead_timeline(
    store: Store, settings: Settings, email: str, now: datetime, *, max_day: int | None = None
) -> Timeline:
    """When each step went or would go to this lead (sent steps from the ledger), up to
    `max_day` days after enrollment; for a lead who will get no more email, what went and why
    nothing more will. Raises LookupError for an unknown lead, or one no audience matches."""
    lead = store.lead_by_email(email)
    if lead is None:
        raise LookupError(f"no lead with the address {email!r}; check the spelling or import it first")
    audiences = load_audiences(settings.audiences_dir)
    enrollment = store.enrollment_for_lead(lead.id)
    if enrollment is not None:
        audience = next((a for a in audiences if a.name == enrollment["audience"]), None)
        enrolled_at = enrollment["enrolled_at"]
    else:
        audience = match_audience(audiences, lead)
        enrolled_at = now
    suppressed = bool(store.suppressed_hashes([email_hash(lead.email, store.secret_key)]))
    never = why_not_emailed(lead, suppressed=suppressed, enrollment=enrollment)
    if audience is None and never is None:
        raise LookupError(f"{email}: no audience matches this lead")
    tz = ZoneInfo(lead.timezone)
    sent = store.sends_of([enrollment["id"]])[enrollment["id"]] if enrollment else {}
    steps = audience.steps if audience is not None else []
    rows = [
        {
            "step": s.key,
            "day": s.delay.days,
            "at": sent[s.key]["claimed_at"].astimezone(tz).isoformat(timespec="minutes"),
            "status": sent[s.key]["status"],
        }
        for s in steps
        if s.key in sent
    ]
    if never is None:
        for step, at in timeline(
            audience.steps,
            enrolled_at=enrolled_at,
            last_email_at=lead.last_email_at,
            sent_keys=set(sent),
            window=audience.send_window,
            tz=tz,
            min_gap=audience.min_gap,
        ):
            rows.append(
                {
                    "step": step.key,
                    "day": step.delay.days,
                    "at": at.astimezone(tz).isoformat(timespec="minutes"),
                    "status": "planned" if enrollment else "if enrolled now",
                }
            )
    if max_day is not None:
        rows = [r for r in rows if r["day"] <= max_day]
    return Timeline(
        email=email,
        audience=audience.name if audience else "",
        steps=rows,
        will_not_email=never,
        consent=consent_record(lead),
    )


def audit_lead(
    store: Store,
    actor: Actor | None,
    verb: str,
    public_id: str,
    now: datetime,
    deleted: dict[str, int] | None = None,
) -> None:
    """The audit row of an action on one lead ("lead.booked", "lead.forget" ...), by public id
    only: the log never holds an address or an anxiety type."""
    from campaign.app.activity import record

    detail = "deleted " + ", ".join(f"{n} {kind}" for kind, n in deleted.items()) if deleted else ""
    record(
        store.engine, actor, f"lead.{verb}", now=now, object_type="lead", object_id=public_id, detail=detail
    )


def mark_booked(store: Store, emails: list[str], now: datetime, actor: Actor | None = None) -> list[str]:
    """Stop the sequences of leads who booked, each audited as `actor` ("lead.booked", by
    public id: the log holds no address); returns the addresses that are no lead."""
    missing = []
    for email in emails:
        lead = store.lead_by_email(email)
        if lead is None or not store.mark_booked(email, now):
            missing.append(email)
        else:
            audit_lead(store, actor, "booked", lead.public_id, now)
    return missing


def forget_lead(store: Store, email: str, now: datetime, actor: Actor | None = None) -> dict[str, int]:
    """Delete everything held about an address, keeping a keyed hash on the suppression list,
    audited as `actor` ("lead.forget", by public id; no id when no lead had the address).
    Returns how many leads, enrollments, sends and events were deleted."""
    lead = store.lead_by_email(email)
    deleted = store.forget_lead(email, now)
    audit_lead(store, actor, "forget", lead.public_id if lead else "", now, deleted=deleted)
    return deleted
