"""/console/users (admins): the console's users; add one with a role, disable one. The rules and
the audit entries are campaign.accounts'. The sign-up forms are listed too (made with `campaign
form create`)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import Response
from starlette.routing import Route

from campaign.accounts import ROLES, AccountError, add_user, disable_user, list_users
from campaign.app.forms import form_url
from campaign.console.pages import PageRequest, require

NOTICES = {"added": "Added {email}.", "disabled": "Disabled {email}; their sessions have ended."}


def _page(page: PageRequest, *, error: str = "", form: dict | None = None, status: int = 200) -> Response:
    code = page.query.get("done", "")
    notice = NOTICES[code].format(email=page.query.get("email", "")) if code in NOTICES else ""
    return page.render(
        "users.html",
        title="Users",
        users=list_users(page.accounts),
        forms=[(f, form_url(page.settings, f)) for f in page.store.forms()],  # read-only
        roles=ROLES,
        error=error,
        notice=notice,
        form=form or {"email": "", "name": "", "role": "coordinator"},
        status=status,
    )


@require("users.manage")
def users(page: PageRequest) -> Response:
    return _page(page)


@require("users.manage")
def users_add(page: PageRequest) -> Response:
    wanted = {"email": page.field("email"), "name": page.field("name"), "role": page.field("role")}
    password = page.form.get("password") if page.form is not None else None
    try:
        added = add_user(
            page.accounts,
            wanted["email"],
            wanted["role"],
            password if isinstance(password, str) else "",
            wanted["name"],
            now=page.now,
            actor=page.actor,
        )
    except AccountError as problem:
        return _page(page, error=str(problem), form=wanted, status=400)
    return page.redirect("/users?" + urlencode({"done": "added", "email": added.email}))


@require("users.manage")
def users_disable(page: PageRequest) -> Response:
    email = page.field("email")
    try:
        disable_user(page.accounts, email, now=page.now, actor=page.actor)
    except AccountError as problem:
        return _page(page, error=str(problem), status=400)
    return page.redirect("/users?" + urlencode({"done": "disabled", "email": email.casefold()}))


routes = [
    Route("/users", users, methods=["GET"]),
    Route("/users", users_add, methods=["POST"]),
    Route("/users/disable", users_disable, methods=["POST"]),
]
