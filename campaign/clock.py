"""Times given as text: a command's --now or --start, a flow's `now` parameter."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_when(value: str | None) -> datetime:
    """An ISO 8601 time as an aware datetime (a naive one is UTC); empty or None: the real clock.
    A value that is not ISO 8601 raises ValueError saying how to write it."""
    if not value:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an ISO 8601 time; write it like 2026-03-02T14:00:00-05:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
