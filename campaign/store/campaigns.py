"""Campaigns (the evergreen one and launched ones, their state) and reviewers' approvals."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from campaign.store.base import CHUNK, StorePart
from campaign.store.tables import ALL_AUDIENCES, EVERGREEN, approvals, campaigns, enrollments


class Campaigns(StorePart):
    def ensure_evergreen(self, now: datetime) -> None:
        stmt = (
            self.insert(campaigns)
            .values(
                slug=EVERGREEN,
                name="Evergreen education",
                state="active",
                audiences=ALL_AUDIENCES,
                sandbox=False,
                starts_at=None,
                created_at=now,
            )
            .on_conflict_do_nothing(index_elements=["slug"])
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def campaign(self, slug: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(campaigns).where(campaigns.c.slug == slug)).mappings().first()
        return dict(row) if row else None

    def active_campaigns(self, now: datetime) -> list[dict]:
        query = (
            sa.select(campaigns)
            .where(
                campaigns.c.state == "active",
                sa.or_(campaigns.c.starts_at.is_(None), campaigns.c.starts_at <= now),
            )
            .order_by(campaigns.c.id)
        )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def campaigns(self) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(campaigns).order_by(campaigns.c.id)).mappings()]

    def create_campaign(
        self,
        *,
        slug: str,
        name: str,
        audiences: list[str],
        starts_at: datetime | None,
        sandbox: bool,
        versions: dict[str, str],
        now: datetime,
    ) -> dict:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(campaigns).values(
                    slug=slug,
                    name=name,
                    state="active",
                    audiences=",".join(audiences),
                    sandbox=sandbox,
                    starts_at=starts_at,
                    created_at=now,
                    versions=json.dumps(versions, sort_keys=True),
                )
            )
        return self.campaign(slug)

    def set_campaign_state(self, slug: str, state: str, reason: str | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(campaigns).where(campaigns.c.slug == slug).values(state=state, paused_reason=reason)
            )
        if state == "stopped":
            campaign = self.campaign(slug)
            with self.engine.begin() as conn:
                conn.execute(
                    sa.update(enrollments)
                    .where(
                        enrollments.c.campaign_id == campaign["id"],
                        enrollments.c.state == "active",
                    )
                    .values(state="exited", exit_reason="campaign stopped", next_due_at=None)
                )

    def pause_campaigns(self, campaign_ids: Iterable[int], reason: str) -> int:
        """Set active campaigns to 'paused' with the reason (their due sends wait for a resume)."""
        ids = list(campaign_ids)
        if not ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                sa.update(campaigns)
                .where(campaigns.c.id.in_(ids), campaigns.c.state == "active")
                .values(state="paused", paused_reason=reason)
            ).rowcount

    # ---- approvals ---------------------------------------------------------------------------

    def record_approval(
        self,
        template: str,
        content_hash: str,
        approved_by: str,
        now: datetime,
        *,
        role: str = "",
        source_text: str | None = None,
    ) -> bool:
        """Record a reviewer's sign-off of one template at one content hash (campaign.approval),
        with their role and the source they approved. False when this exact content was already
        approved: the first sign-off is kept (only a missing source text is filled in)."""
        stmt = (
            self.insert(approvals)
            .values(
                template=template,
                content_hash=content_hash,
                approved_by=approved_by,
                approved_at=now,
                approved_role=role,
                source_text=source_text,
            )
            .on_conflict_do_nothing(index_elements=["template", "content_hash"])
            .returning(approvals.c.id)
        )
        with self.engine.begin() as conn:
            new = conn.execute(stmt).scalar() is not None
            if not new and source_text is not None:
                conn.execute(
                    sa.update(approvals)
                    .where(
                        approvals.c.template == template,
                        approvals.c.content_hash == content_hash,
                        approvals.c.source_text.is_(None),
                    )
                    .values(source_text=source_text)
                )
        return new

    def approvals_for(self, templates: Iterable[str]) -> dict[str, list[dict]]:
        """Every approval of these templates, newest first (without the source text):
        {template: [{"content_hash", "approved_by", "approved_role", "approved_at"}, ...]}."""
        names = list(dict.fromkeys(templates))
        columns = ("content_hash", "approved_by", "approved_role", "approved_at")
        found: dict[str, list[dict]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(names), CHUNK):
                query = (
                    sa.select(approvals.c.template, *(approvals.c[c] for c in columns))
                    .where(approvals.c.template.in_(names[i : i + CHUNK]))
                    .order_by(approvals.c.approved_at.desc(), approvals.c.id.desc())
                )
                for row in conn.execute(query).mappings():
                    found.setdefault(row["template"], []).append({k: row[k] for k in columns})
        return found

    def approval_record(self, template: str, content_hash: str | None = None) -> dict | None:
        """One approval of a template with its source text: the one of this content hash, or
        (no hash given) the newest; None when there is none."""
        query = sa.select(approvals).where(approvals.c.template == template)
        if content_hash is not None:
            query = query.where(approvals.c.content_hash == content_hash)
        query = query.order_by(approvals.c.approved_at.desc(), approvals.c.id.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return dict(row) if row else None
