"""The streaming, set-based file import on a real SQLite file and real PostgreSQL: the last row
for an address wins across chunk boundaries, rejects name their row, counts, proof of consent,
re-imports, rollback on a failure midway, and the same stored leads as the row-wise upsert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import SECRET

from campaign.app.intake import Submission, prepare, take_file
from campaign.app.leads import import_file
from campaign.lead_fields import _validated_email, normalize_email
from campaign.leads import ImportFileError, open_lead_file, parse_lead_file
from campaign.models import ConsentProof, LeadIn
from campaign.store import Incoming, Store, leads

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
HEADER = "Email,First Name,Consent,Booked,Anxiety,Consent version\n"


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def stored(store: Store) -> dict[str, dict]:
    """Every lead as stored, by address, without its ids (they differ between two stores)."""
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(leads)).mappings().all()
    return {r["email"]: {k: v for k, v in r.items() if k not in ("id", "public_id")} for r in rows}


def take(store: Store, path, chunk: int, now=NOW, dry_run=False):
    rejected = []
    lead_file = open_lead_file(path, filename=path.name, default_timezone="America/New_York")
    found = take_file(
        store, lead_file, path.name, now, on_reject=rejected.append, chunk=chunk, dry_run=dry_run
    )
    return found, rejected, lead_file


# ---- the last row wins, rejects, counts ----------------------------------------------------------


def test_the_last_row_for_an_address_wins_across_chunk_boundaries(store, tmp_path):
    path = write(
        tmp_path,
        "spring.csv",
        HEADER
        + "ann@example.com,Old,yes,no,GAD,v1\n"  # row 2
        + "bob@example.com,Bob,no,no,,\n"
        + "cy@example.com,Cy,yes,no,social,\n"
        + "ANN@Example.com,Middle,yes,no,GAD,v2\n"  # row 5: the next chunk
        + "not-an-address,Bad,yes,no,,\n"  # row 6
        + "dee@example.com,Dee,no,no,,\n"
        + "ann@example.com,Newest,yes,no,social,v3\n"  # row 8: another chunk
        + ",Empty,yes,no,,\n",  # row 9
    )
    found, rejected, lead_file = take(store, path, chunk=2)
    assert (found.counts.new, found.counts.updated, found.counts.unchanged) == (4, 0, 0)
    assert found.repeated == 2
    assert found.first_repeats == [(5, "ann@example.com", 2), (8, "ann@example.com", 5)]
    assert [(r.row_number, r.cells[1]) for r in rejected] == [(6, "Bad"), (9, "Empty")]
    assert "not valid" in rejected[0].reason and rejected[1].reason == "email is empty"
    ann = store.lead_by_email("ann@example.com")
    assert (ann.first_name, ann.anxiety_type.value) == ("Newest", "social")
    assert ann.consent_proof == ConsentProof(via="csv", ref="spring.csv row 8", version="v3")
    assert ann.consent_at == NOW
    assert store.lead_by_email("bob@example.com").consent_proof is None
    assert set(stored(store)) == {"ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"}


def test_reimporting_an_unchanged_file_changes_nothing_and_a_changed_one_counts_right(store, tmp_path):
    rows = "".join(f"l{i}@example.com,L{i},yes,no,GAD,\n" for i in range(7))
    path = write(tmp_path, "leads.csv", HEADER + rows)
    take(store, path, chunk=3)
    before = stored(store)
    again, _, _ = take(store, path, chunk=3, now=NOW + timedelta(days=1))
    assert (again.counts.new, again.counts.updated, again.counts.unchanged) == (0, 0, 7)
    assert stored(store) == before  # not even updated_at

    changed = rows.replace("l3@example.com,L3,", "l3@example.com,Lia,") + "new@example.com,N,no,no,,\n"
    later = NOW + timedelta(days=2)
    third, _, _ = take(store, write(tmp_path, "leads2.csv", HEADER + changed), chunk=3, now=later)
    assert (third.counts.new, third.counts.updated, third.counts.unchanged) == (1, 1, 6)
    lia = stored(store)["l3@example.com"]
    assert (lia["first_name"], lia["updated_at"], lia["created_at"]) == ("Lia", later, NOW)
    assert lia["consent_ref"] == "leads.csv row 5"  # consent that goes on keeps its proof


def test_a_dry_run_counts_like_the_import_and_writes_nothing(store, tmp_path):
    store.upsert_leads([LeadIn(email="ann@example.com", first_name="Ann")], NOW)
    path = write(tmp_path, "x.csv", HEADER + "ann@example.com,Anne,no,no,,\nbob@example.com,B,no,no,,\n")
    before = stored(store)
    dry, _, _ = take(store, path, chunk=1, dry_run=True)
    assert (dry.counts.new, dry.counts.updated, dry.counts.unchanged) == (1, 1, 0)
    assert stored(store) == before
    real, _, _ = take(store, path, chunk=1)
    assert real.counts == dry.counts


# ---- the rules: fields kept, bookings, consent ---------------------------------------------------


def test_a_file_keeps_what_it_has_no_column_for_never_unbooks_and_proves_new_consent(store, tmp_path):
    legacy = LeadIn(email="old@example.com", first_name="Old", consent=True, source="crm")
    store.upsert_leads([legacy], NOW)  # consent without proof (from before proofs were kept)
    store.upsert_leads([LeadIn(email="booked@example.com", booked=True)], NOW)
    store.upsert_leads([LeadIn(email="quiet@example.com", consent=False)], NOW)
    later = NOW + timedelta(hours=3)
    path = write(
        tmp_path,
        "f.csv",
        "Email,First Name,Consent,Booked\n"
        "old@example.com,Old,yes,no\n"
        "booked@example.com,,no,no\n"
        "quiet@example.com,,yes,yes\n",
    )
    found, _, _ = take(store, path, chunk=2, now=later)
    assert (found.counts.new, found.counts.updated, found.counts.unchanged) == (0, 2, 1)
    old, booked, quiet = (store.lead_by_email(f"{n}@example.com") for n in ("old", "booked", "quiet"))
    assert old.source == "crm"  # the file has no source column
    assert (old.consent_at, old.consent_proof.ref) == (later, "f.csv row 2")  # proof recorded now
    rows = stored(store)
    assert booked.booked and rows[booked.email]["booked_at"] == NOW  # an import never undoes a booking
    assert (quiet.consent, quiet.consent_proof.ref, quiet.booked, rows[quiet.email]["booked_at"]) == (
        True,
        "f.csv row 4",
        True,
        later,
    )
    again, _, _ = take(store, path, chunk=2, now=later + timedelta(hours=1))
    assert again.counts.unchanged == 3


# ---- the same stored leads as the row-wise upsert (the API's path) -------------------------------


def rowwise(store: Store, path, now) -> None:
    """The import as it was: each address's last row (found in memory) upserted row by row."""
    parsed = parse_lead_file(path.read_bytes(), filename=path.name)
    items = (
        prepare(
            Submission(values, "csv", f"{path.name} row {n}"),
            default_timezone="America/New_York",
            strict=False,
        )
        for n, values in parsed.iter_rows()
    )
    store.upsert_leads((Incoming(i.lead, i.proof) for i in items), now, columns=parsed.fields)


