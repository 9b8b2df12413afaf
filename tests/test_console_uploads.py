"""The console's upload folder: the size limit, private files, owners, expiry, the sweep."""

from __future__ import annotations

import io
import stat
from datetime import UTC, datetime, timedelta

from campaign.console.uploads import KEEP_FOR, Uploads, display_name

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def test_a_file_over_the_limit_is_not_kept(tmp_path):
    uploads = Uploads(tmp_path / "up")
    assert (
        uploads.add(io.BytesIO(b"x" * 101), owner="a@x.org", name="big.csv", now=NOW, max_bytes=100) is None
    )
    assert list((tmp_path / "up").iterdir()) == []
    kept = uploads.add(io.BytesIO(b"x" * 100), owner="a@x.org", name="ok.csv", now=NOW, max_bytes=100)
    assert kept is not None and kept.size == 100 and kept.file.read_bytes() == b"x" * 100


def test_uploads_are_private_and_found_only_by_their_owner_while_kept(tmp_path):
    uploads = Uploads(tmp_path / "up")
    kept = uploads.add(io.BytesIO(b"email\n"), owner="a@x.org", name="l.csv", now=NOW, max_bytes=100)
    assert stat.S_IMODE((tmp_path / "up").stat().st_mode) == 0o700
    assert stat.S_IMODE(kept.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(kept.file.stat().st_mode) == 0o600
    assert uploads.find(kept.token, "a@x.org", NOW).name == "l.csv"
    assert uploads.find(kept.token, "b@x.org", NOW) is None
    assert uploads.find("../../etc", "a@x.org", NOW) is None
    assert uploads.find(kept.token, "a@x.org", NOW + KEEP_FOR) is None  # expired: and deleted
    assert not kept.folder.exists()


def test_the_sweep_deletes_expired_uploads_only(tmp_path):
    uploads = Uploads(tmp_path / "up")
    old = uploads.add(io.BytesIO(b"a"), owner="a@x.org", name="a.csv", now=NOW, max_bytes=10)
    new = uploads.add(
        io.BytesIO(b"b"), owner="a@x.org", name="b.csv", now=NOW + timedelta(hours=1), max_bytes=10
    )
    assert uploads.sweep(NOW + KEEP_FOR) == 1
    assert not old.folder.exists() and new.folder.exists()


def test_display_names_lose_folders_and_control_characters():
    assert display_name("C:\\Users\\me\\leads.csv") == "leads.csv"
    assert display_name("../x/\x1b[31mred.csv") == "[31mred.csv"
    assert display_name("") == "upload" and len(display_name("a" * 300)) == 100
