"""The tick history: one row per run of the tick flow (when, outcome, counts), for the console's
overview. Counts and a short error only: never an address or an anxiety type."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from campaign.store.tables import UTCDateTime, metadata

OUTCOMES = ("ok", "failed", "refused")
# Kept: the newest rows; older ones are deleted as new ones come (the overview shows a few).
KEEP = 1000

tick_runs = sa.Table(
    "tick_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("finished_at", UTCDateTime, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("counts", sa.Text, nullable=False, server_default="{}"),  # JSON: name -> number
    sa.Column("error", sa.String(1000), nullable=False, server_default=""),
    sa.CheckConstraint("outcome IN ('ok', 'failed', 'refused')", name="ck_tick_runs_outcome"),
)


@dataclass(frozen=True)
class TickRun:
    id: int
    started_at: datetime
    finished_at: datetime
    outcome: str
    counts: dict
    error: str


class TickRuns:
    """Tick history queries over the campaign database: `TickRuns(store.engine)`."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def add(
        self, *, started_at: datetime, finished_at: datetime, outcome: str, counts: dict, error: str
    ) -> int:
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown tick outcome {outcome!r}")
        with self.engine.begin() as conn:
            new_id = conn.execute(
                tick_runs.insert().values(
                    started_at=started_at,
                    finished_at=finished_at,
                    outcome=outcome,
                    counts=json.dumps(counts, sort_keys=True),
                    error=error[:1000],
                )
            ).inserted_primary_key[0]
            conn.execute(tick_runs.delete().where(tick_runs.c.id <= new_id - KEEP))
        return new_id

    def recent(self, limit: int = 10) -> list[TickRun]:
        """The newest runs first."""
        query = sa.select(tick_runs).order_by(tick_runs.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [TickRun(**{**row, "counts": json.loads(row["counts"] or "{}")}) for row in rows]
