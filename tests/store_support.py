"""Rows for tests that set up a store by hand."""

from __future__ import annotations

from datetime import datetime


def enrollment_row(campaign_id: int, lead_id: int, at: datetime, audience: str = "gad", **more) -> dict:
    """An `add_enrollments` row: active, enrolled and due at `at`; `more` sets other columns."""
    return {
        "campaign_id": campaign_id,
        "lead_id": lead_id,
        "audience": audience,
        "audience_version": "v",
        "enrolled_at": at,
        "state": "active",
        "next_due_at": at,
    } | more
