"""prefect.yaml loads with Prefect's own models; the flows run for real (marked `prefect`)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml

from campaign.settings import PROJECT_ROOT

PREFECT_YAML = PROJECT_ROOT / "prefect.yaml"


def test_prefect_yaml_validates_with_prefects_models():
    from prefect.cli.deploy._models import PrefectYamlModel, RawScheduleConfig
    from prefect.flows import load_flow_from_entrypoint

    model = PrefectYamlModel.model_validate(yaml.safe_load(PREFECT_YAML.read_text()))
    names = {d.name for d in model.deployments}
    assert "tick" in names
    for deployment in model.deployments:
        flow = load_flow_from_entrypoint(str(PROJECT_ROOT / deployment.entrypoint))
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(deployment.parameters) <= accepted, deployment.name
        for schedule in deployment.schedules or []:
            config = RawScheduleConfig.model_validate(schedule)
            assert config.timezone == "America/New_York"
            assert set(config.parameters) <= accepted


def test_tick_deployment_runs_every_15_minutes():
    tick = next(d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"] if d["name"] == "tick")
    assert tick["schedules"][0]["cron"] == "*/15 * * * *"


def test_a_5_minute_tick_is_offered_beside_the_15_minute_one_and_off_by_default():
    """Speed to lead (issue 11): one tick schedule runs at a time, the 15-minute one unless chosen."""
    deployments = {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}
    fast, default = deployments["tick-5min"], deployments["tick"]
    assert fast["entrypoint"] == default["entrypoint"] == "flows/tick.py:tick"
    assert [(s["cron"], s["active"]) for s in fast["schedules"]] == [("*/5 * * * *", False)]
    assert [(s["cron"], s["active"]) for s in default["schedules"]] == [("*/15 * * * *", True)]
    assert fast["concurrency_limit"] == default["concurrency_limit"] == 1


def test_campaign_schedule_serves_the_5_minute_tick_without_its_inactive_schedule():
    from flows.serve import deployments_from_yaml

    served = {d.name: d for d in deployments_from_yaml()}
    assert not served["tick-5min"].schedules and len(served["tick"].schedules) == 1


@pytest.mark.prefect
def test_import_and_tick_flows_run_for_real(prefect_harness, settings, monkeypatch, tmp_path):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CAMPAIGN_OUTBOX_DIR", str(settings.outbox_dir))
    monkeypatch.setenv("CAMPAIGN_PUBLIC_URL", settings.public_url)
    from flows.import_leads import import_leads
    from flows.tick import tick

    leads_csv = tmp_path / "small_leads.csv"
    leads_csv.write_bytes((PROJECT_ROOT / "tests" / "data" / "small_leads.csv").read_bytes())
    summary = import_leads(str(leads_csv))
    assert summary["new"] == 3 and summary["rejected"] == 1
    first = tick(now="2026-03-02T15:00:00+00:00")
    again = tick(now="2026-03-02T15:00:00+00:00")
    assert first["totals"]["sent"] == 2 and again["totals"]["sent"] == 0
    assert len(list(Path(settings.outbox_dir).glob("*.eml"))) == 2
