"""The console's web security: response headers, cookies, and the login form's CSRF token.

The console shows names, addresses and anxiety types: nothing may be cached, framed, leaked
through a Referer, or run as inline script or style.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.datastructures import MutableHeaders
from starlette.responses import Response

PREFIX = "/console"
SESSION_COOKIE = "campaign_session"
# Before login there is no session to hold a CSRF token: the login form double-submits one
# (a random cookie and the same value in the form), so another site cannot log a browser in.
LOGIN_CSRF_COOKIE = "campaign_login_csrf"
CSRF_FIELD = "csrf_token"

CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# A response may set these itself, and keeps them: only the email preview frame does (its own
# inline styles, framed by the console alone; see campaign/console/content.py).
OWN_POLICY_HEADERS = ("Content-Security-Policy", "X-Frame-Options")
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class SecurityHeaders:
    """ASGI middleware: every console response (pages, redirects, 403, 404, static files) gets
    the security headers, whichever code produced it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in OWN_POLICY_HEADERS or name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)


def set_cookie(
    response: Response, name: str, value: str, *, secure: bool, max_age: int | None = None
) -> None:
    # HttpOnly: no script reads it; SameSite=Lax: other sites' posts do not carry it;
    # path /console: the public pages never see it.
    response.set_cookie(
        name, value, max_age=max_age, path=PREFIX, secure=secure, httponly=True, samesite="lax"
    )


def delete_cookie(response: Response, name: str, *, secure: bool) -> None:
    response.delete_cookie(name, path=PREFIX, secure=secure, httponly=True, samesite="lax")


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def login_csrf_ok(cookie: str | None, submitted: str | None) -> bool:
    return bool(cookie) and bool(submitted) and hmac.compare_digest(cookie.encode(), submitted.encode())


def safe_next(target: str | None) -> str:
    """Where to go after login: only a console path (never another site, never //host)."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return PREFIX + "/"
