"""Benchmark: the SQLite ledger's SQL per recipient of a bulk step, without HTTP or rendering.

N leads enrolled as bench_send.py prepares them; then, 1,000 at a time: claim their welcome
(Ledger.claim), settle them as one bulk outcome (Ledger.settle), set their leads' last_email_at
(mark_emailed) and their next step (write_enrollment_groups). Prints the process CPU a row of
each and the send_counts drift (must be {}). Compare two trees by running each one's copy:

    nice -n 5 .venv/bin/python bench/bench_ledger_sql.py 1000000
    DDL="DROP INDEX ix_sends_status" .venv/bin/python bench/bench_ledger_sql.py 200000  # try a change
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import bench_send  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from campaign.models import SendResult, SendStatus  # noqa: E402
from campaign.store import Store  # noqa: E402
from campaign.store.enrollments import write_enrollment_groups  # noqa: E402


def main(n: int) -> None:
    db = Path(tempfile.mkdtemp(prefix="bench-ledger-sql")) / "ledger.db"
    try:
        bench_send.prepare(db, n)
        store = Store.open(f"sqlite:///{db}", secret_key="bench")
        with store.engine.begin() as conn:
            for ddl in os.environ.get("DDL", "").split(";"):
                if ddl.strip():
                    conn.exec_driver_sql(ddl)
        with store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, lead_id FROM enrollments ORDER BY id")).all()
        spent = {"claim": 0.0, "settle": 0.0, "next step": 0.0, "last_email_at": 0.0}
        later = bench_send.NOW.replace(day=9)
        for start in range(0, len(rows), 1000):
            part = rows[start : start + 1000]
            t = time.process_time()
            claims = store.claim([(e, "welcome") for e, _ in part], bench_send.NOW, "sendgrid")
            spent["claim"] += time.process_time() - t
            results = [
                SendResult(send_id=c.send_id, status=SendStatus.sent, message_id=f"m{start}") for c in claims
            ]
            t = time.process_time()
            store.settle(results, bench_send.NOW)
            spent["settle"] += time.process_time() - t
            t = time.process_time()
            store.mark_emailed([lead for _, lead in part], bench_send.NOW)
            spent["last_email_at"] += time.process_time() - t
            t = time.process_time()
            with store.engine.begin() as conn:
                write_enrollment_groups(conn, {(("next_due_at", later),): [e for e, _ in part]})
            spent["next step"] += time.process_time() - t
        per_row = {k: v / len(rows) * 1e6 for k, v in spent.items()}
        print(
            ", ".join(f"{k} {v:.1f} us" for k, v in per_row.items()),
            f"; total {sum(per_row.values()):.1f} us a row",
        )
        print("send_counts drift:", store.send_counts_drift())
        store.close()
    finally:
        shutil.rmtree(db.parent)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
