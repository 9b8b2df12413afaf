"""Logging in and out. The rules (throttling, lockout, one refusal message, sessions, audit)
are campaign.accounts'; this module only moves them over HTTP."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from campaign.accounts import LoginRefused, has_users, login, logout
from campaign.console.pages import PageRequest, client_address, console_of, require
from campaign.console.security import (
    CSRF_FIELD,
    LOGIN_CSRF_COOKIE,
    PREFIX,
    SESSION_COOKIE,
    delete_cookie,
    login_csrf_ok,
    new_login_csrf,
    safe_next,
    set_cookie,
)

FIRST_USER_HINT = "There is no user yet. On the server, run: campaign user add EMAIL --role admin"
SIGNED_OUT = "You are logged out."


def login_page(request: Request, *, error: str = "", notice: str = "", email: str = "", status: int = 200):
    console = console_of(request)
    token = new_login_csrf()
    response = console.page(
        "login.html",
        status,
        title="Log in",
        login_csrf=token,
        error=error,
        notice=notice,
        email=email,
        next=safe_next(request.query_params.get("next")),
        no_users=not has_users(console.accounts),
    )
    set_cookie(response, LOGIN_CSRF_COOKIE, token, secure=console.secure_cookies)
    return response


async def login_form(request: Request) -> Response:
    notice = SIGNED_OUT if request.query_params.get("signed_out") else ""
    return await run_in_threadpool(lambda: login_page(request, notice=notice))


async def login_submit(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
    submitted = form.get(CSRF_FIELD)
    email, password = str(form.get("email") or ""), str(form.get("password") or "")
    if not login_csrf_ok(
        request.cookies.get(LOGIN_CSRF_COOKIE), submitted if isinstance(submitted, str) else None
    ):
        return await run_in_threadpool(
            lambda: login_page(
                request, error="This form had expired. Please try again.", email=email, status=403
            )
        )
    try:
        done = await run_in_threadpool(
            login, console.accounts, email, password, client_address(request), console.clock()
        )
    except LoginRefused as refused:
        message = str(refused)
        return await run_in_threadpool(lambda: login_page(request, error=message, email=email, status=401))
    response = RedirectResponse(safe_next(str(form.get("next") or "")), status_code=303)
    set_cookie(response, SESSION_COOKIE, done.token, secure=console.secure_cookies)
    delete_cookie(response, LOGIN_CSRF_COOKIE, secure=console.secure_cookies)
    return response


@require(None)
def logout_submit(page: PageRequest) -> Response:
    logout(page.accounts, page.request.cookies.get(SESSION_COOKIE), page.actor.client, page.now)
    response = RedirectResponse(f"{PREFIX}/login?signed_out=1", status_code=303)
    delete_cookie(response, SESSION_COOKIE, secure=page.console.secure_cookies)
    return response


routes = [
    Route("/login", login_form, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout_submit, methods=["POST"]),
]
