"""The outbox transport: each email as a standards-compliant .eml file and a readable .html
page beside it, plus an index.html (see outbox_pages) written once per tick, by finish().

Used when no SENDGRID_API_KEY is set: the demo, previews, and a clinic trying things out.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from campaign.delivery.outbox_pages import FILTER_SCRIPT, SCRIPT_FILE, email_page, index_page
from campaign.models import OutboundEmail, SendResult, SendStatus

INDEX_JSONL = "index.jsonl"
LABELS_JSONL = "labels.jsonl"  # send id -> audience, step, campaign (local only; see finish)
# send ids -> {send id: {"audience", "step", "campaign"}}; the runtime asks the ledger.
Describe = Callable[[list[str]], dict[str, dict]]


def to_mime(email: OutboundEmail, *, date: datetime) -> EmailMessage:
    """multipart/alternative (text first, HTML preferred) with RFC 8058 unsubscribe headers."""
    msg = EmailMessage()
    msg["From"] = Address(display_name=email.from_name, addr_spec=email.from_email)
    msg["To"] = (
        Address(display_name=email.to_name, addr_spec=email.to_email) if email.to_name else email.to_email
    )
    if email.reply_to:
        msg["Reply-To"] = email.reply_to
    msg["Subject"] = email.subject
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = make_msgid(idstring=email.send_id, domain=email.from_email.rpartition("@")[2] or None)
    msg["List-Unsubscribe"] = f"<{email.unsubscribe_url}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Campaign-Send-Id"] = email.send_id
    if email.is_test:
        msg["X-Campaign-Test"] = "yes"
    msg.set_content(email.text, cte="quoted-printable")
    msg.add_alternative(email.html, subtype="html", cte="quoted-printable")
    return msg


class OutboxTransport:
    name = "outbox"

    def __init__(
        self,
        directory: Path,
        clock: Callable[[], datetime] | None = None,
        describe: Describe | None = None,
    ):
        self.directory = Path(directory)
        self.clock = clock or (lambda: datetime.now(UTC))
        self.describe = describe
        self._lock = threading.Lock()

    def send_batch(
        self, emails: list[OutboundEmail], before_send: Callable[[str], bool] | None = None
    ) -> list[SendResult]:
        self.directory.mkdir(parents=True, exist_ok=True)
        results, entries = [], []
        for email in emails:
            if before_send is not None and not before_send(email.send_id):
                results.append(
                    SendResult(
                        send_id=email.send_id,
                        status=SendStatus.skipped,
                        error="unsubscribed or suppressed before sending",
                    )
                )
                continue
            date = self.clock()
            name = f"{date:%Y%m%dT%H%M%S}-{email.send_id}.eml"
            view = name.removesuffix(".eml") + ".html"
            try:
                (self.directory / name).write_bytes(to_mime(email, date=date).as_bytes())
                (self.directory / view).write_text(email_page(email, date=date, eml_name=name), "utf-8")
            except (ValueError, TypeError, OSError) as exc:  # one bad email never sinks the batch
                results.append(
                    SendResult(send_id=email.send_id, status=SendStatus.failed, error=f"outbox: {exc}")
                )
                continue
            entries.append(
                {
                    "file": name,
                    "view": view,
                    "date": date.isoformat(),
                    "to": email.to_email,
                    "subject": email.subject,
                    "send_id": email.send_id,
                    "test": email.is_test,
                }
            )
            results.append(
                SendResult(
                    send_id=email.send_id, status=SendStatus.sent, message_id=f"outbox-{email.send_id}"
                )
            )
        if entries:
            with self._lock, (self.directory / INDEX_JSONL).open("a", encoding="utf-8") as fh:
                fh.writelines(json.dumps(e) + "\n" for e in entries)
        return results

    def finish(self) -> Path | None:
        """The end of a tick: label the new rows (audience, step, campaign, from `describe`) and
        write index.html, once per tick rather than after every batch. None when nothing was
        ever written here."""
        with self._lock:
            if not (self.directory / INDEX_JSONL).exists():
                return None
            entries = read_index(self.directory)
            unlabelled = [e for e in entries if "audience" not in e]
            if unlabelled and self.describe is not None:
                labels = self.describe([e["send_id"] for e in unlabelled])
                # A send the ledger does not know (a test email) is labelled once, blank.
                blank = {"audience": "", "step": "", "campaign": ""}
                found = [{"send_id": e["send_id"], **labels.get(e["send_id"], blank)} for e in unlabelled]
                # Appended, never rewritten: another process may be appending to this outbox too.
                with (self.directory / LABELS_JSONL).open("a", encoding="utf-8") as fh:
                    fh.writelines(json.dumps(label) + "\n" for label in found)
                entries = read_index(self.directory)
            return write_index(self.directory, entries)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_index(directory: Path) -> list[dict]:
    """Every email written here, oldest first, with its labels once finish() has added them."""
    labels = {label.pop("send_id"): label for label in _read_jsonl(Path(directory) / LABELS_JSONL)}
    return [
        {**entry, **labels.get(entry["send_id"], {})} for entry in _read_jsonl(Path(directory) / INDEX_JSONL)
    ]


def write_index(directory: Path, entries: list[dict] | None = None) -> Path:
    """index.html (and the filter's outbox.js), each replaced whole so a reader never sees half."""
    directory = Path(directory)
    _replace(directory / SCRIPT_FILE, FILTER_SCRIPT)
    return _replace(
        directory / "index.html", index_page(read_index(directory) if entries is None else entries)
    )


def _replace(path: Path, text: str) -> Path:
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return path
