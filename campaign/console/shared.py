"""Helpers the content, campaigns and reports pages share: the audience files (a broken one is
a clear page, never a traceback) and notices carried through a redirect."""

from __future__ import annotations

from starlette.responses import Response

from campaign.audiences import Audience, AudienceFileError, load_audiences
from campaign.console.pages import PageRequest


class BrokenAudiences(Exception):
    """The audience files cannot be read; `response` is the page that says so."""

    def __init__(self, response: Response):
        self.response = response


def audiences_of(page: PageRequest) -> list[Audience]:
    """The audiences, or BrokenAudiences carrying a page naming every problem and the fix."""
    try:
        return load_audiences(page.settings.audiences_dir)
    except AudienceFileError as problems:
        message = (
            "The audience files have problems, so this page cannot be shown. Fix them (or run "
            f"`campaign audiences check` on the server): {problems}"
        )
        shown = page.render("error.html", title="Audience files", message=message, status=500)
        raise BrokenAudiences(shown) from None


def page_or_problem(handler):
    """Wraps a handler (inside `require`) so BrokenAudiences shows its page."""

    def run(page: PageRequest) -> Response:
        try:
            return handler(page)
        except BrokenAudiences as broken:
            return broken.response

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def notice(page: PageRequest, messages: dict[str, str]) -> list[dict]:
    """The banner for `?done=<code>` after a redirect (only known codes: nothing echoed)."""
    code = page.query.get("done", "")
    return [{"kind": "ok", "text": messages[code]}] if code in messages else []
