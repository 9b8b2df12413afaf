"""Leaving and being heard from: webhook events, unsubscribes, bookings, forgetting a lead.

What an event *does* is decided by campaign.events.effects (pure); this part stores events,
links them to the ledger and leads, and applies those effects in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from campaign.events import Effects, LinkedEvent, NormalizedEvent, RecordedEvents, effects
from campaign.models import SendStatus
from campaign.store.base import StorePart, chunks
from campaign.store.tables import enrollments, events, leads, previous_send_ids, sends, suppressions


def exit_active(conn, lead_ids: Iterable[int], reason: str) -> int:
    """End every active enrollment of these leads, inside the caller's transaction (a second
    connection would wait on the caller's own SQLite write lock)."""
    exited = 0
    for part in chunks(lead_ids):
        exited += conn.execute(
            sa.update(enrollments)
            .where(enrollments.c.lead_id.in_(part), enrollments.c.state == "active")
            .values(state="exited", exit_reason=reason, next_due_at=None)
        ).rowcount
    return exited


def _unique_in_post(received: list[NormalizedEvent]) -> list[NormalizedEvent]:
    """The post without its own repeats (by dedupe key, and by sg_event_id when present)."""
    keys: set[str] = set()
    event_ids: set[str] = set()
    batch = []
    for ev in received:
        if ev.dedupe_key in keys or (ev.sg_event_id and ev.sg_event_id in event_ids):
            continue
        keys.add(ev.dedupe_key)
        if ev.sg_event_id:
            event_ids.add(ev.sg_event_id)
        batch.append(ev)
    return batch


