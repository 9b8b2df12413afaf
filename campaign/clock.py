"""Times given as text: a command's --now or --start (as a coordinator types them), a flow's
`now` parameter (ISO 8601)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def parse_when(value: str | None) -> datetime:
    """An ISO 8601 time as an aware datetime (a naive one is UTC); empty or None: the real clock.
    A value that is not ISO 8601 raises ValueError saying how to write it."""
    if not value:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an ISO 8601 time; write it like 2026-03-02T14:00:00-05:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


DAY_STARTS_AT = time(9)  # a plain date means 09:00 clinic time: when the shipped send windows open


def moment_from_text(text: str, *, now: datetime, tz: ZoneInfo) -> datetime:
    """A time as a coordinator types it: ISO 8601 (a time without an offset is UTC), a plain
    date YYYY-MM-DD (09:00 in the clinic's time zone `tz`), or now, today or tomorrow (today and
    tomorrow also at 09:00 clinic time). Raises ValueError for anything else."""
    word = text.strip().lower()
    if word == "now":
        return now
    if word in ("today", "tomorrow"):
        day = now.astimezone(tz).date() + timedelta(days=1 if word == "tomorrow" else 0)
        return datetime.combine(day, DAY_STARTS_AT, tz)
    try:
        return datetime.combine(date.fromisoformat(word), DAY_STARTS_AT, tz)
    except ValueError:
        pass
    moment = datetime.fromisoformat(text.strip())  # ValueError when it is not ISO 8601 either
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
