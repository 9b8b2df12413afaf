"""Shared fixtures: real databases (a SQLite file; PostgreSQL when reachable), real settings.

No mocks of our own code. PostgreSQL tests skip with a reason when the server is not there.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from campaign.settings import PROJECT_ROOT, Settings

POSTGRES_URL = os.environ.get(
    "CAMPAIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SECRET = "test-secret-key"


def postgres_available() -> str | None:
    """None when reachable, else the reason it is not."""
    try:
        engine = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
        with engine.connect():
            pass
        engine.dispose()
        return None
    except Exception as exc:  # any failure means: skip, and say why
        return f"PostgreSQL not reachable at {POSTGRES_URL}: {type(exc).__name__}"


@pytest.fixture(scope="session")
def postgres_reason():
    return postgres_available()


@pytest.fixture
def make_settings(tmp_path):
    """Settings for a test: a fresh SQLite file and outbox under tmp_path."""

    def make(**overrides) -> Settings:
        values = {
            "database_url": f"sqlite:///{tmp_path / 'campaign.db'}",
            "outbox_dir": tmp_path / "outbox",
            "secret_key": SECRET,
            "public_url": "https://clinic.example.org",
            "content_dir": PROJECT_ROOT,
        }
        values.update(overrides)
        return Settings(**values)

    return make


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, postgres_reason):
    """A fresh, empty database of each kind: a SQLite file, and a private PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    if postgres_reason:
        pytest.skip(postgres_reason)
    with postgres_schema() as url:
        yield url


@contextlib.contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str]:
    """The URL of a private schema in the test PostgreSQL database, dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(database_url):
    from campaign.store import Store

    s = Store.open(database_url, secret_key=SECRET)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(settings):
    from campaign.runtime import open_store

    s = open_store(settings)
    yield s
    s.close()


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for the whole session (it costs about 12 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def sendgrid_server():
    """The project's SendGrid-compatible server on loopback, one per test module."""
    from sendgrid_fixtures import KEY

    from campaign.devserver import running_server

    with running_server(api_key=KEY) as srv:
        yield srv


@pytest.fixture
def sg(sendgrid_server):
    """That server with no messages, no faults and the test key."""
    from sendgrid_fixtures import KEY

    from campaign.devserver import Faults

    sendgrid_server.reset()
    sendgrid_server.set_faults(Faults())
    sendgrid_server.set_api_key(KEY)
    return sendgrid_server


# The console's fixtures (console_server, console_clock), for every test module.
# The content, campaigns and reports pages' fixtures (console_content_dir, content_console).
from console_pages_support import console_content_dir, content_console  # noqa: E402, F401
from console_support import console_clock, console_server  # noqa: E402, F401
