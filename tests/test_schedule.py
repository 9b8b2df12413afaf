"""Due-step timing: delays, send windows in the lead's time zone, DST, the minimum gap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from campaign.models import SendWindow, Step
from campaign.schedule import in_window, next_window_open, plan, timeline

NY = ZoneInfo("America/New_York")
LA = ZoneInfo("America/Los_Angeles")
WINDOW = SendWindow()  # 9-18, Monday to Saturday
GAP = timedelta(hours=48)
STEPS = (
    Step(key="welcome", delay=timedelta(0), template="t/w"),
    Step(key="brain", delay=timedelta(days=3), template="t/b"),
    Step(key="ketamine", delay=timedelta(days=7), template="t/k"),
)


def local(tz, *args) -> datetime:
    return datetime(*args, tzinfo=tz).astimezone(UTC)


def test_due_inside_window_is_sent_now():
    now = local(NY, 2026, 3, 2, 10, 0)  # Monday 10:00
    p = plan(STEPS, set(), enrolled_at=now, last_email_at=None, now=now, window=WINDOW, tz=NY, min_gap=GAP)
    assert p.step.key == "welcome"


def test_before_window_waits_for_nine_local():
    now = local(NY, 2026, 3, 2, 7, 30)
    p = plan(STEPS, set(), enrolled_at=now, last_email_at=None, now=now, window=WINDOW, tz=NY, min_gap=GAP)
    assert p.step is None and p.next_at == local(NY, 2026, 3, 2, 9, 0)


def test_window_is_the_leads_local_time_not_the_clinics():
    now = local(NY, 2026, 3, 2, 10, 0)  # 7:00 in Los Angeles
    p = plan(STEPS, set(), enrolled_at=now, last_email_at=None, now=now, window=WINDOW, tz=LA, min_gap=GAP)
    assert p.step is None and p.next_at == local(LA, 2026, 3, 2, 9, 0)


def test_sunday_waits_for_monday():
    saturday_evening = local(NY, 2026, 3, 7, 18, 30)
    assert next_window_open(saturday_evening, WINDOW, NY) == local(NY, 2026, 3, 9, 9, 0)


def test_overdue_step_at_a_late_tick_waits_for_the_window():
    enrolled = local(NY, 2026, 3, 2, 10, 0)
    night = local(NY, 2026, 3, 5, 22, 0)
    p = plan(
        STEPS,
        {"welcome"},
        enrolled_at=enrolled,
        last_email_at=enrolled,
        now=night,
        window=WINDOW,
        tz=NY,
        min_gap=GAP,
    )
    assert p.step is None and p.next_at == local(NY, 2026, 3, 6, 9, 0)


def test_minimum_gap_holds_even_when_steps_are_overdue():
    enrolled = local(NY, 2026, 3, 2, 10, 0)
    last = local(NY, 2026, 3, 12, 10, 0)  # ticks stopped; both later steps are overdue
    now = local(NY, 2026, 3, 12, 11, 0)
    p = plan(
        STEPS,
        {"welcome"},
        enrolled_at=enrolled,
        last_email_at=last,
        now=now,
        window=WINDOW,
        tz=NY,
        min_gap=GAP,
    )
    assert p.step is None and p.next_at == last + GAP


def test_window_holds_across_spring_forward():
    # DST starts Sunday 2026-03-08 in New York; 9:00 local is 14:00 UTC before and 13:00 UTC after.
    before = next_window_open(local(NY, 2026, 3, 6, 20, 0), WINDOW, NY)
    after = next_window_open(local(NY, 2026, 3, 8, 20, 0), WINDOW, NY)
    assert before == datetime(2026, 3, 7, 14, 0, tzinfo=UTC)
    assert after == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)
    assert after.astimezone(NY).hour == 9


def test_window_holds_across_fall_back():
    opening = next_window_open(local(NY, 2026, 10, 31, 20, 0), WINDOW, NY)  # Sat evening, DST ends Sunday
    assert opening == datetime(2026, 11, 2, 14, 0, tzinfo=UTC) and opening.astimezone(NY).hour == 9


def test_gap_is_48_real_hours_across_dst():
    last = local(NY, 2026, 3, 7, 10, 0)  # Saturday, before spring-forward
    p = plan(
        STEPS,
        {"welcome"},
        enrolled_at=last - timedelta(days=3),
        last_email_at=last,
        now=last,
        window=WINDOW,
        tz=NY,
        min_gap=GAP,
    )
    assert p.next_at - last >= GAP and in_window(p.next_at, WINDOW, NY)


def test_removed_or_received_steps_are_skipped_by_key():
    now = local(NY, 2026, 3, 20, 10, 0)
    enrolled = local(NY, 2026, 3, 2, 10, 0)
    p = plan(
        STEPS,
        {"welcome", "brain"},
        enrolled_at=enrolled,
        last_email_at=enrolled,
        now=now,
        window=WINDOW,
        tz=NY,
        min_gap=GAP,
    )
    assert p.step.key == "ketamine"
    done = plan(
        STEPS,
        {"welcome", "brain", "ketamine", "gone"},
        enrolled_at=enrolled,
        last_email_at=now,
        now=now,
        window=WINDOW,
        tz=NY,
        min_gap=GAP,
    )
    assert done.finished


def test_timeline_spaces_every_step_by_the_gap_and_window():
    enrolled = local(NY, 2026, 3, 2, 10, 0)
    times = [
        at
        for _, at in timeline(
            STEPS,
            enrolled_at=enrolled,
            last_email_at=None,
            sent_keys=set(),
            window=WINDOW,
            tz=NY,
            min_gap=GAP,
        )
    ]
    assert times[0] == enrolled
    assert all(b - a >= GAP for a, b in zip(times, times[1:]))
    assert all(in_window(t, WINDOW, NY) for t in times)
