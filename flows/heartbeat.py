"""Prefect 3.9's flow-run heartbeat, made to stop as soon as the run ends.

Every flow run starts a thread that emits a `prefect.flow-run.heartbeat` event every 180 s
(PREFECT_FLOWS_HEARTBEAT_FREQUENCY; an automation can mark a run whose heartbeats stop Crashed).
Prefect's thread sleeps in steps of one second and the run waits for it when it ends, so every
run ended 0 to 1 s late (0.5 s on average: a sixth of a 20,000-email tick on a quiet machine,
bench/RESULTS.md), long after its state was Completed. This is the same heartbeat, the same
events at the same interval, with the sleep an Event.wait that the end of the run wakes.

`install()` puts it in place of prefect.flow_engine._send_heartbeats (which the flow engine
looks up on each run) on the Prefect versions it was copied from; on any other version it does
nothing and Prefect's own heartbeat runs.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Generator
from contextlib import contextmanager

import prefect
from prefect import flow_engine

from flows import client

VERSIONS = ("3.9.",)  # pyproject.toml: prefect>=3.9,<3.10


@contextmanager
def send_heartbeats(engine, join_on_exit: bool = True) -> Generator[None, None, None]:
    """prefect.flow_engine._send_heartbeats (3.9.1), waking at once when the block ends."""
    # Its first event starts Prefect's events client, whose version check is the one the run's
    # client has just made (flows/client.py).
    client.share_version_check()
    seconds = engine.heartbeat_seconds
    if seconds is None:
        yield
        return
    seconds = max(seconds, flow_engine.MINIMUM_HEARTBEAT_INTERVAL)
    resource, related = engine._build_heartbeat_event_template()
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            state = engine.flow_run.state if engine.flow_run else None
            if state and state.is_final():
                engine.logger.debug("Flow run in terminal state, stopping heartbeat")
                return
            try:
                engine._emit_flow_run_heartbeat(resource, related)
            except Exception:
                engine.logger.debug("Failed to emit heartbeat", exc_info=True)
            if stop.wait(seconds):
                return

    # The thread sees this context's settings (Prefect's reason: its PREFECT_API_URL).
    thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,), daemon=True)
    thread.start()
    engine.logger.debug("Started flow run heartbeat context")
    try:
        yield
    finally:
        stop.set()
        if join_on_exit:
            thread.join(timeout=2)
        engine.logger.debug("Stopped flow run heartbeat context")


def install() -> bool:
    """Use send_heartbeats for this process's flow runs; False (Prefect's own) on a Prefect
    version it was not copied from."""
    if not prefect.__version__.startswith(VERSIONS) or not hasattr(flow_engine, "_send_heartbeats"):
        return False
    flow_engine._send_heartbeats = send_heartbeats
    return True
