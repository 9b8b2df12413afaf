"""Builds the console's Starlette app from its page modules."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from campaign.console.pages import Console, console_of
from campaign.console.security import SecurityHeaders
from campaign.settings import Settings
from campaign.store import Store
from campaign.store.accounts import AccountStore

# Each module has `routes`; a new page is a new module here (see campaign/console/__init__.py).
PAGE_MODULES = (
    "auth",
    "overview",
    "leads",
    "lead_import",
    "audiences",
    "content",
    "campaigns",
    "reports",
    "activity",
    "users",
)

STATIC_DIR = Path(__file__).parent / "static"


async def not_found(request: Request, exc) -> Response:
    status = getattr(exc, "status_code", 404)
    title = "Not found" if status == 404 else "Not allowed"
    message = "There is no such page in the console." if status == 404 else str(exc.detail)
    return console_of(request).page("error.html", status, title=title, message=message)


def create_console(settings: Settings, store: Store, clock: Callable[[], datetime]) -> Starlette:
    routes: list[Route | Mount] = []
    for name in PAGE_MODULES:
        routes += importlib.import_module(f"campaign.console.{name}").routes
    routes.append(Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"))
    console = Console(
        settings=settings,
        store=store,
        accounts=AccountStore(store.engine),
        clock=clock,
        secure_cookies=settings.public_url.lower().startswith("https://"),
        paths={r.path for r in routes if isinstance(r, Route)},
    )
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={404: not_found, 405: not_found},
    )
    app.state.console = console
    return app
