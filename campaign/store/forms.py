"""Sign-up forms and double opt-in: the forms, their confirmation emails (claimed, then settled:
each sent once), confirming a lead, and deleting leads that never confirmed.

`opted_in()` is the one condition every enrollment query adds: a lead still waiting for its
double opt-in is never enrolled, so it is never mailed.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from campaign.models import Lead, SendResult
from campaign.store.base import StorePart, chunks
from campaign.store.tables import confirmations, forms, leads, new_send_id


def opted_in() -> sa.ColumnElement[bool]:
    """WHERE condition: the lead is not waiting for its double opt-in (confirmed, or never asked)."""
    return leads.c.unconfirmed_since.is_(None)


def new_form_key() -> str:
    return secrets.token_urlsafe(12)  # 16 URL-safe characters, 96 random bits


@dataclass(frozen=True)
class Form:
    key: str
    name: str
    audience_question: str
    consent_text: str
    consent_version: str
    created_at: datetime
    disabled_at: datetime | None = None


@dataclass(frozen=True)
class Confirmation:
    """A confirmation email claimed for a lead: send it with this send id, then settle it."""

    send_id: str
    lead: Lead


class FormExists(ValueError):
    """A form with that name exists already."""


def _form(row) -> Form:
    return Form(**{f: row[f] for f in Form.__dataclass_fields__})


class Forms(StorePart):
    def create_form(
        self, name: str, audience_question: str, consent_text: str, consent_version: str, now: datetime
    ) -> Form:
        form = Form(new_form_key(), name, audience_question, consent_text, consent_version, now)
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.insert(forms).values(**vars(form)))
        except sa.exc.IntegrityError:
            raise FormExists(f"a form named {name!r} exists already") from None
        return form

    def forms(self) -> list[Form]:
        with self.engine.connect() as conn:
            return [_form(r) for r in conn.execute(sa.select(forms).order_by(forms.c.id)).mappings()]

    def form_by_key(self, key: str) -> Form | None:
        """The form with this key, if it is enabled."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(sa.select(forms).where(forms.c.key == key, forms.c.disabled_at.is_(None)))
                .mappings()
                .first()
            )
        return _form(row) if row else None

    def disable_form(self, name: str, now: datetime) -> bool:
        """False when no enabled form has that name."""
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    sa.update(forms)
                    .where(forms.c.name == name, forms.c.disabled_at.is_(None))
                    .values(disabled_at=now)
                ).rowcount
            )

    # ---- confirmation emails -----------------------------------------------------------------

    def claim_confirmations(
        self, public_ids: list[str], now: datetime, since: datetime, limit: int
    ) -> list[Confirmation]:
        """One more confirmation email for each of these leads still waiting for their double
        opt-in (with consent, subscribed), except an address that had `limit` of them since
        `since`. One transaction; each claim is written before its email leaves."""
        from campaign.store.leads import lead_from_row  # that module imports this one

        claimed: list[Confirmation] = []
        with self.engine.begin() as conn:
            for part in chunks(public_ids):
                waiting = (~opted_in(), leads.c.consent.is_(True), leads.c.unsubscribed_at.is_(None))
                found = conn.execute(sa.select(leads).where(leads.c.public_id.in_(part), *waiting))
                rows = {self.hash(row["email"]): row for row in found.mappings()}
                if not rows:
                    continue
                counts = dict(
                    conn.execute(
                        sa.select(confirmations.c.email_hash, sa.func.count())
                        .where(
                            confirmations.c.email_hash.in_(list(rows)), confirmations.c.requested_at >= since
                        )
                        .group_by(confirmations.c.email_hash)
                    ).all()
                )
                values = []
                for hashed, row in rows.items():
                    if counts.get(hashed, 0) >= limit:
                        continue
                    claim = Confirmation(new_send_id(), lead_from_row(row))
                    claimed.append(claim)
                    values.append(
                        {
                            "lead_id": row["id"],
                            "email_hash": hashed,
                            "send_id": claim.send_id,
                            "status": "claimed",
                            "requested_at": now,
                        }
                    )
                if values:
                    conn.execute(sa.insert(confirmations), values)
        return claimed

    def settle_confirmation(self, result: SendResult, now: datetime) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(confirmations)
                .where(confirmations.c.send_id == result.send_id, confirmations.c.status == "claimed")
                .values(
                    status=result.status.value,
                    settled_at=now,
                    message_id=result.message_id,
                    error=(result.error or None) and result.error[:500],
                )
            )

    def confirmation_counts(self) -> dict[str, int]:
        """status -> how many confirmation emails (for reports and tests)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(confirmations.c.status, sa.func.count()).group_by(confirmations.c.status)
            )
            return {status: n for status, n in rows}

    # ---- confirming and expiring -------------------------------------------------------------

    def confirm_lead(self, public_id: str, email_hash: str, now: datetime, since: datetime) -> str:
        """Confirm the lead named by a confirmation link (its public id and the first 16 hex
        digits of its address's hash): "confirmed", "already" (confirmed before), or "refused"
        (no such lead, another address than the link's, or waiting since before `since`)."""
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(leads.c.id, leads.c.email, leads.c.unconfirmed_since, leads.c.confirmed_at).where(
                    leads.c.public_id == public_id
                )
            ).first()
            if row is None or not secrets.compare_digest(self.hash(row.email)[:16], email_hash[:16]):
                return "refused"
            if row.unconfirmed_since is None:
                return "already" if row.confirmed_at is not None else "refused"
            if row.unconfirmed_since < since:
                return "refused"
            conn.execute(
                sa.update(leads)
                .where(leads.c.id == row.id)
                .values(unconfirmed_since=None, confirmed_at=now, updated_at=now)
            )
        return "confirmed"

    def expire_unconfirmed(self, before: datetime) -> int:
        """Delete the leads that waited for their double opt-in since before `before` (never
        mailed, never confirmed: nothing of theirs is kept). Returns how many."""
        with self.engine.begin() as conn:
            return conn.execute(sa.delete(leads).where(leads.c.unconfirmed_since < before)).rowcount