@pytest.fixture
def reference(tmp_path):
    # The same secret as `store`: the address hashes must agree too.
    s = Store.open(f"sqlite:///{tmp_path / 'reference.db'}", secret_key=SECRET)
    yield s
    s.close()


def test_the_set_based_import_stores_what_the_row_wise_upsert_stores(store, reference, tmp_path):
    seed = [
        Incoming(LeadIn(email="a@example.com", consent=True), None),
        Incoming(LeadIn(email="b@example.com", booked=True, first_name="B")),
        Incoming(
            LeadIn(email="c@example.com", consent=True, prior_treatments=2),
            ConsentProof(via="api", ref="crm", version="v0", client="203.0.113.9"),
        ),
        Incoming(LeadIn(email="d@example.com", utm_source="google", timezone="America/Chicago")),
    ]
    files = [
        "Email,First Name,Last Name,Anxiety,Prior treatments,Consent,Booked,State,Time zone,Source,"
        "UTM Source,Consent version,IP\n"
        "a@example.com,Ann,Lee,GAD,3,yes,no,TX,,web,fb,v1,198.51.100.4\n"
        "b@example.com,Bea,,social,,yes,no,,America/Denver,,,,\n"
        "c@example.com,Cy,,,none,yes,yes,NC,,,,v2,\n"
        "e@example.com,Eve,,nothing has worked,two,yes,yes,,Nowhere/Else,,,,\n"
        "A@example.com,Ann,Lee-Smith,GAD,3,yes,no,TX,,web,fb,v1,198.51.100.4\n"
        "f@example.com,,,,,no,no,,,,,,\n",
        # no consent, booked or UTM columns: those are kept
        "Email,First Name,Prior treatments\na@example.com,Annie,\nd@example.com,Dee,1\ng@example.com,G,\n",
        "Email,Consent\nc@example.com,no\nf@example.com,yes\nc@example.com,yes\n",
    ]
    for target in (store, reference):
        target.upsert_leads(seed, NOW)
    for number, text in enumerate(files):
        path = write(tmp_path, f"file{number}.csv", text)
        now = NOW + timedelta(hours=number + 1)
        take(store, path, chunk=2, now=now)
        rowwise(reference, path, now)
        assert stored(store) == stored(reference), f"after file {number}"


