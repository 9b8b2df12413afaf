"""What the tick flow does to cost less per run than Prefect's defaults, and what it keeps: the
parameters stored as given, the flow-run heartbeat (flows/heartbeat.py), and, run for real, the
flow run with one task run per step (marked `prefect`). Speed itself: bench/bench_prefect_share.py."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

import pytest
from prefect import Flow, flow_engine

from flows import heartbeat
from flows.tick import tick


def test_plain_parameters_are_stored_as_given_and_others_as_prefect_encodes_them():
    assert tick.serialize_parameters({"now": "2026-03-02T15:00:00+00:00"}) == {
        "now": "2026-03-02T15:00:00+00:00"
    }
    assert tick.serialize_parameters({"now": None}) == {"now": None}
    moment = {"now": datetime(2026, 3, 2, 15, tzinfo=UTC)}
    assert tick.serialize_parameters(moment) == Flow.serialize_parameters(tick, moment)


def test_the_tick_flows_process_uses_the_heartbeat_that_stops_with_the_run():
    assert flow_engine._send_heartbeats is heartbeat.send_heartbeats


class Engine:
    """The part of Prefect's flow run engine that the heartbeat uses."""

    logger = logging.getLogger("test.heartbeat")

    def __init__(self, seconds: int | None):
        self.heartbeat_seconds = seconds
        self.flow_run = None
        self.beats: list[tuple] = []
        self.beaten = threading.Event()
        self.thread: threading.Thread | None = None

    def _build_heartbeat_event_template(self):
        return {"prefect.resource.id": "prefect.flow-run.x"}, []

    def _emit_flow_run_heartbeat(self, resource, related):
        self.beats.append((resource, related))
        self.thread = threading.current_thread()
        self.beaten.set()


def test_a_heartbeat_goes_when_the_run_starts_and_its_thread_ends_with_the_run():
    engine = Engine(180)
    with heartbeat.send_heartbeats(engine):
        assert engine.beaten.wait(30)
        assert engine.thread is not threading.current_thread() and engine.thread.is_alive()
    assert engine.beats == [({"prefect.resource.id": "prefect.flow-run.x"}, [])]
    assert not engine.thread.is_alive()


def test_no_heartbeat_when_prefect_has_none_configured():
    engine = Engine(None)
    with heartbeat.send_heartbeats(engine):
        pass
    assert engine.beats == [] and engine.thread is None


@pytest.mark.prefect
def test_the_tick_run_keeps_its_parameters_states_and_a_task_run_per_step(
    prefect_harness, settings, monkeypatch, tmp_path
):
    from prefect import get_client

    from campaign.settings import PROJECT_ROOT
    from flows.import_leads import import_leads

    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(settings.outbox_dir))
    monkeypatch.setenv("CAMPAIGN_PUBLIC_URL", settings.public_url)
    leads_csv = tmp_path / "small_leads.csv"
    leads_csv.write_bytes((PROJECT_ROOT / "tests" / "data" / "small_leads.csv").read_bytes())
    import_leads(str(leads_csv))

    state = tick(now="2026-03-02T15:00:00+00:00", return_state=True)
    assert state.is_completed() and state.result()["totals"]["sent"] == 2
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(state.state_details.flow_run_id)
        assert run.parameters == {"now": "2026-03-02T15:00:00+00:00"} and run.state.is_completed()
        tasks = completed_task_runs(client, run.id, 3)  # task runs reach the server as events
    assert sorted(t.name.rsplit("-", 1)[0] for t in tasks) == [
        "enroll-new-leads",
        "reconcile-unknown-sends",
        "send-due-batch",  # one batch: 2 emails
    ]


def completed_task_runs(client, flow_run_id, expected: int, wait: float = 60.0) -> list:
    """The flow run's task runs once `expected` of them are Completed (or what there is after
    `wait` seconds, for the assertion to show)."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    found: list = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        runs = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
        )
        found = [r for r in runs if r.state and r.state.is_completed()]
        if len(found) >= expected:
            break
        time.sleep(0.2)
    return found
