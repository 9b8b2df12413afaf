"""The import flow: one CSV file into the leads table."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger

from campaign.app.leads import import_file
from campaign.runtime import open_store
from campaign.settings import get_settings


@flow(name="import-leads")
def import_leads(path: str, columns: dict[str, str] | None = None) -> dict:
    settings = get_settings()
    store = open_store(settings)
    try:
        summary = import_file(store, settings, path, datetime.now(UTC), overrides=columns)
    finally:
        store.close()
    counts = {k: v for k, v in summary.as_dict().items() if k in ("new", "updated", "unchanged", "rejected")}
    get_run_logger().info("import %s: %s", summary.file, counts)
    return summary.as_dict()