# ---- through import_file: the rejects file, failures midway ------------------------------------


def test_rejects_are_written_with_their_row_and_reason(store, settings, tmp_path):
    path = write(tmp_path, "leads.csv", "Email,Name\nann@example.com,Ann\nbad,=cmd\nbob@example.com,Bob\n")
    summary = import_file(store, settings, path, NOW)
    assert (summary.new, summary.rejected) == (2, 1)
    assert [(r.row_number, r.cells) for r in summary.first_rejected] == [(3, ("bad", "=cmd"))]
    lines = (tmp_path / "leads.rejected.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "row_number,reason,Email,Name"
    assert lines[1].startswith("3,email 'bad' is not valid") and lines[1].endswith(",bad,'=cmd")


def test_a_failure_midway_leaves_the_leads_as_they_were(store, settings, tmp_path):
    store.upsert_leads([LeadIn(email="ann@example.com", first_name="Ann")], NOW)
    before = stored(store)
    rows = "".join(f"l{i}@example.com,L\n" for i in range(20))
    broken = write(
        tmp_path,
        "broken.csv",
        "Email,Name\nann@example.com,Changed\n" + rows + 'x@example.com,"' + "z" * 200_000 + '"\n',
    )
    with pytest.raises(ImportFileError, match="CSV error"):
        import_file(store, settings, broken, NOW)
    assert stored(store) == before
    unwritable = write(tmp_path, "bad.csv", "Email,Name\nann@example.com,Changed\nnot-an-address,X\n")
    with pytest.raises(ImportFileError, match="cannot write the rejected rows"):
        import_file(store, settings, unwritable, NOW, rejects_path=tmp_path / "missing" / "r.csv")
    assert stored(store) == before


# ---- reading a file as a stream ------------------------------------------------------------------


def test_a_bad_byte_beyond_the_first_block_still_means_latin1(tmp_path):
    rows = "".join(f"l{i}@example.com,Lee\n" for i in range(60_000))  # > 1 MB of plain ASCII
    path = tmp_path / "old.csv"
    path.write_bytes(("Email,First Name\n" + rows + "rene@example.com,Ren\xe9\n").encode("latin-1"))
    lead_file = open_lead_file(path, filename="old.csv")
    assert any("read as Latin-1" in w for w in lead_file.warnings)
    *_, (_, _, last) = lead_file.records()
    assert last["first_name"] == "René"


def test_a_file_of_blank_lines_is_empty(tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text(" \n" * 70_000)
    with pytest.raises(ImportFileError, match="empty"):
        open_lead_file(path, filename="blank.csv")


# ---- the quick address check agrees with the full one ------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "ann@example.com",
        " Ann.Lee+tag@Example.COM ",
        "a..b@example.com",
        ".a@example.com",
        "a.@example.com",
        "a@-example.com",
        "a@example-.com",
        "a@example..com",
        "a@.example.com",
        "a@example.com.",
        "a@localhost",
        "a@mail.local",
        "a@site.test",
        "a@x.invalid",
        "a@x.onion",
        "a@123.com",
        "a@example.123",
        "a@b.c",
        "a@xn--bcher-kva.com",
        "a@" + "x" * 64 + ".com",
        "x" * 64 + "@example.com",
        "x" * 65 + "@example.com",
        "x" * 60 + "@" + ".".join(["y" * 60] * 3) + ".com",
        "postmaster@example.com",
        "o'neil{1}|~#@example.com",
        '"ann"@example.com',
        "a b@example.com",
        "josé@example.com",
        "ann@exämple.com",
        "a@[192.0.2.1]",
        "a@b@example.com",
    ],
)
def test_the_quick_address_check_gives_what_the_full_validation_gives(raw):
    def outcome(check):
        try:
            return check(raw)
        except ValueError as exc:  # EmailNotValidError is a ValueError
            return type(exc).__name__

    assert outcome(normalize_email) == outcome(_validated_email)


