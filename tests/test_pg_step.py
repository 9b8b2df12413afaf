"""The PostgreSQL bulk step's statements and the SendGrid-compatible server's validation, kept
cheap per recipient (issue 14, bench/bench_step_pg.py)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from conftest import postgres_schema, utc

from campaign.devserver import validation
from campaign.devserver.validation import validate_mail_send
from campaign.models import LeadIn

T0 = utc(2026, 3, 2, 15, 0)


def test_postgresql_next_steps_of_many_enrollments_are_one_update(postgres_reason):
    """A settle's next steps shared by 2,000 enrollments: one UPDATE with the ids as an array
    (it was one per 900 ids, each id a bound parameter), every row given its values."""
    if postgres_reason:
        pytest.skip(postgres_reason)
    from campaign.store import Store

    with postgres_schema("pgstep") as url:
        store = Store.open(url, secret_key="test")
        try:
            store.upsert_leads([LeadIn(email=f"s{i}@example.com", consent=True) for i in range(2000)], T0)
            campaign = store.campaign("evergreen")
            with store.engine.connect() as conn:
                lead_ids = conn.execute(sa.text("SELECT id FROM leads ORDER BY id")).scalars().all()
            row = {"campaign_id": campaign["id"], "audience": "gad", "audience_version": "v"}
            row |= {"enrolled_at": T0, "state": "active", "next_due_at": T0}
            store.add_enrollments([{**row, "lead_id": lid} for lid in lead_ids])
            with store.engine.connect() as conn:
                ids = conn.execute(sa.text("SELECT id FROM enrollments ORDER BY id")).scalars().all()
            later = utc(2026, 3, 5, 15, 0)
            updates: list[str] = []

            def seen(conn, cursor, statement, *args) -> None:
                if statement.startswith("UPDATE enrollments"):
                    updates.append(statement)

            sa.event.listen(store.engine, "before_cursor_execute", seen)
            store.update_enrollments([{"id": i, "next_due_at": later} for i in ids[:1999]])
            sa.event.remove(store.engine, "before_cursor_execute", seen)
            assert len(updates) == 1 and "ANY" in updates[0]
            with store.engine.connect() as conn:
                due = dict(conn.execute(sa.text("SELECT id, next_due_at FROM enrollments")).all())
            assert [due[i] for i in ids] == [later] * 1999 + [T0]
        finally:
            store.close()


def _body(subs: dict[str, str], n: int = 1000) -> dict:
    return {
        "personalizations": [
            {
                "to": [{"email": f"lead{i}@example.com"}],
                "substitutions": subs,
                "custom_args": {"send_id": f"{i:032x}"},
            }
            for i in range(n)
        ],
        "from": {"email": "care@clinic.example.org"},
        "subject": "Hello -first-",
        "content": [{"type": "text/plain", "value": "Hi -first-"}],
    }


def test_bulk_validation_encodes_no_small_personalization_yet_refuses_exactly(monkeypatch):
    """The 10,000-byte limits of substitutions and custom_args: a 1,000-personalization request
    of small ones is validated without encoding any of them (it encoded each twice); at and
    around the limit the answer is json.dumps's, escapes and non-ASCII characters included."""
    calls = []
    real = json.dumps

    def counted(value, *args, **kwargs):
        calls.append(value)
        return real(value, *args, **kwargs)

    monkeypatch.setattr(validation.json, "dumps", counted)
    assert validate_mail_send(_body({"-first-": "Ann", "-unsub-": "https://clinic.example.org/u/x"})) == []
    assert calls == []
    for char in ("a", '"', "é", "\U0001f600"):  # 1, 2, 6 and 12 bytes in JSON
        size = len(real({"-x-": ""}))
        fill = (10_000 - size) // len(real(char)[1:-1])
        for n in (fill - 1, fill, fill + 1):
            subs = {"-x-": char * n}
            too_big = len(real(subs).encode("utf-8")) >= 10_000
            errors = validate_mail_send(_body(subs, 1))
            assert bool(errors) == too_big, (char, n)
            args = {"send_id": char * n}
            errors = validate_mail_send(
                {**_body({}, 1), "personalizations": [{"to": [{"email": "a@b.co"}], "custom_args": args}]}
            )
            assert bool(errors) == (len(real(args).encode("utf-8")) >= 10_000), (char, n)
