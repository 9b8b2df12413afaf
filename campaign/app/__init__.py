"""The application layer: the use cases the CLI, the flows, the lead API and the console call.
Each takes settings, a store or audiences and returns plain values (dataclasses, dicts, rows);
none prints, exits or parses options, and no rule lives in a caller.

  intake     every lead, from a CSV row or the API: validated, normalized, upserted with its
             proof of consent, and where it stands (audience, status, first email)
  leads      import a CSV, the leads overview, one lead's timeline, booked, forget
  audiences  the audiences with their lead counts, the audience and template check
  content    lint over every email, approvals, previews (gallery and one email)
  campaigns  launch with its preflight, the live-send problems, the results report
  delivery   one test email outside the ledger
  overview   the console's overview: campaign counts, the last ticks, preflight problems
  activity   the audit log's filters, pages and its (audited) CSV download
  ticks      the tick history: record_tick, and the wrapper on the tick flow that records each run
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign.settings import Settings


def database_exists(settings: Settings) -> bool:
    """False for a SQLite file not created yet: read-only commands then skip opening (which
    would create and migrate it)."""
    url = settings.database_url
    return not url.startswith("sqlite:///") or Path(url.removeprefix("sqlite:///")).exists()
