"""Validation of /v3/mail/send bodies with SendGrid's error shapes and wording.

Independent of campaign.delivery.payload on purpose: a second opinion on what we build.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

_EMAIL_RE = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


def sg_error(message: str, field_name: str | None) -> dict[str, Any]:
    return {"message": message, "field": field_name, "help": None}


def _valid_address(value: Any) -> bool:
    return isinstance(value, str) and bool(_EMAIL_RE.match(value))


def validate_mail_send(body: Any) -> list[dict[str, Any]]:
    """SendGrid-shaped errors for a /mail/send body; empty when it would be accepted.

    Messages follow SendGrid's wording where we know it.
    """
    if not isinstance(body, dict):
        return [sg_error("Bad Request", None)]
    errors: list[dict[str, Any]] = []

    sender = body.get("from")
    if not isinstance(sender, dict) or "email" not in sender:
        errors.append(
            sg_error(
                "The from object must be provided for every email send. It is an object that "
                "requires the email parameter, but may also contain a name parameter.",
                "from",
            )
        )
    elif not _valid_address(sender["email"]):
        errors.append(sg_error("The from email does not contain a valid address.", "from.email"))

    reply_to = body.get("reply_to")
    if reply_to is not None and not (isinstance(reply_to, dict) and _valid_address(reply_to.get("email"))):
        errors.append(sg_error("The reply_to email does not contain a valid address.", "reply_to.email"))

    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        errors.append(
            sg_error(
                "The personalizations field is required and must have at least one personalization.",
                "personalizations",
            )
        )
        personalizations = []
    elif len(personalizations) > 1000:
        errors.append(
            sg_error("The personalizations field must have at most 1000 items.", "personalizations")
        )

    recipients = 0
    seen: set[str] = set()
    for i, p in enumerate(personalizations):
        if not isinstance(p, dict) or not isinstance(p.get("to"), list) or not p["to"]:
            errors.append(
                sg_error(
                    "The to array is required for all personalization objects, and must have "
                    "at least one email object with a valid email address.",
                    f"personalizations.{i}.to",
                )
            )
            continue
        for kind in ("to", "cc", "bcc"):
            for j, r in enumerate(p.get(kind) or []):
                recipients += 1
                addr = r.get("email") if isinstance(r, dict) else None
                if not _valid_address(addr):
                    errors.append(
                        sg_error(
                            "Does not contain a valid address.", f"personalizations.{i}.{kind}.{j}.email"
                        )
                    )
                    continue
                if addr.lower() in seen:
                    errors.append(
                        sg_error(
                            "Each email address in the personalization block should be unique "
                            "between to, cc, and bcc. We found the first duplicate instance of "
                            f"[{addr}] in the personalizations.{i}.{kind} field.",
                            f"personalizations.{i}.{kind}",
                        )
                    )
                seen.add(addr.lower())
        if "custom_args" in p:
            merged = p["custom_args"]
            if isinstance(merged, dict) and isinstance(body.get("custom_args"), dict):
                merged = {**body["custom_args"], **merged}
            errors += _validate_custom_args(merged, f"personalizations.{i}.custom_args")
        errors += _validate_personalization_extras(p, f"personalizations.{i}")
    if recipients > 1000:
        errors.append(
            sg_error("The total number of recipients must be no more than 1000.", "personalizations")
        )

    def _nonempty(s: Any) -> bool:
        return isinstance(s, str) and s != ""

    if not body.get("template_id"):
        subject_everywhere = bool(personalizations) and all(
            isinstance(p, dict) and _nonempty(p.get("subject")) for p in personalizations
        )
        if not _nonempty(body.get("subject")) and not subject_everywhere:
            errors.append(
                sg_error(
                    "The subject is required. You can get around this requirement if you use a "
                    "template with a subject defined or if every personalization has a subject "
                    "defined.",
                    "subject",
                )
            )
        content = body.get("content")
        if not isinstance(content, list) or not content:
            errors.append(
                sg_error(
                    "Unless a valid template_id is provided, the content parameter is required. "
                    "There must be at least one defined content block.",
                    "content",
                )
            )
        else:
            for i, part in enumerate(content):
                if not isinstance(part, dict) or not _nonempty(part.get("value")):
                    errors.append(
                        sg_error(
                            "The content value must be a string at least one character in length.",
                            f"content.{i}.value",
                        )
                    )
                if not isinstance(part, dict) or not _nonempty(part.get("type")):
                    errors.append(sg_error("The content type is required.", f"content.{i}.type"))
            types = [p.get("type") for p in content if isinstance(p, dict)]
            order = [t for t in ("text/plain", "text/html") if t in types]
            if types[: len(order)] != order:
                errors.append(
                    sg_error(
                        "If present, text/plain and text/html may only be provided once, and "
                        "text/plain must be first, followed by text/html.",
                        "content",
                    )
                )

    if "custom_args" in body:
        errors += _validate_custom_args(body["custom_args"], "custom_args")

    categories = body.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            errors.append(sg_error("Categories must be an array of strings.", "categories"))
        elif len(categories) > 10:
            errors.append(sg_error("Too many categories. You may only have up to 10.", "categories"))
        elif any(len(c) > 255 for c in categories):
            errors.append(sg_error("A category cannot exceed 255 characters.", "categories"))

    headers = body.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            errors.append(sg_error("Invalid type. Expected: object.", "headers"))
        else:
            for name, value in headers.items():
                if not isinstance(value, str):
                    errors.append(
                        sg_error("Invalid type. Expected: string, given: other.", f"headers.{name}")
                    )

    asm = body.get("asm")
    if asm is not None and not (isinstance(asm, dict) and type(asm.get("group_id")) is int):
        errors.append(sg_error("Invalid type. Expected: integer.", "asm.group_id"))

    sandbox = (body.get("mail_settings") or {}).get("sandbox_mode")
    if sandbox is not None and type((sandbox or {}).get("enable")) is not bool:
        errors.append(
            sg_error(
                f"Invalid type. Expected: boolean, given: {type((sandbox or {}).get('enable')).__name__}.",
                "mail_settings.sandbox_mode.enable",
            )
        )

    send_at = body.get("send_at")
    if send_at is not None and (type(send_at) is not int or send_at > time.time() + 72 * 3600):
        errors.append(
            sg_error("The send_at parameter must be a Unix time no more than 72 hours ahead.", "send_at")
        )
    return errors


def _validate_custom_args(custom_args: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(custom_args, dict):
        return [sg_error("Invalid type. Expected: object.", where)]
    # Real SendGrid answers a non-string value with {"message": "Bad Request", "field": null}
    # (cryptic, see django-anymail); we name the field, which is kinder and what tests need.
    errors = [
        sg_error("Invalid type. Expected: string.", f"{where}.{key}")
        for key, value in custom_args.items()
        if not isinstance(value, str)
    ]
    if _json_bytes_at_least(custom_args, 10_000, strings=not errors):
        errors.append(sg_error("The custom_args field must be less than 10000 bytes.", where))
    return errors


def _json_bytes_at_least(value: dict[str, Any], limit: int, strings: bool = True) -> bool:
    """len(json.dumps(value).encode("utf-8")) >= limit, without encoding a mapping of strings
    (`strings`) that is surely smaller: json.dumps writes a character in at most 12 bytes (an
    escaped surrogate pair), an item's quotes, colon and comma in 8, the braces in 2. A bulk
    request's 1,000 personalizations were encoded twice each (a third of the validation)."""
    try:
        if strings and 12 * sum(len(k) + len(v) for k, v in value.items()) + 8 * len(value) + 2 < limit:
            return False
    except TypeError:  # a key or value that is not a string: encoded below
        pass
    return len(json.dumps(value).encode("utf-8")) >= limit


def _validate_personalization_extras(p: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """A personalization's own subject, substitutions and headers."""
    errors = []
    if "subject" in p and not (isinstance(p["subject"], str) and p["subject"]):
        errors.append(
            sg_error("The subject must be a string at least one character in length.", f"{where}.subject")
        )
    subs = p.get("substitutions")
    if subs is not None:
        if not isinstance(subs, dict) or not all(isinstance(v, str) for v in subs.values()):
            errors.append(sg_error("Invalid type. Expected: string, given: other.", f"{where}.substitutions"))
        elif _json_bytes_at_least(subs, 10_000):
            errors.append(
                sg_error(
                    "The total collective size of your substitutions may not exceed 10,000 bytes per "
                    "personalization object.",
                    f"{where}.substitutions",
                )
            )
    headers = p.get("headers")
    if headers is not None and (
        not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values())
    ):
        errors.append(sg_error("Invalid type. Expected: string, given: other.", f"{where}.headers"))
    return errors


def is_sandbox(body: dict[str, Any]) -> bool:
    return ((body.get("mail_settings") or {}).get("sandbox_mode") or {}).get("enable") is True
