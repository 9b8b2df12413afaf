"""/console/import: upload a lead file (.csv or .xlsx), check it (a preview of the first rows
with the field each column gives, changeable, and a dry run: new, updated, unchanged, rejected
with reasons), then import it and download its rejected rows. Nothing is written to the
database before the import button.

The upload's body streams to a temporary file through a size limit (settings
console_upload_max_bytes; campaign.web leaves this one path to it). The file waits in a private
folder (uploads.py) between the check and the import, and is deleted right after the import.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from campaign.accounts import audit
from campaign.app.leads import ImportPreview, column_overrides, import_file, preview_import
from campaign.console.pages import PageRequest, console_of, require
from campaign.console.security import PREFIX
from campaign.console.uploads import (
    FORM_OVERHEAD,
    Upload,
    Uploads,
    UploadTooLarge,
    display_name,
    limited_receive,
)
from campaign.leads import SKIP, ImportFileError

PROBLEMS = {
    "too-large": "That file is larger than {limit}, the most the console accepts. Split it into smaller "
    "files, or save it as .xlsx (smaller than CSV for the same rows), and upload again.",
    "no-file": "Choose a file first: a .csv or .xlsx export of the lead form.",
}
NOTICES = {"discarded": "The upload and its rejected rows are deleted."}
GONE = (
    "This upload is no longer here: an upload is kept for 2 hours, and only for the person who "
    "uploaded it. Upload the file again."
)
NO_EMAIL = (
    "No column is read as the email address. Choose 'email' for the column that holds the "
    "addresses, then check again."
)
# How much of a refused upload is read (and thrown away) so the browser shows the answer
# instead of a broken connection; a larger one is cut off.
DRAIN_AT_MOST = 256 * 1024 * 1024


def _uploads(page: PageRequest) -> Uploads:
    return Uploads(page.settings.console_upload_dir)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{max(size // 1024, 1)} KB"


@require("import")
def import_form(page: PageRequest) -> Response:
    _uploads(page).sweep(page.now)
    limit = _megabytes(page.settings.console_upload_max_bytes)
    code = page.query.get("problem", "")
    return page.render(
        "import.html",
        title="Import leads",
        limit=limit,
        problem=PROBLEMS[code].format(limit=limit) if code in PROBLEMS else "",
        notice=NOTICES.get(page.query.get("done", ""), ""),
    )


@require("import")
def _receive(page: PageRequest) -> Response:
    """The upload form, read whole by `require` (its file in a temporary file): keep the file."""
    sent = page.form.get("file") if page.form is not None else None
    if not isinstance(sent, UploadFile) or not sent.filename:
        return page.redirect("/import?problem=no-file")
    uploads = _uploads(page)
    uploads.sweep(page.now)
    try:
        upload = uploads.add(
            sent.file,
            owner=page.user.email,
            name=display_name(sent.filename),
            now=page.now,
            max_bytes=page.settings.console_upload_max_bytes,
        )
    finally:
        sent.file.close()  # Starlette's temporary file: deleted on close
    if upload is None:
        return page.redirect("/import?problem=too-large")
    audit(
        page.accounts,
        page.actor,
        "import.upload",
        now=page.now,
        object_type="upload",
        object_id=upload.token,
        detail=f"{upload.name}, {upload.size} bytes",
    )
    return page.redirect(f"/import/{upload.token}")


async def upload(request: Request) -> Response:
    """POST /console/import. A body declared too large is refused before it is read; one that
    grows past the limit is refused as soon as it does. Both answer with the import page and
    a clear message (a redirect, so the browser shows a page, not a broken connection)."""
    limit = console_of(request).settings.console_upload_max_bytes + FORM_OVERHEAD
    declared = request.headers.get("content-length", "")
    too_large = RedirectResponse(f"{PREFIX}/import?problem=too-large", status_code=303)
    if declared.isdigit() and (len(declared) > 15 or int(declared) > limit):
        await _drain(request)
        return too_large
    try:
        return await _receive(Request(request.scope, limited_receive(request.receive, limit)))
    except UploadTooLarge:
        await _drain(request)
        return too_large


async def _drain(request: Request) -> None:
    read = 0
    while read <= DRAIN_AT_MOST:
        message = await request.receive()
        read += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            return


def _find(page: PageRequest) -> Upload | None:
    return _uploads(page).find(page.request.path_params["token"], page.user.email, page.now)


def _gone(page: PageRequest) -> Response:
    return page.render("error.html", title="Upload not found", message=GONE, status=404)


def _choices(page: PageRequest, source, count: int) -> list[str] | None:
    """The field chosen for each column (col-0, col-1 ...), or None when the form gave none."""
    chosen = [source.get(f"col-{i}") for i in range(count)]
    return [c if isinstance(c, str) else SKIP for c in chosen] if any(chosen) else None


@require("import")
def check(page: PageRequest) -> Response:
    """The preview and the dry run for the columns chosen in the query (none: by the headers)."""
    upload = _find(page)
    if upload is None:
        return _gone(page)
    if upload.imported:
        return page.render("import_done.html", title="Imported", upload=upload)
    return _check_page(page, upload, page.query)


def _mapped(page: PageRequest, upload: Upload, source) -> tuple[ImportPreview, dict[str, str]]:
    """The preview with the columns chosen in `source`, and those choices (none: the headers')."""
    preview = preview_import(upload.file, display_name=upload.name)
    choices = _choices(page, source, len(preview.columns))
    if choices is None:
        return preview, {}
    overrides = column_overrides([c.header for c in preview.columns], choices)
    return preview_import(upload.file, overrides, display_name=upload.name), overrides


def _check_page(page: PageRequest, upload: Upload, source, *, error: str = "") -> Response:
    values = {"upload": upload, "preview": None, "summary": None, "overrides": {}, "error": error}
    needs_email = False
    try:
        preview, values["overrides"] = _mapped(page, upload, source)
        values["preview"] = preview
        needs_email = not preview.has_email
        if not needs_email and not values["error"]:
            values["summary"] = import_file(
                page.store,
                page.settings,
                upload.file,
                page.now,
                values["overrides"],
                dry_run=True,
                display_name=upload.name,
            )
    except (ImportFileError, ValueError) as problem:
        values["error"] = str(problem)
    return page.render(
        "import_check.html",
        title=f"Check {upload.name}",
        status=400 if values["error"] else 200,
        needs_email=NO_EMAIL if needs_email else "",
        cli=_cli_hint(upload.name, values["overrides"]),
        **values,
    )


def _cli_hint(name: str, overrides: dict[str, str]) -> str:
    columns = "".join(f' --column "{header}={field}"' for header, field in overrides.items())
    return f'campaign import "{name}"{columns}'


@require("import")
def run_import(page: PageRequest) -> Response:
    upload = _find(page)
    if upload is None:
        return _gone(page)
    if upload.imported:
        return page.redirect(f"/import/{upload.token}")
    try:
        _, overrides = _mapped(page, upload, page.form)
        summary = import_file(
            page.store,
            page.settings,
            upload.file,
            page.now,
            overrides,
            rejects_path=upload.rejects,
            display_name=upload.name,
            actor=page.actor,  # the use case audits it ("import", on the upload)
            audit_object=("upload", upload.token),
        )
    except (ImportFileError, ValueError) as problem:
        return _check_page(page, upload, page.form, error=f"Nothing was imported: {problem}")
    uploads = _uploads(page)
    upload.summary = {**summary.as_dict(), "rejected_file": summary.rejected_file is not None}
    uploads.save(upload)
    uploads.drop_file(upload)  # the file itself is not kept once imported
    return page.redirect(f"/import/{upload.token}")


@require("import")
def rejected_rows(page: PageRequest) -> Response:
    upload = _find(page)
    if upload is None or not upload.rejects.exists():
        return _gone(page)
    audit(
        page.accounts,
        page.actor,
        "import.rejects_download",
        now=page.now,
        object_type="upload",
        object_id=upload.token,
        detail=upload.name,
    )
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", upload.name.rsplit(".", 1)[0])[:60] or "leads"
    return FileResponse(upload.rejects, media_type="text/csv; charset=utf-8", filename=f"{stem}.rejected.csv")


@require("import")
def discard(page: PageRequest) -> Response:
    upload = _find(page)
    if upload is not None:
        _uploads(page).discard(upload)
        audit(
            page.accounts,
            page.actor,
            "import.discard",
            now=page.now,
            object_type="upload",
            object_id=upload.token,
            detail=upload.name,
        )
    return page.redirect("/import?" + urlencode({"done": "discarded"}))


routes = [
    Route("/import", import_form, methods=["GET"]),
    Route("/import", upload, methods=["POST"]),
    Route("/import/{token}", check, methods=["GET"]),
    Route("/import/{token}", run_import, methods=["POST"]),
    Route("/import/{token}/rejected.csv", rejected_rows, methods=["GET"]),
    Route("/import/{token}/discard", discard, methods=["POST"]),
]
