"""Reads for the CLI, the reports and the demo: counts, the funnel's facts, one lead's history."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import sqlalchemy as sa

from campaign.store.base import StorePart
from campaign.store.tables import (
    campaigns,
    enrollment_counts,
    enrollments,
    events,
    leads,
    send_counts,
    sends,
)

# How a lead's consent was given, and its UTM tags: listed with each lead.
PROVENANCE_COLUMNS = (
    *("consent_at", "consent_via", "consent_ref", "consent_version", "consent_client"),
    *("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"),
)

# "Due in 24 h": below this many active enrollments not due, they are the side counted.
DUE_PROBE = 1000


class Reports(StorePart):
    def campaign_statuses(
        self, campaign_ids: list[int], now: datetime, day_start: datetime, max_resends: int = 1
    ) -> dict[int, dict]:
        """Counts for `campaign status`, per campaign: enrollments per audience and state, sends
        per step and status, sent since day_start, due in the next 24 hours, unknown sends at the
        resend cap. Enrollments and sends per key come from the trigger-kept count tables; the
        others are index ranges (bench/RESULTS.md, the overview at 1M leads)."""
        e, s, c, k = enrollments, sends, send_counts.c, enrollment_counts.c
        facts = {
            i: {"per_audience": [], "per_step": [], "sent_today": 0, "due_24h": 0, "unknown_capped": 0}
            for i in campaign_ids
        }
        with self.engine.connect() as conn:
            # Kept by triggers on enrollments (0016_overview) and on sends (0012_console2).
            for r in conn.execute(
                sa.select(k.campaign_id, k.audience, k.state, k.n).where(
                    k.campaign_id.in_(campaign_ids), k.n != 0
                )
            ).mappings():
                facts[r["campaign_id"]]["per_audience"].append(dict(r))
            for r in conn.execute(
                sa.select(c.campaign_id, c.audience, c.step_key, c.status, c.n).where(
                    c.campaign_id.in_(campaign_ids), c.n != 0
                )
            ).mappings():
                facts[r["campaign_id"]]["per_step"].append(dict(r))
            for campaign_id, n in self._sent_since(conn, facts, day_start).items():
                if campaign_id in facts:  # today's sends of every campaign: those asked for
                    facts[campaign_id]["sent_today"] = n
            capped = (
                sa.select(e.c.campaign_id, sa.func.count())
                .select_from(s.join(e, e.c.id == s.c.enrollment_id))
                .where(e.c.campaign_id.in_(campaign_ids), s.c.status == "unknown", s.c.attempts > max_resends)
                .group_by(e.c.campaign_id)
            )
            for campaign_id, n in conn.execute(capped):
                facts[campaign_id]["unknown_capped"] = n
            for campaign_id, row in facts.items():
                active = sum(r["n"] for r in row["per_audience"] if r["state"] == "active")
                row["due_24h"] = self._due_by(conn, campaign_id, active, now + timedelta(hours=24))
        return facts

    @staticmethod
    def _sent_since(conn: sa.Connection, facts: dict[int, dict], day_start: datetime) -> dict[int, int]:
        """Sends settled as sent since day_start, per campaign, from ix_sends_status_settled
        (status, settled_at, enrollment_id). When one campaign has all the enrollments (the
        trigger-kept counts say so, in the same statement), every send is its: the index range
        alone is counted. Otherwise each send's campaign is read by its enrollment's primary key
        (a subquery: PostgreSQL's planner would rather hash every enrollment)."""
        e, s, k = enrollments.c, sends.c, enrollment_counts.c
        since = (s.status == "sent", s.settled_at >= day_start)
        enrolled = [i for i, f in facts.items() if f["per_audience"]]
        if len(enrolled) == 1:
            others = sa.select(sa.func.count()).where(k.campaign_id != enrolled[0], k.n != 0)
            plain = sa.select(sa.func.count()).select_from(sends).where(*since)
            found = sa.case((others.scalar_subquery() == 0, plain.scalar_subquery()))
            n = conn.execute(sa.select(found)).scalar()
            if n is not None:
                return {enrolled[0]: n}
        owner = sa.select(e.campaign_id).where(e.id == s.enrollment_id).scalar_subquery()
        today = sa.select(owner.label("campaign_id")).where(*since).subquery()
        per_campaign = sa.select(today.c.campaign_id, sa.func.count()).group_by(today.c.campaign_id)
        return dict(conn.execute(per_campaign).all())

    @staticmethod
    def _due_by(conn: sa.Connection, campaign_id: int, active: int, horizon: datetime) -> int:
        """A campaign's active enrollments due by `horizon`, from ix_enrollments_campaign_due,
        counting the smaller side. Every answer is exact; `active` (the trigger-kept count) only
        picks the side. Fewer than DUE_PROBE not due (right after a big enrollment every one is
        due): the active ones less those, in one statement (one snapshot). Otherwise the due
        ones, up to half of the active; more than that: the active ones less those not due."""
        e = enrollments.c
        mine = (e.campaign_id == campaign_id, e.state == "active")
        later, never = e.next_due_at > horizon, e.next_due_at.is_(None)

        def counted(condition, limit: int | None = None):
            rows = sa.select(sa.literal(1)).where(*mine, condition).limit(limit)
            return sa.select(sa.func.count()).select_from(rows.subquery()).scalar_subquery()

        def active_less_not_due() -> int:
            kept = sa.select(sa.func.coalesce(sa.func.sum(enrollment_counts.c.n), 0)).where(
                enrollment_counts.c.campaign_id == campaign_id, enrollment_counts.c.state == "active"
            )
            found = sa.select(kept.scalar_subquery() - counted(later) - counted(never))
            return conn.execute(found).scalar_one()

        probe = sa.select(counted(later, DUE_PROBE) + counted(never, DUE_PROBE))
        if conn.execute(probe).scalar_one() < DUE_PROBE:
            return active_less_not_due()
        half = active // 2
        n = conn.execute(sa.select(counted(e.next_due_at <= horizon, half + 1))).scalar_one()
        return n if n <= half else active_less_not_due()

    def enrollment_counts_drift(self) -> dict[tuple, tuple[int, int]]:
        """Where the trigger-kept enrollment_counts differ from a GROUP BY over enrollments: key
        -> (kept, counted). Empty when they agree (tests; a check after a manual repair)."""
        e = enrollments.c
        counted_q = sa.select(e.campaign_id, e.audience, e.state, sa.func.count()).group_by(
            e.campaign_id, e.audience, e.state
        )
        return self._drift(counted_q, sa.select(enrollment_counts))

    def send_counts_drift(self) -> dict[tuple, tuple[int, int]]:
        """Where the trigger-kept send_counts differ from a GROUP BY over the ledger: key ->
        (kept, counted). Empty when they agree (tests; a check after a manual repair)."""
        e, s = enrollments, sends
        counted_q = (
            sa.select(e.c.campaign_id, e.c.audience, s.c.step_key, s.c.status, sa.func.count())
            .join(e, e.c.id == s.c.enrollment_id)
            .group_by(e.c.campaign_id, e.c.audience, s.c.step_key, s.c.status)
        )
        return self._drift(counted_q, sa.select(send_counts))

    def _drift(self, counted_q: sa.Select, kept_q: sa.Select) -> dict[tuple, tuple[int, int]]:
        """Keys where a count table (kept_q: key columns, then n) and a direct count (counted_q,
        the same shape) differ: key -> (kept, counted)."""
        with self.engine.connect() as conn:
            counted = {tuple(r[:-1]): r[-1] for r in conn.execute(counted_q)}
            kept = {tuple(r[:-1]): r[-1] for r in conn.execute(kept_q) if r[-1] != 0}
        return {
            k: (kept.get(k, 0), counted.get(k, 0))
            for k in kept.keys() | counted.keys()
            if kept.get(k, 0) != counted.get(k, 0)
        }

    def report_facts(self) -> Iterator[dict]:
        """One row per ledger row: campaign, audience, step, status, when; the lead's booking and
        unsubscribe times; and the kinds of events linked to it (streamed)."""
        e, s, l = enrollments, sends, leads
        query = (
            sa.select(
                campaigns.c.slug.label("campaign"),
                e.c.audience,
                s.c.step_key,
                s.c.status,
                s.c.send_id,
                s.c.claimed_at,
                e.c.lead_id,
                e.c.id.label("enrollment_id"),
                l.c.booked_at,
                l.c.unsubscribed_at,
            )
            .join(e, e.c.id == s.c.enrollment_id)
            .join(l, l.c.id == e.c.lead_id)
            .join(campaigns, campaigns.c.id == e.c.campaign_id)
            .order_by(e.c.id, s.c.claimed_at, s.c.id)
        )
        with self.engine.connect() as conn:
            kinds: dict[str, set[str]] = {}
            for send_id, kind in conn.execute(
                sa.select(events.c.send_id, events.c.event).where(events.c.send_id.is_not(None))
            ):
                kinds.setdefault(send_id, set()).add(kind)
            for row in conn.execution_options(yield_per=2000).execute(query).mappings():
                yield {**row, "events": kinds.get(row["send_id"], set())}

    def enrollment_counts(self) -> dict[tuple[str, str], int]:
        """(campaign slug, audience) -> enrollments."""
        query = (
            sa.select(campaigns.c.slug, enrollments.c.audience, sa.func.count())
            .join(campaigns, campaigns.c.id == enrollments.c.campaign_id)
            .group_by(campaigns.c.slug, enrollments.c.audience)
        )
        with self.engine.connect() as conn:
            return {(c, a): n for c, a, n in conn.execute(query)}

    def lead_overview(self) -> Iterator[dict]:
        """One row per lead with its latest enrollment and ledger counts (streamed)."""
        sent_count = (
            sa.select(sa.func.count())
            .where(sends.c.enrollment_id == enrollments.c.id, sends.c.status == "sent")
            .scalar_subquery()
        )
        last_key = (
            sa.select(sends.c.step_key)
            .where(sends.c.enrollment_id == enrollments.c.id)
            .order_by(sends.c.claimed_at.desc(), sends.c.id.desc())
            .limit(1)
            .scalar_subquery()
        )
        query = (
            sa.select(
                leads.c.id,
                leads.c.email,
                leads.c.consent,
                leads.c.booked,
                leads.c.unsubscribed_at,
                leads.c.unconfirmed_since,
                leads.c.timezone,
                *(leads.c[c] for c in PROVENANCE_COLUMNS),
                enrollments.c.id.label("enrollment_id"),
                enrollments.c.audience,
                enrollments.c.state.label("enrollment_state"),
                enrollments.c.exit_reason,
                enrollments.c.next_due_at,
                enrollments.c.enrolled_at,
                sent_count.label("steps_sent"),
                last_key.label("last_step"),
            )
            .select_from(leads.outerjoin(enrollments, enrollments.c.lead_id == leads.c.id))
            .order_by(leads.c.id, enrollments.c.id)
        )
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=1000).execute(query).mappings():
                yield dict(row)

    def sends_of(self, enrollment_ids: list[int]) -> dict[int, dict[str, dict]]:
        """enrollment id -> step key -> its ledger row (status, claimed_at), in one query."""
        found: dict[int, dict[str, dict]] = {i: {} for i in enrollment_ids}
        if enrollment_ids:
            query = sa.select(
                sends.c.enrollment_id, sends.c.step_key, sends.c.status, sends.c.claimed_at
            ).where(sends.c.enrollment_id.in_(enrollment_ids))
            with self.engine.connect() as conn:
                for row in conn.execute(query).mappings():
                    found[row["enrollment_id"]][row["step_key"]] = dict(row)
        return found

    def sent_keys(self, enrollment_id: int) -> set[str]:
        return set(self.sends_of([enrollment_id])[enrollment_id])

    def enrollment_for_lead(self, lead_id: int) -> dict | None:
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(enrollments)
                    .where(enrollments.c.lead_id == lead_id)
                    .order_by(enrollments.c.id.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def audience_counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    sa.select(enrollments.c.audience, sa.func.count()).group_by(enrollments.c.audience)
                ).all()
            )

    def send_matrix(self, statuses: tuple[str, ...] = ("sent",)) -> dict[tuple[str, str], int]:
        """(audience, step) -> number of ledger rows in the given statuses."""
        query = (
            sa.select(enrollments.c.audience, sends.c.step_key, sa.func.count())
            .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
            .where(sends.c.status.in_(statuses))
            .group_by(enrollments.c.audience, sends.c.step_key)
        )
        with self.engine.connect() as conn:
            return {(a, s): n for a, s, n in conn.execute(query)}

    def ledger(self) -> list[dict]:
        query = (
            sa.select(
                sends.c.send_id,
                sends.c.step_key,
                sends.c.status,
                sends.c.claimed_at,
                sends.c.settled_at,
                sends.c.message_id,
                enrollments.c.audience,
                enrollments.c.lead_id,
                leads.c.email,
                leads.c.timezone,
            )
            .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
            .join(leads, leads.c.id == enrollments.c.lead_id)
            .order_by(sends.c.id)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def next_due_at(self) -> datetime | None:
        """The earliest time any active enrollment is due (the demo jumps its clock there)."""
        with self.engine.connect() as conn:
            # Per campaign, each from ix_enrollments_campaign_due (no index leads with state).
            per_campaign = (
                sa.select(sa.func.min(enrollments.c.next_due_at))
                .where(enrollments.c.campaign_id == campaigns.c.id, enrollments.c.state == "active")
                .correlate(campaigns)
                .scalar_subquery()
            )
            return conn.execute(sa.select(sa.func.min(per_campaign)).select_from(campaigns)).scalar()
