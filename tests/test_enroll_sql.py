"""Set-based enrollment (campaign/store/enroll.py) against the Python walk it replaces, on a real
SQLite file and real PostgreSQL: every rule operator compiled to SQL selects exactly the leads
`matches` does, and enroll_new writes exactly the rows enroll_by_walk writes on varied data
(every anxiety type, unknown numbers, no consent, unsubscribed, suppressed, booked, time zones,
leads already enrolled elsewhere, addresses whose hash is not yet stored)."""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaign.audiences import Audience, load_audiences, matches
from campaign.engine import enroll_by_walk, enroll_new
from campaign.models import AnxietyType, LeadIn, SendWindow
from campaign.runtime import build_context
from campaign.settings import PROJECT_ROOT
from campaign.store import email_hash, enrollments, leads
from campaign.store.enroll import RuleNotCompilable, compile_rule

# A Saturday evening in UTC, the night before the US changes to summer time: first emails land
# on different days and hours per zone.
NOW = datetime(2026, 3, 7, 23, 30, tzinfo=UTC)
EARLIER = NOW - timedelta(days=30)
ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Los_Angeles",
    "Pacific/Honolulu",
    "Europe/London",
    "Asia/Kolkata",
)
STATES = ("", "NC", "CA", "tx", "É", "M")
SOURCES = ("", "web", "fb", "Fb")
PRIORS = (None, 0, 1, 2, 3, 7)

# Leaf and nested rules over every field and operator, with Python's own quirks: a string never
# equals a number, True == 1, an unknown number passes no comparison, fractions and infinities.
RULES = [
    "all",
    {"anxiety_type": {"equals": "gad"}},
    {"anxiety_type": {"not_equals": "social"}},
    {"anxiety_type": {"in": ["social", "treatment_resistant", 3]}},
    {"anxiety_type": {"not_in": ["unspecified"]}},
    {"anxiety_type": {"equals": None}},
    {"prior_treatments": {"equals": 2}},
    {"prior_treatments": {"equals": 2.0}},
    {"prior_treatments": {"equals": "2"}},
    {"prior_treatments": {"equals": None}},
    {"prior_treatments": {"equals": True}},
    {"prior_treatments": {"not_equals": 2}},
    {"prior_treatments": {"not_equals": None}},
    {"prior_treatments": {"in": [None, 0, "1", 3.0, 2.5]}},
    {"prior_treatments": {"not_in": [1, 2]}},
    {"prior_treatments": {"in": []}},
    {"prior_treatments": {"not_in": []}},
    {"prior_treatments": {"gt": 1}},
    {"prior_treatments": {"gte": 2}},
    {"prior_treatments": {"gte": 2.5}},
    {"prior_treatments": {"gt": 2.5}},
    {"prior_treatments": {"lt": 2.5}},
    {"prior_treatments": {"lte": 2.5}},
    {"prior_treatments": {"lte": 0}},
    {"prior_treatments": {"lt": float("inf")}},
    {"prior_treatments": {"gt": float("-inf")}},
    {"prior_treatments": {"gt": float("inf")}},
    {"prior_treatments": {"gte": float("nan")}},
    {"prior_treatments": {"gte": True}},
    {"prior_treatments": {"is_blank": True}},
    {"prior_treatments": {"is_blank": False}},
    {"not": {"prior_treatments": {"gte": 2}}},
    {"state": {"is_blank": True}},
    {"state": {"is_blank": "no"}},  # any non-empty string is truthy, as in Python
    {"state": {"is_blank": 0}},
    {"state": {"gt": "M"}},
    {"state": {"gte": "M"}},
    {"state": {"lt": "N"}},
    {"state": {"lte": "CA"}},
    {"state": {"equals": "nc"}},
    {"source": {"in": ["fb", "web"]}},
    {"source": {"not_in": ["fb"]}},
    {"source": {"equals": 0}},
    {"source": {"not_equals": 0}},
    {"timezone": {"equals": "Asia/Kolkata"}},
    {"timezone": {"lt": "America/M"}},
    {"consent": {"equals": True}},
    {"consent": {"equals": 1}},
    {"consent": {"equals": 2}},
    {"consent": {"not_equals": False}},
    {"consent": {"in": [0]}},
    {"consent": {"is_blank": True}},
    {"consent": {"gt": 0}},
    {"booked": {"equals": False}},
    {"booked": {"lte": 0.5}},
    {
        "any": [
            {"anxiety_type": {"equals": "treatment_resistant"}},
            {"all": [{"prior_treatments": {"gte": 2}}, {"not": {"state": {"in": ["CA", "tx"]}}}]},
        ]
    },
    {"not": {"any": [{"source": {"is_blank": True}}, {"not": {"prior_treatments": {"lt": 3}}}]}},
]
NOT_COMPILABLE = [
    {"state": {"in": "NCA"}},  # Python's substring test
    {"prior_treatments": {"gt": "2"}},
    {"prior_treatments": {"lt": None}},
    {"state": {"gt": 3}},
    {"consent": {"gt": "x"}},
    {"source": {"matches": "fb"}},
    {"colour": {"equals": "red"}},
]


