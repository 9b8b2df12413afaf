"""The console's lead import over real HTTP: upload, preview with the columns' fields (changed
by the user), a dry run that writes nothing, the import, the rejected rows as CSV; the upload
limit, streamed or declared; role checks, ownership, expiry and the audit trail."""

from __future__ import annotations

import csv
import io
import re
from html import unescape

import httpx
import pytest
from console_support import Clock, serve_console

from campaign.accounts import list_audit
from campaign.models import AnxietyType, LeadIn

ODD_CSV = (
    "Electronic mail,Given,Family name,What worries you,Consent to email?\r\n"
    "a@example.com,Ann,Lee,GAD,yes\r\n"
    "bad-address,Bob,Ray,social,yes\r\n"
    "b@example.com,Bea,Kim,,yes\r\n"
    "c@example.com,Cy,Doe,,no\r\n"
)
MAPPING = {
    "col-0": "email",
    "col-1": "first_name",
    "col-2": "last_name",
    "col-3": "anxiety_type",
    "col-4": "consent",
}
HIDDEN = re.compile(r'<input type="hidden" name="(col-\d+)" value="([^"]*)">')


@pytest.fixture
def server(make_settings, tmp_path):
    settings = make_settings(console_upload_dir=tmp_path / "uploads", console_upload_max_bytes=20 * 1024)
    with serve_console(settings, Clock()) as running:
        running.store.upsert_leads(
            [
                LeadIn(
                    email="a@example.com", first_name="Annie", last_name="Lee", anxiety_type=AnxietyType.gad
                ),
                LeadIn(email="c@example.com", first_name="Cy", last_name="Doe"),
            ],
            running.clock(),
        )
        yield running


def upload(client: httpx.Client, content: bytes, name: str = "odd.csv") -> httpx.Response:
    token = client.csrf("/console/import")
    return client.post(
        "/console/import", data={"csrf_token": token}, files={"file": (name, content, "text/csv")}
    )


def uploaded_token(response: httpx.Response) -> str:
    assert response.status_code == 303, (response.status_code, response.text[:300])
    found = re.fullmatch(r"/console/import/([A-Za-z0-9_-]{22})", response.headers["location"])
    assert found, response.headers["location"]
    return found.group(1)


def emails(server) -> set[str]:
    return {row["email"] for row in server.store.lead_overview()}


def counts(html: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r'<dd id="count-(\w+)">(\d+)</dd>', html)}


def actions(server) -> list[str]:
    return [e.action for e in reversed(list_audit(server.accounts, limit=100).entries)]


def test_upload_map_check_import_and_download_the_rejects(server, tmp_path):
    coordinator = server.login("coordinator")
    token = uploaded_token(upload(coordinator, ODD_CSV.encode()))
    folder = tmp_path / "uploads" / token
    assert (folder / "upload").read_bytes() == ODD_CSV.encode()

    first = coordinator.get(f"/console/import/{token}")
    assert first.status_code == 200
    text = unescape(first.text)
    assert "No column is read as the email address" in text and "count-new" not in text
    assert '<option value="last_name" selected>' in text  # "Family name" by its header alone
    assert '<td data-label="First values">a@example.com, bad-address, b@example.com' in text

    checked = coordinator.get(f"/console/import/{token}", params=MAPPING)
    assert checked.status_code == 200
    assert counts(checked.text) == {"new": 1, "updated": 1, "unchanged": 1, "rejected": 1}
    assert re.search(
        r'"num">3</td><td data-label="Why">email \'bad-address\' is not valid', unescape(checked.text)
    )
    assert '--column "Electronic mail=email"' in unescape(checked.text)
    assert emails(server) == {"a@example.com", "c@example.com"}  # the dry run wrote nothing
    assert server.store.lead_by_email("a@example.com").first_name == "Annie"

    hidden = dict(HIDDEN.findall(checked.text))
    assert hidden == MAPPING
    done = coordinator.post_form(f"/console/import/{token}", hidden, page=f"/console/import/{token}")
    assert done.status_code == 303 and done.headers["location"] == f"/console/import/{token}"
    assert emails(server) == {"a@example.com", "b@example.com", "c@example.com"}
    assert server.store.lead_by_email("a@example.com").first_name == "Ann"
    assert not (folder / "upload").exists()  # the file is deleted once imported

    result = coordinator.get(f"/console/import/{token}")
    assert "1 new, 1 updated,\n1 unchanged, 1 rejected" in result.text
    rejects = coordinator.get(f"/console/import/{token}/rejected.csv")
    assert rejects.status_code == 200 and rejects.headers["content-type"].startswith("text/csv")
    assert 'filename="odd.rejected.csv"' in rejects.headers["content-disposition"]
    assert rejects.headers["cache-control"] == "no-store"
    (row,) = list(csv.DictReader(io.StringIO(rejects.text)))
    assert (
        row["row_number"] == "3" and row["Electronic mail"] == "bad-address" and "not valid" in row["reason"]
    )

    again = coordinator.post_form(f"/console/import/{token}", hidden, page="/console/import")
    assert again.status_code == 303  # imported once only
    assert actions(server)[-3:] == ["import.upload", "import", "import.rejects_download"]
    (entry,) = list_audit(server.accounts, action="import").entries
    assert entry.object_id == token and entry.detail == "odd.csv: 1 new, 1 updated, 1 unchanged, 1 rejected"


