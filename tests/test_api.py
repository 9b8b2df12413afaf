"""The lead API for real: create_app on uvicorn in a thread, httpx as the client, a SQLite file,
tokens made with the `campaign token` commands. Every 4xx with its message, idempotent retries,
batches with bad items, form posts, the rate limit, the schema, and the audit trail."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from conftest import SECRET
from live_server import free_socket, running
from typer.testing import CliRunner

from campaign import accounts as acc
from campaign.cli import app as cli
from campaign.settings import Settings
from campaign.store import Store, idempotency_keys, leads
from campaign.store.accounts import AccountStore, audit_log
from campaign.web import create_app

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York: inside the send window
runner = CliRunner()


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Live:
    url: str
    settings: Settings
    store: Store
    clock: Clock

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url + "/api/v1", timeout=10, headers=headers)

    def token(self, name: str, scope: str = "leads:write,leads:read") -> str:
        created = acc.create_token(AccountStore(self.store.engine), name, scope, now=self.clock())
        return created.token

    def lead_row(self, email: str) -> dict:
        with self.store.engine.connect() as conn:
            return dict(conn.execute(sa.select(leads).where(leads.c.email == email)).mappings().one())

    def audit(self) -> list[dict]:
        with self.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(audit_log).order_by(audit_log.c.id)).mappings()]


@contextlib.contextmanager
def serve(make_settings, **overrides) -> Iterator[Live]:
    sock, url = free_socket()
    settings = make_settings(**{"public_url": url, "api_rate_limit": 1000, **overrides})
    clock = Clock(NOW)
    app = create_app(settings, clock=clock)
    with running(app, sock):
        yield Live(url, settings, app.state.store, clock)


@pytest.fixture
def live(make_settings):
    with serve(make_settings) as running:
        yield running


ANN = {
    "email": "Ann@Example.com",
    "first_name": "Ann",
    "anxiety_type": "constant worry",
    "prior_treatments": "SSRIs",
    "consent": True,
    "consent_text": "Yes, email me about anxiety treatment.  ",
    "consent_ip": "203.0.113.7",
    "state": "North Carolina",
    "source": "website",
    "utm_source": "google",
    "utm_medium": "cpc",
    "utm_campaign": "spring",
    "utm_term": "anxiety help",
    "utm_content": "ad-2",
}


# ---- tokens and scopes ---------------------------------------------------------------------


def test_token_lifecycle_through_the_cli(live, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", live.settings.database_url)
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", SECRET)
    created = runner.invoke(cli, ["token", "create", "website-form", "--scope", "leads:write"])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    with live.client(token) as client:
        assert client.post("/leads", json=ANN).status_code == 201
        assert runner.invoke(cli, ["token", "revoke", "website-form"]).exit_code == 0
        refused = client.post("/leads", json=ANN)
    assert refused.status_code == 401
    assert refused.json() == {"error": "This API token is not valid (unknown or revoked)."}
    assert refused.headers["www-authenticate"] == "Bearer"
    assert refused.headers["cache-control"] == "no-store"


def test_missing_wrong_and_unscoped_tokens(live):
    writer, reader = live.token("form", "leads:write"), live.token("crm", "leads:read")
    with live.client() as anonymous:
        missing = anonymous.post("/leads", json=ANN)
        basic = anonymous.post("/leads", json=ANN, headers={"Authorization": f"Basic {writer}"})
        wrong = anonymous.post("/leads", json=ANN, headers={"Authorization": "Bearer cmp_nope"})
    assert [r.status_code for r in (missing, basic, wrong)] == [401, 401, 401]
    assert missing.json()["error"] == "Send a valid API token: Authorization: Bearer cmp_..."
    assert wrong.json()["error"] == "This API token is not valid (unknown or revoked)."
    with live.client(reader) as client:
        post = client.post("/leads", json=ANN)
    with live.client(writer) as client:
        read = client.get("/leads/ann@example.com")
    assert (post.status_code, post.json()) == (403, {"error": "This API token lacks the leads:write scope."})
    assert (read.status_code, read.json()) == (403, {"error": "This API token lacks the leads:read scope."})
    with live.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(leads)).scalar() == 0


# ---- one lead --------------------------------------------------------------------------------


def test_post_creates_then_updates_with_public_id_and_first_email(live):
    with live.client(live.token("website-form")) as client:
        created = client.post("/leads", json=ANN)
        again = client.post("/leads", json=ANN)
        changed = client.post("/leads", json={"email": "ann@example.com", "first_name": "Annie"})
    assert created.status_code == 201, created.text
    body = created.json()
    row = live.lead_row("ann@example.com")
    assert body == {
        "id": row["public_id"],
        "outcome": "created",
        "audience": "gad",
        "campaign": "evergreen",
        "status": "not yet enrolled",
        "first_email_at": NOW.isoformat(),  # inside the window: the next tick sends the welcome
        "first_email_reason": None,
    }
    assert len(body["id"]) == 32 and body["id"] != str(row["id"])  # opaque, never the internal id
    assert (again.status_code, again.json()["outcome"]) == (200, "unchanged")
    assert (changed.status_code, changed.json()["outcome"]) == (200, "updated")
    row = live.lead_row("ann@example.com")
    # Fields left out kept their values; the proof of consent is from the first post.
    assert (row["first_name"], row["anxiety_type"], row["consent"], row["utm_term"]) == (
        "Annie",
        "gad",
        True,
        "anxiety help",
    )
    assert created.headers["cache-control"] == "no-store"


def test_proof_of_consent_is_kept_from_the_api(live):
    with live.client(live.token("website-form")) as client:
        client.post("/leads", json=ANN)
        client.post("/leads", json={"email": "bo@example.com", "consent": "yes", "consent_version": "v3"})
        client.post("/leads", json={"email": "cy@example.com", "consent": "no", "consent_text": "x"})
    ann, bo, cy = (live.lead_row(f"{n}@example.com") for n in ("ann", "bo", "cy"))
    exact = hashlib.sha256(ANN["consent_text"].encode()).hexdigest()  # the exact wording, spaces too
    assert (ann["consent_via"], ann["consent_ref"], ann["consent_version"], ann["consent_client"]) == (
        "api",
        "website-form",
        f"sha256:{exact}",
        "203.0.113.7",
    )
    assert ann["consent_at"] == NOW
    assert (bo["consent_version"], bo["consent_client"]) == ("v3", None)
    assert (cy["consent"], cy["consent_at"], cy["consent_via"]) == (False, None, None)


def test_each_bad_field_has_its_own_message(live):
    bad = {
        "email": "not-an-address",
        "consent": "maybe",
        "timezone": "Mars/Olympus",
        "first_name": ["a", "list"],
        "consent_ip": "999.1.1.1",
        "last_name": "x" * 201,
    }
    with live.client(live.token("website-form")) as client:
        answer = client.post("/leads", json=bad)
        empty = client.post("/leads", json={"first_name": "Ann"})
        listed = client.post("/leads", json=[ANN])
    assert answer.status_code == 422
    assert answer.json()["error"] == "the lead is not valid"
    fields = answer.json()["fields"]
    assert set(fields) == {"email", "consent", "timezone", "first_name", "consent_ip", "last_name"}
    assert "not valid" in fields["email"]
    assert fields["consent"].startswith("consent 'maybe' is not yes/no")
    assert "IANA" in fields["timezone"]
    assert fields["first_name"] == "first_name must be text, a number or true/false"
    assert "not an IPv4 or IPv6 address" in fields["consent_ip"]
    assert fields["last_name"] == "last_name is longer than 200 characters"
    assert empty.json()["fields"] == {"email": "email is empty"}
    assert (listed.status_code, listed.json()["error"]) == (
        422,
        "one lead is a JSON object; post a list to /api/v1/leads/batch",
    )
    with live.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(leads)).scalar() == 0


def test_body_type_size_and_syntax_errors(live):
    with live.client(live.token("website-form")) as client:
        huge = client.post("/leads", json={**ANN, "source": "x" * 70_000})
        text = client.post("/leads", content=b"email=a@example.com", headers={"Content-Type": "text/plain"})
        broken = client.post("/leads", content=b"{not json", headers={"Content-Type": "application/json"})
        unknown = client.get("/nothing-here")
    assert (huge.status_code, huge.text) == (413, "too large")
    assert text.status_code == 415
    assert text.json()["error"].startswith("send the lead as application/json or application/x-www-form")
    assert (broken.status_code, broken.json()) == (400, {"error": "the body is not valid JSON"})
    assert (unknown.status_code, unknown.json()) == (404, {"error": "Not Found"})


def test_form_encoded_post_stores_the_same_lead_as_json(live):
    form = {k: ("yes" if v is True else v) for k, v in ANN.items()}
    form["email"] = "form@example.com"
    with live.client(live.token("website-form")) as client:
        by_form = client.post("/leads", data=form)
        by_json = client.post("/leads", json={**ANN, "email": "json@example.com"})
    assert (by_form.status_code, by_json.status_code) == (201, 201)
    assert {k: v for k, v in by_form.json().items() if k != "id"} == {
        k: v for k, v in by_json.json().items() if k != "id"
    }
    assert _lead_fields(live.lead_row("form@example.com")) == _lead_fields(live.lead_row("json@example.com"))


def _lead_fields(row: dict) -> dict:
    """What a lead is, less what names this particular row (ids, address, times, where from)."""
    skip = {
        "id",
        "public_id",
        "email",
        "email_hash",  # the address's keyed hash (0014_enroll)
        "created_at",
        "updated_at",
        "consent_at",
        "consent_via",
        "consent_ref",
    }
    return {k: v for k, v in row.items() if k not in skip}


def test_api_and_csv_give_the_same_stored_lead(live, make_settings, tmp_path):
    from campaign.app.leads import import_file

    with live.client(live.token("website-form")) as client:
        assert client.post("/leads", json=ANN).status_code == 201
    csv_path = tmp_path / "leads.csv"
    header = "Email,First Name,What type of anxiety do you experience?,Prior treatments,May we email you?,"
    header += "Consent text,IP address,State,Source,UTM Source,utm_medium,UTM Campaign,utm_term,UTM Content\n"
    row = [ANN[k] for k in ("email", "first_name", "anxiety_type", "prior_treatments")]
    row += ["yes", json.dumps(ANN["consent_text"]), ANN["consent_ip"], ANN["state"], ANN["source"]]
    row += [ANN[f"utm_{n}"] for n in ("source", "medium", "campaign", "term", "content")]
    csv_path.write_text(header + ",".join(row) + "\n", encoding="utf-8")
    other = make_settings(database_url=f"sqlite:///{tmp_path / 'other.db'}")
    with Store.open(other.database_url, secret_key=SECRET) as store:
        summary = import_file(store, other, csv_path, NOW)
        with store.engine.connect() as conn:
            from_csv = dict(conn.execute(sa.select(leads)).mappings().one())
    assert summary.new == 1
    from_api = live.lead_row("ann@example.com")
    assert _lead_fields(from_csv) == _lead_fields(from_api)
    assert from_csv["email"] == from_api["email"] == "ann@example.com"
    assert (from_csv["consent_via"], from_csv["consent_ref"]) == ("csv", "leads.csv row 2")
    assert (from_api["consent_via"], from_api["consent_ref"]) == ("api", "website-form")


def test_first_email_reasons(live):
    live.store.suppress("bounced@example.com", "bounce", NOW)
    with live.client(live.token("website-form")) as client:
        no_consent = client.post("/leads", json={"email": "a@example.com"}).json()
        suppressed = client.post("/leads", json={"email": "bounced@example.com", "consent": 1}).json()
        booked = client.post("/leads", json={"email": "b@example.com", "consent": 1, "booked": True}).json()
        live.store.set_campaign_state("evergreen", "paused", "checking copy")
        paused = client.post("/leads", json={"email": "c@example.com", "consent": "on"}).json()
    assert (no_consent["status"], no_consent["first_email_at"], no_consent["first_email_reason"]) == (
        "waiting for consent",
        None,
        "no consent",
    )
    assert suppressed["status"] == "suppressed" and suppressed["first_email_at"] is None
    assert booked["first_email_reason"] == "booked a consultation"
    assert paused["first_email_reason"] == "its audience is in no active campaign"
    assert paused["audience"] == "general" and paused["campaign"] is None


# ---- idempotency -----------------------------------------------------------------------------


def test_a_retry_with_the_same_key_returns_the_first_answer_and_changes_nothing(live):
    token = live.token("crm")
    key = {"Idempotency-Key": "order-1"}
    with live.client(token) as client:
        first = client.post("/leads", json=ANN, headers=key)
        before = (live.lead_row("ann@example.com"), len(live.audit()))
        live.clock.now = NOW + timedelta(hours=23)
        retry = client.post("/leads", json=ANN, headers=key)
        after = (live.lead_row("ann@example.com"), len(live.audit()))
        other_body = client.post("/leads", json={**ANN, "first_name": "Eve"}, headers=key)
        other_token = httpx.post(
            live.url + "/api/v1/leads",
            json=ANN,
            headers={**key, "Authorization": f"Bearer {live.token('form')}"},
        )
    assert (first.status_code, retry.status_code) == (201, 201)
    assert retry.json() == first.json() and retry.headers["idempotent-replayed"] == "true"
    assert after == before
    assert other_body.status_code == 422
    assert (
        other_body.json()["error"] == "this Idempotency-Key was used for a different request; use a new key"
    )
    assert other_token.status_code == 200  # keys are per token: another client's key is its own
    live.clock.now = NOW + timedelta(hours=25)
    with live.client(token) as client:
        late = client.post("/leads", json=ANN, headers=key)
    assert late.status_code == 200 and "idempotent-replayed" not in late.headers  # the key expired


def test_an_idempotency_key_still_running_gets_409(live):
    token = live.token("crm")
    body = json.dumps(ANN).encode()
    with live.client(token) as client:
        # A first request in flight: its key is claimed and has no answer yet.
        digest = hashlib.sha256(b"POST /api/v1/leads application/json\n" + body).hexdigest()
        assert live.store.remember_request("crm", "k-1", digest, NOW) is None
        busy = client.post(
            "/leads", content=body, headers={"Idempotency-Key": "k-1", "Content-Type": "application/json"}
        )
        bad_key = client.post("/leads", json=ANN, headers={"Idempotency-Key": "k" * 256})
    assert (busy.status_code, busy.headers["retry-after"]) == (409, "1")
    assert bad_key.status_code == 422 and "printable ASCII" in bad_key.json()["error"]
    with live.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(idempotency_keys)).scalar() == 1


# ---- batches ---------------------------------------------------------------------------------


def test_batch_answers_each_item_and_bad_items_sink_nothing(live):
    items = [
        ANN,
        {"email": "broken", "consent": "perhaps"},
        "not an object",
        {"email": "bo@example.com", "consent": False, "anxiety_type": "social phobia"},
        {"email": "ann@example.com", "first_name": "Ann B."},  # the same address again: later wins
    ]
    with live.client(live.token("crm")) as client:
        answer = client.post("/leads/batch", json={"leads": items})
        too_many = client.post("/leads/batch", json={"leads": [{"email": "x@example.com"}] * 1001})
        not_a_batch = client.post("/leads/batch", json=[ANN])
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["index"] for r in results] == [0, 1, 2, 3, 4]
    assert [r["outcome"] for r in results] == ["updated", "invalid", "invalid", "created", "updated"]
    assert set(results[1]["fields"]) == {"email", "consent"}
    assert results[2]["fields"] == {
        "lead": 'a lead is an object of fields, like {"email": "ann@example.com"}'
    }
    assert results[3]["status"] == "waiting for consent" and results[3]["audience"] == "social"
    assert results[0]["id"] == results[4]["id"] == live.lead_row("ann@example.com")["public_id"]
    assert answer.json()["counts"] == {"created": 1, "updated": 2, "unchanged": 0, "invalid": 2}
    assert live.lead_row("ann@example.com")["first_name"] == "Ann B."
    assert (
        too_many.status_code == 422
        and too_many.json()["error"] == "at most 1,000 leads per batch (got 1,001)"
    )
    assert not_a_batch.status_code == 422 and not_a_batch.json()["fields"] == {"leads": "a list of leads"}


def test_a_full_batch_of_1000(live):
    items = [{"email": f"lead{i}@example.com", "consent": True, "state": "TX"} for i in range(1000)]
    with live.client(live.token("crm")) as client:
        answer = client.post("/leads/batch", json={"leads": items})
    assert answer.status_code == 200
    assert answer.json()["counts"]["created"] == 1000
    assert all(r["first_email_at"] for r in answer.json()["results"])


# ---- reading a lead, the rate limit, the schema, the audit ----------------------------------


def test_get_lead_for_a_crm(live):
    token = live.token("crm")
    with live.client(token) as client:
        client.post("/leads", json=ANN)
        found = client.get("/leads/ANN@example.com")
        missing = client.get("/leads/nobody@example.com")
    assert found.status_code == 200
    body = found.json()
    assert set(body) == {
        "id",
        "email",
        "status",
        "audience",
        "campaign",
        "first_email_at",
        "first_email_reason",
        "consent",
        "steps",
    }
    assert (body["status"], body["audience"], body["email"]) == ("not yet enrolled", "gad", "ann@example.com")
    assert body["consent"]["via"] == "api" and body["consent"]["ref"] == "crm"
    assert [s["step"] for s in body["steps"]] == ["welcome", "brain", "ketamine", "treatment", "questions"]
    assert all(s["status"] == "if enrolled now" for s in body["steps"])
    assert (missing.status_code, missing.json()) == (404, {"error": "no lead with that address"})
    assert "events" not in found.text and "raw" not in body


def test_a_posted_lead_gets_its_welcome_at_the_next_tick(live):
    from campaign.engine import run_tick
    from campaign.runtime import build_context

    with live.client(live.token("crm")) as client:
        planned = client.post("/leads", json=ANN).json()
        report = run_tick(build_context(live.settings, now=NOW, store=live.store), NOW)
        got = client.get("/leads/ann@example.com")
        after = got.json()
    assert got.status_code == 200, got.text
    assert report.as_dict()["sent"] == {"gad/welcome": 1}
    assert after["status"] == "enrolled" and after["first_email_at"] == planned["first_email_at"]
    assert [(s["step"], s["status"]) for s in after["steps"][:2]] == [
        ("welcome", "sent"),
        ("brain", "planned"),
    ]


def test_rate_limit_per_token(make_settings):
    with serve(make_settings, api_rate_limit=2) as live:
        token, other = live.token("busy"), live.token("calm")
        with live.client(token) as client:
            answers = [client.get("/leads/nobody@example.com") for _ in range(3)]
            with live.client(other) as calm:
                assert calm.get("/leads/nobody@example.com").status_code == 404  # its own bucket
            time.sleep(0.6)
            later = client.get("/leads/nobody@example.com")
    assert [a.status_code for a in answers] == [404, 404, 429]
    assert answers[2].headers["retry-after"] == "1"
    assert answers[2].json()["error"].startswith("too many requests for this token (limit 2 a second)")
    assert later.status_code == 404


def test_openapi_lists_the_paths_and_there_is_no_docs_page(live):
    with live.client() as client:
        schema = client.get("/openapi.json")
        docs = client.get("/docs")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert set(paths) == {"/leads", "/leads/batch", "/leads/{email}"}
    body = paths["/leads"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/x-www-form-urlencoded"}
    components = schema.json()["components"]["schemas"]
    assert {"LeadPayload", "BatchPayload", "LeadResult", "LeadStatus", "ErrorBody"} <= set(components)
    assert "consent_text" in components["LeadPayload"]["properties"]
    assert docs.status_code == 404


def test_every_write_is_audited_without_the_anxiety_type(live):
    with live.client(live.token("website-form")) as client:
        client.post("/leads", json=ANN)
        client.post("/leads/batch", json={"leads": [{"email": "bo@example.com", "anxiety_type": "social"}]})
        client.get("/leads/ann@example.com")
    entries = [e for e in live.audit() if e["object_type"] == "lead"]
    assert [(e["actor"], e["role"], e["action"]) for e in entries] == [
        ("website-form", "api", "lead.created"),
        ("website-form", "api", "lead.created"),
        ("website-form", "api", "lead.view"),
    ]
    assert entries[0]["object_id"] == live.lead_row("ann@example.com")["public_id"]
    assert entries[0]["client"] == "127.0.0.1"
    text = json.dumps(live.audit(), default=str).casefold()
    assert not any(word in text for word in ("gad", "social", "worry", "anxiety", "ann@example.com"))


def test_concurrent_posts_of_one_new_address_create_it_once(live):
    token = live.token("crm")
    statuses: list[int] = []

    def post(n: int) -> None:
        with live.client(token) as client:
            statuses.append(client.post("/leads", json={**ANN, "first_name": f"Ann{n % 2}"}).status_code)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] * 7 + [201]
    with live.store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(leads)).scalar() == 1
