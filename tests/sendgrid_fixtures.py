"""Shared helpers for the SendGrid tests (no conftest: plain functions and a tiny receiver)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from campaign.models import OutboundEmail

KEY = "SG.test-key"  # the key the test server accepts


def make_email(i: int = 0, **overrides) -> OutboundEmail:
    """An OutboundEmail built directly, the way the flows hand them to a transport."""
    fields = dict(
        send_id=f"snd_{i:04d}_q8Zr",
        to_email=f"lead{i}@example.com",
        to_name="Jane Doe",
        from_email="care@freshstartketamine.example",
        from_name="Fresh Start Ketamine",
        reply_to="care@freshstartketamine.example",
        subject="What an intake visit looks like",
        preheader="Fifteen minutes, no commitment",
        html="<html><body><p>Hello Jane,</p><p>Some patients ...</p></body></html>",
        text="Hello Jane,\n\nSome patients ...",
        unsubscribe_url=f"https://freshstartketamine.example/u/tok{i}",
        category="education",
        is_test=False,
    )
    fields.update(overrides)
    return OutboundEmail(**fields)


@dataclass
class ReceivedPost:
    body: bytes
    headers: dict[str, str]


@dataclass
class WebhookReceiver:
    url: str
    posts: list[ReceivedPost] = field(default_factory=list)


@contextlib.contextmanager
def webhook_receiver(status: int = 200) -> Iterator[WebhookReceiver]:
    """A local HTTP endpoint that keeps the raw body and headers of every POST."""
    receiver = WebhookReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            receiver.posts.append(ReceivedPost(body, dict(self.headers.items())))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{httpd.server_address[1]}/webhooks/sendgrid"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        httpd.shutdown()
        httpd.server_close()
