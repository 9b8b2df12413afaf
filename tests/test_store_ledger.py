"""The ledger's recovery queries on SQLite and PostgreSQL: release, stale claims, unknown sends
confirmed by events or claimed again, pausing campaigns, and the one-query reachability check."""

from __future__ import annotations

from datetime import timedelta

from conftest import utc

from campaign.events import ACCEPTED_KINDS, parse_events
from campaign.models import LeadIn, SendResult, SendStatus

T0 = utc(2026, 3, 2, 15, 0)


def setup(store, n=3):
    store.upsert_leads([LeadIn(email=f"s{i}@example.com", consent=True) for i in range(n)], T0)
    campaign = store.campaign("evergreen")
    ids = [store.lead_by_email(f"s{i}@example.com").id for i in range(n)]
    store.add_enrollments(
        [
            {
                "campaign_id": campaign["id"],
                "lead_id": lid,
                "audience": "gad",
                "audience_version": "v",
                "enrolled_at": T0,
                "state": "active",
                "next_due_at": T0,
            }
            for lid in ids
        ]
    )
    enrollments = [store.enrollment_for_lead(lid)["id"] for lid in ids]
    return campaign, ids, enrollments


def statuses(store):
    return sorted(r["status"] for r in store.ledger())


def test_release_deletes_only_claimed_rows(store):
    _, _, enrollments = setup(store)
    claims = store.claim([(e, "welcome") for e in enrollments], T0, "sendgrid")
    store.settle([SendResult(send_id=claims[0].send_id, status=SendStatus.sent, message_id="m")], T0)
    assert store.release([c.send_id for c in claims]) == 2
    assert statuses(store) == ["sent"]
    # Released steps can be claimed again.
    assert len(store.claim([(e, "welcome") for e in enrollments], T0, "sendgrid")) == 2


def test_stale_claims_become_unknown_and_hold_the_gap(store):
    _, lead_ids, enrollments = setup(store)
    store.claim([(enrollments[0], "welcome")], T0, "sendgrid")
    store.claim([(enrollments[1], "welcome")], T0 + timedelta(minutes=10), "sendgrid")
    assert store.mark_stale_claims_unknown(T0 + timedelta(minutes=5), T0 + timedelta(minutes=20)) == 1
    assert statuses(store) == ["claimed", "unknown"]
    assert store.lead_by_email("s0@example.com").last_email_at == T0
    assert store.lead_by_email("s1@example.com").last_email_at is None


def test_unknown_sends_confirmed_by_events_or_claimed_again(store):
    campaign, _, enrollments = setup(store)
    claims = store.claim([(e, "welcome") for e in enrollments], T0, "sendgrid")
    store.mark_stale_claims_unknown(T0 + timedelta(minutes=1), T0 + timedelta(minutes=20))
    event = [
        {
            "email": "s0@example.com",
            "timestamp": 1772463600,
            "event": "processed",
            "sg_event_id": "ev1",
            "sg_message_id": "MSGID0.filter.0",
            "send_id": claims[0].send_id,
        }
    ]
    store.record_events(parse_events(__import__("json").dumps(event)), T0 + timedelta(minutes=2))
    store.confirm_unknown_from_events(ACCEPTED_KINDS, T0 + timedelta(minutes=30))
    rows = {r["send_id"]: r for r in store.ledger()}
    assert rows[claims[0].send_id]["status"] == "sent" and rows[claims[0].send_id]["message_id"] == "MSGID0"

    waiting = store.unknown_sends(T0 + timedelta(hours=3))
    assert [u.send_id for u in waiting] == [c.send_id for c in claims[1:]]
    store.pause_campaigns([campaign["id"]], "paused after 3 consecutive send failures: 503")
    assert store.unknown_sends(T0 + timedelta(hours=3)) == []  # a paused campaign's sends wait
    assert store.campaign("evergreen")["paused_reason"].startswith("paused after 3")
    store.set_campaign_state("evergreen", "active")

    won = store.reclaim_unknown([claims[1].send_id, claims[2].send_id], T0 + timedelta(hours=3), "sendgrid")
    assert set(won) == {claims[1].send_id, claims[2].send_id}
    assert (
        store.reclaim_unknown([claims[1].send_id], T0 + timedelta(hours=3), "sendgrid") == {}
    )  # taken already
    new = won[claims[2].send_id]
    assert new.send_id != claims[2].send_id and new.enrollment_id == enrollments[2]
    store.unclaim_resends({new.send_id: claims[2].send_id})  # never sent: back as it was
    rows = {r["send_id"]: r for r in store.ledger()}
    assert rows[claims[2].send_id]["status"] == "unknown"
    assert rows[won[claims[1].send_id].send_id]["status"] == "claimed"


