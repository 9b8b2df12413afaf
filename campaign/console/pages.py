"""What every console page shares: the console's state, the request a handler sees, the one
permission gate (`require`), rendering into the base layout, and the nav.

Handlers are plain sync functions (Starlette runs them in a worker thread, so database calls
never block the event loop); `require` does the async parts first: the session, the permission,
the form and its CSRF token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import wraps
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, QueryParams
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from campaign.accounts import Actor, Session, allowed, csrf_ok, session_for
from campaign.console.security import CSRF_FIELD, PREFIX, SESSION_COOKIE
from campaign.settings import Settings
from campaign.store import Store
from campaign.store.accounts import AccountStore

TEMPLATES_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str  # under /console
    action: str  # shown only to roles allowed this


# Every page the console will have; an entry shows once its route exists (see create_console).
NAV = (
    NavItem("Overview", "/", "overview.view"),
    NavItem("Leads", "/leads", "leads.view"),
    NavItem("Import", "/import", "import"),
    NavItem("Audiences", "/audiences", "audiences.view"),
    NavItem("Content", "/content", "content.view"),
    NavItem("Campaigns", "/campaigns", "overview.view"),
    NavItem("Reports", "/reports", "reports.view"),
    NavItem("Activity", "/activity", "activity.view"),
    NavItem("Users", "/users", "users.manage"),
    NavItem("API tokens", "/tokens", "tokens.manage"),
)


@dataclass
class Console:
    """The console's state, one per app: app.state.console."""

    settings: Settings
    store: Store
    accounts: AccountStore
    clock: Callable[[], datetime]
    secure_cookies: bool  # the public URL is https
    templates: Environment = field(init=False)
    paths: set[str] = field(default_factory=set)  # the routes that exist (for the nav)

    def __post_init__(self):
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATES_DIR),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["when"] = self.when

    def when(self, moment: datetime | None) -> str:
        """A time as the clinic reads it (its time zone), to the minute."""
        if moment is None:
            return "-"
        return moment.astimezone(ZoneInfo(self.settings.clinic.timezone)).strftime("%Y-%m-%d %H:%M %Z")

    def page(self, template: str, status: int = 200, **values) -> HTMLResponse:
        """A page in the base layout. The layout's own values default to a logged-out visitor."""
        context = {
            "base": PREFIX,
            "clinic_name": self.settings.clinic.name,
            "user": None,
            "nav": [],
            "csrf_token": "",
            "banners": [],
            **values,
        }
        return HTMLResponse(self.templates.get_template(template).render(context), status_code=status)

    def nav_for(self, role: str, current: str) -> list[dict]:
        return [
            {"label": item.label, "href": PREFIX + item.path, "current": item.path == current}
            for item in NAV
            if item.path in self.paths and allowed(role, item.action)
        ]


def console_of(request: Request) -> Console:
    return request.app.state.console


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


@dataclass
class PageRequest:
    """What a handler gets: the request, the live session, the parsed form (POST) and helpers."""

    request: Request
    console: Console
    session: Session
    now: datetime
    form: FormData | None = None

    @property
    def query(self) -> QueryParams:
        return self.request.query_params

    @property
    def user(self):
        return self.session.user

    @property
    def actor(self) -> Actor:
        return Actor.for_user(self.session.user, client_address(self.request))

    @property
    def store(self) -> Store:
        return self.console.store

    @property
    def accounts(self) -> AccountStore:
        return self.console.accounts

    @property
    def settings(self) -> Settings:
        return self.console.settings

    def allowed(self, action: str) -> bool:
        return allowed(self.user.role, action)

    def field(self, name: str) -> str:
        """A form field as text ('' when absent)."""
        value = self.form.get(name) if self.form is not None else None
        return value.strip() if isinstance(value, str) else ""

    def render(self, template: str, *, title: str, status: int = 200, **values) -> HTMLResponse:
        path = self.request.url.path.removeprefix(PREFIX) or "/"
        return self.console.page(
            template,
            status,
            title=title,
            user=self.user,
            nav=self.console.nav_for(self.user.role, path),
            csrf_token=self.session.csrf_token,
            can=self.allowed,
            **values,
        )

    def redirect(self, path: str) -> RedirectResponse:
        """303 to a console path (after a POST: the browser GETs the result)."""
        return RedirectResponse(PREFIX + path, status_code=303)


def forbidden(console: Console, message: str, session: Session | None = None) -> HTMLResponse:
    values = {}
    if session is not None:
        values = {
            "user": session.user,
            "nav": console.nav_for(session.user.role, ""),
            "csrf_token": session.csrf_token,
        }
    return console.page("error.html", 403, title="Not allowed", message=message, **values)


NOT_YOUR_ROLE = "Your role ({role}) cannot open this page or do this. Ask an admin if you need it."
STALE_FORM = (
    "This form has expired or did not come from this console. Go back, reload the page and try again."
)


def require(action: str | None):
    """The gate on every console handler: a logged-in user (else the login page, or 403 for a
    POST), a role allowed `action` (None: any logged-in user), and for a POST a valid CSRF token;
    otherwise 403 and the handler never runs."""
    if action is not None:
        allowed(None, action)  # an unknown action fails at import, not at the first request

    def wrap(handler: Callable[[PageRequest], Response]):
        @wraps(handler)
        async def endpoint(request: Request) -> Response:
            console = console_of(request)
            now = console.clock()
            token = request.cookies.get(SESSION_COOKIE)
            session = await run_in_threadpool(session_for, console.accounts, token, now)
            if session is None:
                if request.method in ("GET", "HEAD"):
                    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                    return RedirectResponse(f"{PREFIX}/login?next={quote(target, safe='')}", status_code=303)
                return forbidden(console, "You are not logged in (or your session ended). Log in again.")
            if action is not None and not allowed(session.user.role, action):
                return forbidden(console, NOT_YOUR_ROLE.format(role=session.user.role), session)
            form = None
            if request.method == "POST":
                form = await request.form()
                submitted = form.get(CSRF_FIELD)
                if not csrf_ok(session, submitted if isinstance(submitted, str) else None):
                    return forbidden(console, STALE_FORM, session)
            page = PageRequest(request, console, session, now, form)
            return await run_in_threadpool(handler, page)

        return endpoint

    return wrap
