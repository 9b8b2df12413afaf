"""The coordinator console: server-rendered pages under /console on the same use cases as the CLI.

`create_console(settings, store, clock)` builds the Starlette app that `campaign.web.create_app`
mounts at /console (`campaign serve --no-console` leaves it out). Every response gets the
security headers (security.py); every page asks one permission check, `campaign.accounts.allowed`.

How to add a page (say /console/reports):
1. A module `campaign/console/reports.py` with handlers wrapped in `require(action)` from
   `campaign.console.pages`, and `routes = [Route("/reports", reports, methods=["GET"])]`.
   `require` logs the visitor in (or sends them to the login page), answers 403 when their role
   may not do `action` (an action of `campaign.accounts.ACTIONS`), and checks the CSRF token of
   every POST before the handler runs. A handler is a plain (sync) function of one `PageRequest`:
   it parses `page.query` / `page.form`, calls a use case in `campaign.app`, and returns
   `page.render("reports.html", title=..., ...)`. No rule lives in a handler.
2. A template `templates/reports.html` that `{% extends "base.html" %}` and fills `content`.
   Every form posts `<input type="hidden" name="csrf_token" value="{{ csrf_token }}">`.
   No inline script or style (the CSP forbids them): classes from static/console.css.
3. Add the module to `PAGE_MODULES` in app.py. Its nav entry is in `NAV` (pages.py): shown once
   the route exists, and only to roles allowed its action.
4. Audit what changes something, and every view of a lead's detail page:
   `campaign.accounts.audit(page.accounts, page.actor, "...", now=page.now, ...)`.
5. Tests: tests/console_support.py starts the real app on uvicorn with a user of each role.
"""

from campaign.console.app import create_console

__all__ = ["create_console"]