def test_reachability_in_one_query_matches_the_full_check(store):
    _, lead_ids, _ = setup(store, 4)
    leads = [store.lead_by_email(f"s{i}@example.com") for i in range(4)]
    store.unsubscribe_lead(leads[1].public_id, T0)
    store.suppress("s2@example.com", "bounce", T0)
    store.mark_booked("s3@example.com", T0)
    for lead in leads:
        assert store.is_reachable(lead.id, lead.email) == store.is_reachable(lead.id)
    assert [store.is_reachable(lead.id, lead.email) for lead in leads] == [True, False, False, False]
    assert not store.is_reachable(leads[0].id, "someone-else@example.com")


def test_set_based_settling_writes_each_sends_own_outcome(store):
    """A bulk request's recipients share one outcome (one UPDATE ... IN for all of them); the
    odd ones out keep theirs. More sends than one IN list holds, on SQLite and PostgreSQL."""
    n = 1000
    _, lead_ids, enrollments = setup(store, n)
    claims = store.claim([(e, "welcome") for e in enrollments], T0, "sendgrid")
    later = T0 + timedelta(minutes=1)
    results = [
        SendResult(send_id=c.send_id, status=SendStatus.sent, message_id="req-1") for c in claims[:950]
    ]
    results += [SendResult(send_id=claims[950].send_id, status=SendStatus.failed, error="bad address")]
    results += [
        SendResult(send_id=c.send_id, status=SendStatus.unknown, error="timeout") for c in claims[951:990]
    ]
    results += [
        SendResult(send_id=c.send_id, status=SendStatus.sent, message_id=f"m{i}")
        for i, c in enumerate(claims[990:])
    ]
    store.settle(results, later, emailed=lead_ids[:950])
    rows = {r["send_id"]: r for r in store.ledger()}
    for r in results:
        row = rows[r.send_id]
        assert (row["status"], row["message_id"], row["settled_at"]) == (r.status.value, r.message_id, later)
    assert [c.send_id for c in claims[990:]] == [
        s for s, r in rows.items() if (r["message_id"] or "")[:1] == "m"
    ]
    assert store.lead_by_email("s0@example.com").last_email_at == later
    assert store.lead_by_email("s949@example.com").last_email_at == later
    assert store.lead_by_email("s950@example.com").last_email_at is None


def test_set_based_enrollment_updates_give_each_enrollment_its_values(store):
    _, lead_ids, enrollments = setup(store, 1000)
    t1, t2 = T0 + timedelta(days=1), T0 + timedelta(days=2)
    changes = [{"id": e, "next_due_at": t1} for e in enrollments[:980]]
    changes += [{"id": enrollments[980], "next_due_at": t2}]  # alone
    changes += [{"id": e, "state": "finished", "next_due_at": None} for e in enrollments[981:995]]
    changes += [
        {"id": e, "state": "exited", "exit_reason": "unsubscribed", "next_due_at": None}
        for e in enrollments[995:]
    ]
    store.update_enrollments(changes)
    got = {lid: store.enrollment_for_lead(lid) for lid in lead_ids}
    for lid, change in zip(lead_ids, changes, strict=True):
        row = got[lid]
        assert row["id"] == change["id"]
        assert (row["state"], row["exit_reason"], row["next_due_at"]) == (
            change.get("state", "active"),
            change.get("exit_reason"),
            change["next_due_at"],
        )


def test_claims_take_each_pair_once_with_unguessable_time_ordered_ids(store):
    """More pairs than one INSERT holds (150); a pair claimed before is not claimed again. Each
    send id: 32 hex digits, the claim's moment first (neighbours in the index), then random."""
    _, _, enrollments = setup(store, 400)
    first = store.claim([(e, "welcome") for e in enrollments[:300]], T0, "sendgrid")
    second = store.claim([(e, "welcome") for e in enrollments[200:]], T0, "sendgrid")
    assert sorted(c.enrollment_id for c in first) == enrollments[:300]
    assert sorted(c.enrollment_id for c in second) == enrollments[300:]
    ids = [c.send_id for c in first + second]
    assert len(set(ids)) == 400 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    assert len({i[:10] for i in ids}) <= 2  # one moment (two if the claims straddle a tick)
    assert len({i[12:] for i in ids}) == 400
    rows = store.ledger()
    assert {(r["status"], r["claimed_at"]) for r in rows} == {("claimed", T0)}  # bound as SQLAlchemy binds


def test_reachability_before_a_request_reads_the_kept_address_hash_or_makes_it(store):
    import sqlalchemy as sa

    from campaign.store.tables import leads as leads_table

    _, lead_ids, _ = setup(store, 4)
    store.suppress("s1@example.com", "bounce", T0)
    store.suppress("s2@example.com", "bounce", T0)
    with store.engine.begin() as conn:  # leads from before 0014_enroll: no hash kept
        conn.execute(sa.update(leads_table).where(leads_table.c.id.in_(lead_ids[2:])).values(email_hash=None))
    pairs = [(i, f"s{n}@example.com") for n, i in enumerate(lead_ids)]
    assert store.reachable_among(pairs) == {lead_ids[0], lead_ids[3]}
