"""`campaign schedule`: serve every deployment of prefect.yaml from this one process.

Reads the schedules from prefect.yaml, so the single-machine path and the work-pool path
(`prefect deploy --all`) run the same flows on the same schedules.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect import serve
from prefect.client.schemas.schedules import construct_schedule
from prefect.flows import load_flow_from_entrypoint

from campaign.settings import PROJECT_ROOT


def deployments_from_yaml(path: Path = PROJECT_ROOT / "prefect.yaml") -> list:
    spec = yaml.safe_load(path.read_text())
    result = []
    for d in spec["deployments"]:
        flow = load_flow_from_entrypoint(str(PROJECT_ROOT / d["entrypoint"]))
        schedules = [
            construct_schedule(
                cron=s.get("cron"),
                interval=s.get("interval"),
                rrule=s.get("rrule"),
                timezone=s.get("timezone"),
            )
            for s in d.get("schedules", [])
            if s.get("active", True)
        ]
        result.append(
            flow.to_deployment(
                name=d["name"],
                parameters=d.get("parameters") or {},
                schedules=schedules,
                description=d.get("description"),
            )
        )
    return result


def serve_all() -> None:
    serve(*deployments_from_yaml())
