"""The tick flow: campaign.engine.run_tick in one Prefect flow run, a log line per step."""

from __future__ import annotations

import contextvars
import gc
import threading
import time
from functools import partial
from pathlib import Path

from prefect import Flow, get_run_logger
from prefect.artifacts import create_table_artifact
from prefect.settings import get_current_settings
from prefect.states import Failed, State

from campaign.app.ticks import prepare_context, records_tick, tick_report
from campaign.campaigns import PreflightFailed
from campaign.engine import TickReport, enroll_new, reconcile_unknown, send_due_batch
from flows import client, heartbeat

heartbeat.install()  # the run ends when the tick does, not up to 1 s later (flows/heartbeat.py)
client.install()  # one version check and one TLS context per process (flows/client.py)
# What Prefect's import made (~180k objects, kept until the process ends) is left out of the
# cyclic collector's passes: a 20k tick ran one full collection over all of it, ~0.12 s of CPU
# that the plain tick, without Prefect loaded, never pays (bench/RESULTS.md). Only objects alive
# now are frozen; whatever the tick makes is collected as before.
gc.freeze()

STEPS = {
    reconcile_unknown: "reconcile-unknown-sends",
    enroll_new: "enroll-new-leads",
    send_due_batch: "send-due-batch",
}


def logged_step(step, *args) -> TickReport:
    """Run one step of the tick inside the flow run, with a log line of its counts and time.
    Not a task run: each cost the run ~3 state events that the server turns into rows (~0.2 s
    of its CPU on the tick's cores per 20k tick) and the tick a task engine, while the tasks had
    no retries or caching to offer (bench/RESULTS.md). A failing step fails the flow run with
    its traceback, as the failed task did."""
    began = time.perf_counter()
    report = step(*args)
    totals = report.as_dict()["totals"]
    get_run_logger().info("%s: %s in %.2f s", STEPS[step], totals, time.perf_counter() - began)
    return report


class PlainParametersFlow(Flow):
    """A flow whose parameters are plain JSON values (str, int, float, bool, None) stores them
    as they are. Prefect's own serialize_parameters imports FastAPI's jsonable_encoder to
    encode them when the flow is called directly (`campaign tick`): 0.2-0.4 s of each run's
    import for a string that it returns unchanged (bench/RESULTS.md). Any other value still goes
    through Prefect's encoder. A deployment's run (a worker) never calls this: its flow run and
    parameters exist before the flow process starts."""

    def serialize_parameters(self, parameters: dict) -> dict:
        if all(value is None or type(value) in PLAIN for value in parameters.values()):
            return dict(parameters)
        return super().serialize_parameters(parameters)


PLAIN = (str, int, float, bool)


class TickFlow(PlainParametersFlow):
    """Called directly (`campaign tick`, `campaign demo --prefect`), the tick opens its
    database and loads its audiences in a thread while Prefect creates the flow run: 0.1-0.2 s
    of round trips to the server that the tick waited for before (bench/RESULTS.md). A
    deployment's run is started by Prefect's engine, not by this call, and builds it inline."""

    def __call__(self, *args, **kwargs):
        now = args[0] if args else kwargs.get("now")
        if not (now is None or isinstance(now, str)):
            return super().__call__(*args, **kwargs)
        with prepare_context(now):
            return super().__call__(*args, **kwargs)


# persist_result=False: the tick's result is its counts, kept in the tick history and the
# run's artifact; nothing reads a stored copy (nor the steps' reports, which hold the tick's
# context). Without a storage of its own, each run asked the server twice before the tick began
# whether it has a default result storage (to persist by default, and where); the storage named
# here is Prefect's own local default, and nothing is written to it.
@partial(
    TickFlow,
    name="tick",
    log_prints=False,
    persist_result=False,
    result_storage=Path(get_current_settings().results.local_storage_path),
)
def tick(now: str | None = None) -> dict | State:
    """One tick at `now` (ISO 8601; default: the real clock). Returns counts only.

    A refused preflight ends the run Failed with the list of problems as its message, and no
    traceback: it is an answer, not a crash. Calling the flow raises the PreflightFailed."""
    client.share_version_check()  # before the first log line starts the log client
    posted: list[Posting] = []
    try:
        summary = recorded_tick(now, posted)
    except PreflightFailed as refused:
        return Failed(message=str(refused), data=refused)
    finally:
        for posting in posted:  # the run ends with its artifact in
            posting.join()
    for posting in posted:
        posting.warn_if_failed()
    return summary


@records_tick  # the console's tick history: each run, its outcome and counts
def recorded_tick(now: str | None, posted: list[Posting]) -> dict:
    report = tick_report(now, run=logged_step)
    summary = report.as_dict()
    get_run_logger().info("tick at %s: %s", summary["now"], summary["totals"])
    # Posted while the tick history is written (a round trip the run no longer waits for alone).
    posted.append(
        Posting(
            create_table_artifact,
            key="tick-counts",
            table=artifact_rows(report),
            description=f"Tick at {summary['now']}: counts per audience and step (no addresses).",
        )
    )
    return summary


class Posting(threading.Thread):
    """`post(**fields)` in a thread that sees this run's context (its flow run and client)."""

    def __init__(self, post, **fields):
        super().__init__(name="tick-artifact", daemon=True)
        self.error: BaseException | None = None
        run = contextvars.copy_context().run
        self._call = lambda: run(post, **fields)
        self.start()

    def run(self) -> None:
        try:
            self._call()
        except Exception as exc:  # told by the flow: the tick itself went through
            self.error = exc

    def warn_if_failed(self) -> None:
        """The tick's emails went and its history says so: a lost artifact is worth a warning in
        the run's log, not a Failed run that an operator would take for a failed tick."""
        if self.error is not None:
            get_run_logger().warning(
                "the tick's counts could not be posted as an artifact (%s); they are in the tick history",
                type(self.error).__name__,
            )


def artifact_rows(report: TickReport) -> list[dict]:
    keys = sorted(set(report.sent) | set(report.failed) | set(report.skipped) | set(report.unknown))
    rows = [
        {
            "audience": a,
            "step": s,
            "sent": report.sent[(a, s)],
            "failed": report.failed[(a, s)],
            "skipped": report.skipped[(a, s)],
            "unknown": report.unknown[(a, s)],
        }
        for a, s in keys
    ]
    rows += [
        {"audience": a, "step": "(enrolled)", "sent": n, "failed": 0, "skipped": 0, "unknown": 0}
        for a, n in sorted(report.enrolled.items())
    ]
    return rows or [{"audience": "-", "step": "-", "sent": 0, "failed": 0, "skipped": 0, "unknown": 0}]