def test_a_write_by_another_connection_while_rows_are_staged_does_not_fail_the_import(settings, tmp_path):
    """SQLite: the tick writes while a long file is staged; the import takes the write lock
    only for its last statements and still commits (no stale read snapshot to upgrade)."""
    from campaign.runtime import open_store
    from campaign.store import Staged

    with open_store(settings) as importer, open_store(settings) as tick:
        importer.upsert_leads([LeadIn(email="seen@example.com")], NOW)
        importer.lead_by_email("seen@example.com")  # the import's pooled connection has read

        def rows():
            for i in range(6):
                if i == 3:  # midway: another connection commits a change
                    tick.upsert_leads([LeadIn(email="tick@example.com")], NOW)
                yield Staged(i + 2, LeadIn(email=f"l{i}@example.com"), None)

        found = importer.import_leads(rows(), NOW, columns={"email"}, chunk=2)
        assert found.counts.new == 6
        assert {"tick@example.com", "l5@example.com"} <= set(stored(importer))


def test_a_file_giving_consent_confirms_a_lead_a_form_left_waiting(store, tmp_path):
    """A file is a trusted source (as in the row-wise upsert): its consent confirms a waiting
    lead, counts as an update, and a file without consent leaves the lead waiting."""
    form_proof = ConsentProof(via="form", ref="form website (k)")
    for email in ("w@example.com", "x@example.com"):
        store.upsert_leads([Incoming(LeadIn(email=email, consent=True), form_proof, unconfirmed=True)], NOW)
    path = write(tmp_path, "crm.csv", "Email,Consent\nw@example.com,yes\nx@example.com,no\n")
    found, rejected, _ = take(store, path, chunk=1, now=NOW + timedelta(hours=1))
    assert rejected == [] and (found.counts.new, found.counts.updated) == (0, 2)
    assert store.lead_by_email("w@example.com").unconfirmed_since is None
    assert store.lead_by_email("x@example.com").unconfirmed_since is not None
    with store.engine.connect() as conn:  # new leads carry their address hash (enrollment needs it)
        hashes = conn.execute(sa.select(leads.c.email_hash).where(leads.c.email_hash.is_(None))).all()
    assert hashes == []
