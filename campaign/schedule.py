"""When is a step due? Pure functions of (enrollment facts, audience, now).

All instants are timezone-aware UTC datetimes. Send windows are read in the lead's local time
through zoneinfo, so they hold across DST changes: "9:00" is 9:00 on the lead's wall clock
whether that is 13:00 or 14:00 UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from campaign.models import SendWindow, Step

UTC = UTC


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one (the clock is always explicit)")
    return moment.astimezone(UTC)


def in_window(moment: datetime, window: SendWindow, tz: ZoneInfo) -> bool:
    local = moment.astimezone(tz)
    hour = local.hour + local.minute / 60 + local.second / 3600
    return local.isoweekday() in window.weekdays and window.start_hour <= hour < window.end_hour


def next_window_open(moment: datetime, window: SendWindow, tz: ZoneInfo) -> datetime:
    """The earliest instant >= moment inside the window (moment itself if it already is)."""
    moment = as_utc(moment)
    if in_window(moment, window, tz):
        return moment
    local_day = moment.astimezone(tz).date()
    for offset in range(0, 8):
        day = local_day + timedelta(days=offset)
        if day.isoweekday() not in window.weekdays:
            continue
        # A wall-clock time made aware in tz; a start hour inside a DST gap maps forward.
        opening = datetime.combine(day, time(window.start_hour), tzinfo=tz).astimezone(UTC)
        if opening >= moment:
            return opening
    raise ValueError(f"send window {window} never opens; give it at least one weekday")


@dataclass(frozen=True)
class Plan:
    """What an enrollment should do at `now`: send `step` (due now), or wait until `next_at`,
    or nothing is left (`finished`)."""

    step: Step | None
    next_at: datetime | None

    @property
    def finished(self) -> bool:
        return self.step is None and self.next_at is None


def step_time(
    step: Step,
    *,
    enrolled_at: datetime,
    last_email_at: datetime | None,
    window: SendWindow,
    tz: ZoneInfo,
    min_gap: timedelta,
) -> datetime:
    """The earliest send time of `step`: its delay after enrollment, the gap after the last
    email to this lead, then the next moment the lead's send window is open."""
    earliest = as_utc(enrolled_at) + step.delay
    if last_email_at is not None:
        earliest = max(earliest, as_utc(last_email_at) + min_gap)
    return next_window_open(earliest, window, tz)


def plan(
    steps: tuple[Step, ...],
    sent_keys: set[str],
    *,
    enrolled_at: datetime,
    last_email_at: datetime | None,
    now: datetime,
    window: SendWindow,
    tz: ZoneInfo,
    min_gap: timedelta,
) -> Plan:
    """The next step by sequence order that this lead has not received (by key, so a live edit
    neither repeats nor resurrects a step), and whether it is due at `now`."""
    pending = [s for s in steps if s.key not in sent_keys]
    if not pending:
        return Plan(step=None, next_at=None)
    step = pending[0]
    at = step_time(
        step, enrolled_at=enrolled_at, last_email_at=last_email_at, window=window, tz=tz, min_gap=min_gap
    )
    if at > as_utc(now):
        return Plan(step=None, next_at=at)
    if not in_window(now, window, tz):  # overdue, but a late tick must not send after hours
        return Plan(step=None, next_at=next_window_open(now, window, tz))
    return Plan(step=step, next_at=at)


def timeline(
    steps: tuple[Step, ...],
    *,
    enrolled_at: datetime,
    last_email_at: datetime | None,
    sent_keys: set[str],
    window: SendWindow,
    tz: ZoneInfo,
    min_gap: timedelta,
) -> list[tuple[Step, datetime]]:
    """When each remaining step would go, if every tick ran on time."""
    result = []
    for step in steps:
        if step.key in sent_keys:
            continue
        at = step_time(
            step, enrolled_at=enrolled_at, last_email_at=last_email_at, window=window, tz=tz, min_gap=min_gap
        )
        result.append((step, at))
        last_email_at = at
    return result
