"""The console's lead reads on SQLite and PostgreSQL: prefix search, filters by status,
audience and campaign, pages by key, a lead's events; the dry-run upsert; migration 0006."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from store_support import enrollment_row

from campaign.models import LeadIn
from campaign.store import LeadQuery, alembic_config, leads

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def emails(store, query: LeadQuery = LeadQuery(), **kw) -> list[str]:
    return [r["email"] for r in store.search_leads(query, **kw)]


def enroll(store, email: str, audience: str, state: str = "active", exit_reason: str | None = None) -> None:
    lead = store.lead_by_email(email)
    campaign = store.campaign("evergreen")
    store.add_enrollments(
        [enrollment_row(campaign["id"], lead.id, NOW, audience, state=state, exit_reason=exit_reason)]
    )


def test_search_matches_the_start_of_an_address_or_a_name_in_any_case(store):
    store.upsert_leads(
        [
            LeadIn(email="sam@example.com", first_name="Sam", last_name="Smith"),
            LeadIn(email="olga@example.com", first_name="Olga", last_name="SAMPSON"),
            LeadIn(email="x_y@example.com", first_name="Ann", last_name="O'Neil"),
            LeadIn(email="xzy@example.com", first_name="100%", last_name=""),
        ],
        NOW,
    )
    assert emails(store, LeadQuery(text="sam")) == ["olga@example.com", "sam@example.com"]  # newest first
    assert emails(store, LeadQuery(text="  SAM@ex ")) == ["sam@example.com"]
    assert emails(store, LeadQuery(text="olga samp")) == ["olga@example.com"]
    assert emails(store, LeadQuery(text="o'ne")) == ["x_y@example.com"]
    # LIKE's wildcards are literal: "x_" is not "any x then one character"
    assert emails(store, LeadQuery(text="x_")) == ["x_y@example.com"]
    assert emails(store, LeadQuery(text="100%")) == ["xzy@example.com"]
    assert emails(store, LeadQuery(text="mith")) == []


def test_statuses_audiences_and_campaigns_filter_through_enrollments(store):
    store.upsert_leads(
        [
            LeadIn(email="active@example.com", consent=True),
            LeadIn(email="done@example.com", consent=True),
            LeadIn(email="bounced@example.com", consent=True),
            LeadIn(email="booked@example.com", consent=True),
            LeadIn(email="waiting@example.com", consent=True),
            LeadIn(email="noconsent@example.com"),
        ],
        NOW,
    )
    enroll(store, "active@example.com", "gad")
    enroll(store, "done@example.com", "social", "finished")
    enroll(store, "bounced@example.com", "gad", "exited", "bounced")
    enroll(store, "booked@example.com", "gad")
    store.mark_booked("booked@example.com", NOW)
    store.unsubscribe_lead(store.lead_by_email("noconsent@example.com").public_id, NOW)

    def having(status: str, **kw) -> set[str]:
        return set(emails(store, LeadQuery(status=status, **kw)))

    assert having("in_sequence") == {"active@example.com"}
    assert having("finished") == {"done@example.com"}
    assert having("stopped") == {"bounced@example.com"}
    assert having("booked") == {"booked@example.com"}
    assert having("unsubscribed") == {"noconsent@example.com"}
    assert having("not_enrolled") == {"waiting@example.com"}
    assert having("no_consent") == set()  # the one without consent unsubscribed
    assert set(emails(store, LeadQuery(audience="gad"))) == {
        "active@example.com",
        "bounced@example.com",
        "booked@example.com",
    }
    evergreen = store.campaign("evergreen")["id"]
    assert len(emails(store, LeadQuery(campaign_id=evergreen))) == 4
    assert having("not_enrolled", campaign_id=evergreen) == {"waiting@example.com"}
    assert emails(store, LeadQuery(campaign_id=evergreen + 99)) == []
    with pytest.raises(ValueError, match="unknown lead status"):
        store.search_leads(LeadQuery(status="asleep"))

    ids = [store.lead_by_email(e).id for e in ("done@example.com", "booked@example.com")]
    latest = store.latest_enrollments(ids)
    assert latest[ids[0]]["state"] == "finished" and latest[ids[0]]["campaign"]
    assert latest[ids[1]]["exit_reason"] == "booked"


def test_pages_by_key_cover_every_lead_once(store):
    store.upsert_leads([LeadIn(email=f"l{i:02}@example.com") for i in range(25)], NOW)
    seen, before = [], None
    while True:
        page = store.search_leads(LeadQuery(), before_id=before, limit=10)
        seen += [r["email"] for r in page]
        if len(page) < 10:
            break
        before = page[-1]["id"]
    assert seen == [f"l{i:02}@example.com" for i in reversed(range(25))]
    first = store.lead_by_email("l24@example.com")
    assert store.public_id_to_id(first.public_id) == first.id and store.public_id_to_id("nope") is None


def test_a_dry_run_counts_like_the_upsert_and_writes_nothing(store):
    store.upsert_leads(
        [LeadIn(email="old@example.com", first_name="A"), LeadIn(email="same@example.com")], NOW
    )
    incoming = [
        LeadIn(email="old@example.com", first_name="B"),
        LeadIn(email="same@example.com"),
        LeadIn(email="new@example.com"),
    ]
    dry = store.upsert_leads(incoming, NOW, dry_run=True, columns={"email", "first_name"})
    assert (dry.new, dry.updated, dry.unchanged) == (1, 1, 1)
    assert store.lead_by_email("new@example.com") is None
    assert store.lead_by_email("old@example.com").first_name == "A"
    real = store.upsert_leads(incoming, NOW, columns={"email", "first_name"})
    assert real == dry


def test_migration_0006_adds_and_removes_its_indexes(store, database_url):
    from alembic import command

    def indexes() -> set[str]:  # SQLAlchemy's inspector skips SQLite's expression indexes
        query = {
            "sqlite": "SELECT name FROM sqlite_master WHERE type = 'index'",
            "postgresql": "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()",
        }[store.dialect]
        with store.engine.connect() as conn:
            return set(conn.execute(sa.text(query)).scalars())

    added = {"ix_enrollments_lead_id", "ix_leads_first_name_lower", "ix_leads_last_name_lower"}
    if store.dialect == "postgresql":
        added.add("ix_leads_email_pattern")
    assert indexes() >= added
    cfg = alembic_config(database_url)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005_console")
    assert not indexes() & added
    store.migrate()
    assert indexes() >= added


def test_a_leads_record_and_events_by_public_id(store):
    store.upsert_leads([LeadIn(email="r@example.com", first_name="Rae")], NOW)
    lead = store.lead_by_email("r@example.com")
    record = store.lead_record(lead.public_id)
    assert record["first_name"] == "Rae" and record["created_at"] == NOW
    assert store.lead_record("0" * 32) is None
    assert store.lead_enrollments(lead.id) == [] and store.lead_events(lead.id) == []
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(leads)).scalar() == 1
