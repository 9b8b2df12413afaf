"""Hostile and very long names in the written .eml and the SendGrid payload: no injected header,
no encoded word from a name, recipients unchanged, header block intact; List-Unsubscribe as
RFC 2369 wants it."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.parser import BytesParser
from email.policy import default
from pathlib import Path

import pytest
from sendgrid_fixtures import make_email

from campaign.delivery.outbox import MAX_LINE, OutboxTransport
from campaign.delivery.payload import MAX_HEADER_NAME, build_payload
from campaign.models import SendStatus

LEAD = "lead0@example.com"
SENDER = "care@freshstartketamine.example"
HEADERS = [
    "From",
    "To",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "X-Campaign-Send-Id",
    "MIME-Version",
    "Content-Type",
]

HOSTILE_NAMES = [
    "=?utf-8?q?x=0D=0ABcc:_evil@example.com?=",
    "=?utf-8?b?eA0KQmNjOiBldmlsQGV4YW1wbGUuY29t?=",  # the same, base64
    "Ann =?utf-8?q?=0D=0ACc:_evil@example.com?= Lee",
    "Ann\r\nBcc: evil@example.com",
    "Ann\nBcc: evil@example.com",
    "Ann\rBcc: evil@example.com",
    'Ann "the boss" Lee',
    "Doe, Jane <evil@example.com>",
    "evil@example.com, other@example.com",
    'Ann\\" <evil@example.com>, "x',
    "Ann\u2028Bcc: evil@example.com",
    "Ann\u202eeeL",  # a bidi override
    "N" * 80 + " " + "L" * 80,
]


def write_eml(tmp_path: Path, **overrides) -> tuple[bytes, object]:
    """The .eml the outbox wrote for one email, raw and parsed with email.parser."""
    (result,) = OutboxTransport(tmp_path, clock=lambda: datetime(2026, 3, 2, tzinfo=UTC)).send_batch(
        [make_email(**overrides)]
    )
    assert result.status is SendStatus.sent, result.error
    raw = next(tmp_path.glob("*.eml")).read_bytes()
    return raw, BytesParser(policy=default).parsebytes(raw)


def header_block(raw: bytes) -> str:
    return raw.split(b"\n\n", 1)[0].decode("ascii")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_name_adds_no_header_and_no_recipient(tmp_path, name):
    raw, msg = write_eml(tmp_path, to_name=name)
    assert msg.keys() == HEADERS  # no Bcc, no Cc, nothing pushed into the body
    assert [a.addr_spec for a in msg["To"].addresses] == [LEAD]
    assert [a.addr_spec for a in msg["From"].addresses] == [SENDER]
    shown = msg["To"].addresses[0].display_name
    assert not any(mark in shown for mark in ("=?", "?=", "\r", "\n", "\u2028", "\u202e", '"', "<", ","))
    assert "=?" not in header_block(raw)  # ASCII names: no encoded word anywhere in the headers
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_sendgrid_gets_the_same_name_as_the_eml(tmp_path, name):
    _, msg = write_eml(tmp_path, to_name=name)
    (recipient,) = build_payload(make_email(to_name=name))["personalizations"][0]["to"]
    assert recipient["email"] == LEAD
    assert recipient.get("name", "") == msg["To"].addresses[0].display_name


def test_a_non_ascii_name_survives_the_round_trip(tmp_path):
    _, msg = write_eml(tmp_path, to_name="Zoë Núñez-Ølberg")
    assert msg["To"].addresses[0].display_name == "Zoë Núñez-Ølberg"


def test_long_names_are_capped_and_fold_without_breaking_the_header_block(tmp_path):
    rng = random.Random(13)
    for i in range(150):
        words = [
            "".join(rng.choice("abcdefgñéü.-") for _ in range(rng.randint(1, 120)))
            for _ in range(rng.randint(1, 4))
        ]
        name = " ".join(words)
        folder = tmp_path / str(i)
        raw, msg = write_eml(folder, to_name=name)
        assert msg.keys() == HEADERS, name
        assert [a.addr_spec for a in msg["To"].addresses] == [LEAD]
        assert 0 < len(written_name(raw)) <= MAX_HEADER_NAME
        assert all(len(line) <= 78 for line in header_lines(raw, "To"))


def written_name(raw: bytes) -> str:
    """The To display name as written, decoded by RFC 2047 (which drops the space between two
    encoded words; email.headerregistry keeps it, so its display_name can read one longer)."""
    value = " ".join(line.strip() for line in header_lines(raw, "To")).removeprefix("To:")
    phrase = value.rpartition("<")[0].strip()
    return str(make_header(decode_header(phrase))).strip('"')


def header_lines(raw: bytes, name: str) -> list[str]:
    """The physical lines of one header: its first line and its continuation lines."""
    lines = header_block(raw).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), len(lines))
    return lines[start:end]


def test_a_long_sender_name_is_capped_too(tmp_path):
    _, msg = write_eml(tmp_path, from_name="Fresh Start Ketamine " * 10)
    assert [a.addr_spec for a in msg["From"].addresses] == [SENDER]
    assert len(msg["From"].addresses[0].display_name) <= MAX_HEADER_NAME


@pytest.mark.parametrize("length", [10, 200, 940])
def test_list_unsubscribe_is_the_url_in_angle_brackets_never_encoded(tmp_path, length):
    url = "https://freshstartketamine.example/unsubscribe/" + "t" * length
    raw, msg = write_eml(tmp_path, unsubscribe_url=url)
    assert "=?" not in header_block(raw)
    if len(f"List-Unsubscribe: <{url}>") <= MAX_LINE:
        assert msg["List-Unsubscribe"] == f"<{url}>"
        assert header_lines(raw, "List-Unsubscribe") == [f"List-Unsubscribe: <{url}>"]
    else:  # folded once, before the "<": the only place RFC 2369 allows (readers skip the space)
        assert msg["List-Unsubscribe"].strip() == f"<{url}>"
        assert header_lines(raw, "List-Unsubscribe") == ["List-Unsubscribe:", f" <{url}>"]


def test_an_unsubscribe_url_that_could_break_the_header_fails_that_email_only(tmp_path):
    (bad, good) = OutboxTransport(tmp_path).send_batch(
        [make_email(0, unsubscribe_url="https://x.example/u/a> b"), make_email(1)]
    )
    assert bad.status is SendStatus.failed and "List-Unsubscribe" in bad.error
    assert good.status is SendStatus.sent
