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
    # An opener: the store opens only when the file holds leads, and import_file closes it.
    summary = import_file(lambda: open_store(settings), settings, path, datetime.now(UTC), overrides=columns)
    counts = {k: v for k, v in summary.as_dict().items() if k in ("new", "updated", "unchanged", "rejected")}
    get_run_logger().info("import %s: %s", summary.file, counts)
    return summary.as_dict()
