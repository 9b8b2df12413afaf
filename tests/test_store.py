"""The store on SQLite and PostgreSQL: upserts, the ledger's uniqueness, claims."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import sqlalchemy as sa

from campaign.models import AnxietyType, LeadIn, SendResult, SendStatus
from campaign.store import enrollments

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def lead(email: str, **kw) -> LeadIn:
    return LeadIn(email=email, consent=True, **kw)


def enroll_one(store, email="a@example.com"):
    store.upsert_leads([lead(email)], NOW)
    campaign = store.campaign("evergreen")
    found = store.unenrolled_leads(campaign["id"], 0, 10)
    store.add_enrollments(
        [
            {
                "campaign_id": campaign["id"],
                "lead_id": found[0].id,
                "audience": "gad",
                "audience_version": "v",
                "enrolled_at": NOW,
                "state": "active",
                "next_due_at": NOW,
            }
        ]
    )
    with store.engine.connect() as conn:
        return conn.execute(sa.select(enrollments.c.id)).scalar()


def test_upsert_counts_new_updated_unchanged(store):
    first = store.upsert_leads([lead("a@example.com"), lead("b@example.com")], NOW)
    again = store.upsert_leads([lead("a@example.com"), lead("b@example.com", first_name="Bea")], NOW)
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)
    assert (again.new, again.updated, again.unchanged) == (0, 1, 1)
    assert store.lead_by_email("B@Example.com").first_name == "Bea"


def test_store_round_trips_aware_utc_datetimes(store):
    store.upsert_leads([lead("a@example.com", anxiety_type=AnxietyType.social)], NOW)
    store.mark_emailed([store.lead_by_email("a@example.com").id], NOW)
    got = store.lead_by_email("a@example.com")
    assert got.last_email_at == NOW and got.last_email_at.tzinfo is not None
    assert got.anxiety_type is AnxietyType.social


def test_claim_is_unique_per_enrollment_and_step(store):
    enrollment_id = enroll_one(store)
    first = store.claim([(enrollment_id, "welcome")], NOW, "outbox")
    second = store.claim([(enrollment_id, "welcome"), (enrollment_id, "brain")], NOW, "outbox")
    assert [c.step_key for c in first] == ["welcome"]
    assert [c.step_key for c in second] == ["brain"]  # welcome already has its ledger row
    assert store.sent_keys(enrollment_id) == {"welcome", "brain"}


def test_parallel_claims_produce_one_row(store):
    enrollment_id = enroll_one(store)
    won: list = []
    barrier = threading.Barrier(4)

    def worker():
        barrier.wait()
        won.extend(store.claim([(enrollment_id, "welcome")], NOW, "outbox"))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1


def test_settle_records_result(store):
    enrollment_id = enroll_one(store)
    (claim,) = store.claim([(enrollment_id, "welcome")], NOW, "outbox")
    store.settle([SendResult(send_id=claim.send_id, status=SendStatus.sent, message_id="m-1")], NOW)
    (row,) = store.ledger()
    assert (row["status"], row["message_id"]) == ("sent", "m-1")


def test_reimport_without_a_column_keeps_that_field_and_never_unbooks(store):
    store.upsert_leads([lead("a@example.com", first_name="Ann")], NOW)
    store.mark_booked("a@example.com", NOW)
    # A later file with only email and name columns: consent and booking stay as they were.
    counts = store.upsert_leads(
        [LeadIn(email="a@example.com", first_name="Anne")], NOW, columns={"email", "first_name"}
    )
    got = store.lead_by_email("a@example.com")
    assert counts.updated == 1 and got.first_name == "Anne" and got.consent and got.booked
    # Even a file that says booked=no does not undo a booking.
    store.upsert_leads([lead("a@example.com", first_name="Anne", booked=False)], NOW)
    assert store.lead_by_email("a@example.com").booked


def test_add_enrollments_counts_only_new_rows(store):
    store.upsert_leads([lead("a@example.com"), lead("b@example.com")], NOW)
    campaign = store.campaign("evergreen")
    ids = [l.id for l in store.unenrolled_leads(campaign["id"], 0, 10)]
    rows = [
        {
            "campaign_id": campaign["id"],
            "lead_id": i,
            "audience": "gad",
            "audience_version": "v",
            "enrolled_at": NOW,
            "state": "active",
            "next_due_at": NOW,
        }
        for i in ids
    ]
    assert store.add_enrollments(rows[:1]) == 1
    assert store.add_enrollments(rows) == 1  # the first is already there


def test_the_store_is_a_context_manager_that_closes_its_connections(database_url):
    from campaign.store import Store

    with Store.open(database_url, secret_key="k") as store:
        assert store.lead_by_email("a@example.com") is None
        pool = store.engine.pool
        assert pool.checkedin() >= 1  # the query's connection went back to the pool, still open
    assert pool.checkedin() == 0  # closed on the way out

    try:
        with Store.open(database_url, secret_key="k") as store:
            store.lead_by_email("a@example.com")
            pool = store.engine.pool
            raise KeyError("boom")
    except KeyError:
        pass  # the error is not swallowed...
    else:
        raise AssertionError("the store swallowed the error")
    assert pool.checkedin() == 0  # ...and the store is closed anyway
