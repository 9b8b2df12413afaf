"""Two things Prefect 3.9's client does once per client that it could do once per process.

1. The server version check. Prefect checks once per process and API URL, but spells the URL
   two ways: the run's sync client `http://host/api/`, the log and event clients
   `http://host/api`. So every run asked the server twice, the second time from the background
   thread while the tick runs (a round trip and a TLS context). `share_version_check()` lets
   the check that passed count for both spellings: the check itself stays on.
2. TLS contexts. Each client Prefect makes (the run's sync client, the log and event workers'
   clients, the events socket's version check) builds its own context from certifi's bundle,
   ~18 ms of CPU each, mostly holding the GIL, three of them in the background thread during
   the tick; for an `http://` API none of them is ever used. They share one context per CA file
   while the API URL is `http://`, and it reads its CA file only when a TLS connection first
   needs it (a redirect to https): never, for such an API. An `https://` API is left alone.

Both are installed only on the Prefect versions they were written against (as flows/heartbeat.py).
"""

from __future__ import annotations

import functools
import ssl
import threading
import types

import prefect
from prefect._internal import version_checking
from prefect.client import orchestration
from prefect.settings import PREFECT_API_URL

VERSIONS = ("3.9.",)  # pyproject.toml: prefect>=3.9,<3.10


def share_version_check() -> None:
    """After the run's client passed the version check for `…/api/`, `…/api` is checked too."""
    url = PREFECT_API_URL.value()
    if not url:
        return
    spellings = {url.rstrip("/"), url.rstrip("/") + "/"}
    keys = [version_checking._api_version_check_key(u, prefect.__version__) for u in spellings]
    if any(version_checking._is_api_version_check_cached(k) for k in keys):
        for key in keys:
            version_checking._cache_api_version_check(key)


@functools.lru_cache(maxsize=4)
def _verified_context(cafile: str) -> ssl.SSLContext:
    return _CAOnFirstUse(cafile)


class _CAOnFirstUse(ssl.SSLContext):
    """ssl.create_default_context(cafile=cafile), verifying certificates and host names, that
    reads the CA file when it first wraps a connection: parsing certifi's bundle cost each flow
    run ~20 ms of CPU before its first request (more at load: the tick's context is built
    beside it). A connection wrapped another way would find no CA and fail, never pass."""

    def __new__(cls, cafile: str):
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname

    def __init__(self, cafile: str):
        self._cafile: str | None = cafile
        self._loading = threading.Lock()

    def _load_ca(self) -> None:
        with self._loading:
            if self._cafile is not None:
                self.load_verify_locations(cafile=self._cafile)
                self._cafile = None

    def wrap_socket(self, *args, **kwargs):  # httpcore's sync streams
        self._load_ca()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args, **kwargs):  # asyncio and anyio streams
        self._load_ca()
        return super().wrap_bio(*args, **kwargs)


def _create_default_context(*args, **kwargs) -> ssl.SSLContext:
    """ssl.create_default_context, one per CA file for a verified context of an http:// API."""
    url = PREFECT_API_URL.value() or ""
    if not args and set(kwargs) == {"cafile"} and url.startswith("http://"):
        return _verified_context(kwargs["cafile"])
    return ssl.create_default_context(*args, **kwargs)


def install() -> bool:
    """Use both in this process; False (Prefect's own behaviour) on another Prefect version."""
    if not prefect.__version__.startswith(VERSIONS):
        return False
    for module in (orchestration, version_checking):
        if getattr(module, "ssl", None) is ssl:
            module.ssl = _SharedSSL("ssl")
    return True


class _SharedSSL(types.ModuleType):
    """The ssl module as those two Prefect modules see it: the same but for create_default_context."""

    create_default_context = staticmethod(_create_default_context)

    def __getattr__(self, name: str):
        return getattr(ssl, name)
