"""`campaign test-send` and `campaign dev-sendgrid`, and the demo's server process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sendgrid_fixtures import make_email
from typer.testing import CliRunner

from campaign.accounts import list_audit
from campaign.cli import app
from campaign.delivery.sendgrid_transport import SendGridTransport
from campaign.devserver import running_server
from campaign.store import Store
from campaign.store.accounts import AccountStore

KEY = "SG.cli-key"
runner = CliRunner()


@pytest.fixture
def sg(settings, monkeypatch):
    with running_server(api_key=KEY) as server:
        monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
        monkeypatch.setenv("CAMPAIGN_SECRET_KEY", "cli-test-secret")
        monkeypatch.setenv("CAMPAIGN_PUBLIC_URL", "https://clinic.example.org")
        monkeypatch.setenv("SENDGRID_API_KEY", KEY)
        monkeypatch.setenv("SENDGRID_API_HOST", server.url)
        monkeypatch.setenv("COLUMNS", "200")
        yield server


def test_test_send_sends_one_marked_email_outside_the_ledger(sg, settings):
    result = runner.invoke(app, ["test-send", "social", "ketamine", "--to", "Coordinator@Clinic.example.org"])
    assert result.exit_code == 0, result.output
    [message] = sg.messages
    payload = message.payload
    assert message.to_emails == ["Coordinator@clinic.example.org"]
    assert "test" in payload["categories"]
    assert set(payload["custom_args"]) == {"send_id"} and payload["custom_args"]["send_id"] in result.output
    assert message.message_id in result.output
    # Outside the ledger: no send is recorded; the database holds only the audit entry.
    with Store.open(settings.database_url, secret_key="cli-test-secret") as store:
        assert store.ledger() == []
        [entry] = list_audit(AccountStore(store.engine)).entries
    assert (entry.actor, entry.action) == ("cli", "test_send")


def test_test_send_refuses_an_unknown_step_and_reports_a_refused_key(sg):
    unknown = runner.invoke(app, ["test-send", "social", "nope", "--to", "a@example.org"])
    assert unknown.exit_code == 2 and "welcome" in unknown.output  # names the steps there are
    bad_address = runner.invoke(app, ["test-send", "social", "welcome", "--to", "not-an-address"])
    assert bad_address.exit_code == 2
    sg.set_api_key("SG.other")
    refused = runner.invoke(app, ["test-send", "social", "welcome", "--to", "a@example.org"])
    assert refused.exit_code == 1 and "API key" in refused.output
    assert sg.messages == []


def test_test_send_prints_a_refused_keys_reason_once(sg, settings):
    """In its own process, as on a terminal: no log line repeats the error's reason."""
    import os

    sg.set_api_key("SG.other")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
        "SENDGRID_API_KEY": KEY,
        "SENDGRID_API_HOST": sg.url,
        "CAMPAIGN_DATABASE_URL": settings.database_url,
    }
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "campaign"),
            "test-send",
            "gad",
            "welcome",
            "--to",
            "a@example.org",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "API key" in output
    assert output.count("401") == 1, f"the reason is printed more than once:\n{output}"


def test_test_send_through_the_outbox_shows_in_its_index(settings, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(settings.outbox_dir))
    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    result = runner.invoke(app, ["test-send", "gad", "welcome", "--to", "me@clinic.example"])
    assert result.exit_code == 0, result.output
    index = (settings.outbox_dir / "index.html").read_text()
    row = next(line for line in index.splitlines() if "me@clinic.example" in line)
    assert 'data-audience="gad"' in row and 'data-step="welcome"' in row and 'data-campaign="test"' in row


def _start_dev_sendgrid(**popen) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "campaign"), "dev-sendgrid", "--port", "0", "--key", KEY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    first = proc.stdout.readline()  # "SendGrid-compatible server at http://127.0.0.1:<port> ..."
    found = re.match(r"SendGrid-compatible server at (http://127\.0\.0\.1:\d+) ", first)
    if not found:
        proc.kill()
        raise AssertionError(f"dev-sendgrid did not start: {first!r} {proc.stderr.read()}")
    return proc, found.group(1)


def test_dev_sendgrid_serves_until_stopped():
    proc, url = _start_dev_sendgrid()
    try:
        instructions = "".join(proc.stdout.readline() for _ in range(5))
        assert f"export SENDGRID_API_HOST={url} SENDGRID_API_KEY={KEY}" in instructions
        assert f"curl {url}/_dev/messages" in instructions and "Webhook public key:" in instructions
        [result] = SendGridTransport(KEY, host=url).send_batch([make_email(1)])
        assert result.status.value == "sent" and result.message_id
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert proc.returncode == 0 and proc.stderr.read() == ""  # SIGTERM stops it cleanly, all on stdout


def test_dev_sendgrid_started_in_the_background_stops_on_sigint():
    """A shell starts a background job with SIGINT ignored; `kill -INT` must still stop it."""
    import signal
    import time

    proc, _ = _start_dev_sendgrid(preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            pytest.fail("dev-sendgrid ignored SIGINT")
    assert proc.returncode == 0 and "Stopped." in proc.stdout.read() and proc.stderr.read() == ""


def test_the_demo_server_process_records_what_the_client_sent():
    from campaign.demo import DEMO_SENDGRID_KEY, sendgrid_server_process, server_record

    with sendgrid_server_process() as url:
        assert url.startswith("http://127.0.0.1:")
        emails = [make_email(i) for i in range(3)]
        results = SendGridTransport(DEMO_SENDGRID_KEY, host=url).send_batch(emails)
        assert {r.status.value for r in results} == {"sent"}
        record = server_record(url)
    assert record == {"messages": 3, "send_ids": {e.send_id for e in emails}}
