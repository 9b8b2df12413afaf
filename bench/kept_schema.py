"""A PostgreSQL schema kept between benchmark runs (bench_enroll_rerun.py, bench_walk_pg.py):
made when missing, dropped at the end only when asked."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def kept_schema(postgres_url: str, schema: str, drop: bool) -> Iterator[tuple[str, bool]]:
    """(a database URL whose search_path is `schema`, whether the schema was made now). The
    caller closes its own engines on it before the block ends (`drop` then drops it)."""
    import sqlalchemy as sa

    admin = sa.create_engine(postgres_url)
    try:
        with admin.begin() as conn:
            query = sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s")
            new = conn.execute(query, {"s": schema}).first() is None
            if new:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in postgres_url else "?"
        yield f"{postgres_url}{sep}options=-csearch_path%3D{schema}", new
        if drop:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()
