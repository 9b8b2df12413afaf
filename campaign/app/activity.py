"""The activity log as the console reads it: filters (who, what, which days), pages by key, and
the CSV download, itself recorded in the log."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from campaign.accounts import Actor, AuditEntry, AuditPage, audit, list_audit
from campaign.csv_export import csv_text
from campaign.store.accounts import AccountStore

AUDIT_COLUMNS = ("id", "at", "actor", "role", "client", "action", "object_type", "object_id", "detail")
EXPORT_PAGE = 1000


def record(
    engine,
    actor: Actor | None,
    action: str,
    *,
    now: datetime,
    object_type: str = "",
    object_id: str = "",
    detail: str = "",
) -> None:
    """The audit row of a use case done by `actor` (the console's user, an API token, or the
    command line's CLI actor), written by the use case itself so each caller gets it once.
    `actor` None: not audited (the demo, tests)."""
    if actor is not None:
        audit(
            AccountStore(engine),
            actor,
            action,
            now=now,
            object_type=object_type,
            object_id=object_id,
            detail=detail,
        )


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    action: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive

    def describe(self) -> str:
        parts = [f"{name}={value}" for name, value in vars(self).items() if value is not None]
        return ", ".join(str(p) for p in parts) or "everything"


def _day(text: str, label: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{label}: {text!r} is not a date; use YYYY-MM-DD, e.g. 2026-03-02") from None


def audit_filter(actor: str, action: str, since: str, until: str, timezone: str) -> AuditFilter:
    """A filter from a form's text: days are whole days in the clinic's time zone (`until`
    includes its day). Raises ValueError naming the field for a date that is not one."""
    tz = ZoneInfo(timezone)
    start = _day(since, "From") if since else None
    end = _day(until, "To") if until else None
    if start and end and end < start:
        raise ValueError(f"To ({end}) is before From ({start}).")
    return AuditFilter(
        actor=actor.strip().casefold() or None,
        action=action.strip() or None,
        since=datetime.combine(start, time(0), tzinfo=tz) if start else None,
        until=datetime.combine(end + timedelta(days=1), time(0), tzinfo=tz) if end else None,
    )


def activity_page(
    accounts: AccountStore, wanted: AuditFilter, before_id: int | None, limit: int = 50
) -> AuditPage:
    return list_audit(
        accounts,
        limit=limit,
        before_id=before_id,
        actor=wanted.actor,
        action=wanted.action,
        since=wanted.since,
        until=wanted.until,
    )


def _all_entries(accounts: AccountStore, wanted: AuditFilter) -> Iterator[AuditEntry]:
    before = None
    while True:
        page = activity_page(accounts, wanted, before, EXPORT_PAGE)
        yield from page.entries
        if page.next_before_id is None:
            return
        before = page.next_before_id


def export_activity_csv(accounts: AccountStore, wanted: AuditFilter, *, actor: Actor, now: datetime) -> str:
    """Every entry the filter matches, newest first, as formula-safe CSV; the download is
    recorded in the log (who, when, which filter, how many rows)."""
    rows = [{**vars(entry), "at": entry.at.isoformat()} for entry in _all_entries(accounts, wanted)]
    text = csv_text(AUDIT_COLUMNS, rows)
    audit(accounts, actor, "activity.export", now=now, detail=f"{len(rows)} rows; {wanted.describe()}")
    return text
