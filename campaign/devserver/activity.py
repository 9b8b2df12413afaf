"""The Email Activity search (GET /v3/messages) over the recorded messages, for tests.

Only the query the project sends is understood: ``unique_args['send_id']="..."`` clauses joined
with OR. Every recorded message counts as delivered (nothing bounces here).
"""

from __future__ import annotations

import re
import time
from typing import Any

from campaign.devserver.state import RecordedMessage

ACTIVITY_PATH = "/v3/messages"
_SEND_ID_CLAUSE = re.compile(r"""unique_args\['send_id'\]\s*=\s*"([^"]*)\"""")


def wanted_send_ids(query: str) -> set[str] | None:
    """The send ids a query asks for; None when it holds anything else (a 400 at SendGrid)."""
    clauses = [c.strip() for c in re.split(r"\s+OR\s+", query.strip()) if c.strip()]
    ids = set()
    for clause in clauses:
        match = _SEND_ID_CLAUSE.fullmatch(clause)
        if match is None:
            return None
        ids.add(match.group(1))
    return ids or None


def search(messages: list[RecordedMessage], send_ids: set[str], limit: int) -> list[dict[str, Any]]:
    """One entry per recipient whose send id (the message's custom_args, or its
    personalization's) is asked for, shaped like SendGrid's answer."""
    found = []
    for message in messages:
        base = message.payload.get("custom_args") or {}
        for personalization in message.payload.get("personalizations") or []:
            send_id = {**base, **(personalization.get("custom_args") or {})}.get("send_id")
            if send_id not in send_ids:
                continue
            for recipient in personalization.get("to") or []:
                found.append(
                    {
                        "from_email": message.payload.get("from", {}).get("email"),
                        "msg_id": f"{message.message_id}.filterdrecv-dev-{len(found)}.0",
                        "subject": message.payload.get("subject", ""),
                        "to_email": recipient.get("email"),
                        "status": "delivered",
                        "opens_count": 0,
                        "clicks_count": 0,
                        "last_event_time": time.strftime(
                            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(message.received_at)
                        ),
                    }
                )
    return found[:limit]
