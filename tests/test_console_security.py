"""The console's security over real HTTP (uvicorn + httpx): login, lockout, sessions and their
timeouts, logout, disabled users, CSRF, roles, and the response headers."""

from __future__ import annotations

import pytest
from console_support import EMAILS, PASSWORD, Clock, csrf_from, login_with, serve_console

from campaign.accounts import LOGIN_REFUSED, add_user, disable_user, list_users
from campaign.console.pages import require
from campaign.console.security import SECURITY_HEADERS, SESSION_COOKIE

PAGES = ("/console/", "/console/activity", "/console/users")


def assert_security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (str(response.url), name, response.headers.get(name))


def is_login_redirect(response) -> bool:
    return response.status_code == 303 and response.headers["location"].startswith("/console/login")


def user_emails(server) -> set[str]:
    return {u.email for u in list_users(server.accounts)}


# ---- login and the session cookie ------------------------------------------------------------


def test_a_visitor_without_a_session_is_sent_to_login_and_back(console_server):
    client = console_server.client()
    response = client.get("/console/activity?actor=cli")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2Factivity%3Factor%3Dcli"
    done = login_with(client, EMAILS["admin"], PASSWORD, next_path="/console/activity?actor=cli")
    assert done.headers["location"] == "/console/activity?actor=cli"


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/console/", "/elsewhere"])
def test_login_never_redirects_off_the_console(console_server, target):
    done = login_with(console_server.client(), EMAILS["admin"], PASSWORD, next_path=target)
    assert done.status_code == 303 and done.headers["location"] == "/console/"


def test_session_cookie_is_httponly_lax_and_scoped_to_the_console(console_server):
    done = login_with(console_server.client(), EMAILS["admin"], PASSWORD)
    cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    attributes = {part.strip().split("=")[0].lower(): part for part in cookie.split(";")}
    assert "httponly" in attributes and "Path=/console" in attributes["path"]
    assert attributes["samesite"].strip().lower() == "samesite=lax"
    assert "secure" not in attributes  # the public URL is http here


def test_session_cookie_is_secure_when_the_public_url_is_https(make_settings):
    with serve_console(make_settings(), Clock(), public_url="https://clinic.example.org") as server:
        form = server.client().get("/console/login")  # over http here: httpx keeps no Secure cookie
        login_cookie = form.headers["set-cookie"]
        assert "secure" in login_cookie.lower().replace(" ", "").split(";")
        done = server.client().post(
            "/console/login",
            data={"email": EMAILS["admin"], "password": PASSWORD, "csrf_token": csrf_from(form.text)},
            headers={"Cookie": login_cookie.split(";")[0]},
        )
        cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
        assert "secure" in cookie.lower().replace(" ", "").split(";")


def test_the_login_page_says_how_to_create_the_first_user(make_settings):
    with serve_console(make_settings(), Clock(), users=False) as server:
        page = server.client().get("/console/login")
        assert "campaign user add EMAIL --role admin" in page.text
        add_user(server.accounts, EMAILS["admin"], "admin", PASSWORD, now=server.clock())
        assert "campaign user add" not in server.client().get("/console/login").text


def test_login_post_without_the_forms_token_is_refused(console_server):
    client = console_server.client()
    response = client.post("/console/login", data={"email": EMAILS["admin"], "password": PASSWORD})
    assert response.status_code == 403
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")
    assert is_login_redirect(client.get("/console/"))


# ---- lockout -----------------------------------------------------------------------------------


def test_five_failures_lock_the_account_with_the_unknown_users_message(console_server, console_clock):
    client = console_server.client()
    unknown = login_with(client, "nobody@clinic.example", "whatever it is")
    assert unknown.status_code == 401 and LOGIN_REFUSED.split(",")[0] in unknown.text
    for _ in range(5):
        wrong = login_with(client, EMAILS["coordinator"], "not the password")
        assert wrong.status_code == 401
    locked = login_with(client, EMAILS["coordinator"], PASSWORD)  # the right password, now locked
    assert locked.status_code == 401
    message = lambda r: r.text[r.text.index('id="login-error"') :].split("</p>")[0]
    assert message(locked) == message(unknown) == message(wrong)
    failures = console_server.accounts.audit_page(limit=10, action="login.failed")
    assert [e.detail for e in failures] == ["locked"] + ["wrong password"] * 5 + ["unknown user"]
    assert all(e.client == "127.0.0.1" and PASSWORD not in e.detail for e in failures)
    console_clock.advance(minutes=16)
    assert login_with(client, EMAILS["coordinator"], PASSWORD).status_code == 303
    assert console_server.accounts.audit_page(limit=1)[0].action == "login"


# ---- session lifetime --------------------------------------------------------------------------


def test_idle_timeout_ends_the_session_after_30_minutes(console_server, console_clock):
    client = console_server.login("coordinator")
    console_clock.advance(minutes=29)
    assert client.get("/console/").status_code == 200  # and this visit counts as activity
    console_clock.advance(minutes=29)
    assert client.get("/console/").status_code == 200
    console_clock.advance(minutes=31)
    assert is_login_redirect(client.get("/console/"))
    console_clock.advance(minutes=1)
    assert is_login_redirect(client.get("/console/"))  # the expired session is gone for good


