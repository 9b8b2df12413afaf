"""Alembic environment: migrates the connection the Store hands over (or the configured URL)."""

from alembic import context
from sqlalchemy import engine_from_config, pool

import campaign.store.accounts  # noqa: F401  (puts the account tables on the same metadata)
from campaign.store import metadata
from campaign.store import ticks as _tick_history  # noqa: F401  (the tick_runs table joins metadata)

config = context.config


def run(connection) -> None:
    context.configure(
        connection=connection, target_metadata=metadata, render_as_batch=connection.dialect.name == "sqlite"
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = engine_from_config(
        config.get_section(config.config_ini_section, {}), prefix="sqlalchemy.", poolclass=pool.NullPool
    )
    with engine.connect() as conn:
        run(conn)
