"""What the tick flow does to cost less per run than Prefect's defaults, and what it keeps: the
parameters stored as given, the flow-run heartbeat (flows/heartbeat.py), one version check and
one TLS context per process (flows/client.py), the tick's context built while Prefect sets up
the run, and, run for real, the flow run with a log line per step (no task runs) and its
artifact (marked `prefect`). Speed itself: bench/bench_prefect_share.py."""

from __future__ import annotations

import json
import logging
import os
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from prefect import Flow, flow_engine

from campaign.app import ticks
from flows import client as prefect_client
from flows import heartbeat
from flows.tick import tick

NOW = "2026-03-02T15:00:00+00:00"


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


def test_a_tick_process_leaves_what_prefects_import_made_out_of_the_collectors_passes(tmp_path):
    """A flow process imports the tick flow, then runs it: a full collection during the tick
    must not walk the ~180k objects of Prefect's import (one did, ~0.12 s of a 20k tick)."""
    from campaign.settings import PROJECT_ROOT

    code = "import gc, flows.tick; print(gc.get_freeze_count(), len(gc.get_objects()))"
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PREFECT_HOME": str(tmp_path / "prefect")}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    )
    frozen, tracked = map(int, out.stdout.split())
    assert frozen > 50_000 and tracked < frozen / 4, (frozen, tracked)


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


def test_a_version_check_that_passed_counts_for_both_spellings_of_the_api_url():
    import prefect
    from prefect._internal import version_checking
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = "http://127.0.0.1:9/version-check-test/api"

    def checked(u: str) -> bool:
        return version_checking._is_api_version_check_cached((u, prefect.__version__))

    with temporary_settings({PREFECT_API_URL: url}):
        prefect_client.share_version_check()
        assert not checked(url) and not checked(url + "/")  # nothing passed, nothing assumed
        version_checking._cache_api_version_check((url + "/", prefect.__version__))  # sync client's
        prefect_client.share_version_check()
        assert checked(url)  # the events and log clients' spelling


def ssl_context_of(client):
    return client._client._transport._pool._ssl_context


def test_clients_of_an_http_api_share_one_tls_context_and_an_https_api_keeps_its_own():
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient
    from prefect.settings import PREFECT_API_URL, temporary_settings

    for url, shared in (("http://127.0.0.1:9/api", True), ("https://prefect.example.org/api", False)):
        with temporary_settings({PREFECT_API_URL: url}):
            one, two = PrefectClient(url), SyncPrefectClient(url)
            contexts = ssl_context_of(one), ssl_context_of(two)
            assert all(isinstance(c, ssl.SSLContext) for c in contexts)
            assert (contexts[0] is contexts[1]) is shared, url
            assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname


def test_the_shared_context_reads_its_ca_file_only_when_a_tls_connection_needs_it():
    import socket

    import certifi
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = "http://127.0.0.1:9/lazy-ca-test/api"
    prefect_client._verified_context.cache_clear()
    with temporary_settings({PREFECT_API_URL: url}):
        by_socket = ssl_context_of(SyncPrefectClient(url))
        by_bio = prefect_client._verified_context(certifi.where())
    assert by_socket.cert_store_stats()["x509_ca"] == 0 == by_bio.cert_store_stats()["x509_ca"]
    cafiles = by_socket._cafile, certifi.where()  # Prefect's (its setting, else certifi's)
    with socket.socket() as plain:  # httpcore's sync path (no peer: no handshake)
        by_socket.wrap_socket(plain, server_hostname="prefect.example.org").close()
    by_bio.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_hostname="prefect.example.org")
    for context, cafile in zip((by_socket, by_bio), cafiles, strict=True):
        bundle = ssl.create_default_context(cafile=cafile).get_ca_certs()
        assert context.get_ca_certs() == bundle and len(bundle) > 0
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.fixture
def tick_env(settings, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(settings.outbox_dir))
    monkeypatch.setenv("CAMPAIGN_PUBLIC_URL", settings.public_url)
    return settings


@pytest.fixture
def tick_env_each_db(settings, database_url, monkeypatch):
    """tick_env on a SQLite file and on a private PostgreSQL schema."""
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", database_url)
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(settings.outbox_dir))
    monkeypatch.setenv("CAMPAIGN_PUBLIC_URL", settings.public_url)
    return settings


