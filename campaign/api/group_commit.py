"""Group commit: concurrent API posts share one write transaction.

A commit waits for the disk (SQLite's WAL fsync, PostgreSQL's WAL flush): a few milliseconds
each, and SQLite takes one writer at a time. So posts that arrive while a transaction runs are
queued, and the next writer takes the whole queue in one transaction: under load a commit
carries many leads, alone a post commits as soon as it arrives (no timer, no extra thread).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


class GroupCommit(Generic[Job, Result]):
    """`run_many(jobs) -> results` (one per job, in order) runs for everything queued; each
    caller of `submit` blocks until its own result is there, or raises what the group raised."""

    def __init__(self, run_many: Callable[[list[Job]], list[Result]]):
        self.run_many = run_many
        self._writer = threading.Lock()  # one group in flight at a time
        self._queue: list[tuple[Job, Future]] = []
        self._queue_lock = threading.Lock()

    def submit(self, job: Job) -> Result:
        future: Future = Future()
        with self._queue_lock:
            self._queue.append((job, future))
        with self._writer:
            if not future.done():  # nobody took it yet: this caller writes the whole queue
                with self._queue_lock:
                    group, self._queue = self._queue, []
                try:
                    results = self.run_many([j for j, _ in group])
                except BaseException as exc:
                    for _, waiting in group:
                        waiting.set_exception(exc)
                else:
                    for (_, waiting), result in zip(group, results, strict=True):
                        waiting.set_result(result)
        return future.result()
