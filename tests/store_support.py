"""Rows for tests that set up a store by hand."""

from __future__ import annotations

from datetime import datetime


def enrollment_row(campaign_id: int, lead_id: int, at: datetime, audience: str = "gad", **more) -> dict:
    """An `add_enrollments` row: active, enrolled and due at `at`; `more` sets other columns."""
    return {
        "campaign_id": campaign_id,
        "lead_id": lead_id,
        "audience": audience,
        "audience_version": "v",
        "enrolled_at": at,
        "state": "active",
        "next_due_at": at,
    } | more


def downgrade(store, database_url: str, revision: str) -> None:
    """Take the store's schema down to `revision` (alembic), in one transaction."""
    from alembic import command

    from campaign.store import alembic_config

    cfg = alembic_config(database_url)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def model_diffs(store, *names: str) -> list:
    """Where the store's schema differs from the models (alembic's autogenerate), in the objects
    whose description names any of `names`."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from campaign.store import metadata

    with store.engine.connect() as conn:
        found = compare_metadata(MigrationContext.configure(conn), metadata)
    return [d for d in found if any(name in repr(d) for name in names)]
