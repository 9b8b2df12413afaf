"""The tick history: each run of the tick flow leaves a row (when, ok/failed/refused, counts), so
the console's overview can show the last ticks. Counts and a scrubbed error only."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import TYPE_CHECKING

from campaign.store.ticks import TickRun, TickRuns

if TYPE_CHECKING:
    from campaign.engine import Context, TickReport
    from campaign.store import Store

log = logging.getLogger("campaign.ticks")

_ADDRESS = re.compile(r"[^\s'\"<>(),;:]+@[^\s'\"<>(),;:]+")
MAX_ERROR = 1000


def scrub_error(text: str) -> str:
    """An error message fit for the history: addresses replaced, one line, bounded."""
    return " ".join(_ADDRESS.sub("[address]", text).split())[:MAX_ERROR]


def tick_counts(report: TickReport | dict | None) -> dict:
    """The numbers worth keeping from a TickReport (or its as_dict()): totals, finished,
    exited and reconciled unknown sends."""
    if report is None:
        return {}
    summary = report if isinstance(report, dict) else report.as_dict()
    counts = dict(summary.get("totals", {}))
    counts["finished"] = summary.get("finished", 0)
    counts["exited"] = sum(summary.get("exited", {}).values())
    for name, n in summary.get("reconciled", {}).items():
        counts[f"unknown_{name}"] = n
    return counts


def record_tick(
    store: Store,
    report: TickReport | dict | None,
    *,
    started_at: datetime,
    finished_at: datetime | None = None,
    outcome: str = "ok",
    error: str = "",
) -> int:
    """Adds one run to the tick history; returns its id."""
    return TickRuns(store.engine).add(
        started_at=started_at,
        finished_at=finished_at or started_at,
        outcome=outcome,
        counts=tick_counts(report),
        error=scrub_error(error),
    )


def recent_ticks(store: Store, limit: int = 10) -> list[TickRun]:
    return TickRuns(store.engine).recent(limit)


def _started_at(now: str | None) -> datetime:
    if not now:
        return datetime.now(UTC)
    moment = datetime.fromisoformat(now)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def records_tick(run: Callable[..., dict]) -> Callable[..., dict]:
    """Wraps the tick entry point `run(now=None) -> TickReport.as_dict()` so every run is
    recorded: ok, refused (the live-send preflight) or failed, with the error. The times are the
    tick's clock (`now`, simulated in the demo) plus the real time it took. Recording never
    breaks a tick: a failure to record is logged and the tick's own result stands."""
    from campaign.campaigns import PreflightFailed

    @wraps(run)
    def recorded(now: str | None = None, *args, **kwargs) -> dict:
        started_at, began = _started_at(now), time.monotonic()

        def save(summary, outcome: str, error: str = "") -> None:
            finished_at = started_at + timedelta(seconds=time.monotonic() - began)
            try:
                from campaign.settings import get_settings
                from campaign.store import Store

                settings = get_settings()
                # The tick has migrated the database already (or could not open it at all).
                url, key = settings.database_url, settings.secret_key.get_secret_value()
                with Store.open(url, secret_key=key, migrate=False) as store:
                    record_tick(
                        store,
                        summary,
                        started_at=started_at,
                        finished_at=finished_at,
                        outcome=outcome,
                        error=error,
                    )
            except Exception as exc:  # the history is a convenience; the tick's result matters
                log.warning("tick history not recorded: %s", type(exc).__name__)

        try:
            summary = run(now, *args, **kwargs)
        except PreflightFailed as exc:
            save(None, "refused", "; ".join(exc.problems))
            raise
        except Exception as exc:
            save(None, "failed", f"{type(exc).__name__}: {exc}")
            raise
        save(summary, "ok")
        return summary

    return recorded


# ---- running a tick: as a Prefect flow, or plainly in this process ----------------------------

PLAIN_NOTE = (
    "No Prefect server configured: ran the tick in this process "
    "(set PREFECT_API_URL to run it as a Prefect flow)."
)
CHOSEN_PLAIN_NOTE = "Ran the tick in this process (--no-prefect), not as a Prefect flow."


