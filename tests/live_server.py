"""An ASGI app on real uvicorn, in a thread, on a free loopback port: the one way the web tests
(console, API, public pages) start a server."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import uvicorn


def free_socket() -> tuple[socket.socket, str]:
    """A socket bound to a free loopback port (kept bound, so no other test takes the port
    before uvicorn does) and its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextlib.contextmanager
def running(app, sock: socket.socket) -> Iterator[None]:
    """Serve `app` on `sock` until the block ends; fail loudly if uvicorn does not start."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
