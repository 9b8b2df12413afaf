"""One sandbox-mode send to the real SendGrid. Skipped unless SENDGRID_LIVE_API_KEY is set.

Sandbox mode: SendGrid validates the request and answers 200; nothing is delivered.
SENDGRID_LIVE_FROM must be a verified sender of that account (else SendGrid answers 403).
"""

from __future__ import annotations

import os

import pytest
from sendgrid_fixtures import make_email

from campaign.delivery.sendgrid_transport import SendGridTransport
from campaign.models import SendStatus

pytestmark = pytest.mark.live

API_KEY = os.environ.get("SENDGRID_LIVE_API_KEY")


@pytest.mark.skipif(not API_KEY, reason="SENDGRID_LIVE_API_KEY is not set")
def test_sandbox_send_to_the_real_sendgrid():
    sender = os.environ.get("SENDGRID_LIVE_FROM", "care@freshstartketamine.example")
    transport = SendGridTransport(
        API_KEY,
        host=os.environ.get("SENDGRID_API_HOST", "https://api.sendgrid.com"),
        sandbox=True,
        concurrency=1,
        timeout=15,
        max_attempts=2,
    )
    [result] = transport.send_batch(
        [make_email(from_email=sender, reply_to=sender, to_email="sandbox-check@example.com", is_test=True)]
    )
    assert result.status == SendStatus.sent, result.error