@pytest.fixture
def built_in(monkeypatch) -> list[str]:
    """The names of the threads that built a tick context (the real build, observed)."""
    names: list[str] = []
    build = ticks._tick_context

    def observed(now):
        names.append(threading.current_thread().name)
        return build(now)

    monkeypatch.setattr(ticks, "_tick_context", observed)
    return names


def test_the_context_prepared_while_prefect_sets_up_is_taken_once(tick_env_each_db, built_in):
    warmed: list[str] = []
    with ticks.prepare_context(NOW, first=lambda: warmed.append(threading.current_thread().name)):
        first = ticks.tick_report(NOW)
        again = ticks.tick_report(NOW)  # a retry of the flow builds its own
    assert built_in == ["tick-context", "MainThread"] and warmed == ["tick-context"]
    assert first.as_dict()["now"] == again.as_dict()["now"]
    with ticks.prepare_context(NOW):
        ticks.tick_report("2026-03-02T16:00:00+00:00")  # another moment: not this context
    assert sorted(built_in[2:]) == ["MainThread", "tick-context"]


def test_a_prepared_context_that_fails_fails_the_tick_as_building_it_inline_does(
    tick_env, monkeypatch, tmp_path
):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", f"sqlite:///{blocked}/campaign.db")
    with pytest.raises(OSError) as inline:
        ticks.tick_report(NOW)
    with ticks.prepare_context(NOW), pytest.raises(OSError) as prepared:
        ticks.tick_report(NOW)
    assert type(prepared.value) is type(inline.value) and str(prepared.value) == str(inline.value)


def test_an_untaken_prepared_context_is_closed(tick_env, monkeypatch):
    from campaign.store import Store

    built: list = []
    build = ticks._tick_context
    monkeypatch.setattr(ticks, "_tick_context", lambda now: built.append(build(now)) or built[-1])
    closed: list = []
    close = Store.close
    monkeypatch.setattr(Store, "close", lambda self: (closed.append(self), close(self))[1])
    with ticks.prepare_context(NOW):
        pass  # the flow run never reached the tick
    assert len(built) == 1 and closed == [built[0].store]


@pytest.mark.prefect
def test_the_tick_run_keeps_its_parameters_states_a_log_line_per_step_and_no_task_runs(
    prefect_harness, settings, monkeypatch, tmp_path, built_in
):
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        TaskRunFilter,
        TaskRunFilterFlowRunId,
    )

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
        lines = step_log_lines(client, run.id, 3)  # logs reach the server in batches
        tasks = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[run.id]))
        )
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run.id]))
        )
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert artifact.key == "tick-counts" and {"audience", "step", "sent"} <= set(rows[0])
    assert sum(row["sent"] for row in rows if row["step"] != "(enrolled)") == 2
    assert built_in == ["tick-context"]  # the tick's context was built during Prefect's setup
    assert [line.split(":", 1)[0] for line in lines] == [
        "reconcile-unknown-sends",
        "enroll-new-leads",
        "send-due-batch",  # one batch: 2 emails
    ]
    assert "'sent': 2" in lines[2] and "@" not in " ".join(lines)  # counts, never an address
    assert tasks == []  # each would cost the server state events and rows


def step_log_lines(client, flow_run_id, expected: int, wait: float = 60.0) -> list[str]:
    """The flow run's log lines of its steps once `expected` of them are in (or what there is
    after `wait` seconds, for the assertion to show)."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    found: list[str] = []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
            sort=LogSort.TIMESTAMP_ASC,
        )
        found = [log.message for log in logs if log.message.startswith(STEP_NAMES)]
        if len(found) >= expected:
            break
        time.sleep(0.2)
    return found


STEP_NAMES = ("reconcile-unknown-sends", "enroll-new-leads", "send-due-batch")


@pytest.mark.prefect
def test_a_lost_artifact_is_a_warning_and_the_tick_run_completes(
    prefect_harness, tick_env, monkeypatch, caplog
):
    """The artifact is posted in a thread: a failed post must not turn a tick whose emails went
    (and whose history says so) into a Failed run."""
    import flows.tick as tick_module

    def refused(**_fields):
        raise ConnectionError("the Prefect server went away")

    monkeypatch.setattr(tick_module, "create_table_artifact", refused)
    with caplog.at_level(logging.WARNING):
        state = tick(now="2026-03-02T15:00:00+00:00", return_state=True)
    assert state.is_completed(), state
    assert "counts could not be posted as an artifact (ConnectionError)" in caplog.text
