"""Shared by the console tests: the real app on uvicorn (loopback, a SQLite file), a user of each
role, an injectable clock, and httpx clients that log in and post forms with their CSRF token.

    from console_support import console_server  # noqa: F401  (the fixture)

    def test_something(console_server):
        admin = console_server.login("admin")
        page = admin.get("/console/users")
        admin.post_form("/console/users", {"email": ...}, page="/console/users")
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import unescape

import httpx
import pytest
from live_server import free_socket, running

from campaign.accounts import add_user
from campaign.settings import Settings
from campaign.store import Store
from campaign.store.accounts import AccountStore
from campaign.web import create_app

START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York
PASSWORD = "correct horse battery staple"
EMAILS = {
    "admin": "admin@clinic.example",
    "coordinator": "coordinator@clinic.example",
    "reviewer": "reviewer@clinic.example",
}
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')


class Clock:
    """The app's clock, moved by the test: `clock.advance(minutes=31)`."""

    def __init__(self, now: datetime = START):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def csrf_from(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = CSRF_INPUT.search(html)
    assert found, "no csrf_token field on the page"
    return unescape(found.group(1))


class ConsoleClient(httpx.Client):
    """An httpx client holding a console session cookie (or none)."""

    def csrf(self, page: str = "/console/") -> str:
        response = self.get(page)
        assert response.status_code == 200, (page, response.status_code)
        return csrf_from(response.text)

    def post_form(self, path: str, data: dict | None = None, *, page: str | None = None, **kwargs):
        """POST a form with the CSRF token read from `page` (default: the path itself)."""
        return self.post(path, data={**(data or {}), "csrf_token": self.csrf(page or path)}, **kwargs)


@dataclass
class ConsoleServer:
    url: str
    settings: Settings
    store: Store  # the app's own store
    clock: Clock
    emails: dict[str, str] = field(default_factory=lambda: dict(EMAILS))

    @property
    def accounts(self) -> AccountStore:
        return AccountStore(self.store.engine)

    def client(self) -> ConsoleClient:
        return ConsoleClient(base_url=self.url, timeout=60, follow_redirects=False)

    def login(
        self, role: str = "admin", *, email: str | None = None, password: str = PASSWORD
    ) -> ConsoleClient:
        """A client logged in as the user of that role (or `email`); fails the test otherwise."""
        client = self.client()
        response = login_with(client, email or self.emails[role], password)
        assert response.status_code == 303, (response.status_code, response.text[:500])
        return client


def login_with(client: httpx.Client, email: str, password: str, next_path: str = "") -> httpx.Response:
    """Fill the login form as a browser would (its CSRF cookie and field) and submit it."""
    token = csrf_from(client.get("/console/login").text)
    data = {"email": email, "password": password, "csrf_token": token}
    if next_path:
        data["next"] = next_path
    return client.post("/console/login", data=data)


@contextlib.contextmanager
def serve_console(
    settings: Settings,
    clock: Clock,
    *,
    users: bool = True,
    console: bool = True,
    public_url: str | None = None,
) -> Iterator[ConsoleServer]:
    """create_app(settings, clock=clock) on uvicorn on a free loopback port; the settings'
    public_url becomes that address unless `public_url` is given (say, an https one)."""
    sock, url = free_socket()
    settings = settings.model_copy(update={"public_url": public_url or url})
    app = create_app(settings, clock=clock, console=console)
    store = app.state.store
    if users:
        accounts = AccountStore(store.engine)
        for role, email in EMAILS.items():
            add_user(accounts, email, role, PASSWORD, now=clock())
    with running(app, sock):
        yield ConsoleServer(url, settings, store, clock)


@pytest.fixture
def console_clock() -> Clock:
    return Clock()


@pytest.fixture
def console_server(make_settings, console_clock) -> Iterator[ConsoleServer]:
    """The app with its console on a free loopback port, an admin, a coordinator and a reviewer
    (password PASSWORD), and the clock `console_clock`."""
    with serve_console(make_settings(), console_clock) as server:
        yield server