def test_an_xlsx_file_imports_like_a_csv(server):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["Email", "First Name", "Consent"])
    book.active.append(["x1@example.com", "Xia", True])
    book.active.append(["x2@example.com", "Xavi", False])
    data = io.BytesIO()
    book.save(data)
    coordinator = server.login("admin")
    token = uploaded_token(upload(coordinator, data.getvalue(), "leads.xlsx"))
    checked = coordinator.get(f"/console/import/{token}")
    assert counts(checked.text) == {"new": 2, "updated": 0, "unchanged": 0, "rejected": 0}
    coordinator.post_form(
        f"/console/import/{token}", dict(HIDDEN.findall(checked.text)), page=f"/console/import/{token}"
    )
    assert server.store.lead_by_email("x1@example.com").consent is True


def test_a_column_can_be_left_out(server):
    coordinator = server.login("coordinator")
    token = uploaded_token(upload(coordinator, ODD_CSV.encode()))
    checked = coordinator.get(f"/console/import/{token}", params={**MAPPING, "col-2": "skip"})
    assert '<option value="skip" selected>not imported</option>' in checked.text
    coordinator.post_form(
        f"/console/import/{token}", dict(HIDDEN.findall(checked.text)), page=f"/console/import/{token}"
    )
    assert server.store.lead_by_email("b@example.com").last_name == ""


def test_an_unreadable_file_is_a_clear_error_and_imports_nothing(server):
    coordinator = server.login("coordinator")
    token = uploaded_token(upload(coordinator, b"\x00\x01binary\x00" * 50, "photo.csv"))
    page = coordinator.get(f"/console/import/{token}")
    assert page.status_code == 400 and "photo.csv is not a CSV file" in unescape(page.text)
    assert "Traceback" not in page.text and HIDDEN.search(page.text) is None  # no import button


def test_a_declared_too_large_upload_is_refused_with_a_clear_page(server, tmp_path):
    coordinator = server.login("coordinator")
    refused = upload(coordinator, b"email\r\n" + b"x@example.com\r\n" * 3000)
    assert refused.status_code == 303 and refused.headers["location"] == "/console/import?problem=too-large"
    page = coordinator.get(refused.headers["location"])
    assert page.status_code == 200 and "larger than 20 KB" in page.text
    assert not list((tmp_path / "uploads").glob("*/upload"))


def test_a_streamed_upload_is_cut_off_at_the_limit(server, tmp_path):
    coordinator = server.login("coordinator")
    token = coordinator.csrf("/console/import")
    boundary = "b0undary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{token}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\nemail\r\n"
    ).encode()

    def body():  # no Content-Length: sent chunked, so only counting can stop it
        yield head
        for _ in range(100):
            yield b"someone@example.com\r\n" * 50
        yield f"\r\n--{boundary}--\r\n".encode()

    refused = coordinator.post(
        "/console/import",
        content=body(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert refused.status_code == 303 and refused.headers["location"] == "/console/import?problem=too-large"
    assert not list((tmp_path / "uploads").glob("*/upload"))
    assert "import.upload" not in actions(server)


def test_no_file_chosen_says_so(server):
    coordinator = server.login("coordinator")
    sent = upload(coordinator, b"", name="")
    assert sent.status_code == 303 and sent.headers["location"] == "/console/import?problem=no-file"
    assert "Choose a file first" in coordinator.get(sent.headers["location"]).text


def test_a_reviewer_cannot_import(server):
    reviewer = server.login("reviewer")
    assert reviewer.get("/console/import").status_code == 403
    token = reviewer.csrf("/console/")
    refused = reviewer.post(
        "/console/import",
        data={"csrf_token": token},
        files={"file": ("a.csv", b"email\r\nz@example.com\r\n")},
    )
    assert refused.status_code == 403
    assert 'href="/console/import"' not in reviewer.get("/console/").text
    assert "z@example.com" not in emails(server)


def test_an_upload_is_its_owners_and_expires(server, tmp_path):
    coordinator = server.login("coordinator")
    token = uploaded_token(upload(coordinator, ODD_CSV.encode()))
    admin = server.login("admin")
    assert admin.get(f"/console/import/{token}").status_code == 404
    refused = admin.post_form(f"/console/import/{token}", MAPPING, page="/console/import")
    assert refused.status_code == 404 and emails(server) == {"a@example.com", "c@example.com"}
    server.clock.advance(minutes=121)
    coordinator = server.login("coordinator")  # the old session timed out meanwhile
    gone = coordinator.get(f"/console/import/{token}")
    assert gone.status_code == 404 and "kept for 2 hours" in gone.text
    assert not (tmp_path / "uploads" / token).exists()


def test_cancel_deletes_the_upload(server, tmp_path):
    coordinator = server.login("coordinator")
    token = uploaded_token(upload(coordinator, ODD_CSV.encode()))
    done = coordinator.post_form(f"/console/import/{token}/discard", page=f"/console/import/{token}")
    assert done.status_code == 303 and not (tmp_path / "uploads" / token).exists()
    assert "deleted" in coordinator.get(done.headers["location"]).text


def test_other_console_posts_keep_the_small_body_limit(server):
    coordinator = server.login("coordinator")
    token = uploaded_token(upload(coordinator, ODD_CSV.encode()))
    big = coordinator.post(f"/console/import/{token}", data={"csrf_token": "x", "pad": "p" * 100_000})
    assert big.status_code == 413
