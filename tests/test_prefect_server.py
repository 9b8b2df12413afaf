"""Integration: a real `prefect server`, `prefect deploy --all` from prefect.yaml, a process
worker, and a triggered tick run whose emails land in the outbox. About a minute."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from campaign.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, limit: float = 150) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"prefect server not healthy at {url} after {limit} s")


@contextlib.contextmanager
def prefect_server(prefect_home: Path) -> Iterator[dict[str, str]]:
    """`prefect server start` on a free port; yields the environment that points at it."""
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_healthy(api, server)
        yield env
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


@pytest.mark.prefect
def test_deploy_from_prefect_yaml_and_run_tick_on_a_worker(tmp_path):
    with prefect_server(tmp_path / "prefect") as prefect_env:
        env = {
            **prefect_env,
            "CAMPAIGN_DATABASE_URL": f"sqlite:///{tmp_path / 'campaign.db'}",
            "CAMPAIGN_OUTBOX_DIR": str(tmp_path / "outbox"),
            "CAMPAIGN_HOME": str(PROJECT_ROOT),
        }
        env.pop("SENDGRID_API_KEY", None)

        def run(*args, timeout=120):
            result = subprocess.run(
                args, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout
            )
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
            return result.stdout + result.stderr

        leads = tmp_path / "leads.csv"
        shutil.copy(PROJECT_ROOT / "tests" / "data" / "small_leads.csv", leads)
        run(str(BIN / "campaign"), "import", str(leads))
        run(str(BIN / "prefect"), "work-pool", "create", "campaign", "--type", "process")
        deployed = run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
        assert "tick/tick" in deployed or "'tick'" in deployed
        run(
            str(BIN / "prefect"), "deployment", "run", "tick/tick", "--param", "now=2026-03-02T15:00:00+00:00"
        )
        worker = run(str(BIN / "prefect"), "worker", "start", "--pool", "campaign", "--run-once", timeout=180)
        assert "Completed" in worker
        emails = sorted((tmp_path / "outbox").glob("*.eml"))
        assert len(emails) == 2  # the two consenting leads with a valid address
        assert all(
            e.name.startswith("20260302T150000") for e in emails
        )  # the `now` parameter reached the flow

        # The single-machine path: `campaign schedule` serves the same schedules; Ctrl-C is clean.
        serving = subprocess.Popen(
            [str(BIN / "campaign"), "schedule"],
            env=env,
            cwd=PROJECT_ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        seen = ""
        deadline = time.monotonic() + 90
        while "reconcile/reconcile" not in seen and time.monotonic() < deadline:
            seen += serving.stdout.readline()
        time.sleep(8)  # let the runner start polling, as a person would before pressing Ctrl-C
        serving.send_signal(signal.SIGINT)
        rest, _ = serving.communicate(timeout=60)
        assert "tick/tick" in seen and "daily-report/daily-report" in seen and "reconcile/reconcile" in seen
        assert serving.returncode == 0 and "Stopped" in rest and "Traceback" not in rest
