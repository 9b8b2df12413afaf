"""The console's error pages: a friendly 404 / 405, and a catch-all for unexpected errors.

An unexpected error shows a plain "something went wrong" page (never a traceback) with a short
reference, and logs that reference with the exception's type and where it was raised: never
its message, the query string or the form, which may carry a lead's name or address.
"""

from __future__ import annotations

import logging
import secrets
import traceback
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

import campaign
from campaign.console.pages import console_of

log = logging.getLogger("campaign.console")

NOT_FOUND = "There is no such page in the console."
WENT_WRONG = (
    "Something went wrong on our side and this page could not be shown. Nothing you sent was "
    "lost because of it: try again in a moment. If it keeps happening, give your admin the "
    "reference {reference}."
)


async def not_found(request: Request, exc) -> Response:
    status = getattr(exc, "status_code", 404)
    title = "Not found" if status == 404 else "Not allowed"
    message = NOT_FOUND if status == 404 else str(exc.detail)
    return console_of(request).page("error.html", status, title=title, message=message)


PACKAGE_DIR = str(Path(campaign.__file__).parent)


def where_raised(exc: BaseException) -> str:
    """The deepest frame in our own code as file:line in function (no values from it): a
    library's innermost frame (SQLAlchemy's execute) says little about which page broke."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown place"
    ours = [f for f in frames if f.filename.startswith(PACKAGE_DIR)]
    frame = (ours or frames)[-1]
    return f"{frame.filename.removeprefix(PACKAGE_DIR + '/')}:{frame.lineno} in {frame.name}"


class FriendlyErrors:
    """ASGI middleware: an exception a handler did not expect becomes the error page (status
    500) and one log line without lead data. Inside SecurityHeaders, so the page has them."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            reference = secrets.token_hex(4)
            log.error(
                "console error %s on %s %s: %s at %s",
                reference,
                scope.get("method", ""),
                scope.get("path", ""),
                type(exc).__name__,
                where_raised(exc),
            )
            if started:  # half a page went out: nothing better to send than closing it
                return
            request = Request(scope)
            page = console_of(request).page(
                "error.html",
                500,
                title="Something went wrong",
                message=WENT_WRONG.format(reference=reference),
            )
            await page(scope, receive, send)
