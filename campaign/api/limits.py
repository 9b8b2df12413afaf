"""In-process helpers of the lead API: a token bucket per API token, and the audiences read
from disk again only when their files change."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

from campaign.audiences import Audience, load_audiences


class RateLimiter:
    """A token bucket per key: `rate` requests a second, bursts of up to `rate` (at least 1).
    Per process: with several server processes each allows `rate`."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go; else the seconds until it may (for Retry-After)."""
        with self._lock:
            now = self.clock()
            tokens, at = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def retry_after(seconds: float) -> str:
    """Retry-After takes whole seconds: round up, never 0."""
    return str(max(1, math.ceil(seconds)))


class AudienceCache:
    """load_audiences, again only when a file in the folder changed (looked at once a second),
    so a request does not parse YAML and an edited audience is picked up without a restart."""

    def __init__(self, directory: Path, clock: Callable[[], float] = time.monotonic):
        self.directory = directory
        self.clock = clock
        self._stamp: tuple | None = None
        self._audiences: list[Audience] = []
        self._checked = -math.inf
        self._lock = threading.Lock()

    def get(self) -> list[Audience]:
        with self._lock:
            now = self.clock()
            if self._stamp is not None and now - self._checked < 1.0:
                return self._audiences
            stamp = tuple(sorted((p.name, p.stat().st_mtime_ns) for p in self.directory.glob("*.yaml")))
            if stamp != self._stamp:
                self._audiences = load_audiences(self.directory)
                self._stamp = stamp
            self._checked = now
            return self._audiences