def test_absolute_timeout_ends_a_busy_session_after_12_hours(console_server, console_clock):
    client = console_server.login("coordinator")
    for _ in range(35):  # active every 20 minutes: 11 h 40 min
        console_clock.advance(minutes=20)
        assert client.get("/console/").status_code == 200
    console_clock.advance(minutes=21)
    assert is_login_redirect(client.get("/console/"))


def test_logout_ends_the_session_on_the_server(console_server):
    client = console_server.login("reviewer")
    old_cookie = client.cookies.get(SESSION_COOKIE)
    done = client.post_form("/console/logout", page="/console/")
    assert done.status_code == 303 and done.headers["location"] == "/console/login?signed_out=1"
    assert "You are logged out" in client.get(done.headers["location"]).text
    replay = console_server.client()
    replay.cookies.set(SESSION_COOKIE, old_cookie, path="/console")
    assert is_login_redirect(replay.get("/console/"))
    entries = [e.action for e in console_server.accounts.audit_page(limit=5, actor=EMAILS["reviewer"])]
    assert entries[:2] == ["logout", "login"]


def test_a_disabled_users_session_is_refused_at_once(console_server):
    coordinator = console_server.login("coordinator")
    token = coordinator.csrf("/console/")
    assert coordinator.get("/console/").status_code == 200
    disable_user(console_server.accounts, EMAILS["coordinator"], now=console_server.clock())
    assert is_login_redirect(coordinator.get("/console/"))
    refused = coordinator.post("/console/logout", data={"csrf_token": token})
    assert refused.status_code == 403
    assert login_with(console_server.client(), EMAILS["coordinator"], PASSWORD).status_code == 401


# ---- CSRF --------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_a_post_without_a_valid_csrf_token_is_403_and_changes_nothing(console_server, token):
    admin = console_server.login("admin")
    before = user_emails(console_server)
    data = {"email": "sneaky@clinic.example", "role": "admin", "password": "a long enough password"}
    if token is not None:
        data["csrf_token"] = token
    response = admin.post("/console/users", data=data)
    assert response.status_code == 403
    assert_security_headers(response)
    disable = {"email": EMAILS["reviewer"], **({"csrf_token": token} if token is not None else {})}
    assert admin.post("/console/users/disable", data=disable).status_code == 403
    assert admin.post("/console/logout", data={"csrf_token": token or ""}).status_code == 403
    assert user_emails(console_server) == before
    assert all(u.active for u in list_users(console_server.accounts))
    assert admin.get("/console/").status_code == 200  # still logged in


def test_another_sessions_csrf_token_does_not_work(console_server):
    admin, other = console_server.login("admin"), console_server.login("admin")
    data = {"email": "sneaky@clinic.example", "role": "admin", "password": "a long enough password"}
    response = admin.post("/console/users", data={**data, "csrf_token": other.csrf("/console/users")})
    assert response.status_code == 403
    assert "sneaky@clinic.example" not in user_emails(console_server)


# ---- roles -------------------------------------------------------------------------------------


def test_a_coordinator_gets_403_on_users_and_sees_no_link(console_server):
    coordinator = console_server.login("coordinator")
    overview = coordinator.get("/console/")
    assert 'href="/console/users"' not in overview.text
    assert 'href="/console/activity"' not in overview.text  # activity is for reviewers and admins
    page = coordinator.get("/console/users")
    assert page.status_code == 403 and "coordinator" in page.text
    assert_security_headers(page)
    data = {"email": "sneaky@clinic.example", "role": "admin", "password": "a long enough password"}
    posted = coordinator.post("/console/users", data={**data, "csrf_token": coordinator.csrf()})
    assert posted.status_code == 403
    assert "sneaky@clinic.example" not in user_emails(console_server)


def test_each_role_sees_the_links_it_may_follow(console_server):
    admin = console_server.login("admin").get("/console/").text
    reviewer = console_server.login("reviewer").get("/console/").text
    assert 'href="/console/users"' in admin and 'href="/console/activity"' in admin
    assert 'href="/console/activity"' in reviewer and 'href="/console/users"' not in reviewer
    assert console_server.login("reviewer").get("/console/users").status_code == 403


def test_require_refuses_an_unknown_action_when_the_page_is_defined():
    with pytest.raises(ValueError, match="unknown action"):
        require("users.delete_everything")


# ---- headers -----------------------------------------------------------------------------------


def test_security_headers_on_every_console_response(console_server):
    anonymous, admin, coordinator = (
        console_server.client(),
        console_server.login("admin"),
        console_server.login("coordinator"),
    )
    responses = [
        anonymous.get("/console/login"),
        anonymous.get("/console/"),  # the redirect to login
        anonymous.get("/console/no-such-page"),
        anonymous.post("/console/users", data={}),  # 403: no session
        anonymous.get("/console/static/console.css"),
        coordinator.get("/console/users"),  # 403: role
        admin.get("/console/no-such-page"),
        admin.get("/console/activity.csv"),
        *[admin.get(path) for path in PAGES],
    ]
    assert [r.status_code for r in responses[:6]] == [200, 303, 404, 403, 200, 403]
    assert all(r.status_code == 200 for r in responses[-4:])
    for response in responses:
        assert_security_headers(response)


def test_no_console_leaves_it_out(make_settings):
    with serve_console(make_settings(), Clock(), users=False, console=False) as server:
        client = server.client()
        assert client.get("/console/login").status_code == 404
        assert client.get("/healthz").json() == {"ok": True}


def test_serve_offers_no_console():
    from typer.testing import CliRunner

    from campaign.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and "--no-console" in result.output
