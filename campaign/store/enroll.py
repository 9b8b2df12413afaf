"""Set-based enrollment: the audiences' match rules compiled to SQL over the leads table, and one
INSERT ... SELECT per campaign and audience.

`compile_rule` mirrors `campaign.audiences.matches` exactly, Python's comparison semantics
included (a string never equals a number, an unknown number passes no comparison, True == 1);
what it cannot express the same way raises RuleNotCompilable, and the engine walks that
audience (and every later one: priority needs "not an earlier audience") in Python instead.
Every compiled expression is two-valued (never NULL), so `not` means what it means in Python.
"""

from __future__ import annotations

import logging
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaign.audiences import RULE_FIELDS, Audience, matches
from campaign.models import LeadIn
from campaign.store import enroll_parts
from campaign.store.base import StorePart
from campaign.store.forms import opted_in
from campaign.store.tables import UTCDateTime, enrollments, leads, suppressions

log = logging.getLogger(__name__)

BOOL_FIELDS = frozenset({"consent", "booked"})
NUMBER_FIELDS = frozenset({"prior_treatments"})  # nullable: an unknown number
STRING_FIELDS = RULE_FIELDS - BOOL_FIELDS - NUMBER_FIELDS  # NOT NULL text columns
# PostgreSQL: rows written by one step after which the table's statistics are renewed.
ANALYZE_AFTER = 10_000
# The columns the set-based INSERT writes, in its SELECT's order.
_INSERTED = ["campaign_id", "lead_id", "audience", "audience_version", "enrolled_at", "state", "next_due_at"]
COMPARISONS = {"gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


class RuleNotCompilable(ValueError):
    """A rule (or part) that SQL would not decide exactly as `matches` does. The message
    names the rule's field and operator, never a lead."""


def compile_rule(rule: Any, dialect: str) -> sa.ColumnElement[bool]:
    """The rule as a boolean SQL expression over `leads`, true exactly where `matches` is."""
    if rule == "all":
        return sa.true()
    if not isinstance(rule, dict) or len(rule) != 1:
        raise RuleNotCompilable("a rule is a mapping with exactly one key")
    ((key, value),) = rule.items()
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise RuleNotCompilable(f"{key}: needs a non-empty list")
        parts = [compile_rule(r, dialect) for r in value]
        return sa.and_(*parts) if key == "all" else sa.or_(*parts)
    if key == "not":
        return sa.not_(compile_rule(value, dialect))
    if key not in RULE_FIELDS or not isinstance(value, dict) or len(value) != 1:
        raise RuleNotCompilable(f"{key}: not a field with one operator")
    ((op, expected),) = value.items()
    if key in BOOL_FIELDS:
        return _bool_leaf(key, op, expected)
    if key in NUMBER_FIELDS:
        return _number_leaf(leads.c[key], op, expected)
    return _string_leaf(leads.c[key], op, expected, dialect)


def _bool_leaf(key: str, op: str, expected: Any) -> sa.ColumnElement[bool]:
    """A yes/no column has two values: ask `matches` itself what each gives."""
    try:
        when = {
            v: matches({key: {op: expected}}, LeadIn(email="rule@example.invalid", **{key: v}))
            for v in (True, False)
        }
    except Exception as exc:  # the Python walk fails the same way
        raise RuleNotCompilable(f"{key}: {op}: {type(exc).__name__}") from None
    column = leads.c[key]
    if when[True] and when[False]:
        return sa.true()
    if when[True]:
        return column.is_(True)
    return column.is_(False) if when[False] else sa.false()


def _number_equals(column, expected: Any) -> sa.ColumnElement[bool]:
    """`actual == expected` for an int column that may be NULL (None)."""
    if expected is None:
        return column.is_(None)
    if not isinstance(expected, int | float):
        return sa.false()  # an int never equals a string, a list ...
    if isinstance(expected, float) and not (math.isfinite(expected) and expected.is_integer()):
        return sa.false()
    return sa.and_(column.is_not(None), column == int(expected))


def _number_leaf(column, op: str, expected: Any) -> sa.ColumnElement[bool]:
    if op == "is_blank":
        return column.is_(None) if expected else column.is_not(None)
    if op in ("equals", "not_equals"):
        equal = _number_equals(column, expected)
        return equal if op == "equals" else sa.not_(equal)
    if op in ("in", "not_in"):
        if not isinstance(expected, list):
            raise RuleNotCompilable(f"{column.name}: {op}: needs a list")
        inside = sa.or_(sa.false(), *(_number_equals(column, e) for e in expected))
        return inside if op == "in" else sa.not_(inside)
    if op not in COMPARISONS or not isinstance(expected, int | float):
        raise RuleNotCompilable(f"{column.name}: {op}: needs a number")
    if isinstance(expected, float) and not math.isfinite(expected):
        # nan passes nothing; +-inf: everything known is below it (or above -inf).
        passes = not math.isnan(expected) and COMPARISONS[op](0, expected)
        return column.is_not(None) if passes else sa.false()
    # An integer column against a fraction: x > 2.5 is x > 2, x >= 2.5 is x >= 3 ...
    bound = math.floor(expected) if op in ("gt", "lte") else math.ceil(expected)
    return sa.and_(column.is_not(None), COMPARISONS[op](column, bound))


def _string_leaf(column, op: str, expected: Any, dialect: str) -> sa.ColumnElement[bool]:
    if op == "is_blank":
        return column == "" if expected else column != ""
    if op in ("equals", "not_equals"):
        equal = column == expected if isinstance(expected, str) else sa.false()
        return equal if op == "equals" else sa.not_(equal)
    if op in ("in", "not_in"):
        if not isinstance(expected, list):  # a string would be Python's substring test
            raise RuleNotCompilable(f"{column.name}: {op}: needs a list")
        texts = [e for e in expected if isinstance(e, str)]
        inside = column.in_(texts) if texts else sa.false()
        return inside if op == "in" else sa.not_(inside)
    if op not in COMPARISONS or not isinstance(expected, str):
        raise RuleNotCompilable(f"{column.name}: {op}: needs a string")
    # Python orders strings by code point: SQLite's BINARY on UTF-8 does; PostgreSQL needs "C".
    ordered = sa.collate(column, "C") if dialect == "postgresql" else column
    return COMPARISONS[op](ordered, expected)


@dataclass
class CompiledAudiences:
    """The audiences by priority: `sql` those enrolled set-based, each with its rule's SQL; from
    the first rule that does not compile on, `walked` in Python."""

    sql: list[tuple[Audience, sa.ColumnElement[bool]]] = field(default_factory=list)
    walked: list[Audience] = field(default_factory=list)

    def matched_before(self, audience: Audience | None = None) -> sa.ColumnElement[bool]:
        """Leads that an audience compiled before `audience` (None: any compiled one) matches."""
        rules = []
        for compiled, rule in self.sql:
            if compiled == audience:
                break
            rules.append(rule)
        return sa.or_(sa.false(), *rules)

    def first_match(self, audience: Audience) -> sa.ColumnElement[bool]:
        """Leads whose first matching audience (by priority) is this compiled one."""
        rule = next(rule for compiled, rule in self.sql if compiled == audience)
        return sa.and_(rule, sa.not_(self.matched_before(audience)))


def compile_audiences(audiences: Sequence[Audience], dialect: str) -> CompiledAudiences:
    result = CompiledAudiences()
    for i, audience in enumerate(audiences):
        try:
            result.sql.append((audience, compile_rule(audience.match, dialect)))
        except RuleNotCompilable as exc:
            result.walked = list(audiences[i:])
            log.debug(
                "audience %s: rule does not compile to SQL (%s); audiences %s enroll by the Python walk",
                audience.name,
                exc,
                ", ".join(a.name for a in result.walked),
            )
            break
    return result


def _reachable() -> list[sa.ColumnElement[bool]]:
    """Consenting and reachable, the address hash known (the suppression check needs it)."""
    return [
        leads.c.consent.is_(True),
        leads.c.booked.is_(False),
        leads.c.unsubscribed_at.is_(None),
        leads.c.email_hash.is_not(None),
        opted_in(),  # a form's lead waits for its double opt-in
    ]


class Enroll(StorePart):
    def fill_email_hashes(self, chunk: int = 5_000) -> int:
        """Write the keyed address hash on leads that have none (rows from before 0014_enroll,
        or from a writer that did not set it). Returns how many were filled."""
        filled, after_id = 0, 0
        query = sa.select(leads.c.id, leads.c.email).where(leads.c.email_hash.is_(None))
        while True:
            with self.engine.begin() as conn:
                rows = conn.execute(
                    query.where(leads.c.id > after_id).order_by(leads.c.id).limit(chunk)
                ).all()
                if not rows:
                    if self.dialect == "postgresql" and filled >= ANALYZE_AFTER:
                        conn.execute(sa.text("ANALYZE leads"))  # plans must see the hashes
                    return filled
                hashed = [(i, self.hash(email)) for i, email in rows]
                if self.dialect == "postgresql":  # one UPDATE ... FROM (VALUES ...) a chunk
                    values = sa.values(sa.column("id", sa.Integer), sa.column("hash", sa.String), name="v")
                    values = values.data(hashed)
                    stmt = sa.update(leads).where(leads.c.id == values.c.id).values(email_hash=values.c.hash)
                    conn.execute(stmt)
                else:  # SQLite: executemany in-process is as fast, and has no VALUES aliases
                    stmt = sa.update(leads).where(leads.c.id == sa.bindparam("b_id"))
                    conn.execute(
                        stmt.values(email_hash=sa.bindparam("b_hash")),
                        [{"b_id": i, "b_hash": h} for i, h in hashed],
                    )
            filled += len(rows)
            after_id = rows[-1].id

    def enrollment_zones(self) -> list[str]:
        """The time zones of the leads a campaign may enroll (a few distinct values; some
        of those leads may be enrolled already)."""
        query = sa.select(leads.c.timezone).where(*_reachable()).distinct()
        with self.engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

    def enroll_campaign(
        self,
        campaign_id: int,
        compiled: CompiledAudiences,
        audiences: Sequence[Audience],
        due: Mapping[str, Mapping[str, datetime]],
        now: datetime,
        parts: int | None = None,
    ) -> dict[str, int]:
        """Every compiled audience of `audiences` enrolled as `enroll_matching` enrolls each, its
        first email due at `due[audience name][zone]`. Returns the count per audience.
        PostgreSQL: one INSERT ... SELECT for them all (one scan of leads, one probe of
        enrollments, the audience chosen by CASE in priority order), run in `parts` by lead id at
        once (None: enroll_parts.parts_for decides); SQLite: one statement an audience."""
        chosen = [(audience, rule) for audience, rule in compiled.sql if audience in audiences]
        if not chosen or not any(due.get(audience.name) for audience, _ in chosen):
            return {}
        if self.dialect != "postgresql":
            counts = {}
            for audience, _ in chosen:
                rule = compiled.first_match(audience)
                counts[audience.name] = self.enroll_matching(
                    campaign_id, audience, rule, due.get(audience.name, {}), now
                )
            return counts
        names = [audience.name for audience, _ in chosen if due.get(audience.name)]
        zones = sorted({zone for audience in names for zone in due[audience]})
        if parts is None:
            parts = enroll_parts.parts_for(
                self.engine, campaign_id, [*_reachable(), leads.c.timezone.in_(zones)]
            )

        def statement(part: int, parts: int) -> sa.Insert:
            select = _campaign_select(campaign_id, compiled, audiences, due, now, part, parts)
            return self.insert(enrollments).from_select(_INSERTED, select)

        counts = enroll_parts.insert_in_parts(self.engine, campaign_id, statement, parts)
        if sum(counts.values()) >= ANALYZE_AFTER:
            with self.engine.begin() as conn:  # once, after every part
                conn.execute(sa.text("ANALYZE enrollments"))
        return counts

    def enroll_matching(
        self,
        campaign_id: int,
        audience: Audience,
        rule: sa.ColumnElement[bool],
        due_by_zone: Mapping[str, datetime],
        now: datetime,
    ) -> int:
        """One INSERT ... SELECT: every lead the campaign may enroll whose first matching
        audience is this one (`rule`: matches it and no earlier audience), who was never in its
        sequence (any campaign) and is not suppressed, enrolled now, first due per time zone.
        A lead in a zone missing from `due_by_zone` waits for the next tick. Returns the count."""
        if not due_by_zone:
            return 0
        name = audience.name
        due = sa.case(
            {zone: sa.literal(at, UTCDateTime) for zone, at in due_by_zone.items()},
            value=leads.c.timezone,
        )
        select = sa.select(
            sa.literal(campaign_id),
            leads.c.id,
            sa.literal(name),
            sa.literal(audience.version),
            sa.literal(now, UTCDateTime),
            sa.literal("active"),
            due,
        ).where(
            # The column tests first, the probes last (SQLite evaluates the terms in this order).
            *_reachable(),
            leads.c.timezone.in_(list(due_by_zone)),
            rule,
            # Not in this campaign, nor ever in this audience's sequence: one probe by lead.
            ~sa.exists().where(
                enrollments.c.lead_id == leads.c.id,
                sa.or_(enrollments.c.campaign_id == campaign_id, enrollments.c.audience == name),
            ),
            ~sa.exists().where(suppressions.c.email_hash == leads.c.email_hash),
        )
        stmt = (
            self.insert(enrollments)
            .from_select(_INSERTED, select)
            .on_conflict_do_nothing(index_elements=["campaign_id", "lead_id"])
            .execution_options(preserve_rowcount=True)  # psycopg's count of an INSERT, kept
        )
        with self.engine.begin() as conn:
            if self.dialect == "postgresql":
                # Never a nested loop here. With enrollments' statistics saying "empty" (a first
                # tick; any VACUUM or ANALYZE of the empty table) the probe was planned as a
                # nested loop over a sequential scan of enrollments, and each lead's scan read the
                # pages this very INSERT had written so far: quadratic (200k leads: 203 s for
                # the first audience's 98k rows, 1.1 s planned by hash). Hash anti-joins cost
                # one pass of each table whatever the statistics say.
                conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
            added = conn.execute(stmt).rowcount
            if added >= ANALYZE_AFTER:
                # Fresh statistics now. PostgreSQL: the next audience's probes must not be planned
                # on stale row counts (a nested loop over a table thought empty took minutes at
                # 1M). SQLite: without any, the due walk sorts every due row for each batch
                # (2.9 s a batch at 1M, against 2 ms by the primary key); a sampled ANALYZE.
                if self.dialect == "sqlite":
                    conn.exec_driver_sql("PRAGMA analysis_limit = 1000")
                conn.execute(sa.text("ANALYZE enrollments"))
        return added


def _campaign_select(
    campaign_id: int,
    compiled: CompiledAudiences,
    audiences: Sequence[Audience],
    due: Mapping[str, Mapping[str, datetime]],
    now: datetime,
    part: int = 0,
    parts: int = 1,
) -> sa.Select:
    """PostgreSQL: the rows of enroll_campaign's INSERT, of the leads in this part."""
    chosen = [(audience, rule) for audience, rule in compiled.sql if audience in audiences]
    last = max(i for i, (audience, _) in enumerate(compiled.sql) if audience in audiences)
    ranked = compiled.sql[: last + 1]  # every earlier audience counts, in this campaign or not
    names = [audience.name for audience, _ in chosen if due.get(audience.name)]
    zones = sorted({zone for audience in names for zone in due[audience]})
    first = (
        sa.select(
            leads.c.id,
            leads.c.timezone,
            leads.c.email_hash,
            sa.case(*((rule, sa.literal(a.name)) for a, rule in ranked)).label("audience"),
        )
        .where(
            *_reachable(),
            leads.c.timezone.in_(zones),
            *enroll_parts.in_part(leads.c.id, part, parts),
            sa.or_(*(rule for _, rule in ranked)),
        )
        .subquery("first")
    )
    version = sa.case({a.name: sa.literal(a.version) for a, _ in chosen}, value=first.c.audience)
    at = {
        name: sa.case(
            {zone: sa.literal(t, UTCDateTime) for zone, t in due[name].items()}, value=first.c.timezone
        )
        for name in names
    }
    due_at = sa.case(at, value=first.c.audience)
    # The probe's hash holds this part's enrollments only (the planner cannot infer the modulo).
    return sa.select(
        sa.literal(campaign_id),
        first.c.id,
        first.c.audience,
        version,
        sa.literal(now, UTCDateTime),
        sa.literal("active"),
        due_at,
    ).where(
        first.c.audience.in_(names),
        due_at.is_not(None),  # a zone missing from the audience's `due` waits for the next tick
        ~sa.exists().where(
            enrollments.c.lead_id == first.c.id,
            *enroll_parts.in_part(enrollments.c.lead_id, part, parts),
            sa.or_(enrollments.c.campaign_id == campaign_id, enrollments.c.audience == first.c.audience),
        ),
        ~sa.exists().where(suppressions.c.email_hash == first.c.email_hash),
    )
