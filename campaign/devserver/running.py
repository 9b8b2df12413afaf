"""Running the dev server: on a background thread (tests) or in the foreground (CLI)."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from campaign.devserver.events import build_event, post_signed_events, public_key_b64
from campaign.devserver.handler import PooledServer
from campaign.devserver.state import (
    DEFAULT_API_KEY,
    MAX_BODY_BYTES,
    Counters,
    Faults,
    RecordedMessage,
    ServerState,
)


class SendGridServer:
    """A running server (see ``running_server``)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str = DEFAULT_API_KEY,
        faults: Faults | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        verified_senders: Iterable[str] | None = None,
    ) -> None:
        senders = None if verified_senders is None else frozenset(s.lower() for s in verified_senders)
        self.state = ServerState(api_key, faults or Faults(), max_body_bytes, senders)
        self._httpd = PooledServer((host, port), self.state)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_key(self) -> str:
        return self.state.api_key

    @property
    def messages(self) -> list[RecordedMessage]:
        """A snapshot of the accepted (non-sandbox) messages, in arrival order."""
        with self.state.lock:
            return list(self.state.messages)

    @property
    def counters(self) -> Counters:
        with self.state.lock:
            c = self.state.counters
            return dataclasses.replace(c, faults=dict(c.faults))

    @property
    def public_key_b64(self) -> str:
        return public_key_b64(self.state.private_key)

    def set_faults(self, faults: Faults | None = None, **changes: Any) -> Faults:
        """Replace the faults (and reseed), or change some fields: ``set_faults(rate_503=0.5)``."""
        new = faults or dataclasses.replace(self.state.faults, **changes)
        self.state.set_faults(new)
        return new

    def reset(self) -> None:
        self.state.reset()

    def set_api_key(self, api_key: str) -> None:
        """Accept a different key from now on (a revoked key, as far as clients can tell)."""
        with self.state.lock:
            self.state.api_key = api_key

    def message_for(self, send_id: str) -> RecordedMessage:
        matches = [m for m in self.messages if m.send_id == send_id]
        if not matches:
            raise KeyError(send_id)
        return matches[-1]

    def events_for(self, send_id: str, *kinds: str, **extra: Any) -> list[dict[str, Any]]:
        message = self.message_for(send_id)
        return [build_event(message, kind, **extra) for kind in kinds]

    def post_events(self, url: str, events: list[dict[str, Any]], *, timestamp: str | None = None) -> int:
        """Sign and POST an event batch like SendGrid's Event Webhook; returns the status."""
        return post_signed_events(self.state.private_key, url, events, timestamp=timestamp)

    def start(self) -> SendGridServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self.state.stopping.set()  # releases hanging handlers
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)


@contextlib.contextmanager
def running_server(
    port: int = 0,
    api_key: str = DEFAULT_API_KEY,
    faults: Faults | None = None,
    *,
    host: str = "127.0.0.1",
    max_body_bytes: int = MAX_BODY_BYTES,
    verified_senders: Iterable[str] | None = None,
) -> Iterator[SendGridServer]:
    """A SendGrid-compatible server on a background thread for the duration of the block.

    ``verified_senders``: when given, a from address outside it is answered 403 (SendGrid's
    Sender Identity check).
    """
    server = SendGridServer(
        host,
        port,
        api_key=api_key,
        faults=faults,
        max_body_bytes=max_body_bytes,
        verified_senders=verified_senders,
    ).start()
    try:
        yield server
    finally:
        server.stop()


def main(port: int = 3030, api_key: str = DEFAULT_API_KEY, host: str = "127.0.0.1") -> None:
    """Serve until interrupted (``campaign dev-sendgrid``)."""
    server = SendGridServer(host, port, api_key=api_key)
    print(f"SendGrid-compatible server at {server.url}", flush=True)
    print(f"  SENDGRID_API_HOST={server.url}", flush=True)
    print(f"  SENDGRID_API_KEY={api_key}", flush=True)
    print(f"  webhook public key: {server.public_key_b64}", flush=True)
    print(f"  accepted messages: {server.url}/_dev/messages", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.state.stopping.set()
        server._httpd.server_close()
