"""What every part of the store shares: the engine, the secret for address hashes, the dialect's
INSERT ... ON CONFLICT, and chunked IN (...) lists."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from campaign.store.tables import email_hash

CHUNK = 500  # rows per IN (...) list: well under SQLite's and PostgreSQL's parameter limits


def chunks(values: Iterable, size: int = CHUNK) -> Iterator[list]:
    values = list(values)
    for i in range(0, len(values), size):
        yield values[i : i + size]


class StorePart:
    """One area of the store (leads, enrollments, the ledger ...) over the one shared engine."""

    def __init__(self, engine: sa.Engine, secret_key: str):
        self.engine = engine
        self.secret_key = secret_key

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def insert(self, table):
        """An INSERT that can say ON CONFLICT DO NOTHING on both databases."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def hash(self, email: str) -> str:
        return email_hash(email, self.secret_key)
