"""Progress for long commands: a Rich bar on a terminal, nothing otherwise.

The library reports (`advance`); only the CLI decides whether anyone is watching, so flows and
tests stay silent and fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

_reporter: Callable[[int], None] | None = None


def advance(count: int) -> None:
    if _reporter is not None:
        _reporter(count)


@contextmanager
def terminal_progress(description: str, *, enabled: bool, total: int | None = None) -> Iterator[None]:
    """Show a bar while the block runs, when `enabled` and stdout is a terminal."""
    global _reporter
    if not enabled or not sys.stdout.isatty():
        yield
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=total)
        _reporter = lambda n: progress.advance(task, n)
        try:
            yield
        finally:
            _reporter = None
