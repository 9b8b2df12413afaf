"""The outbox transport: each email as a standards-compliant .eml file, plus an index.html.

Used when no SENDGRID_API_KEY is set: the demo, previews, and a clinic trying things out.
"""

from __future__ import annotations

import html
import json
import re
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid
from pathlib import Path

from campaign.delivery import AfterSend, BeforeSend, stop_from_hook
from campaign.delivery.payload import clean_display_name
from campaign.models import OutboundEmail, SendResult, SendStatus

INDEX_JSONL = "index.jsonl"
_URL_IN_ANGLES = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+>")  # printable ASCII, no spaces, no < or >


# RFC 5322's hard limit on a line, CRLF excluded. 78 is only a SHOULD.
MAX_LINE = 998


class _MailPolicy(EmailPolicy):
    """policy.default, except List-Unsubscribe, which is written exactly as `<https://...>`.

    Python folds an unstructured header whose one token is longer than a line into RFC 2047
    encoded words (`=?utf-8?q?=3Chttps...`), which RFC 2369 does not allow. The URL is kept on
    the header's line (78 characters is a SHOULD; mail readers handle long ones); past RFC
    5322's 998 it is folded at the one allowed place, before the `<`.
    """

    def fold(self, name, value):
        if name.lower() == "list-unsubscribe":
            return _fold_before_value(name, str(value), self.linesep)
        return super().fold(name, value)

    def fold_binary(self, name, value):
        if name.lower() == "list-unsubscribe":
            return _fold_before_value(name, str(value), self.linesep).encode("ascii")
        return super().fold_binary(name, value)


_POLICY = _MailPolicy()


def _fold_before_value(name: str, value: str, linesep: str) -> str:
    if not _URL_IN_ANGLES.fullmatch(value) or len(value) > MAX_LINE - 1:
        raise ValueError(f"{name} must be one <URL> in printable ASCII, not {value[:80]!r}")
    if len(name) + 2 + len(value) <= MAX_LINE:
        return f"{name}: {value}{linesep}"
    return f"{name}:{linesep} {value}{linesep}"


def _address(name: str, addr_spec: str) -> Address:
    # Built from parts, never parsed from a string: the name cannot add an address or a header.
    return Address(display_name=clean_display_name(name), addr_spec=addr_spec)


def to_mime(email: OutboundEmail, *, date: datetime) -> EmailMessage:
    """multipart/alternative (text first, HTML preferred) with RFC 8058 unsubscribe headers."""
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = _address(email.from_name, email.from_email)
    msg["To"] = _address(email.to_name, email.to_email)
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
