"""Build and check SendGrid v3 /mail/send payloads. Pure functions: no I/O, no clock.

The payload is assembled by one small setter per feature (after django-anymail's SendGrid
backend), then checked against SendGrid's documented limits before anything goes on the wire.

Privacy rule for everything here: SendGrid stores categories and custom_args as non-PII,
visible to its staff and not redactable. Only ``send_id`` (random) and a non-health campaign
category may go there; never the audience, the anxiety type, or a name.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from campaign.models import OutboundEmail

# SendGrid's documented limits for POST /v3/mail/send.
MAX_TOTAL_BYTES = 30 * 1024 * 1024  # "the total message size should not exceed 30MB"
MAX_CUSTOM_ARGS_BYTES = 10_000  # custom_args, in total, "must be less than 10,000 bytes"
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000  # to + cc + bcc over all personalizations
MAX_CATEGORIES = 10
MAX_CATEGORY_LENGTH = 255
MAX_SEND_AT_AHEAD_S = 72 * 3600
# "The total collective size of your substitutions may not exceed 10,000 bytes per
# personalization object."
MAX_SUBSTITUTIONS_BYTES = 10_000

TEST_CATEGORY = "test"

# Header names SendGrid refuses in the `headers` object (it sets them itself). Not exhaustive;
# the ones a template author might plausibly try.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "x-sg-id",
        "x-sg-eid",
        "received",
        "dkim-signature",
        "content-type",
        "content-transfer-encoding",
        "to",
        "from",
        "subject",
        "reply-to",
        "cc",
        "bcc",
    )
)

_NAME_UNSAFE = re.compile(r"[;,\"'<>\\]+")
# "=?" opens an RFC 2047 encoded word: a name carrying one can decode to CR/LF inside a header
# when Python refolds it (the CVE-2024-6923 class). Removing every "=?" (and "?=") leaves none to decode.
_ENCODED_WORD_MARK = re.compile(r"=\?|\?=")
_SPACES = re.compile(r"\s+")
# Headers need a short name: a long one folds badly (Python can fold a blank line into To:),
# and nobody reads past this in a mail client anyway. The full name stays in the store.
MAX_HEADER_NAME = 64
# Already clean (most names): returned without the per-character scan, once per bulk recipient.
_PLAIN_NAME = re.compile(r"\A[A-Za-z0-9.\-]+(?: [A-Za-z0-9.\-]+)*\Z")


def clean_display_name(name: str) -> str:
    """A display name safe in any header, and one SendGrid will not mangle.

    Control and format characters (CR, LF, tab, bidi overrides ...) become spaces, and so does
    every "=?" and "?=" (no encoded word survives). SendGrid v3 fails to quote display names containing
    commas or semicolons inside personalizations (sendgrid/sendgrid-python#291): "Doe, Jane"
    becomes two broken addresses. Anymail quotes the name; we drop the characters instead (and
    quotes, angle brackets and backslashes, which can break out of a quoted name). At most
    MAX_HEADER_NAME characters, cut at a space when there is one in the second half.
    """
    if len(name) <= MAX_HEADER_NAME and _PLAIN_NAME.match(name):
        return name
    name = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in name)
    name = _ENCODED_WORD_MARK.sub(" ", _NAME_UNSAFE.sub(" ", name))
    name = _SPACES.sub(" ", name).strip()
    if len(name) > MAX_HEADER_NAME:
        cut = name[: MAX_HEADER_NAME + 1].rfind(" ")
        name = name[: cut if cut > MAX_HEADER_NAME // 2 else MAX_HEADER_NAME].rstrip()
    return name


class SendGridPayload:
    """Accumulates one /mail/send request body. Each setter maps one feature to SendGrid."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {"personalizations": [{}], "headers": {}}

    # -- addresses -------------------------------------------------------------------------

    @staticmethod
    def email_object(email: str, name: str = "") -> dict[str, str]:
        obj = {"email": email}
        # An empty "name" is accepted but pointless; SendGrid rejects a null one.
        if name:
            obj["name"] = name
        return obj

    def set_from(self, email: str, name: str) -> None:
        # from/reply_to names are quoted correctly by SendGrid (the comma bug is only in
        # personalizations), but a newline there is still a header injection: clean anyway.
        self.data["from"] = self.email_object(email, clean_display_name(name))

    def set_reply_to(self, email: str | None) -> None:
        if email:
            self.data["reply_to"] = self.email_object(email)

    def set_to(self, email: str, name: str) -> None:
        # One personalization, one recipient: each lead gets an email of its own, so no lead
        # ever sees another lead's address.
        self.data["personalizations"][0]["to"] = [self.email_object(email, clean_display_name(name))]

    # -- content ---------------------------------------------------------------------------

    def set_subject(self, subject: str) -> None:
        # Top-level subject: SendGrid requires it unless every personalization has one (or a
        # template supplies it). An empty string is not "present": check_limits reports it.
        self.data["subject"] = subject

    def set_bodies(self, text: str, html: str) -> None:
        # "If you choose to include the text/plain or text/html mime types, they must be the
        # first indices of the content array in the order text/plain, text/html."
        # An empty value is rejected ("must be a string at least one character in length"),
        # so an empty part is left out rather than sent.
        content = []
        if text:
            content.append({"type": "text/plain", "value": text})
        if html:
            content.append({"type": "text/html", "value": html})
        self.data["content"] = content

    # -- headers ---------------------------------------------------------------------------

    def set_list_unsubscribe(self, url: str) -> None:
        # Gmail/Yahoo bulk-sender rules and RFC 8058 one-click unsubscribe. SendGrid passes
        # custom headers through as long as values are strings. Note: with SendGrid's own
        # subscription tracking switched on account-wide it may add its own List-Unsubscribe;
        # we keep tracking_settings.subscription_tracking off so ours is the one that ships.
        self.data["headers"]["List-Unsubscribe"] = f"<{url}>"
        self.data["headers"]["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"

    # -- metadata --------------------------------------------------------------------------

    def set_metadata(self, metadata: dict[str, Any]) -> None:
        # SendGrid requires custom_args values to be strings -- a number gets the cryptic
        # {"message": "Bad Request", "field": null}. They come back as top-level keys of
        # every webhook event, which is how events find their send.
        self.data["custom_args"] = {k: str(v) for k, v in metadata.items()}

    def set_tags(self, tags: list[str]) -> None:
        # "categories": at most 10, each at most 255 characters; stored as non-PII.
        self.data["categories"] = list(dict.fromkeys(tags))  # order kept, duplicates dropped

    def set_asm_group(self, group_id: int | None) -> None:
        # Only one unsubscribe group per message. With a group set, SendGrid suppresses
        # addresses that unsubscribed from that group (a second safety net behind ours).
        if group_id is not None:
            self.data["asm"] = {"group_id": int(group_id)}

    # -- settings --------------------------------------------------------------------------

    def set_tracking(self, *, track_opens: bool, track_clicks: bool) -> None:
        # Open pixels and rewritten links are tracking technology in HHS guidance: off unless
        # asked. Set explicitly, because the account-level defaults may have them on.
        self.data["tracking_settings"] = {
            "open_tracking": {"enable": bool(track_opens)},
            "click_tracking": {"enable": bool(track_clicks), "enable_text": bool(track_clicks)},
            # Our own List-Unsubscribe and footer link do the job; SendGrid's would add a
            # second, differently-worded unsubscribe link.
            "subscription_tracking": {"enable": False},
        }

    def set_sandbox(self, sandbox: bool) -> None:
        # Sandbox mode: validated, answered 200, never delivered, no events. The flag must
        # be a JSON boolean: the string "true" is a 400.
        if sandbox:
            self.data.setdefault("mail_settings", {})["sandbox_mode"] = {"enable": True}

    def serialize_data(self) -> dict[str, Any]:
        data = dict(self.data)
        if not data["headers"]:
            del data["headers"]  # SendGrid accepts {}, but don't send noise
        return data


def build_payload(
    email: OutboundEmail,
    *,
    sandbox: bool = False,
    asm_group_id: int | None = None,
    track_opens: bool = False,
    track_clicks: bool = False,
) -> dict[str, Any]:
    """The SendGrid v3 /mail/send JSON body for one outbound email."""
    payload = SendGridPayload()
    payload.set_from(email.from_email, email.from_name)
    payload.set_reply_to(email.reply_to)
    payload.set_to(email.to_email, email.to_name)
    payload.set_subject(email.subject)
    payload.set_bodies(email.text, email.html)
    payload.set_list_unsubscribe(email.unsubscribe_url)
    # send_id only: random, meaningless outside our ledger.
    payload.set_metadata({"send_id": email.send_id})
    payload.set_tags([email.category, TEST_CATEGORY] if email.is_test else [email.category])
    payload.set_asm_group(asm_group_id)
    payload.set_tracking(track_opens=track_opens, track_clicks=track_clicks)
    payload.set_sandbox(sandbox)
    return payload.serialize_data()


def check_personalization(p: Any, where: str = "personalization", *, addresses: bool = True) -> list[str]:
    """SendGrid's per-personalization limits: what would make the whole request a 400.
    ``addresses=False`` leaves out the recipients (check_limits checks them request-wide)."""
    if not isinstance(p, dict):
        return [f"{where} must be an object"]
    problems = []
    to = p.get("to")
    if not addresses:
        pass
    elif not isinstance(to, list) or not to:
        problems.append(f"{where}.to must hold at least one recipient")
    else:
        for j, r in enumerate(to):
            email = r.get("email") if isinstance(r, dict) else None
            if not isinstance(email, str) or not ADDRESS.match(email):
                problems.append(f"{where}.to[{j}].email is not a valid address")
    if "subject" in p and not (isinstance(p["subject"], str) and p["subject"].strip()):
        problems.append(f"{where}.subject must be a non-empty string")
    subs = p.get("substitutions")
    if subs is not None:
        if not isinstance(subs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in subs.items()
        ):
            problems.append(f"{where}.substitutions must map strings to strings")
        else:
            size = _json_size_if_near(subs, MAX_SUBSTITUTIONS_BYTES)
            if size >= MAX_SUBSTITUTIONS_BYTES:
                problems.append(f"{where}.substitutions is {size:,} bytes; SendGrid's limit is 10,000")
    headers = p.get("headers")
    if headers is not None:
        if not isinstance(headers, dict):
            problems.append(f"{where}.headers must be an object")
        else:
            for name, value in headers.items():
                if not isinstance(value, str):
                    problems.append(f"{where}.headers.{name} must have a string value")
                if name.lower() in RESERVED_HEADERS:
                    problems.append(f"{where}.headers.{name} is reserved; SendGrid sets it itself")
    return problems


def _json_size_if_near(d: dict, limit: int) -> int:
    """The bytes of json.dumps(d) if they may reach `limit`, else 0: str-to-str JSON takes at most
    12 bytes a character (two \\uXXXX escapes) and 8 an item, so most need no json.dumps."""
    if all(type(k) is str and type(v) is str for k, v in d.items()):
        bound = 2 + sum(12 * (len(k) + len(v)) + 8 for k, v in d.items())
        if bound < limit:
            return 0
    return len(json.dumps(d).encode("utf-8"))


# What SendGrid takes as an address (the dev server's rule; SendGrid's own is looser still).
ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


def payload_size(payload: dict[str, Any]) -> int:
    """Bytes on the wire, serialized the way python-http-client does it (json.dumps)."""
    return len(json.dumps(payload).encode("utf-8"))


def check_limits(
    payload: dict[str, Any],
    *,
    now: float | None = None,
    personalizations_checked: bool = False,
    size: int | None = None,
) -> list[str]:
    """Problems that SendGrid would answer with a 400/413, in plain words. Empty: looks fine.

    ``now`` (Unix time) is only needed to check ``send_at``; without it that check is skipped.
    ``personalizations_checked``: each personalization already passed check_bulk_personalization
    (a bulk request's recipients, checked one by one before the request is built): not again.
    ``size``: the bytes of the body that will be sent, when it is already serialized.
    """
    problems: list[str] = []

    sender = payload.get("from")
    if not isinstance(sender, dict) or not sender.get("email"):
        problems.append("from.email is missing")

    personalizations = payload.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        problems.append("personalizations must hold at least one personalization")
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        problems.append(
            f"{len(personalizations)} personalizations; SendGrid allows at most {MAX_PERSONALIZATIONS}"
        )

    recipients = 0
    seen: set[str] = set()
    for i, p in enumerate(personalizations):
        if not isinstance(p, dict) or not p.get("to"):
            problems.append(f"personalizations[{i}].to must hold at least one recipient")
            continue
        for kind in ("to", "cc", "bcc"):
            if kind not in p:
                continue
            for j, r in enumerate(p[kind] or []):
                recipients += 1
                addr = (r.get("email") or "").strip().lower() if isinstance(r, dict) else ""
                if not addr:
                    problems.append(f"personalizations[{i}].{kind}[{j}].email is missing")
                elif addr in seen:
                    # "Each email address in the personalization block should be unique
                    # between to, cc, and bcc."
                    problems.append(f"{addr!r} appears more than once in the request")
                seen.add(addr)
    if recipients > MAX_RECIPIENTS:
        problems.append(f"{recipients} recipients; SendGrid allows at most {MAX_RECIPIENTS}")

    subject = payload.get("subject")
    every_personalization_has_subject = bool(personalizations) and all(
        isinstance(p, dict) and isinstance(p.get("subject"), str) and p["subject"].strip()
        for p in personalizations
    )
    if not (isinstance(subject, str) and subject.strip()) and not every_personalization_has_subject:
        problems.append("subject is missing or empty")

    content = payload.get("content")
    if not payload.get("template_id"):
        if not isinstance(content, list) or not content:
            problems.append("content must hold at least one part (text/plain, text/html)")
        else:
            for i, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("value"), str) or not part["value"]:
                    problems.append(f"content[{i}].value must be a non-empty string")
            types = [part.get("type") for part in content if isinstance(part, dict)]
            expected_order = [t for t in ("text/plain", "text/html") if t in types]
            if types[: len(expected_order)] != expected_order:
                problems.append("content must list text/plain first, then text/html")

    problems += check_custom_args(payload.get("custom_args"), "custom_args")
    top_args = payload.get("custom_args") if isinstance(payload.get("custom_args"), dict) else {}
    # Checked one by one already (check_bulk_personalization) with nothing to merge: done.
    done = personalizations_checked and not top_args
    for i, p in enumerate(() if done else personalizations):
        if isinstance(p, dict) and "custom_args" in p:
            # SendGrid merges the request's custom_args into each personalization's: the
            # 10,000 bytes hold for the merge.
            own = p["custom_args"]
            merged = {**top_args, **own} if isinstance(own, dict) else own
            problems += check_custom_args(merged, f"personalizations[{i}].custom_args")
        if personalizations_checked:
            continue
        if isinstance(p, dict) and any(k in p for k in ("substitutions", "headers", "subject")):
            problems += check_personalization(p, f"personalizations[{i}]", addresses=False)

    categories = payload.get("categories")
    if categories is not None:
        if not isinstance(categories, list):
            problems.append("categories must be a list of strings")
        else:
            if len(categories) > MAX_CATEGORIES:
                problems.append(f"{len(categories)} categories; SendGrid allows at most {MAX_CATEGORIES}")
            for c in categories:
                if not isinstance(c, str) or not c:
                    problems.append(f"category {c!r} must be a non-empty string")
                elif len(c) > MAX_CATEGORY_LENGTH:
                    problems.append(f"category {c[:20]!r}... is longer than {MAX_CATEGORY_LENGTH}")

    headers = payload.get("headers") or {}
    for name, value in headers.items():
        if not isinstance(value, str):
            problems.append(f"header {name} must have a string value")
        if name.lower() in RESERVED_HEADERS:
            problems.append(f"header {name} is reserved; SendGrid sets it itself")

    asm = payload.get("asm")
    if asm is not None and not (isinstance(asm, dict) and type(asm.get("group_id")) is int):
        problems.append("asm.group_id must be an integer")

    sandbox = (payload.get("mail_settings") or {}).get("sandbox_mode")
    if sandbox is not None and type(sandbox.get("enable")) is not bool:
        problems.append("mail_settings.sandbox_mode.enable must be a JSON boolean")

    send_at = payload.get("send_at")
    if send_at is not None:
        if type(send_at) is not int:
            problems.append("send_at must be an integer Unix time")
        elif now is not None and send_at > now + MAX_SEND_AT_AHEAD_S:
            problems.append("send_at is more than 72 hours ahead")

    size = payload_size(payload) if size is None else size
    if size >= MAX_TOTAL_BYTES:
        problems.append(f"message is {size:,} bytes; SendGrid's limit is 30 MB")
    return problems


def check_custom_args(custom_args: Any, where: str) -> list[str]:
    if custom_args is None:
        return []
    if not isinstance(custom_args, dict):
        return [f"{where} must be an object"]
    problems = [
        f"{where}.{key} must be a string, not {type(value).__name__}"
        for key, value in custom_args.items()
        if not isinstance(value, str)
    ]
    size = _json_size_if_near(custom_args, MAX_CUSTOM_ARGS_BYTES)
    if size >= MAX_CUSTOM_ARGS_BYTES:
        problems.append(f"{where} is {size:,} bytes; SendGrid's limit is 10,000")
    return problems
