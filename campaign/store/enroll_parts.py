"""PostgreSQL: a campaign's set-based INSERT ... SELECT, in parts on connections of their own when
many leads are new (issue 14: the per-row foreign-key checks and index writes are CPU in one
backend; parts use every core).

Parts: the leads split by blocks of ID_BLOCK ids (block = id // ID_BLOCK; part = block % parts),
so that the parts write apart in the indexes by lead (leaf pages of their own; by id % parts they
shared each leaf page, and cost more backend CPU: bench/RESULTS.md). Each part is a transaction on
its own connection, all at once, each committed on its own. A part that fails leaves the others'
rows; the next tick enrolls the rest (the statement enrolls only leads not enrolled yet).

Turns: enrollers of one campaign take turns per slot. A campaign has LOCK_SLOTS advisory locks,
slot s standing for its leads of the blocks with block % LOCK_SLOTS == s. Part p of N parts (N
divides LOCK_SLOTS) holds the leads of the slots s with s % N == p and takes those slots' locks in
ascending order; one statement takes all of them. Two enrollers whose leads overlap therefore
share a slot, whatever N each chose, and every transaction takes its slots in one order (no
deadlock among them).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from campaign.store.tables import enrollment_counts, enrollments, leads

log = logging.getLogger(__name__)

# Advisory lock class of the PostgreSQL enrollment: (ENROLL_LOCK + slot, campaign id) is one slot
# of one campaign's lock. Slot 0 is the whole campaign's lock of before the parts: an older
# enroller beside the parts of a newer one meets the unique index, and its fallback (exactly once).
ENROLL_LOCK = 0x656E726F  # "enro"
LOCK_SLOTS = 8  # the most parts; a power of two (every part count divides it)
ID_BLOCK = 4096  # lead ids a block: ~12 leaf pages of an index by lead; 100k new leads, 25 blocks
# Estimated new leads from which a campaign's enrollment runs in parts: below it, one statement
# (each part scans leads once more; a tick that enrolls a few leads gains nothing from parts).
PARTS_FROM = 50_000
# The parts of a large enrollment: the largest power of two within the cores (PostgreSQL's
# machine is this one, or alike).
PARTS = 1 << (min(os.cpu_count() or 1, LOCK_SLOTS).bit_length() - 1)


def parts_for(engine: sa.Engine, campaign_id: int, reachable: list[sa.ColumnElement[bool]]) -> int:
    """1, or PARTS when the leads the campaign may enroll, as the planner estimates them,
    less the campaign's enrollments (enrollment_counts, exact) reach PARTS_FROM. Cheap: a plan and
    a few rows. Not the enrollment statement's own estimate: its CASE filters are guessed (17,513
    rows planned for 886,244 at 1M leads)."""
    if PARTS == 1:
        return 1
    query = sa.select(leads.c.id).where(*reachable)
    query = query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    enrolled = sa.select(sa.func.coalesce(sa.func.sum(enrollment_counts.c.n), 0)).where(
        enrollment_counts.c.campaign_id == campaign_id
    )
    with engine.connect() as conn:
        plan = conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {query}", query.params).scalar_one()
        new = plan[0]["Plan"]["Plan Rows"] - conn.execute(enrolled).scalar_one()
    return PARTS if new >= PARTS_FROM else 1


def in_part(lead_id: sa.ColumnElement[int], part: int, parts: int) -> list[sa.ColumnElement[bool]]:
    """WHERE conditions: the lead is in this part (none for one part)."""
    return [(lead_id // ID_BLOCK) % parts == part] if parts > 1 else []


def lock_slots(conn: sa.Connection, campaign_id: int, part: int, parts: int) -> None:
    """Wait for, and hold until the commit, the campaign's slots of this part, in ascending order
    (generate_series yields them so; each lock is taken as its row is made)."""
    slots = sa.func.generate_series(part, LOCK_SLOTS - 1, parts).table_valued("s").render_derived()
    locked = sa.func.pg_advisory_xact_lock(ENROLL_LOCK + slots.c.s, campaign_id)
    conn.execute(sa.select(sa.func.count(locked)).select_from(slots))


def insert_in_parts(
    engine: sa.Engine, campaign_id: int, statement: Callable[[int, int], sa.Insert], parts: int
) -> dict[str, int]:
    """Run statement(part, parts) for every part, each in a transaction of its own (at once when
    more than one); returns the count per audience of them all. The first failure is raised once
    every part is done (the other parts' rows stay)."""
    if parts == 1:
        return _enroll_part(engine, campaign_id, statement, 0, 1)
    with ThreadPoolExecutor(max_workers=parts, thread_name_prefix="enroll-part") as pool:
        futures = [pool.submit(_enroll_part, engine, campaign_id, statement, p, parts) for p in range(parts)]
    total: Counter[str] = Counter()
    for future in futures:
        total.update(future.result())  # raises the part's error
    return dict(total)


def _enroll_part(
    engine: sa.Engine, campaign_id: int, statement: Callable[[int, int], sa.Insert], part: int, parts: int
) -> dict[str, int]:
    with engine.begin() as conn:
        # Never a nested loop (see Enroll.enroll_matching: quadratic on stale statistics).
        conn.exec_driver_sql("SET LOCAL enable_nestloop = off")
        # The RETURNING rows and the counting trigger's transition table held in memory, not
        # written to temporary files (4 MB by default: ~20 MB of them at 200,000 rows).
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        lock_slots(conn, campaign_id, part, parts)
        return insert_counted(conn, statement(part, parts), campaign_id)


def insert_counted(conn: sa.Connection, insert: sa.Insert, campaign_id: int) -> dict[str, int]:
    """Run one INSERT ... SELECT of enrollments (its slots locked), returning the count per audience.

    Without ON CONFLICT DO NOTHING when it can: that clause makes every row a speculative
    insertion (a probe of the unique index first, a second write to confirm the row), about a
    tenth of the statement. Enrollers of one campaign take turns (the slots' locks), so the
    statement's snapshot, taken after the locks, sees every row an earlier one committed and its
    anti-join leaves them out. Another writer of enrollments (the Python walk's add_enrollments,
    which does not take the locks) can still race it: then the unique index refuses a row, the
    savepoint undoes the statement, and the same statement with ON CONFLICT DO NOTHING runs
    in a fresh snapshot. Either way the rows written are those the clause alone would write.
    The foreign keys are untouched: each row's check still locks its lead against a
    concurrent forget_lead."""

    def counted(stmt) -> dict[str, int]:
        inserted = stmt.returning(enrollments.c.audience).cte("inserted")
        per_audience = sa.select(inserted.c.audience, sa.func.count()).group_by(inserted.c.audience)
        return {name: n for name, n in conn.execute(per_audience).all()}

    try:
        with conn.begin_nested():
            return counted(insert)
    except sa.exc.IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) != "23505":  # unique_violation; anything else is real
            raise
        log.info("enrollment of campaign %s met a concurrent writer; again with ON CONFLICT", campaign_id)
        return counted(insert.on_conflict_do_nothing(index_elements=["campaign_id", "lead_id"]))