def tick_report(now: str | None = None, run: Callable[..., TickReport] | None = None) -> TickReport:
    """One tick at `now` (ISO 8601; default: the real clock) on the configured database and
    transport: the live-send preflight, then campaign.engine.run_tick. `run` runs each step
    (default: a plain call; the tick flow passes one that logs each step to its flow run)."""
    from campaign.clock import parse_when
    from campaign.engine import plain, run_tick

    moment = parse_when(now)
    ctx = _taken(now) or _tick_context(now)
    try:
        return run_tick(ctx, moment, run=run or plain)
    finally:
        ctx.store.close()


def _tick_context(now: str | None) -> Context:
    """The tick's context: settings, the database (migrated), audiences, renderer, transport."""
    from campaign.clock import parse_when
    from campaign.runtime import build_context
    from campaign.settings import get_settings

    with _BUILDING:  # alembic's migration context is per process: one upgrade at a time
        return build_context(get_settings(), now=parse_when(now) if now else None)


_BUILDING = threading.Lock()


class _Prepared:
    """A tick context being built in a thread, for the next tick_report at the same `now`."""

    def __init__(self, now: str | None, first: Callable[[], None] | None = None):
        self.now, self.first, self.ctx, self.error = now, first, None, None
        self.taken = False
        self.thread = threading.Thread(target=self._build, name="tick-context", daemon=True)
        self.thread.start()

    def _build(self) -> None:
        try:
            if self.first is not None:
                self.first()
            self.ctx = _tick_context(self.now)
        except BaseException as exc:  # raised where the tick would have raised it
            self.error = exc


_PREPARED: ContextVar[_Prepared | None] = ContextVar("campaign_prepared_tick", default=None)


def _taken(now: str | None) -> Context | None:
    """The context prepare_context built for this `now`, once (a retry builds its own)."""
    prepared = _PREPARED.get()
    if prepared is None or prepared.taken or prepared.now != now:
        return None
    prepared.taken = True
    prepared.thread.join()
    if prepared.error is not None:
        raise prepared.error
    return prepared.ctx


@contextmanager
def prepare_context(now: str | None, first: Callable[[], None] | None = None) -> Iterator[None]:
    """Builds the tick's context (opening and migrating the database, loading the audiences,
    templates and transport) in a thread while the caller does something else, here Prefect
    creating the flow run (round trips to its server): the tick_report inside the block takes
    it instead of building its own. Nothing is sent before tick_report runs the preflight.
    A context left untaken (the flow run never started) is closed at the end of the block.
    `first()`, if given, runs in the thread before the build (the flow's own warm-up)."""
    prepared = _Prepared(now, first)
    token = _PREPARED.set(prepared)
    try:
        yield
    finally:
        _PREPARED.reset(token)
        if not prepared.taken:
            prepared.thread.join()
            if prepared.ctx is not None:
                prepared.ctx.store.close()


@records_tick  # the same tick history as the flow's runs
def plain_tick(now: str | None = None) -> dict:
    """The tick flow's sequence without Prefect: no server, no task runs. Returns counts only."""
    return tick_report(now).as_dict()


def wants_flow(prefect: bool | None = None) -> bool:
    """Run the tick as a Prefect flow? `prefect` is the user's choice (--prefect/--no-prefect);
    without one, only when a Prefect server is configured (else a flow starts a temporary one)."""
    if prefect is not None:
        return prefect
    from campaign.prefect_env import configured_api_url

    return configured_api_url() is not None


def tick_runner(prefect: bool | None = None) -> tuple[Callable[[str | None], dict], str | None]:
    """`(tick(now) -> summary, note)`: the tick flow when wanted (see wants_flow), else
    plain_tick with the one-line note that says so (None for the flow)."""
    if wants_flow(prefect):
        from flows.tick import tick as tick_flow

        return (lambda now: tick_flow(now=now)), None
    return plain_tick, PLAIN_NOTE if prefect is None else CHOSEN_PLAIN_NOTE
