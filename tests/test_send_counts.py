"""send_counts: the ledger's rows per (campaign, audience, step, status), kept by database
triggers in the same transaction as each change of sends (migration 0012_console2), on SQLite and
PostgreSQL. Every path that changes sends, then the counts equal a GROUP BY over the ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from send_counts_support import TRIGGERS, assert_counts_match, triggers_present
from store_support import downgrade, model_diffs

from campaign.models import LeadIn, SendResult, SendStatus

MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo("America/New_York")).astimezone(UTC)
LATER = MONDAY_10 + timedelta(hours=3)


def enrolled(store, n: int, audiences=("gad", "social")) -> list[int]:
    """n consenting leads enrolled in the evergreen campaign, audiences in turn: enrollment ids."""
    store.upsert_leads([LeadIn(email=f"c{i}@example.com", consent=True) for i in range(n)], MONDAY_10)
    campaign_id = store.campaign("evergreen")["id"]
    ids = [store.lead_by_email(f"c{i}@example.com").id for i in range(n)]
    store.add_enrollments(
        [
            {
                "campaign_id": campaign_id,
                "lead_id": lead_id,
                "audience": audiences[i % len(audiences)],
                "audience_version": "v1",
                "enrolled_at": MONDAY_10,
                "state": "active",
                "next_due_at": MONDAY_10,
            }
            for i, lead_id in enumerate(ids)
        ]
    )
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT id FROM enrollments WHERE lead_id IN :ids ORDER BY id").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": ids},
            ).scalars()
        )


def settle(store, claims, status: SendStatus, at=MONDAY_10) -> None:
    store.settle([SendResult(send_id=c.send_id, status=status, message_id="m") for c in claims], at)


def test_counts_follow_every_ledger_path(store):
    enrollment_ids = enrolled(store, 12)
    assert triggers_present(store) == TRIGGERS
    claims = store.claim([(e, "welcome") for e in enrollment_ids], MONDAY_10, "outbox")
    kept = assert_counts_match(store, at_least=12)
    evergreen = store.campaign("evergreen")["id"]
    assert kept == {
        (evergreen, "gad", "welcome", "claimed"): 6,
        (evergreen, "social", "welcome", "claimed"): 6,
    }
    # A claim that loses (the row exists) changes nothing.
    assert store.claim([(enrollment_ids[0], "welcome")], MONDAY_10, "outbox") == []
    assert_counts_match(store, at_least=12)

    settle(store, claims[:4], SendStatus.sent)
    settle(store, claims[4:6], SendStatus.failed)
    settle(store, claims[6:9], SendStatus.unknown)
    store.release([c.send_id for c in claims[9:11]])  # back to due: the rows go
    kept = assert_counts_match(store, at_least=10)
    assert sum(n for k, n in kept.items() if k[3] == "claimed") == 1

    store.mark_stale_claims_unknown(LATER, LATER)  # the last claim: a run that died
    assert_counts_match(store, at_least=10)
    won = store.reclaim_unknown([c.send_id for c in claims[6:8]], LATER, "sendgrid", max_resends=1)
    kept = assert_counts_match(store, at_least=10)
    assert sum(n for k, n in kept.items() if k[3] == "claimed") == 2
    store.unclaim_resends({claim.send_id: old for old, claim in won.items()})
    assert_counts_match(store, at_least=10)

    # The second step for the ones sent, then a lead forgotten (its sends deleted first).
    second = store.claim([(c.enrollment_id, "brain") for c in claims[:4]], LATER, "outbox")
    settle(store, second, SendStatus.sent, LATER)
    forgotten = store.ledger()[0]["email"]
    assert store.forget_lead(forgotten, LATER)["sends"] >= 1
    assert_counts_match(store, at_least=10)


def test_counts_follow_raw_sql_bulk_changes_and_cascades(store):
    """Whatever code path changes sends: one bulk UPDATE, a DELETE of enrollments that cascades
    to their sends (foreign keys), an enrollment moved to another audience."""
    enrollment_ids = enrolled(store, 30, audiences=("gad", "social", "general"))
    store.claim([(e, "welcome") for e in enrollment_ids], MONDAY_10, "outbox")
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE sends SET status = 'sent' WHERE id % 3 <> 0"))
        conn.execute(sa.text("UPDATE sends SET message_id = 'x'"))  # no status change: no count change
    kept = assert_counts_match(store, at_least=30)
    assert sum(n for k, n in kept.items() if k[3] == "sent") == 20
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("DELETE FROM enrollments WHERE id IN (:a, :b)"),
            {"a": enrollment_ids[0], "b": enrollment_ids[1]},
        )
        conn.execute(
            sa.text("UPDATE enrollments SET audience = 'social' WHERE id = :e"), {"e": enrollment_ids[2]}
        )
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM sends")).scalar() == 28  # the cascade ran
    kept = assert_counts_match(store, at_least=28)
    per_audience = {a: sum(n for k, n in kept.items() if k[1] == a) for a in ("gad", "social", "general")}
    assert per_audience == {"gad": 9, "social": 10, "general": 9}
    # A rolled-back change leaves the counts as they were (same transaction as the ledger).
    with pytest.raises(RuntimeError), store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM sends"))
        raise RuntimeError("rolled back")
    assert_counts_match(store, at_least=28)


def test_postgresql_counts_a_bulk_update_in_one_trigger_call(store):
    if store.dialect != "postgresql":
        pytest.skip("statement-level triggers with transition tables: PostgreSQL only")
    enrollment_ids = enrolled(store, 1000, audiences=("gad", "social", "general", "treatment_resistant"))
    store.claim([(e, "welcome") for e in enrollment_ids], MONDAY_10, "outbox")
    with store.engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL track_functions = 'pl'"))
        assert conn.execute(sa.text("UPDATE sends SET status = 'sent'")).rowcount == 1000
        calls = conn.execute(
            sa.text("SELECT calls FROM pg_stat_xact_user_functions WHERE funcname = 'send_counts_apply'")
        ).scalar()
    assert calls == 1
    kept = assert_counts_match(store, at_least=1000)
    assert set(kept.values()) == {250}


def test_the_migration_fills_the_counts_from_the_ledger_and_downgrades(store, database_url):

    def diffs() -> list:
        return model_diffs(store, "send_counts", "ix_enrollments_exited_lead")

    enrollment_ids = enrolled(store, 9)
    downgrade(store, database_url, "0011_intake")
    assert (
        "send_counts" not in sa.inspect(store.engine).get_table_names() and triggers_present(store) == set()
    )
    # No trigger now, and the ledger code of today needs today's schema: the rows by hand.
    with store.engine.begin() as conn:
        for i, e in enumerate(enrollment_ids):
            conn.execute(
                sa.text(
                    "INSERT INTO sends (send_id, enrollment_id, step_key, status, transport, claimed_at) "
                    "VALUES (:s, :e, 'welcome', :status, 'outbox', :at)"
                ),
                {"s": f"s{i}", "e": e, "status": "sent" if i < 5 else "claimed", "at": MONDAY_10},
            )
    store.migrate()
    assert triggers_present(store) == TRIGGERS and diffs() == []
    if store.dialect == "postgresql":  # the lead list's "stopped" plan needs them (0012_console2)
        with store.engine.connect() as conn:
            stats = (
                conn.execute(
                    sa.text(
                        "SELECT stxname FROM pg_statistic_ext "
                        "WHERE stxnamespace = current_schema()::regnamespace"
                    )
                )
                .scalars()
                .all()
            )
            # A plan made for a big statement must not join a small one to every enrollment.
            config = conn.execute(
                sa.text(
                    "SELECT proconfig FROM pg_proc WHERE proname = 'send_counts_apply' "
                    "AND pronamespace = current_schema()::regnamespace"
                )
            ).scalar()
        assert "st_enrollments_state_exit_reason" in stats
        assert {"enable_hashjoin=off", "enable_mergejoin=off"} <= set(config)
    kept = assert_counts_match(store, at_least=9)
    assert sum(n for k, n in kept.items() if k[3] == "sent") == 5
