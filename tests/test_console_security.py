"""The console's security, over real HTTP: login, sessions, CSRF, roles and response headers."""

from __future__ import annotations

from campaign.console.security import SECURITY_HEADERS


def assert_security_headers(response):
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, (response.url, name, response.headers.get(name))


def test_console_redirects_a_visitor_without_session_to_login(console_server):
    response = console_server.client().get("/console/")
    assert response.status_code == 303
    assert response.headers["location"] == "/console/login?next=%2Fconsole%2F"
    assert_security_headers(response)


def test_login_then_overview_shows_user_and_logout_button(console_server):
    client = console_server.login("coordinator")
    page = client.get("/console/")
    assert page.status_code == 200
    assert "coordinator@clinic.example" in page.text
    assert 'action="/console/logout"' in page.text
    assert "Fresh Start Ketamine" in page.text
    assert_security_headers(page)


def test_security_headers_on_login_404_and_static(console_server):
    client = console_server.client()
    for path in ("/console/login", "/console/no-such-page", "/console/static/console.css"):
        assert_security_headers(client.get(path))
    assert client.get("/console/no-such-page").status_code == 404