def varied_leads(n: int = 360) -> list[LeadIn]:
    rnd = random.Random(14)
    types = list(AnxietyType)
    return [
        LeadIn(
            email=f"lead{i}@example.com",
            first_name=f"Sam{i}",
            anxiety_type=types[i % len(types)],
            prior_treatments=PRIORS[(i // 4) % len(PRIORS)],
            consent=rnd.random() > 0.12,
            timezone=ZONES[(i // 3) % len(ZONES)],
            state=rnd.choice(STATES),
            source=rnd.choice(SOURCES),
            booked=rnd.random() < 0.05,
        )
        for i in range(n)
    ]


def fill_varied(store) -> None:
    """The leads, then unsubscribes, suppressions, campaigns and enrollments from before."""
    store.upsert_leads(varied_leads(), EARLIER)
    rnd = random.Random(7)
    emails = [f"lead{i}@example.com" for i in range(360)]
    for email in rnd.sample(emails, 25):
        store.unsubscribe_lead(store.lead_by_email(email).public_id, EARLIER)
    for email in rnd.sample(emails, 25):
        store.suppress(email, "bounce", EARLIER)
    evergreen = store.active_campaigns(NOW)[0]
    spring = store.create_campaign(
        slug="spring",
        name="Spring",
        audiences=["gad", "social"],
        starts_at=None,
        sandbox=False,
        versions={},
        now=EARLIER,
    )
    for slug, audiences, starts_at in (
        ("paused", ["general"], None),
        ("later", ["gad"], NOW + timedelta(days=1)),
    ):
        store.create_campaign(
            slug=slug,
            name=slug,
            audiences=audiences,
            starts_at=starts_at,
            sandbox=False,
            versions={},
            now=EARLIER,
        )
    store.set_campaign_state("paused", "paused")
    before = []
    for email in rnd.sample(emails, 60):
        lead = store.lead_by_email(email)
        campaign, audience = rnd.choice([(evergreen, "general"), (spring, "gad"), (spring, "social")])
        before.append(
            {
                "campaign_id": campaign["id"],
                "lead_id": lead.id,
                "audience": audience,
                "audience_version": "old",
                "enrolled_at": EARLIER,
                "state": rnd.choice(["active", "finished", "exited"]),
                "next_due_at": None,
            }
        )
    store.add_enrollments(before)
    # Addresses stored before the hash column (or by a writer that leaves it out): the tick
    # fills them in, suppressed ones included.
    with store.engine.begin() as conn:
        conn.execute(sa.update(leads).where(leads.c.id % 7 == 0).values(email_hash=None))


def snapshot(store) -> set[tuple]:
    """The enrollments this tick wrote, without their ids."""
    columns = [c for c in enrollments.c if c.name != "id"]
    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(*columns).where(enrollments.c.enrolled_at == NOW)).all())


def both_ways(store, ctx) -> tuple:
    walked = enroll_by_walk(ctx, NOW)
    by_walk = snapshot(store)
    with store.engine.begin() as conn:
        conn.execute(sa.delete(enrollments).where(enrollments.c.enrolled_at == NOW))
    set_based = enroll_new(ctx, NOW)
    return walked, by_walk, set_based, snapshot(store)


def audience(name: str, priority: int, match, base: Audience, **kw) -> Audience:
    return Audience(name=name, priority=priority, match=match, steps=base.steps, **kw)


@pytest.fixture
def varied(store):
    fill_varied(store)
    return store


def test_every_compiled_rule_selects_the_leads_matches_selects(varied):
    stored = []
    with varied.engine.connect() as conn:
        for row in conn.execute(sa.select(leads.c.id, leads.c.email)):
            stored.append((row.id, varied.lead_by_email(row.email)))
        for rule in RULES:
            found = set(
                conn.execute(sa.select(leads.c.id).where(compile_rule(rule, varied.dialect))).scalars()
            )
            expected = {lead_id for lead_id, lead in stored if matches(rule, lead)}
            assert found == expected, rule
    assert 0 < len(expected) < len(stored)  # the data is varied enough to tell rules apart


@pytest.mark.parametrize("rule", NOT_COMPILABLE, ids=str)
def test_rules_sql_cannot_decide_as_python_does_are_refused(rule):
    with pytest.raises(RuleNotCompilable):
        compile_rule(rule, "sqlite")


def test_the_hash_is_stored_with_each_new_lead_and_filled_in_where_missing(varied):
    assert varied.fill_email_hashes(chunk=7) == len(range(0, 361, 7)) - 1  # ids 7, 14, ... 357
    assert varied.fill_email_hashes() == 0
    with varied.engine.connect() as conn:
        rows = conn.execute(sa.select(leads.c.email, leads.c.email_hash)).all()
    assert len(rows) == 360
    assert all(h == email_hash(e, varied.secret_key) for e, h in rows)


def test_set_based_enrollment_writes_what_the_walk_writes(varied, make_settings):
    ctx = build_context(make_settings(), now=NOW, store=varied)
    walked, by_walk, set_based, by_sql = both_ways(varied, ctx)
    assert by_sql == by_walk
    assert set_based.enrolled == walked.enrolled
    # The data covered what it should: every audience, both campaigns, every zone.
    assert set(walked.enrolled) == {"gad", "social", "treatment_resistant", "general"}
    assert {row.campaign_id for row in by_sql} == {1, 2}
    assert len({row.next_due_at for row in by_sql}) == 4  # now (in the window), or 3 Monday mornings


def test_set_based_enrollment_in_parts_writes_what_the_walk_writes(
    varied, make_settings, monkeypatch, caplog
):
    """PostgreSQL, a large enrollment's way at any size: 2 parts at once over blocks of 7 ids."""
    if varied.dialect != "postgresql":
        pytest.skip("parts are PostgreSQL's")
    from campaign.store import enroll_parts

    monkeypatch.setattr(enroll_parts, "PARTS", 2)
    monkeypatch.setattr(enroll_parts, "PARTS_FROM", -(10**9))  # whatever the estimate
    monkeypatch.setattr(enroll_parts, "ID_BLOCK", 7)
    ctx = build_context(make_settings(), now=NOW, store=varied)
    walked, by_walk, set_based, by_sql = both_ways(varied, ctx)
    assert by_sql == by_walk
    assert set_based.enrolled == walked.enrolled
    assert {row.campaign_id for row in by_sql} == {1, 2}
    # Again: each part's probe of enrollments sees its leads' rows (no unique index met).
    with caplog.at_level("INFO", logger="campaign.store.enroll_parts"):
        assert enroll_new(ctx, NOW).enrolled == {}
    assert "concurrent writer" not in caplog.text


def test_every_operator_in_audiences_enrolls_as_the_walk_does(varied, make_settings):
    ctx = build_context(make_settings(), now=NOW, store=varied)
    base = ctx.audiences[0]
    late = SendWindow(start_hour=20, end_hour=22, weekdays=(7,))
    rules = [r for r in RULES if r != "all" and "consent" not in str(r)]
    ctx.audiences = [
        audience("gad", 10, rules[22], base),
        audience("social", 20, rules[35], base, send_window=late),
        *(audience(f"a{i}", 30 + i, rule, base) for i, rule in enumerate(rules[::3])),
        audience("general", 999, {"consent": {"equals": 1}}, base),
    ]
    walked, by_walk, set_based, by_sql = both_ways(varied, ctx)
    assert by_sql == by_walk
    assert set_based.enrolled == walked.enrolled
    assert len(walked.enrolled) >= 6  # leads spread over many audiences, not one catch-all


def test_a_rule_that_does_not_compile_is_walked_in_python(varied, make_settings, caplog):
    ctx = build_context(make_settings(), now=NOW, store=varied)
    base = ctx.audiences[0]
    ctx.audiences = [
        audience("gad", 10, {"anxiety_type": {"equals": "gad"}}, base),
        audience("social", 20, {"state": {"in": "NCA"}}, base),  # "N" in "NCA": a substring
        audience("treatment_resistant", 30, {"prior_treatments": {"gte": 2}}, base),
        audience("general", 100, "all", base),
    ]
    with caplog.at_level(logging.DEBUG, logger="campaign.store.enroll"):
        walked, by_walk, set_based, by_sql = both_ways(varied, ctx)
    assert by_sql == by_walk
    assert set_based.enrolled == walked.enrolled
    assert walked.enrolled["social"] > 0 and walked.enrolled["gad"] > 0
    said = [r.getMessage() for r in caplog.records if r.name == "campaign.store.enroll"]
    assert said and "social" in said[0] and "Python walk" in said[0]
    assert not any("@" in line for line in said)


def test_project_audiences_match_their_compiled_rules(varied):
    for each in load_audiences(PROJECT_ROOT / "audiences"):
        compile_rule(each.match, varied.dialect)  # every shipped rule enrolls set-based


def test_postgresql_never_plans_the_enrollment_as_a_nested_loop(varied, make_settings):
    """Statistics saying enrollments is empty (a first tick, after any VACUUM) once planned the
    probe as a nested loop over a scan of enrollments, which re-read every page the INSERT
    itself had written: quadratic (200k leads: 203 s). The plans are read, never timed."""
    if varied.dialect != "postgresql":
        pytest.skip("a PostgreSQL planner matter")
    with varied.engine.connect() as conn:
        try:
            conn.exec_driver_sql("LOAD 'auto_explain'")
        except sa.exc.DBAPIError:
            pytest.skip("auto_explain cannot be loaded by this role (a superuser's)")
    plans: list[str] = []

    def explain_all(dbapi, _record):
        dbapi.add_notice_handler(lambda diag: plans.append(diag.message_primary or ""))
        with dbapi.cursor() as cursor:
            cursor.execute("LOAD 'auto_explain'")
            cursor.execute("SET auto_explain.log_min_duration = 0")
            cursor.execute("SET auto_explain.log_level = notice")
        dbapi.commit()

    with varied.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("VACUUM ANALYZE enrollments"))  # empty, and known to be
    varied.engine.dispose()
    sa.event.listen(varied.engine, "connect", explain_all)
    try:
        report = enroll_new(build_context(make_settings(), now=NOW, store=varied), NOW)
    finally:
        sa.event.remove(varied.engine, "connect", explain_all)
        varied.engine.dispose()
    inserts = [plan for plan in plans if "INSERT INTO enrollments" in plan]
    assert sum(report.enrolled.values()) > 0 and inserts
    assert not any("Nested Loop" in plan for plan in inserts)
