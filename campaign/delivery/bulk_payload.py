"""SendGrid v3 payloads of bulk requests (campaign.bulk): one email, many personalizations,
each recipient's values as substitutions, and the quick one-by-one check of each recipient
before a request is built. Pure functions, as campaign.delivery.payload."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from campaign.delivery.payload import (
    ADDRESS,
    MAX_SUBSTITUTIONS_BYTES,
    SendGridPayload,
    check_custom_args,
    check_personalization,
    clean_display_name,
)


def bulk_personalization(recipient: Any) -> dict[str, Any]:
    """One recipient of a bulk request (campaign.bulk.BulkRecipient): its address, subject,
    substitutions, and the headers written out in full (substitutions do not apply to headers).
    The substitutions are the recipient's own dict (made per recipient, never changed)."""
    name = _clean_name(recipient.to_name)
    return {
        "to": [{"email": recipient.to_email, "name": name} if name else {"email": recipient.to_email}],
        "subject": recipient.subject,
        "substitutions": recipient.substitutions,
        "headers": {
            "List-Unsubscribe": f"<{recipient.unsubscribe_url}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "custom_args": {"send_id": recipient.send_id},
    }


_clean_name = lru_cache(maxsize=4096)(clean_display_name)  # names repeat: cleaned once each


def build_bulk_payload(
    email: Any,
    personalizations: list[dict[str, Any]],
    *,
    sandbox: bool = False,
    asm_group_id: int | None = None,
    track_opens: bool = False,
    track_clicks: bool = False,
) -> dict[str, Any]:
    """One request for many recipients of one email (campaign.bulk.BulkEmail): the content
    holds substitution tags, each personalization the recipient's values. No top-level
    subject: every personalization has its own."""
    payload = SendGridPayload()
    payload.set_from(email.from_email, email.from_name)
    payload.set_reply_to(email.reply_to)
    payload.data["personalizations"] = personalizations
    payload.set_bodies(email.text, email.html)
    payload.set_tags([email.category])
    payload.set_asm_group(asm_group_id)
    payload.set_tracking(track_opens=track_opens, track_clicks=track_clicks)
    payload.set_sandbox(sandbox)
    return payload.serialize_data()


def check_bulk_personalization(p: Any) -> list[str]:
    """check_personalization and the personalization's own custom_args (a bulk request has
    none of its own to merge): what check_limits(personalizations_checked=True) takes as done."""
    problems = check_personalization(p)
    if isinstance(p, dict):
        problems += check_custom_args(p.get("custom_args"), "personalization.custom_args")
    return problems


def plainly_valid(r: Any) -> bool:
    """True when bulk_personalization(r) (a campaign.bulk.BulkRecipient's) certainly passes
    check_bulk_personalization, told from the recipient's values in a few operations (the full
    check of the made dict cost more than making it): an address that matches, a subject, a
    short string send_id, string substitutions far under their limit (the headers are ours:
    two strings). False: run check_bulk_personalization."""
    email, subject, send_id, subs = r.to_email, r.subject, r.send_id, r.substitutions
    if not (
        type(email) is str
        and ADDRESS.match(email)
        and type(subject) is str
        and subject.strip()
        and type(send_id) is str
        and len(send_id) < 100
        and type(subs) is dict
    ):
        return False
    chars = 0
    for k, v in subs.items():
        if type(k) is not str or type(v) is not str:
            return False
        chars += len(k) + len(v)
    # As _json_size_if_near bounds it: 12 bytes a character, 8 an item.
    return 2 + 12 * chars + 8 * len(subs) < MAX_SUBSTITUTIONS_BYTES
