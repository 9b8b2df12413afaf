"""The outbox transport: each email as a standards-compliant .eml file, plus an index.html.

Used when no SENDGRID_API_KEY is set: the demo, previews, and a clinic trying things out.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from campaign.delivery import AfterSend, BeforeSend, stop_from_hook
from campaign.models import OutboundEmail, SendResult, SendStatus

INDEX_JSONL = "index.jsonl"


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

    def __init__(self, directory: Path, clock: Callable[[], datetime] | None = None):
        self.directory = Path(directory)
        self.clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()

    def send_batch(
        self,
        emails: Sequence[OutboundEmail],
        before_send: BeforeSend | None = None,
        after_send: AfterSend | None = None,
    ) -> list[SendResult]:
        """Write each email; a hook may stop the batch (see campaign.delivery)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        results: list[SendResult] = []
        entries: list[dict] = []
        stopped = None
        try:
            for email in emails:
                if before_send is not None and not before_send(email.send_id):
                    result = SendResult(
                        send_id=email.send_id,
                        status=SendStatus.skipped,
                        error="unsubscribed or suppressed before sending",
                    )
                else:
                    result = self._write(email, entries)
                results.append(result)
                if after_send is not None:
                    after_send(result)
        except Exception as exc:  # only the hooks raise: _write turns its errors into results
            stopped = stop_from_hook(exc, "a hook")
        if entries:  # what was written goes in the index, also when the batch stopped
            with self._lock:
                with (self.directory / INDEX_JSONL).open("a", encoding="utf-8") as fh:
                    fh.writelines(json.dumps(e) + "\n" for e in entries)
                write_index(self.directory)
        if stopped is not None:
            settled = {r.send_id for r in results}
            raise stopped.with_outcome(results, [e.send_id for e in emails if e.send_id not in settled])
        return results

    def _write(self, email: OutboundEmail, entries: list[dict]) -> SendResult:
        date = self.clock()
        name = f"{date:%Y%m%dT%H%M%S}-{email.send_id}.eml"
        try:
            (self.directory / name).write_bytes(to_mime(email, date=date).as_bytes())
        except (ValueError, TypeError, OSError) as exc:  # one bad email never sinks the batch
            return SendResult(send_id=email.send_id, status=SendStatus.failed, error=f"outbox: {exc}")
        entries.append(
            {
                "file": name,
                "date": date.isoformat(),
                "to": email.to_email,
                "subject": email.subject,
                "send_id": email.send_id,
                "test": email.is_test,
            }
        )
        return SendResult(send_id=email.send_id, status=SendStatus.sent, message_id=f"outbox-{email.send_id}")


def read_index(directory: Path) -> list[dict]:
    path = Path(directory) / INDEX_JSONL
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_index(directory: Path) -> Path:
    """index.html: every email in the outbox, newest last, each linking to its .eml file."""
    rows = "\n".join(
        f"<tr><td>{html.escape(e['date'][:16].replace('T', ' '))}</td><td>{html.escape(e['to'])}</td>"
        f'<td><a href="{html.escape(e["file"])}">{html.escape(e["subject"])}</a>'
        f"{' (test)' if e.get('test') else ''}</td></tr>"
        for e in read_index(directory)
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">\
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>Outbox</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;color:#1f2933}}table{{border-collapse:collapse;width:100%}}
td,th{{border-bottom:1px solid #d9e2ec;padding:.4rem .6rem;text-align:left;font-size:.95rem}}</style></head>
<body><h1>Outbox</h1><p>Emails written by the outbox transport (times in UTC). Open a .eml file with any \
mail program.</p>
<table><thead><tr><th>Date (UTC)</th><th>To</th><th>Subject</th></tr></thead><tbody>
{rows}
</tbody></table></body></html>
"""
    path = Path(directory) / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
