"""What the lead API needs beyond the upsert: where many leads stand (their latest enrollment
and first email) in a few queries, and the Idempotency-Key table."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from campaign.store.base import StorePart, chunks
from campaign.store.tables import campaigns, enrollments, idempotency_keys, sends

IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Remembered:
    """A key already seen: its request's hash, and the first answer (None while it runs)."""

    request_hash: str
    status_code: int | None
    response: str | None


class Intake(StorePart):
    def standing_of(self, lead_ids: list[int]) -> dict[int, dict]:
        """lead id -> its latest enrollment (with the campaign's slug and the time of its first
        email, if any went), for the leads that have one."""
        first_send = (
            sa.select(sa.func.min(sends.c.claimed_at))
            .where(sends.c.enrollment_id == enrollments.c.id)
            .scalar_subquery()
        )
        found: dict[int, dict] = {}
        with self.engine.connect() as conn:
            for part in chunks(lead_ids):
                query = (
                    sa.select(
                        enrollments.c.lead_id,
                        enrollments.c.audience,
                        enrollments.c.state,
                        enrollments.c.exit_reason,
                        enrollments.c.next_due_at,
                        campaigns.c.slug.label("campaign"),
                        first_send.label("first_sent_at"),
                    )
                    .select_from(enrollments.join(campaigns, campaigns.c.id == enrollments.c.campaign_id))
                    .where(enrollments.c.lead_id.in_(part))
                    .order_by(enrollments.c.id)
                )
                for row in conn.execute(query).mappings():
                    found[row["lead_id"]] = dict(row)  # by id order: the latest wins
        return found

    # ---- Idempotency-Key -------------------------------------------------------------------

    def remember_request(
        self, token_name: str, key: str, request_hash: str, now: datetime
    ) -> Remembered | None:
        """Claims (token, key) for this request; None when it is new (the caller goes on and
        then calls `remember_response`), else what the earlier request left. A key older than
        the window is forgotten first, and so is every other expired key, now and then."""
        with self.engine.begin() as conn:
            expired = idempotency_keys.c.created_at < now - IDEMPOTENCY_WINDOW
            conn.execute(
                sa.delete(idempotency_keys).where(
                    idempotency_keys.c.token_name == token_name, idempotency_keys.c.key == key, expired
                )
            )
            if now.second == 0:  # a cheap sweep: about once a minute under load
                conn.execute(sa.delete(idempotency_keys).where(expired))
            inserted = conn.execute(
                self.insert(idempotency_keys)
                .values(token_name=token_name, key=key, request_hash=request_hash, created_at=now)
                .on_conflict_do_nothing(index_elements=["token_name", "key"])
                .returning(idempotency_keys.c.id)
            ).first()
            if inserted is not None:
                return None
            row = conn.execute(
                sa.select(
                    idempotency_keys.c.request_hash,
                    idempotency_keys.c.status_code,
                    idempotency_keys.c.response,
                ).where(idempotency_keys.c.token_name == token_name, idempotency_keys.c.key == key)
            ).first()
        return Remembered(row.request_hash, row.status_code, row.response)

    def remember_response(self, token_name: str, key: str, status_code: int, response: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(idempotency_keys)
                .where(idempotency_keys.c.token_name == token_name, idempotency_keys.c.key == key)
                .values(status_code=status_code, response=response)
            )

    def forget_request(self, token_name: str, key: str) -> None:
        """The request failed without an answer worth repeating: a retry may run it again."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.delete(idempotency_keys).where(
                    idempotency_keys.c.token_name == token_name,
                    idempotency_keys.c.key == key,
                    idempotency_keys.c.status_code.is_(None),
                )
            )
