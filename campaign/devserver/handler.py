"""The HTTP side: routes (mail send, /_dev endpoints) and a server with a reused thread pool."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import socket
import struct
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from campaign.devserver import activity
from campaign.devserver.events import build_event, post_signed_events, public_key_b64
from campaign.devserver.state import MAIL_SEND_PATH, Faults, ServerState
from campaign.devserver.validation import is_sandbox, sg_error, validate_mail_send


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"  # what SendGrid answers with
    sys_version = ""
    server: PooledServer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the benchmark would spend its time printing

    # -- helpers ---------------------------------------------------------------------------

    def _send_json(self, status: int, data: Any = None, headers: dict[str, str] | None = None) -> None:
        body = b"" if data is None else json.dumps(data).encode("utf-8")
        self.send_response(status)
        if data is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _errors(
        self, status: int, errors: list[dict[str, Any]], headers: dict[str, str] | None = None
    ) -> None:
        self._send_json(status, {"errors": errors}, headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drain(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def _abort(self) -> None:
        """Close with RST and no answer: SO_LINGER 0, and skip the polite shutdown."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.server.mark_aborted(self.connection)

    # -- routes ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        state = self.server.state
        if self.path == "/_dev/messages":
            with state.lock:
                messages = [m.as_json() for m in state.messages]
                counters = dataclasses.asdict(state.counters)
            self._send_json(200, {"messages": messages, "counters": counters})
        elif self.path == "/_dev/summary":
            # For a million recipients: counts, without the messages.
            with state.lock:
                messages = list(state.messages)
                counters = dataclasses.asdict(state.counters)
            to = [e.lower() for m in messages for e in m.to]
            send_ids = [m.send_id for m in messages]
            self._send_json(
                200,
                {
                    "messages": len(messages),
                    "distinct_to": len(set(to)),
                    "distinct_send_ids": len(set(send_ids)),
                    "counters": counters,
                },
            )
        elif self.path == "/_dev/faults":
            self._send_json(200, dataclasses.asdict(state.faults))
        elif self.path == "/_dev/public-key":
            self._send_json(200, {"public_key": public_key_b64(state.private_key)})
        elif self.path.split("?", 1)[0] == activity.ACTIVITY_PATH:
            self._activity_search()
        else:
            self._errors(404, [sg_error("Not Found", None)])

    def _activity_search(self) -> None:
        """GET /v3/messages: the Email Activity search by send id (campaign.devserver.activity)."""
        state = self.server.state
        if self.headers.get("Authorization", "") != f"Bearer {state.api_key}":
            return self._errors(401, [sg_error("authorization required", None)])
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        send_ids = activity.wanted_send_ids((params.get("query") or [""])[0])
        if send_ids is None:
            return self._errors(400, [sg_error("this server only searches unique_args['send_id']", "query")])
        try:
            limit = int((params.get("limit") or ["10"])[0])
        except ValueError:
            return self._errors(400, [sg_error("limit must be a number", "limit")])
        with state.lock:
            found = activity.search(list(state.messages), send_ids, max(1, min(limit, 1000)))
        self._send_json(200, {"messages": found})

    def do_POST(self) -> None:
        if self.path == MAIL_SEND_PATH:
            self._mail_send()
        elif self.path.startswith("/_dev/"):
            self._dev_post()
        else:
            self._drain(int(self.headers.get("Content-Length") or 0))
            self._errors(404, [sg_error("Not Found", None)])

    def _dev_post(self) -> None:
        state = self.server.state
        raw = self._read_body()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return self._errors(400, [sg_error("Bad Request", None)])
        if self.path == "/_dev/reset":
            state.reset()
            return self._send_json(200, {"ok": True})
        if self.path == "/_dev/faults":
            try:
                state.set_faults(Faults.from_dict(data))
            except (TypeError, ValueError) as exc:
                return self._errors(400, [sg_error(str(exc), None)])
            return self._send_json(200, dataclasses.asdict(state.faults))
        if self.path == "/_dev/events":
            with state.lock:
                matches = [
                    m
                    for m in state.messages
                    if m.message_id == data.get("message_id")
                    or (data.get("send_id") and m.send_id == data.get("send_id"))
                ]
            if not matches or not data.get("url"):
                return self._errors(400, [sg_error("need url and a known send_id or message_id", None)])
            try:
                events = [build_event(matches[-1], kind) for kind in data.get("events") or ["delivered"]]
            except ValueError as exc:
                return self._errors(400, [sg_error(str(exc), "events")])
            status = post_signed_events(state.private_key, data["url"], events)
            return self._send_json(200, {"status": status, "events": events})
        self._errors(404, [sg_error("Not Found", None)])

    def _mail_send(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        fault = state.draw_fault()

        if fault == "reset_before_body":
            return self._abort()

        # Auth comes before the body is looked at (SendGrid answers 401 to any body).
        auth = self.headers.get("Authorization", "")
        if auth != f"Bearer {state.api_key}":
            self._drain(length)
            state.count("unauthorized")
            return self._errors(
                401,
                [sg_error("The provided authorization grant is invalid, expired, or revoked", None)],
            )

        if length > state.max_body_bytes:
            # Read it anyway: closing on an unread upload makes the client see a reset
            # instead of the 413.
            self._drain(length)
            state.count("too_large")
            return self._errors(413, [sg_error("Payload Too Large", None)])

        raw = self.rfile.read(length) if length else b""

        if fault == "reset_after_body":
            return self._abort()
        if fault == "hang":
            # Never answer; let go only when the server stops.
            state.stopping.wait()
            return self._abort()

        latency = state.faults.latency_ms
        if latency:
            time.sleep(latency / 1000)

        if fault == "429":
            f = state.faults
            return self._errors(
                429,
                [sg_error("too many requests", None)],
                {
                    "X-RateLimit-Limit": "600",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": str(int(time.time()) + f.rate_limit_reset_s),
                },
            )
        if fault in ("500", "502", "503"):
            return self._errors(int(fault), [sg_error("Internal server error", None)])

        try:
            body = json.loads(raw)
        except ValueError:
            state.count("invalid")
            return self._errors(
                400,
                [sg_error("Invalid JSON, or a body this endpoint cannot read.", None)],
            )
        errors = validate_mail_send(body)
        refused = set(state.faults.invalid_addresses)
        if refused and not errors:
            errors = [
                sg_error("Does not contain a valid address.", f"personalizations.{i}.to.{j}.email")
                for i, p in enumerate(body["personalizations"])
                for j, r in enumerate(p["to"])
                if r["email"].lower() in refused
            ]
        if errors:
            state.count("invalid")
            return self._errors(400, errors)

        senders = state.verified_senders
        if senders is not None and body["from"]["email"].lower() not in senders:
            state.count("forbidden")
            return self._errors(
                403,
                [
                    sg_error(
                        "The from address does not match a verified Sender Identity. Mail "
                        "cannot be sent until this error is resolved. Visit "
                        "https://sendgrid.com/docs/for-developers/sending-email/sender-identity/"
                        " to see the Sender Identity requirements",
                        "from",
                    )
                ],
            )

        if is_sandbox(body):
            # Validated and answered, nothing delivered, no events, no X-Message-Id.
            state.count("sandbox")
            return self._send_json(200)
        message_id = state.record(body, raw)
        self._send_json(202, None, {"X-Message-Id": message_id})


class PooledServer(HTTPServer):
    """HTTPServer with a pool of reused handler threads.

    ThreadingHTTPServer starts a thread per connection, and the official client opens a
    connection per request: thread start-up was about a quarter of the time per request.
    Here idle threads wait on a queue; a new one starts only when none is idle (a hanging
    request therefore never starves the others).
    """

    request_queue_size = 512  # the default backlog of 5 turns bursts into refused connections

    def __init__(self, address: tuple[str, int], state: ServerState) -> None:
        self.state = state
        self._aborted: set[int] = set()
        self._aborted_lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self._idle = 0
        self._workers: list[threading.Thread] = []
        self._pool_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:  # type: ignore[override]
        with self._pool_lock:
            if self._idle == 0:
                t = threading.Thread(target=self._work, daemon=True, name="sendgrid-dev-handler")
                self._workers.append(t)
                self._idle += 1
                t.start()
            self._idle -= 1
        self._queue.put((request, client_address))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                with self._pool_lock:
                    self._idle += 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, reset) is business as usual here, not a traceback.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)

    def server_close(self) -> None:
        super().server_close()
        with self._pool_lock:
            workers = list(self._workers)
        for _ in workers:
            self._queue.put(None)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().server_bind()

    def mark_aborted(self, request: socket.socket) -> None:
        with self._aborted_lock:
            self._aborted.add(id(request))

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._aborted_lock:
            aborted = id(request) in self._aborted
            self._aborted.discard(id(request))
        if aborted:
            self.close_request(request)  # no FIN first: SO_LINGER 0 turns this into a RST
        else:
            super().shutdown_request(request)
