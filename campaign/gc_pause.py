"""Python's cyclic garbage collector paused while a hot stretch runs (a send step, reading a
batch of due rows): they make many short-lived objects in no cycle, which reference counting
frees, and the collector would otherwise run full collections over everything they keep alive."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _GCPause:
    """The cyclic garbage collector off while a stretch runs, back on when the last running
    one ends (steps of tick workers, and walks, may overlap in one process).

    A step keeps its ten thousand due enrollments, claims and results alive until it ends, so
    the collector promoted them and ran full collections over everything the process holds:
    about a quarter of a bulk step's CPU time (61 full collections in a step to 200,000).
    Reference counting still frees what a step drops; the few cycles it makes wait for the
    first collection after it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._was_enabled = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._running == 0:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0 and self._was_enabled:
                    gc.enable()


gc_paused = _GCPause()
