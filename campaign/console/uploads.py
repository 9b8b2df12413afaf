"""Lead files uploaded to the console, kept on disk between the check and the import.

An upload is a private folder named by a random token: the file as uploaded, a small meta.json
(who, when, the file's name and size, and after the import its summary) and, after the import,
the rejected rows. Only the user who uploaded it may open it. The uploaded file is deleted
right after the import; a whole folder is deleted when its owner discards it, or by the sweep
2 hours after upload (the folder holds form answers: health data).

The request body is read by Starlette's form parser into a temporary file; `limited_receive`
stops it at the size limit, so a large upload is refused before it is read whole.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import BinaryIO

KEEP_FOR = timedelta(hours=2)
# The other fields of the upload form (CSRF token, multipart boundaries and headers) fit in this.
FORM_OVERHEAD = 16 * 1024
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{22}$")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


class UploadTooLarge(Exception):
    """The request body passed the upload limit: reading stopped there."""


def limited_receive(receive, limit: int):
    """An ASGI receive that raises UploadTooLarge once more than `limit` body bytes came in."""
    seen = 0

    async def wrapped():
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            raise UploadTooLarge
        return message

    return wrapped


def display_name(filename: str | None) -> str:
    """A browser's file name made safe to show and to name the file in messages."""
    name = _UNPRINTABLE.sub("", (filename or "").replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:100] or "upload"


@dataclass
class Upload:
    token: str
    folder: Path
    owner: str  # the uploading user's email
    name: str  # the file's name as uploaded (display_name)
    size: int
    uploaded_at: datetime
    summary: dict | None = None  # the import's summary, once imported

    @property
    def file(self) -> Path:
        return self.folder / "upload"

    @property
    def rejects(self) -> Path:
        return self.folder / "rejected.csv"

    @property
    def imported(self) -> bool:
        return self.summary is not None

    def expires_at(self) -> datetime:
        return self.uploaded_at + KEEP_FOR


class Uploads:
    """The folder of uploads (settings.console_upload_dir, or one in the system's temp dir)."""

    def __init__(self, root: Path | None):
        self.root = Path(root) if root else Path(tempfile.gettempdir()) / "campaign-console-uploads"

    def _ensure_root(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)

    def add(self, source: BinaryIO, *, owner: str, name: str, now: datetime, max_bytes: int) -> Upload | None:
        """Copy an uploaded file into a new upload; None (and nothing kept) when it is larger
        than `max_bytes`."""
        self._ensure_root()
        # Made under a name the sweep ignores, and renamed once its meta.json is there.
        upload = Upload(secrets.token_urlsafe(16), Path(tempfile.mkdtemp(dir=self.root)), owner, name, 0, now)
        self.save(upload)
        upload.folder = upload.folder.rename(self.root / upload.token)
        descriptor = os.open(upload.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as target:
            while chunk := source.read(1024 * 1024):
                upload.size += len(chunk)
                if upload.size > max_bytes:
                    break
                target.write(chunk)
        if upload.size > max_bytes:
            self.discard(upload)
            return None
        self.save(upload)
        return upload

    def save(self, upload: Upload) -> None:
        values = {**asdict(upload), "folder": None, "uploaded_at": upload.uploaded_at.isoformat()}
        temporary = upload.folder / "meta.json.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            json.dump(values, out)
        temporary.replace(upload.folder / "meta.json")

    def find(self, token: str, owner: str, now: datetime) -> Upload | None:
        """The owner's upload with this token, while it is kept; None otherwise (another user's
        upload is not told apart from a missing one)."""
        if not _TOKEN.match(token):
            return None
        upload = self._read(self.root / token)
        if upload is None or upload.owner != owner:
            return None
        if now >= upload.expires_at():
            self.discard(upload)
            return None
        return upload

    def _read(self, folder: Path) -> Upload | None:
        try:
            values = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            values["uploaded_at"] = datetime.fromisoformat(values["uploaded_at"])
            return Upload(**{**values, "folder": folder})
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def drop_file(self, upload: Upload) -> None:
        """Delete the uploaded file itself (after its import); the summary and rejects stay."""
        upload.file.unlink(missing_ok=True)

    def discard(self, upload: Upload) -> None:
        shutil.rmtree(upload.folder, ignore_errors=True)

    def sweep(self, now: datetime) -> int:
        """Delete every upload older than KEEP_FOR (and any folder without readable meta)."""
        removed = 0
        if not self.root.is_dir():
            return 0
        for folder in self.root.iterdir():
            if not folder.is_dir() or not _TOKEN.match(folder.name):
                continue
            upload = self._read(folder)
            if upload is None or now >= upload.expires_at():
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        return removed
