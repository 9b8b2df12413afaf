"""The overview's counters at scale (migration 0016_overview), on SQLite and PostgreSQL:
enrollment_counts kept by triggers equal a GROUP BY over enrollments after every path that
writes them; "due in the next 24 h" and "sent today" equal a plain count whichever way they are
read."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from send_counts_support import assert_kept_counts
from send_counts_support import triggers_present as any_triggers_present
from store_support import downgrade, model_diffs
from test_enroll_sql import NOW, both_ways, fill_varied
from test_send_counts import MONDAY_10, enrolled, settle

from campaign.models import SendStatus
from campaign.runtime import build_context

TRIGGERS = {"enrollment_counts_insert", "enrollment_counts_update", "enrollment_counts_delete"}


def assert_enrollment_counts_match(store, at_least: int = 1) -> dict:
    return assert_kept_counts(store, "enrollment_counts", store.enrollment_counts_drift(), at_least)


def triggers_present(store) -> set[str]:
    return any_triggers_present(store, TRIGGERS)


def counted(store, sql: str, **params) -> int:
    with store.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def test_enrollment_counts_follow_every_path(store, make_settings):
    fill_varied(store)  # enrollments added one statement per row (add_enrollments)
    assert triggers_present(store) == TRIGGERS
    before = assert_enrollment_counts_match(store, at_least=10)
    ctx = build_context(make_settings(), now=NOW, store=store)
    both_ways(store, ctx)  # the walk, a DELETE of what it wrote, then one INSERT ... SELECT
    kept = assert_enrollment_counts_match(store, at_least=sum(before.values()) + 100)

    with store.engine.connect() as conn:
        ids = conn.execute(sa.text("SELECT id FROM enrollments ORDER BY id")).scalars().all()
    store.update_enrollments(  # the tick: due times (no count changes), and some finished
        [{"id": i, "next_due_at": NOW + timedelta(days=i % 3)} for i in ids[:50]]
        + [{"id": i, "state": "finished", "next_due_at": None} for i in ids[50:60]]
        + [{"id": i, "state": "active", "next_due_at": NOW} for i in ids[60:70]]  # unchanged or back
    )
    assert_enrollment_counts_match(store)
    store.set_campaign_state("evergreen", "stopped")  # every active enrollment exits
    assert_enrollment_counts_match(store)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE enrollments SET audience = 'social' WHERE id % 7 = 0"))
        conn.execute(sa.text("UPDATE enrollments SET state = state, exit_reason = 'x' WHERE id % 5 = 0"))
        conn.execute(sa.text("DELETE FROM enrollments WHERE id % 11 = 0"))
        conn.execute(sa.text("DELETE FROM leads WHERE id % 13 = 0"))  # cascades to enrollments
    kept_now = assert_enrollment_counts_match(store)
    assert kept_now != kept
    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM enrollments"))
        raise RuntimeError("rolled back")
    assert assert_enrollment_counts_match(store) == kept_now


def test_postgresql_counts_each_statement_once_and_tick_updates_write_nothing(store):
    if store.dialect != "postgresql":
        pytest.skip("statement-level triggers with transition tables: PostgreSQL only")
    enrolled(store, 300)
    versions = "SELECT campaign_id, audience, state, xmin::text FROM enrollment_counts ORDER BY 1, 2, 3"
    with store.engine.begin() as conn:
        before = conn.execute(sa.text(versions)).all()
        conn.execute(sa.text("UPDATE enrollments SET next_due_at = next_due_at + interval '1 day'"))
        conn.execute(sa.text("UPDATE enrollments SET state = 'active', leased_by = 'w'"))  # no change
        assert conn.execute(sa.text(versions)).all() == before  # no counts row written
    with store.engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL track_functions = 'pl'"))
        assert conn.execute(sa.text("UPDATE enrollments SET state = 'finished'")).rowcount == 300
        calls = conn.execute(
            sa.text("SELECT calls FROM pg_stat_xact_user_functions WHERE funcname = :f"),
            {"f": "enrollment_counts_apply"},
        ).scalar()
    assert calls == 1
    kept = assert_enrollment_counts_match(store, at_least=300)
    assert set(kept.values()) == {150} and {k[2] for k in kept} == {"finished"}


@pytest.mark.parametrize("due_share", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_due_in_24h_equals_a_plain_count_whichever_side_is_counted(store, due_share):
    ids = enrolled(store, 40)
    due = int(len(ids) * due_share)
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE enrollments SET next_due_at = :later WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"later": MONDAY_10 + timedelta(days=3), "ids": ids[due:]},
        )
        conn.execute(sa.text("UPDATE enrollments SET state = 'exited' WHERE id = :i"), {"i": ids[-1]})
        conn.execute(sa.text("UPDATE enrollments SET next_due_at = NULL WHERE id = :i"), {"i": ids[-2]})
        conn.execute(sa.text("UPDATE enrollments SET state = 'finished' WHERE id = :i"), {"i": ids[0]})
    campaign_id = store.campaign("evergreen")["id"]
    horizon = MONDAY_10 + timedelta(hours=24)
    plain = counted(
        store,
        "SELECT count(*) FROM enrollments WHERE state = 'active' AND next_due_at <= :h",
        h=horizon.replace(tzinfo=None) if store.dialect == "sqlite" else horizon,
    )
    facts = store.campaign_statuses([campaign_id], MONDAY_10, MONDAY_10 - timedelta(hours=10))
    assert facts[campaign_id]["due_24h"] == plain
    # ids[0] finished; ids[-1] exited and ids[-2] without a due time (both due only when all are).
    assert plain == due - (due > 0) - 2 * (due == len(ids))


def test_sent_today_equals_a_plain_count_with_one_campaign_or_more(store):
    ids = enrolled(store, 30)
    claims = store.claim([(e, "welcome") for e in ids], MONDAY_10, "outbox")
    settle(store, claims[:10], SendStatus.sent, MONDAY_10 - timedelta(days=1))
    settle(store, claims[10:25], SendStatus.sent, MONDAY_10)
    settle(store, claims[25:], SendStatus.failed, MONDAY_10)
    evergreen = store.campaign("evergreen")["id"]
    spring = store.create_campaign(
        slug="spring",
        name="Spring",
        audiences=["gad"],
        starts_at=None,
        sandbox=False,
        versions={},
        now=MONDAY_10,
    )["id"]
    day_start = MONDAY_10 - timedelta(hours=1)
    # One campaign holds every enrollment: today's sends are counted from the index alone.
    facts = store.campaign_statuses([evergreen, spring], MONDAY_10, day_start)
    assert (facts[evergreen]["sent_today"], facts[spring]["sent_today"]) == (15, 0)
    # Two campaigns with enrollments: each send's campaign is read through its enrollment.
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE enrollments SET campaign_id = :c WHERE id IN (:a, :b, :d)"),
            {"c": spring, "a": ids[0], "b": ids[12], "d": ids[13]},
        )
    facts = store.campaign_statuses([evergreen, spring], MONDAY_10, day_start)
    assert (facts[evergreen]["sent_today"], facts[spring]["sent_today"]) == (13, 2)
    assert store.campaign_statuses([evergreen], MONDAY_10, day_start)[evergreen]["sent_today"] == 13
    assert_enrollment_counts_match(store, at_least=30)


def test_the_migration_fills_the_counts_and_downgrades(store, database_url):

    names = ("enrollment_counts", "ix_enrollments_campaign_due", "ix_sends_status_settled")

    def diffs() -> list:
        return model_diffs(store, *names)

    def settled_columns() -> list[str]:
        found = {i["name"]: i["column_names"] for i in sa.inspect(store.engine).get_indexes("sends")}
        return found["ix_sends_status_settled"]

    assert diffs() == [] and settled_columns() == ["status", "settled_at", "enrollment_id"]
    downgrade(store, database_url, "0015_forms")
    assert "enrollment_counts" not in sa.inspect(store.engine).get_table_names()
    assert triggers_present(store) == set() and settled_columns() == ["status", "settled_at"]
    enrolled(store, 9)  # no trigger now
    store.migrate()
    assert triggers_present(store) == TRIGGERS and diffs() == []
    assert assert_enrollment_counts_match(store, at_least=9)
