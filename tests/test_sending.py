"""The engine's send policy: the rate ceiling and the failure limit, the same for every
transport. Pure parts with a fake clock; the outbox through a real tick on a real SQLite file."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from campaign.delivery import TooManyFailures
from campaign.engine import run_tick
from campaign.gc_pause import gc_paused
from campaign.models import LeadIn, SendResult, SendStatus
from campaign.runtime import build_context
from campaign.sending import FailureLimit, Pacer

MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def result(i: int, status: SendStatus, error: str | None = None) -> SendResult:
    return SendResult(send_id=f"snd_{i}", status=status, error=error)


# -- pacing ---------------------------------------------------------------------------------


def test_pacer_spaces_emails_evenly():
    clock = FakeClock()
    pacer = Pacer(5, clock=clock, sleep=clock.sleep)
    for _ in range(6):
        pacer.wait()  # all at the same instant: each waits one more slot
    assert clock.sleeps == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


def test_pacer_without_a_ceiling_never_waits():
    clock = FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        pacer.wait()
    assert clock.sleeps == []


def test_pacer_is_thread_safe():
    clock = FakeClock()
    pacer = Pacer(10, clock=clock, sleep=clock.sleep)
    threads = [threading.Thread(target=lambda: [pacer.wait() for _ in range(25)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 100 slots handed out, no two alike: waits 0.1, 0.2, ... 9.9 in some order.
    assert sorted(round(s, 6) for s in clock.sleeps) == [round(0.1 * i, 6) for i in range(1, 100)]


def test_pacer_refuses_a_ceiling_that_is_not_positive():
    with pytest.raises(ValueError):
        Pacer(0)


# -- the failure limit ----------------------------------------------------------------------


def test_the_limit_is_reached_by_failed_or_unknown_sends_in_a_row():
    limit = FailureLimit(3)
    limit.count(result(0, SendStatus.failed, "400: bad"))
    limit.count(result(1, SendStatus.unknown, "timed out"))
    with pytest.raises(TooManyFailures, match=r"3 consecutive send failures \(last: retryable: 503"):
        limit.count(result(2, SendStatus.failed, "retryable: 503: Service Unavailable"))


def test_a_sent_email_resets_the_count_and_a_skip_leaves_it():
    limit = FailureLimit(3)
    for status in (SendStatus.failed, SendStatus.failed, SendStatus.sent, SendStatus.failed):
        limit.count(result(0, status))
    limit.count(result(1, SendStatus.skipped))
    limit.count(result(2, SendStatus.failed))
    assert limit.in_a_row == 2
    # The count runs across batches: one more failure, in any later batch, reaches it.
    with pytest.raises(TooManyFailures):
        limit.count(result(3, SendStatus.unknown))


def test_no_limit_never_stops():
    limit = FailureLimit(None)
    for i in range(1000):
        limit.count(result(i, SendStatus.failed))
    assert limit.in_a_row == 1000


# -- the same policy for the outbox ---------------------------------------------------------


def test_the_outbox_gets_the_same_pause_after_failures(make_settings):
    # An unencoded international domain cannot go in the List-Unsubscribe header (printable
    # ASCII only): the outbox fails every email, a real failure of its own.
    settings = make_settings(max_consecutive_failures=3, public_url="https://klinik-müller.example")
    ctx = build_context(settings, now=MONDAY_10)
    ctx.store.upsert_leads([LeadIn(email=f"lead{i}@example.com", consent=True) for i in range(8)], MONDAY_10)

    report = run_tick(ctx, MONDAY_10)
    campaign = ctx.store.campaign("evergreen")
    assert campaign["state"] == "paused"
    assert "paused after 3 consecutive send failures (last: outbox:" in campaign["paused_reason"]
    assert "List-Unsubscribe" in campaign["paused_reason"]
    assert report.paused and sum(report.failed.values()) == 3
    # The batch stopped at the third failure: the five after it were released, not attempted.
    assert Counter(row["status"] for row in ctx.store.ledger()) == Counter(failed=3)
    assert list(settings.outbox_dir.glob("*.eml")) == []


def test_the_outbox_is_paced_by_the_same_ceiling(make_settings):
    settings = make_settings(max_per_second=20)
    ctx = build_context(settings, now=MONDAY_10)
    ctx.store.upsert_leads([LeadIn(email=f"ok{i}@example.com", consent=True) for i in range(6)], MONDAY_10)
    started = time.monotonic()
    assert sum(run_tick(ctx, MONDAY_10).sent.values()) == 6
    assert time.monotonic() - started >= 5 / 20  # six emails at 20/s: at least five intervals


def test_the_collector_waits_while_steps_run_and_comes_back_after_the_last():
    import gc

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # another step of the process (tick workers) overlapping
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()
