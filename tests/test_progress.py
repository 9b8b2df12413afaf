"""Progress bars show on a terminal and never in pipes or with --json."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from campaign.sample import sample_csv

CAMPAIGN = str(Path(sys.executable).parent / "campaign")


def run_in_terminal(args: list[str], env: dict) -> str:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        args, stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process is done
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=60)
    os.close(leader)
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", b"".join(chunks).decode("utf-8", "replace"))


def test_import_shows_progress_on_a_terminal_only(tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text(sample_csv(3000))
    env = {**os.environ, "CAMPAIGN_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}", "COLUMNS": "120"}
    on_terminal = run_in_terminal([CAMPAIGN, "import", str(leads)], env)
    assert "Importing leads.csv" in on_terminal and "3000 new" in on_terminal
    piped = subprocess.run([CAMPAIGN, "import", str(leads)], env=env, capture_output=True, text=True)
    assert "Importing" not in piped.stdout + piped.stderr and "3000 unchanged" in piped.stdout
    as_json = run_in_terminal([CAMPAIGN, "import", str(leads), "--json"], env)
    assert "Importing" not in as_json and '"unchanged": 3000' in as_json
