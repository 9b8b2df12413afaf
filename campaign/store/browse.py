"""Reads for the console's lead pages: the lead list (search, filters, pages by key) and one
lead's record, enrollments and events.

Pages go by key, newest lead first (`id < before_id ORDER BY id DESC LIMIT n`): each page costs
the same at 1M leads as at 100. A filter on audience, campaign or status is an EXISTS probe on a
lead's enrollments (ix_enrollments_lead_id); the search matches the start of an address or a
name through the indexes of migration 0006.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from campaign.store.base import StorePart
from campaign.store.tables import campaigns, enrollments, events, leads, sends

# What a lead is doing, as the list filters it (the words are the app layer's).
LEAD_STATUSES = (
    "in_sequence",  # in an active sequence
    "finished",  # got every step
    "stopped",  # a sequence ended by a bounce, a complaint or a refused address
    "booked",
    "unsubscribed",
    "not_enrolled",  # consented, not (yet) in a sequence
    "no_consent",
)
_ENDED_BY_THE_LEAD = ("booked", "unsubscribed")
# The last code point: any text starting with p sorts between p and p + this (SQLite's binary order).
_HIGHEST = "\U0010ffff"


@dataclass(frozen=True)
class LeadQuery:
    text: str = ""  # the start of an address, a first or last name, or "first last"
    audience: str | None = None  # enrolled in this audience
    campaign_id: int | None = None  # enrolled in this campaign
    status: str | None = None  # one of LEAD_STATUSES


LIST_COLUMNS = (
    leads.c.id,
    leads.c.public_id,
    leads.c.email,
    leads.c.first_name,
    leads.c.last_name,
    leads.c.consent,
    leads.c.booked,
    leads.c.unsubscribed_at,
    leads.c.last_email_at,
)


class Browse(StorePart):
    def search_leads(self, query: LeadQuery, before_id: int | None = None, limit: int = 50) -> list[dict]:
        """Up to `limit` leads matching `query`, newest first, with ids below `before_id`."""
        select = sa.select(*LIST_COLUMNS).where(*self._conditions(query))
        if before_id is not None:
            select = select.where(leads.c.id < before_id)
        # With a search, the matches come from the name and address indexes and are then sorted
        # (id + 0: not by walking the primary key, which would read every lead to find a rare name).
        order = (leads.c.id + 0) if query.text.strip() else leads.c.id
        select = select.order_by(order.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select).mappings()]

    def _conditions(self, query: LeadQuery) -> list:
        scope = []
        if query.campaign_id is not None:
            scope.append(enrollments.c.campaign_id == query.campaign_id)
        if query.audience:
            scope.append(enrollments.c.audience == query.audience)

        def enrolled(*more):
            probe = sa.select(1).where(enrollments.c.lead_id == leads.c.id, *scope, *more)
            return probe.exists()

        # "Not enrolled" with a campaign or audience means not enrolled there.
        conditions = [enrolled()] if scope and query.status != "not_enrolled" else []
        if query.text.strip():
            conditions.append(self._text_match(query.text))
        if query.status:
            conditions.append(_status_condition(query.status, enrolled))
        return conditions

    def _text_match(self, text: str):
        words = text.strip().lower().split()
        whole = " ".join(words)
        by_address = self._starts(leads.c.email, whole)
        if "@" in whole:
            return by_address
        first, last = self._folded(leads.c.first_name), self._folded(leads.c.last_name)
        if len(words) == 1:
            return sa.or_(by_address, self._starts(first, whole), self._starts(last, whole))
        # "sam gar": a first name starting "sam" and a last name starting "gar"
        return sa.and_(self._starts(first, words[0]), self._starts(last, " ".join(words[1:])))

    def _folded(self, column):
        """A name compared without regard to case, as migration 0006's indexes hold it."""
        return sa.collate(column, "NOCASE") if self.dialect == "sqlite" else sa.func.lower(column)

    def _starts(self, column, prefix: str):
        """`column` starts with `prefix`, in a form the dialect's index serves."""
        if self.dialect == "sqlite":
            return sa.and_(column >= prefix, column < prefix + _HIGHEST)
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return column.like(escaped + "%", escape="\\")

    def public_id_to_id(self, public_id: str) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(leads.c.id).where(leads.c.public_id == public_id)).scalar()

    def latest_enrollments(self, lead_ids: list[int], query: LeadQuery = LeadQuery()) -> dict[int, dict]:
        """lead id -> its latest enrollment within the query's campaign and audience (with the
        campaign's name), for the leads of one page."""
        if not lead_ids:
            return {}
        select = (
            sa.select(
                enrollments.c.lead_id,
                enrollments.c.audience,
                enrollments.c.state,
                enrollments.c.exit_reason,
                campaigns.c.name.label("campaign"),
            )
            .join(campaigns, campaigns.c.id == enrollments.c.campaign_id)
            .where(enrollments.c.lead_id.in_(lead_ids))
            .order_by(enrollments.c.id)
        )
        if query.campaign_id is not None:
            select = select.where(enrollments.c.campaign_id == query.campaign_id)
        if query.audience:
            select = select.where(enrollments.c.audience == query.audience)
        with self.engine.connect() as conn:
            return {r["lead_id"]: dict(r) for r in conn.execute(select).mappings()}  # the last wins

    def lead_record(self, public_id: str) -> dict | None:
        """Every column of one lead, by its public id."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(leads).where(leads.c.public_id == public_id)).mappings().first()
        return dict(row) if row else None

    def lead_enrollments(self, lead_id: int) -> list[dict]:
        """A lead's enrollments, oldest first, with their campaign's name."""
        select = (
            sa.select(
                enrollments, campaigns.c.name.label("campaign"), campaigns.c.slug.label("campaign_slug")
            )
            .join(campaigns, campaigns.c.id == enrollments.c.campaign_id)
            .where(enrollments.c.lead_id == lead_id)
            .order_by(enrollments.c.id)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select).mappings()]

    def lead_events(self, lead_id: int, limit: int = 200) -> list[dict]:
        """A lead's webhook events, newest first: kind, time, and the step of the email they are
        about (None when not linked to one). Never the raw payload."""
        select = (
            sa.select(events.c.event, events.c.occurred_at, sends.c.step_key, sends.c.enrollment_id)
            .select_from(events.outerjoin(sends, sends.c.send_id == events.c.send_id))
            .where(events.c.lead_id == lead_id)
            .order_by(events.c.occurred_at.desc(), events.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select).mappings()]


def _status_condition(status: str, enrolled):
    """The SQL for one of LEAD_STATUSES; `enrolled(*conditions)` probes the lead's enrollments."""
    reachable = sa.and_(leads.c.unsubscribed_at.is_(None), leads.c.booked.is_(False))
    state = enrollments.c.state
    conditions = {
        "unsubscribed": leads.c.unsubscribed_at.is_not(None),
        "booked": sa.and_(leads.c.unsubscribed_at.is_(None), leads.c.booked.is_(True)),
        "in_sequence": sa.and_(reachable, enrolled(state == "active")),
        "finished": sa.and_(reachable, enrolled(state == "finished")),
        "stopped": sa.and_(
            reachable,
            enrolled(state == "exited", enrollments.c.exit_reason.not_in(_ENDED_BY_THE_LEAD)),
        ),
        "not_enrolled": sa.and_(reachable, leads.c.consent.is_(True), ~enrolled()),
        "no_consent": sa.and_(reachable, leads.c.consent.is_(False)),
    }
    if status not in conditions:
        raise ValueError(f"unknown lead status {status!r}; one of {', '.join(LEAD_STATUSES)}")
    return conditions[status]
