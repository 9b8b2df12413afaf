"""Shared by the sign-up form tests: a form on a live server, posting it as a person would (the
page first, then a few seconds on the app's clock), and the confirmation emails in the outbox."""

from __future__ import annotations

import email
import re
import time
from datetime import timedelta
from email import policy

import httpx
import sqlalchemy as sa
from test_api import Live

from campaign.app.forms import create_form
from campaign.delivery.outbox import read_index
from campaign.store import Form, leads

SHOWN_FIELD = re.compile(r'name="shown" value="([^"]+)"')
CONFIRM_LINK = re.compile(r"https?://\S+?/confirm/[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")
PERSON = {
    "email": "Pat@Example.com",
    "first_name": "Pat",
    "anxiety_type": "Generalized Anxiety Disorder (GAD)",
    "prior_treatments": "2",
    "consent": "yes",
}


def new_form(live: Live, name: str = "website") -> Form:
    return create_form(live.store, live.settings, name, None, None, live.clock())


def page_client(live: Live) -> httpx.Client:
    return httpx.Client(base_url=live.url, timeout=10)


def shown_token(client: httpx.Client, form: Form) -> str:
    page = client.get(f"/forms/{form.key}")
    assert page.status_code == 200, page.text
    return SHOWN_FIELD.search(page.text).group(1)


def sign_up(live: Live, form: Form, wait: float = 5, **fields) -> httpx.Response:
    """Open the form, take `wait` seconds (on the app's clock) to fill it in, and post it."""
    with page_client(live) as client:
        shown = shown_token(client, form)
        live.clock.now += timedelta(seconds=wait)
        return client.post(f"/forms/{form.key}", data={**PERSON, **fields, "shown": shown})


def lead_row(live: Live, address: str) -> dict | None:
    with live.store.engine.connect() as conn:
        row = conn.execute(sa.select(leads).where(leads.c.email == address)).mappings().first()
    return dict(row) if row else None


def lead_count(live: Live) -> int:
    with live.store.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(leads)).scalar()


def outbox_to(live: Live, address: str) -> list[dict]:
    return [e for e in read_index(live.settings.outbox_dir) if e["to"] == address]


def wait_for_email(live: Live, address: str, count: int = 1) -> email.message.EmailMessage:
    """The confirmation email goes after the answer (a background task): wait until it is there."""
    deadline = time.monotonic() + 15
    while len(found := outbox_to(live, address)) < count:
        assert time.monotonic() < deadline, f"no confirmation email #{count} in the outbox"
        time.sleep(0.02)
    data = (live.settings.outbox_dir / found[count - 1]["file"]).read_bytes()
    return email.message_from_bytes(data, policy=policy.default)


def confirm_link(message: email.message.EmailMessage) -> str:
    text = message.get_body(("plain",)).get_content()
    return CONFIRM_LINK.search(text).group(0)
