"""The lead intake shared by the CSV import and the API: normalization (strict and lenient),
proof of consent through the store's upsert, what `campaign timeline` and `campaign leads`
show of it, and the 0011 migration on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from campaign.app.intake import Submission, prepare
from campaign.app.leads import import_file
from campaign.cli import app
from campaign.lead_fields import InvalidLead, normalize_lead
from campaign.leads import parse_lead_file
from campaign.models import AnxietyType, ConsentProof, LeadIn
from campaign.store import Incoming, leads

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
runner = CliRunner()


# ---- normalization ---------------------------------------------------------------------------


def test_strict_names_every_bad_field_and_lenient_only_the_address():
    values = {"email": "ann@example.com", "consent": "maybe", "timezone": "Nowhere/Else", "consent_ip": "x"}
    with pytest.raises(InvalidLead) as caught:
        normalize_lead(values, default_timezone="America/New_York", strict=True)
    assert set(caught.value.problems) == {"consent", "timezone", "consent_ip"}
    lenient = normalize_lead({**values, "state": "TX"}, default_timezone="America/New_York")
    assert (lenient.lead.consent, lenient.lead.timezone, lenient.evidence.client) == (
        False,
        "America/Chicago",
        "",
    )
    with pytest.raises(InvalidLead) as caught:
        normalize_lead({"email": " "}, default_timezone="America/New_York")
    assert str(caught.value) == "email is empty"


def test_consent_version_is_the_given_one_or_the_hash_of_the_exact_wording():
    text = "I agree to get emails.\r\n"
    hashed = normalize_lead({"email": "a@example.com", "consent_text": text}, default_timezone="UTC")
    named = normalize_lead(
        {"email": "a@example.com", "consent_text": text, "consent_version": " v3 "}, default_timezone="UTC"
    )
    assert hashed.evidence.version == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert named.evidence.version == "v3"
    ip = normalize_lead({"email": "a@example.com", "consent_ip": "2001:DB8::1"}, default_timezone="UTC")
    assert ip.evidence.client == "2001:db8::1"


def test_prepare_keeps_only_the_fields_given():
    item = prepare(
        Submission({"email": "A@example.com", "consent": "yes", "utm_source": "x"}, "api", "crm"),
        default_timezone="UTC",
        strict=True,
    )
    assert item.fields == {"email", "consent", "utm_source"}
    assert item.proof == ConsentProof(via="api", ref="crm")
    assert item.lead.email == "a@example.com" and item.lead.utm_source == "x"


def test_utm_headers_are_their_own_fields():
    parsed = parse_lead_file(
        b"Email,Lead Source,UTM Source,utm_medium\nann@example.com,website,google,cpc\n", filename="f.csv"
    )
    ((_, lead),) = parsed.leads
    assert (lead.source, lead.utm_source, lead.utm_medium) == ("website", "google", "cpc")


# ---- proof of consent in the store -----------------------------------------------------------


def test_proof_is_written_when_consent_is_given_and_kept_while_it_lasts(store):
    proof = ConsentProof(via="api", ref="crm", version="v1", client="203.0.113.9")
    later = ConsentProof(via="csv", ref="leads.csv row 9", version="v2")
    store.upsert_leads([Incoming(LeadIn(email="a@example.com"), proof)], NOW)
    assert store.lead_by_email("a@example.com").consent_proof is None  # no consent, no proof

    store.upsert_leads(
        [Incoming(LeadIn(email="a@example.com", consent=True), proof)], NOW + timedelta(hours=1)
    )
    given = store.lead_by_email("a@example.com")
    assert (given.consent_at, given.consent_proof) == (NOW + timedelta(hours=1), proof)

    counts = store.upsert_leads(
        [Incoming(LeadIn(email="a@example.com", consent=True), later)], NOW + timedelta(days=1)
    )
    assert counts.unchanged == 1  # consent goes on: the proof of when it was given stays
    assert store.lead_by_email("a@example.com").consent_proof == proof

    # Withdrawn, then given again: the new consent brings its own proof.
    store.upsert_leads(
        [Incoming(LeadIn(email="a@example.com", consent=False), later)], NOW + timedelta(days=2)
    )
    store.upsert_leads(
        [Incoming(LeadIn(email="a@example.com", consent=True), later)], NOW + timedelta(days=3)
    )
    again = store.lead_by_email("a@example.com")
    assert (again.consent_at, again.consent_proof) == (NOW + timedelta(days=3), later)


def test_csv_import_records_file_and_row_and_a_second_import_changes_nothing(
    sqlite_store, settings, tmp_path
):
    path = tmp_path / "spring.csv"
    path.write_text(
        "Email,Consent,Consent version,Anxiety\nann@example.com,yes,form-v2,GAD\nbob@example.com,no,,\n",
        encoding="utf-8",
    )
    first = import_file(sqlite_store, settings, path, NOW)
    second = import_file(sqlite_store, settings, path, NOW + timedelta(hours=1))
    assert (first.new, second.unchanged) == (2, 2)
    ann, bob = sqlite_store.lead_by_email("ann@example.com"), sqlite_store.lead_by_email("bob@example.com")
    assert ann.consent_proof == ConsentProof(via="csv", ref="spring.csv row 2", version="form-v2")
    assert ann.consent_at == NOW and ann.anxiety_type is AnxietyType.gad
    assert bob.consent_proof is None


# ---- what the CLI shows ---------------------------------------------------------------------


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", "test-secret-key")
    monkeypatch.setenv("COLUMNS", "200")
    return settings


def test_timeline_and_leads_json_show_the_proof(env, tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text(
        "Email,Consent,Consent text,IP,UTM Source\nann@example.com,yes,I agree.,198.51.100.4,google\n"
        "old@example.com,no,,,\n",
        encoding="utf-8",
    )
    assert runner.invoke(app, ["import", str(path)]).exit_code == 0
    timeline = runner.invoke(app, ["timeline", "ann@example.com"])
    assert timeline.exit_code == 0, timeline.output
    version = "sha256:" + hashlib.sha256(b"I agree.").hexdigest()
    assert "via csv (leads.csv row 2)" in timeline.stdout and version in timeline.stdout
    assert "from 198.51.100.4" in timeline.stdout
    as_json = json.loads(runner.invoke(app, ["timeline", "ann@example.com", "--json"]).stdout)
    assert as_json["consent"]["version"] == version and as_json["consent"]["via"] == "csv"

    rows = {r["email"]: r for r in json.loads(runner.invoke(app, ["leads", "--format", "json"]).stdout)}
    ann = rows["ann@example.com"]
    assert (ann["consent"], ann["consent_via"], ann["consent_ref"], ann["consent_client"]) == (
        True,
        "csv",
        "leads.csv row 2",
        "198.51.100.4",
    )
    assert ann["consent_at"] and ann["utm_source"] == "google"
    assert (rows["old@example.com"]["consent"], rows["old@example.com"]["consent_at"]) == (False, None)
    header = runner.invoke(app, ["leads", "--format", "csv"]).stdout.splitlines()[0]
    assert header.startswith("email,audience,status") and "consent_version" in header


# ---- the migration ---------------------------------------------------------------------------


def test_migration_0011_matches_the_declared_schema_and_goes_down_and_up(store, database_url):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from campaign.store import alembic_config, metadata

    def diffs() -> list:
        with store.engine.connect() as conn:
            found = compare_metadata(MigrationContext.configure(conn), metadata)
        return [d for d in found if "idempotency_keys" in repr(d) or "'leads'" in repr(d)]

    def columns() -> set[str]:
        return {c["name"] for c in sa.inspect(store.engine).get_columns("leads")}

    assert {"utm_term", "consent_at", "consent_client"} <= columns()
    assert diffs() == []
    store.upsert_leads([LeadIn(email="kept@example.com", consent=True)], NOW)
    from alembic.script import ScriptDirectory

    cfg = alembic_config(database_url)
    before = ScriptDirectory.from_config(cfg).get_revision("0011_intake").down_revision
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, before)
    assert "idempotency_keys" not in sa.inspect(store.engine).get_table_names()
    assert not {"utm_term", "consent_at"} & columns()
    store.migrate()
    assert diffs() == []
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(leads.c.email, leads.c.consent_at, leads.c.utm_source)).one()
    assert tuple(row) == ("kept@example.com", None, "")  # not invented for older leads


# ---- group commit ----------------------------------------------------------------------------


def test_group_commit_shares_transactions_and_hands_each_caller_its_result():
    import threading
    import time

    from campaign.api.group_commit import GroupCommit

    calls: list[list[int]] = []

    def run_many(jobs: list[int]) -> list[int]:
        calls.append(jobs)
        time.sleep(0.05)  # a slow commit: others queue meanwhile
        if -1 in jobs:
            raise ValueError("the group failed")
        return [job * 10 for job in jobs]

    group = GroupCommit(run_many)
    results: dict[int, object] = {}

    def submit(job: int) -> None:
        try:
            results[job] = group.submit(job)
        except ValueError as exc:
            results[job] = str(exc)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: n * 10 for n in range(1, 21)}
    assert sorted(j for jobs in calls for j in jobs) == list(range(1, 21))
    assert len(calls) < 20  # posts that came while one wrote went together
    submit(-1)
    assert results[-1] == "the group failed"


def test_no_two_store_parts_claim_one_store_method():
    """Store's methods are class attributes: a second part's method of the same name would
    silently replace the first (two branches each added `latest_enrollments` once)."""
    import ast
    import inspect

    import campaign.store

    tree = ast.parse(inspect.getsource(campaign.store.Store))
    names = [t.id for node in tree.body[0].body if isinstance(node, ast.Assign) for t in node.targets]
    assert len(names) > 40 and len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
