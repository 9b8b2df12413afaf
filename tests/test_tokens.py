"""Unsubscribe tokens: the HMAC form made since bulk sending, and the itsdangerous form issued
before, which must keep working in every email already delivered."""

from __future__ import annotations

import re
import time

import pytest

from campaign.tokens import (
    UNSUBSCRIBE_MAX_AGE,
    InvalidToken,
    make_legacy_token,
    make_token,
    read_token,
    read_undo_token,
    unsubscribe_url,
)

SECRET = "token-test-secret"
PUBLIC_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def test_a_token_names_the_lead_by_public_id_only_and_reads_back():
    token = make_token(PUBLIC_ID, SECRET)
    assert read_token(token, SECRET) == PUBLIC_ID
    public_id, issued, signature = token.split(".")
    assert public_id == PUBLIC_ID and abs(int(issued, 16) - time.time()) < 600
    # URL-safe and plain: the bulk path sends a URL only when HTML would not escape it.
    assert re.fullmatch(r"[A-Za-z0-9_\-]{22}", signature)
    url = unsubscribe_url("https://clinic.example.org/", PUBLIC_ID, SECRET)
    assert url == f"https://clinic.example.org/unsubscribe/{url.rsplit('/', 1)[1]}"
    assert read_token(url.rsplit("/", 1)[1], SECRET) == PUBLIC_ID


def test_a_token_issued_before_still_verifies():
    legacy = make_legacy_token(PUBLIC_ID, SECRET)
    assert legacy.count(".") == 2 and not legacy.startswith(PUBLIC_ID)  # itsdangerous' form
    assert read_token(legacy, SECRET) == PUBLIC_ID


def flip(ch: str) -> str:
    return "A" if ch != "A" else "B"


@pytest.mark.parametrize("part", ["public id", "issued", "signature", "truncated", "padded"])
def test_a_tampered_token_is_refused(part):
    token = make_token(PUBLIC_ID, SECRET)
    public_id, issued, signature = token.split(".")
    tampered = {
        "public id": f"{public_id[:-1]}{'0' if public_id[-1] != '0' else '1'}.{issued}.{signature}",
        "issued": f"{public_id}.{int(issued, 16) + 1:x}.{signature}",
        "signature": f"{public_id}.{issued}.{signature[:-1]}{flip(signature[-1])}",
        "truncated": f"{public_id}.{issued}.{signature[:-1]}",
        "padded": f"{public_id}.0{issued}.{signature}",  # the same moment spelled otherwise
    }[part]
    with pytest.raises(InvalidToken) as refused:
        read_token(tampered, SECRET)
    assert not refused.value.expired


def test_a_tampered_legacy_token_is_refused():
    legacy = make_legacy_token(PUBLIC_ID, SECRET)
    with pytest.raises(InvalidToken):
        read_token(legacy[:-1] + flip(legacy[-1]), SECRET)


@pytest.mark.parametrize("make", [make_token, make_legacy_token])
def test_another_secret_or_purpose_does_not_verify(make):
    with pytest.raises(InvalidToken):
        read_token(make(PUBLIC_ID, "another-secret"), SECRET)
    with pytest.raises(InvalidToken):
        read_token(make(PUBLIC_ID, SECRET, purpose="resubscribe"), SECRET)


def test_an_unsubscribe_token_is_no_undo_token():
    with pytest.raises(InvalidToken):
        read_undo_token(make_token(PUBLIC_ID, SECRET), SECRET)


def test_an_old_token_has_expired_and_says_so():
    old = make_token(PUBLIC_ID, SECRET, issued_at=time.time() - UNSUBSCRIBE_MAX_AGE - 60)
    with pytest.raises(InvalidToken) as refused:
        read_token(old, SECRET)
    assert refused.value.expired
    recent = make_token(PUBLIC_ID, SECRET, issued_at=time.time() - UNSUBSCRIBE_MAX_AGE + 3600)
    assert read_token(recent, SECRET) == PUBLIC_ID