class EventLog(StorePart):
    def record_events(self, incoming: Iterable[NormalizedEvent], now: datetime) -> RecordedEvents:
        """Store normalized webhook events and apply their effects, all in ONE transaction.

        - Deduplicated by sg_event_id and by dedupe key, within the post and against the table.
        - Linked to the ledger by custom_args send_id, else by (X-Message-Id prefix of
          sg_message_id, address); to the lead by address, else through the ledger row.
          Events for unknown addresses are kept with lead_id NULL.
        - Their effects: campaign.events.effects.
        Only events stored by this call have effects: a replayed post changes nothing.
        """
        received = list(incoming)
        with self.engine.begin() as conn:
            batch = self._not_yet_stored(conn, _unique_in_post(received))
            if not batch:
                return RecordedEvents(received=len(received), duplicates=len(received))
            linked = self._link(conn, batch)
            fresh = self._store(conn, linked, now)
            result = effects(fresh)
            settled, suppressed, exited = self._apply(conn, result, now)
        return RecordedEvents(
            received=len(received),
            stored=len(fresh),
            duplicates=len(received) - len(fresh),
            linked=sum(1 for item in fresh if item.send_id is not None),
            settled=settled,
            suppressed=suppressed,
            exited=exited,
            content_drops=result.content_drops,
        )

    @staticmethod
    def _not_yet_stored(conn, batch: list[NormalizedEvent]) -> list[NormalizedEvent]:
        known_keys, known_ids = set(), set()
        for part in chunks(ev.dedupe_key for ev in batch):
            query = sa.select(events.c.dedupe_key).where(events.c.dedupe_key.in_(part))
            known_keys.update(conn.execute(query).scalars())
        for part in chunks({ev.sg_event_id for ev in batch if ev.sg_event_id}):
            query = sa.select(events.c.sg_event_id).where(events.c.sg_event_id.in_(part))
            known_ids.update(conn.execute(query).scalars())
        return [ev for ev in batch if ev.dedupe_key not in known_keys and ev.sg_event_id not in known_ids]

    @staticmethod
    def _link(conn, batch: list[NormalizedEvent]) -> list[LinkedEvent]:
        lead_of_email: dict[str, int] = {}
        for part in chunks({ev.email for ev in batch}):
            lead_of_email.update(
                conn.execute(sa.select(leads.c.email, leads.c.id).where(leads.c.email.in_(part))).all()
            )
        ledger = (
            sa.select(
                sends.c.send_id, sends.c.message_id, sends.c.status, enrollments.c.lead_id, leads.c.email
            )
            .join(enrollments, enrollments.c.id == sends.c.enrollment_id)
            .join(leads, leads.c.id == enrollments.c.lead_id)
        )
        by_send_id: dict[str, sa.Row] = {}
        for part in chunks({ev.send_id for ev in batch if ev.send_id}):
            by_send_id.update((r.send_id, r) for r in conn.execute(ledger.where(sends.c.send_id.in_(part))))
        # An id a row had before a resend (0009_sendpath): the event belongs to that row.
        for part in chunks({ev.send_id for ev in batch if ev.send_id and ev.send_id not in by_send_id}):
            resent = ledger.add_columns(previous_send_ids.c.send_id.label("earlier_id")).join(
                previous_send_ids, previous_send_ids.c.send_row_id == sends.c.id
            )
            by_send_id.update(
                (r.earlier_id, r) for r in conn.execute(resent.where(previous_send_ids.c.send_id.in_(part)))
            )
        by_message: dict[tuple[str, str], sa.Row] = {}
        unlinked = {ev.message_id for ev in batch if ev.message_id and ev.send_id not in by_send_id}
        for part in chunks(unlinked):
            # One X-Message-Id covers every recipient of a request: the address picks the row.
            by_message.update(
                ((r.message_id, r.email), r) for r in conn.execute(ledger.where(sends.c.message_id.in_(part)))
            )
        linked = []
        for ev in batch:
            send = by_send_id.get(ev.send_id) or by_message.get((ev.message_id, ev.email))
            if send is None:
                linked.append(LinkedEvent(ev, lead_id=lead_of_email.get(ev.email)))
                continue
            lead_id = lead_of_email.get(ev.email, send.lead_id)
            linked.append(LinkedEvent(ev, lead_id, send.send_id, send.status, send.message_id))
        return linked

    def _store(self, conn, linked: list[LinkedEvent], now: datetime) -> list[LinkedEvent]:
        """Insert the events; returns those this call stored. ON CONFLICT DO NOTHING (no target:
        either unique column) covers a concurrent post of the same events."""
        rows = [
            {
                "dedupe_key": item.event.dedupe_key,
                "sg_event_id": item.event.sg_event_id,
                "send_id": item.send_id or item.event.send_id,
                "lead_id": item.lead_id,
                "email_hash": self.hash(item.event.email),
                "event": item.event.kind,
                "raw_event": item.event.raw_event,
                "occurred_at": item.event.occurred_at,
                "received_at": now,
                "raw": item.event.raw,
            }
            for item in linked
        ]
        stored: set[str] = set()
        insert = self.insert(events).on_conflict_do_nothing().returning(events.c.dedupe_key)
        for part in chunks(rows):
            stored.update(conn.execute(insert, part).scalars())
        return [item for item in linked if item.event.dedupe_key in stored]

    def _apply(self, conn, result: Effects, now: datetime) -> tuple[int, int, int]:
        """Effects -> rows, in the caller's transaction; returns (settled, suppressed, exited)."""
        settled = 0
        for send_id, message_id in result.settle.items():
            settled += conn.execute(
                sa.update(sends)
                .where(sends.c.send_id == send_id, sends.c.status == SendStatus.unknown.value)
                .values(status=SendStatus.sent.value, message_id=message_id, settled_at=now, error=None)
            ).rowcount
        wanted = {
            self.hash(email): {"email_hash": self.hash(email), "reason": reason, "created_at": now}
            for email, reason in result.suppress.items()
        }
        already: set[str] = set()
        for part in chunks(wanted):
            query = sa.select(suppressions.c.email_hash).where(suppressions.c.email_hash.in_(part))
            already.update(conn.execute(query).scalars())
        new_rows = [row for hashed, row in wanted.items() if hashed not in already]
        if new_rows:
            conn.execute(
                self.insert(suppressions).on_conflict_do_nothing(index_elements=["email_hash"]), new_rows
            )
        by_reason: dict[str, list[int]] = {}
        for lead_id, reason in result.exit.items():
            by_reason.setdefault(reason, []).append(lead_id)
        exited = sum(exit_active(conn, ids, reason) for reason, ids in by_reason.items())
        for part in chunks(result.unsubscribe):
            conn.execute(
                sa.update(leads)
                .where(leads.c.id.in_(part), leads.c.unsubscribed_at.is_(None))
                .values(unsubscribed_at=now, updated_at=now)
            )
        return settled, len(new_rows), exited

    # ---- unsubscribes, bookings, forgetting --------------------------------------------------

    def unsubscribe_lead(self, public_id: str, now: datetime) -> datetime | None:
        """Set unsubscribed_at (the first time only) and exit every active enrollment, in one
        transaction. Returns the lead's unsubscribed_at as stored (this call's or an earlier
        one's): the undo link names it. None when no lead has this public id (e.g. forgotten)."""
        with self.engine.begin() as conn:
            lead_id = conn.execute(sa.select(leads.c.id).where(leads.c.public_id == public_id)).scalar()
            if lead_id is None:
                return None
            conn.execute(
                sa.update(leads)
                .where(leads.c.id == lead_id, leads.c.unsubscribed_at.is_(None))
                .values(unsubscribed_at=now, updated_at=now)
            )
            exit_active(conn, [lead_id], "unsubscribed")
            return conn.execute(sa.select(leads.c.unsubscribed_at).where(leads.c.id == lead_id)).scalar()

    def resubscribe_lead(self, public_id: str, *, unsubscribed_at: datetime, now: datetime) -> bool:
        """Undo the unsubscribe of `unsubscribed_at` (from the undo link): clear it and reactivate
        the enrollments that it ended (due at once: the next tick's planner finds the next step
        and its time). Only while the lead is still unsubscribed since exactly then, so an undo
        link works once and never after a later change; False otherwise. The suppression list
        is not touched: a bounce or complaint still stops every send."""
        with self.engine.begin() as conn:
            lead_id = conn.execute(sa.select(leads.c.id).where(leads.c.public_id == public_id)).scalar()
            if lead_id is None:
                return False
            undone = conn.execute(
                sa.update(leads)
                .where(leads.c.id == lead_id, leads.c.unsubscribed_at == unsubscribed_at)
                .values(unsubscribed_at=None, updated_at=now)
            )
            if undone.rowcount != 1:
                return False
            conn.execute(
                sa.update(enrollments)
                .where(
                    enrollments.c.lead_id == lead_id,
                    enrollments.c.state == "exited",
                    enrollments.c.exit_reason == "unsubscribed",
                )
                .values(state="active", exit_reason=None, next_due_at=now)
            )
        return True

    def mark_booked(self, email: str, now: datetime) -> bool:
        """The lead booked a consultation: booked, booked_at (the first time), and every active
        sequence exited with reason 'booked'. False when no lead has this address."""
        with self.engine.begin() as conn:
            lead_id = conn.execute(
                sa.select(leads.c.id).where(leads.c.email == email.strip().casefold())
            ).scalar()
            if lead_id is None:
                return False
            conn.execute(sa.update(leads).where(leads.c.id == lead_id).values(booked=True, updated_at=now))
            conn.execute(
                sa.update(leads)
                .where(leads.c.id == lead_id, leads.c.booked_at.is_(None))
                .values(booked_at=now)
            )
            exit_active(conn, [lead_id], "booked")
        return True

    def forget_lead(self, email: str, now: datetime) -> dict[str, int]:
        """Delete everything we hold about this address (lead row, enrollments, ledger rows,
        webhook events, including events never tied to a lead) and keep only its keyed hash on
        the suppression list, so it is never enrolled or mailed again. One transaction.
        Returns counts of what was deleted."""
        hashed = self.hash(email)
        with self.engine.begin() as conn:
            lead_id = conn.execute(
                sa.select(leads.c.id).where(leads.c.email == email.strip().casefold())
            ).scalar()
            counts = {"leads": 0, "enrollments": 0, "sends": 0, "events": 0}
            # Explicit deletes, children first: correct even where foreign keys are not enforced.
            event_match = events.c.email_hash == hashed
            if lead_id is not None:
                event_match = sa.or_(event_match, events.c.lead_id == lead_id)
            counts["events"] = conn.execute(sa.delete(events).where(event_match)).rowcount
            if lead_id is not None:
                theirs = sa.select(enrollments.c.id).where(enrollments.c.lead_id == lead_id)
                counts["sends"] = conn.execute(
                    sa.delete(sends).where(sends.c.enrollment_id.in_(theirs))
                ).rowcount
                counts["enrollments"] = conn.execute(
                    sa.delete(enrollments).where(enrollments.c.lead_id == lead_id)
                ).rowcount
                counts["leads"] = conn.execute(sa.delete(leads).where(leads.c.id == lead_id)).rowcount
            conn.execute(
                self.insert(suppressions)
                .values(email_hash=hashed, reason="forgotten", created_at=now)
                .on_conflict_do_nothing(index_elements=["email_hash"])
            )
        return counts
