"""/console/content over real HTTP: every email, one email's frames, text, lint and diff, and a
reviewer's attested approval (a coordinator gets no button and a 403)."""

from __future__ import annotations

import json
import re

import sqlalchemy as sa
from console_pages_support import NAMED_REVIEWER, audit_actions, edit
from console_support import START, csrf_from
from test_console_security import assert_security_headers

from campaign.approval import approval_state, content_hash
from campaign.console.content import EMAIL_FRAME_HEADERS
from campaign.render import Renderer
from campaign.store import approvals

WELCOME = "/console/content/gad/welcome"
APPROVE = WELCOME + "/approve"
ATTEST_BOX = 'name="attest"'
APPROVE_BUTTON = "Approve this email"


def current_hash(server, template="gad/welcome") -> str:
    s = server.settings
    return content_hash(Renderer(s.templates_dir, s.clinic), template)


def state(server, template="gad/welcome"):
    s = server.settings
    return approval_state(server.store, Renderer(s.templates_dir, s.clinic), [template])[template]


def approval_rows(server) -> list[dict]:
    with server.store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(approvals)).mappings()]


def approve_as(client, *, attest=True, content_hash=None, page=WELCOME):
    html = client.get(page).text
    data = {"csrf_token": csrf_from(html)}
    if attest:
        data["attest"] = "yes"
    found = re.search(r'name="content_hash" value="([0-9a-f]*)"', html)
    data["content_hash"] = content_hash if content_hash is not None else (found.group(1) if found else "")
    return client.post(APPROVE, data=data)


def test_index_lists_every_email_with_lint_and_draft_state(content_console):
    for role in ("coordinator", "reviewer"):
        page = content_console.login(role).get("/console/content")
        assert page.status_code == 200
        assert_security_headers(page)
        links = re.findall(r'href="/console/content/(\w+)/(\w+)"', page.text)
        assert len(links) == 20 and ("gad", "welcome") in links
        assert page.text.count(">Draft</span>") == 20
        assert "<strong>20</strong> not approved" in page.text


def test_one_email_shows_both_widths_text_part_and_lint(content_console):
    page = content_console.login("coordinator").get(WELCOME)
    assert page.status_code == 200
    frames = re.findall(r'<iframe class="email-frame" src="([^"]+)"[^>]*width="(\d+)"', page.text)
    assert frames == [(WELCOME + "/email.html", "377"), (WELCOME + "/email.html", "642")]
    assert 'sandbox="allow-popups allow-popups-to-escape-sandbox"' in page.text
    assert (
        '<pre class="text-part" tabindex="0" role="region" aria-label="The text part of the email">'
        in page.text
        and "Sam" in page.text
    )
    assert "Flesch-Kincaid" in page.text
    assert "never approved" in page.text
    assert "frame-src 'self'" in page.headers["content-security-policy"]


def test_the_framed_email_has_its_own_policy_framed_by_the_console_only(content_console):
    client = content_console.login("coordinator")
    frame = client.get(WELCOME + "/email.html")
    assert frame.status_code == 200
    for name, value in EMAIL_FRAME_HEADERS.items():
        assert frame.headers[name] == value
    csp = frame.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp and "script-src" not in csp and "default-src 'none'" in csp
    assert frame.headers["cache-control"] == "no-store"
    assert '<base target="_blank">' in frame.text and "Sam" in frame.text
    # Every other console page keeps the strict policy.
    assert client.get(WELCOME).headers["x-frame-options"] == "DENY"
    assert client.get("/console/content/gad/nope/email.html").status_code == 404
    assert content_console.client().get(WELCOME + "/email.html").status_code == 303  # login first


def test_a_coordinator_sees_no_approve_button_and_a_post_is_refused(content_console):
    coordinator = content_console.login("coordinator")
    page = coordinator.get(WELCOME)
    assert APPROVE_BUTTON not in page.text and ATTEST_BOX not in page.text
    refused = coordinator.post(
        APPROVE,
        data={
            "csrf_token": csrf_from(page.text),
            "attest": "yes",
            "content_hash": current_hash(content_console),
        },
    )
    assert refused.status_code == 403
    assert approval_rows(content_console) == [] and not state(content_console).approved
    assert audit_actions(content_console, "content.approve") == []


def test_a_reviewer_approves_with_the_attestation_and_it_records_who_role_when_and_what(
    content_console, console_clock
):
    reviewer = content_console.login(email=NAMED_REVIEWER)
    page = reviewer.get(WELCOME)
    assert APPROVE_BUTTON in page.text and "I reviewed this email for medical accuracy." in page.text
    assert re.search(r'<input type="checkbox" id="attest" name="attest" value="yes" required>', page.text)
    done = approve_as(reviewer)
    assert done.status_code == 303 and done.headers["location"] == WELCOME + "?done=approved"
    [row] = approval_rows(content_console)
    assert row["template"] == "gad/welcome" and row["content_hash"] == current_hash(content_console)
    assert (row["approved_by"], row["approved_role"], row["approved_at"]) == (
        "Dr. Jane Lee",
        "reviewer",
        START,
    )
    kept = dict(json.loads(row["source_text"]))
    assert set(kept) == {"gad/welcome.md", "layout.mjml", "layout.txt"}
    assert kept["gad/welcome.md"] == (content_console.settings.templates_dir / "gad/welcome.md").read_text()
    [entry] = audit_actions(content_console, "content.approve")
    assert (entry.actor, entry.role, entry.object_type, entry.object_id) == (
        NAMED_REVIEWER,
        "reviewer",
        "template",
        "gad/welcome",
    )
    assert entry.detail.startswith(f"content {row['content_hash'][:16]}")
    after = reviewer.get(done.headers["location"])
    assert "Approved. The approval records" in after.text
    assert "Dr. Jane Lee (reviewer)" in after.text and APPROVE_BUTTON not in after.text
    assert "Nothing: this is the approved content." in after.text
    index = reviewer.get("/console/content").text
    assert index.count(">Draft</span>") == 19 and index.count(">Approved</span>") == 1


def test_approval_without_the_attestation_or_for_changed_content_records_nothing(
    content_console, console_content_dir
):
    reviewer = content_console.login("reviewer")
    unticked = approve_as(reviewer, attest=False)
    assert unticked.status_code == 400 and "Tick the box" in unticked.text
    seen = current_hash(content_console)
    edit(
        console_content_dir / "templates/layout.txt", "\n", "\n\n"
    )  # the file changes after the page was read
    stale = approve_as(reviewer, content_hash=seen)
    assert stale.status_code == 400 and "changed after you opened it" in stale.text
    assert approval_rows(content_console) == []
    no_csrf = reviewer.post(APPROVE, data={"attest": "yes", "content_hash": current_hash(content_console)})
    assert no_csrf.status_code == 403 and approval_rows(content_console) == []


def test_after_an_edit_the_page_shows_a_line_diff_against_the_approved_text(
    content_console, console_content_dir
):
    reviewer = content_console.login("reviewer")
    assert approve_as(reviewer).status_code == 303
    path = console_content_dir / "templates/gad/welcome.md"
    first_line = next(line for line in path.read_text().splitlines()[4:] if line.strip())
    edit(path, first_line, "A brand new opening line for the review.")
    page = reviewer.get(WELCOME)
    assert "changed since" in page.text and APPROVE_BUTTON in page.text
    assert "<code>gad/welcome.md</code>" in page.text
    assert re.search(r'<span class="add"><span class="sign">added</span>A brand new opening line', page.text)
    removed = re.search(r'<span class="remove"><span class="sign">removed</span>([^<]*)</span>', page.text)
    assert removed and removed.group(1).strip() in first_line.replace("'", "&#39;").replace('"', "&#34;")
    assert "layout.mjml" not in page.text  # unchanged files are not listed
    assert ">Draft</span>" in reviewer.get("/console/content").text


def test_an_approval_kept_without_its_text_says_so(content_console):
    store, s = content_console.store, content_console.settings
    old_hash = "0" * 64
    store.record_approval("gad/welcome", old_hash, "Dr. Old", START)  # as before 0007: no text kept
    page = content_console.login("reviewer").get(WELCOME)
    assert "recorded before the console kept approved text" in page.text
    assert store.approval_record("gad/welcome")["source_text"] is None
    assert current_hash(content_console) != old_hash and s.templates_dir.exists()


def test_a_lint_error_blocks_the_approval(content_console, console_content_dir):
    edit(console_content_dir / "templates/gad/welcome.md", "subject:", "subject: Ketamine for anxiety ·")
    reviewer = content_console.login("reviewer")
    page = reviewer.get(WELCOME)
    assert "Lint found" in page.text and APPROVE_BUTTON not in page.text
    refused = reviewer.post(
        APPROVE,
        data={
            "csrf_token": csrf_from(page.text),
            "attest": "yes",
            "content_hash": current_hash(content_console),
        },
    )
    assert refused.status_code == 400 and "Lint found" in refused.text
    assert approval_rows(content_console) == []


def test_unknown_emails_are_a_friendly_404(content_console):
    client = content_console.login("reviewer")
    for path in ("/console/content/gad/nope", "/console/content/nobody/welcome"):
        page = client.get(path)
        assert page.status_code == 404 and "Traceback" not in page.text
    assert (
        client.post_form("/console/content/gad/nope/approve", {"attest": "yes"}, page=WELCOME).status_code
        == 404
    )


def test_changes_since_lists_only_changed_files_line_by_line():
    from campaign.approval import DiffLine, FileDiff, approved_parts, changes_since

    approved = [("a.md", "one\ntwo\nthree\n"), ("layout.txt", "footer\n"), ("gone.txt", "x\n")]
    current = [("a.md", "one\n2\nthree\n"), ("layout.txt", "footer\n"), ("new.txt", "y\n")]
    assert changes_since(approved, current) == [
        FileDiff(
            "a.md",
            [
                DiffLine("hunk", "From line 1 of the current file:"),
                DiffLine("same", "one"),
                DiffLine("remove", "two"),
                DiffLine("add", "2"),
                DiffLine("same", "three"),
            ],
        ),
        FileDiff("new.txt", [DiffLine("hunk", "From line 1 of the current file:"), DiffLine("add", "y")]),
        FileDiff("gone.txt", [DiffLine("hunk", "From line 1 of the current file:"), DiffLine("remove", "x")]),
    ]
    assert changes_since(current, current) == []
    assert approved_parts(None) is None and approved_parts(json.dumps(approved)) == approved


def test_the_0007_migration_matches_the_schema_and_downgrades(store, database_url):
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from campaign.store import alembic_config, metadata

    def approval_diffs() -> list:
        with store.engine.connect() as conn:
            found = compare_metadata(MigrationContext.configure(conn), metadata)
        return [d for d in found if "approvals" in repr(d)]

    def columns() -> set[str]:
        return {c["name"] for c in sa.inspect(store.engine).get_columns("approvals")}

    assert {"approved_role", "source_text"} <= columns() and approval_diffs() == []
    store.record_approval("gad/welcome", "a" * 64, "Dr. Lee", START, role="reviewer", source_text="[]")
    cfg = alembic_config(database_url)
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0005_console")
    assert not {"approved_role", "source_text"} & columns()
    store.migrate()
    assert approval_diffs() == []
    kept = store.approval_record("gad/welcome")
    assert (kept["approved_by"], kept["approved_role"], kept["source_text"]) == ("Dr. Lee", "", None)


def test_approving_again_keeps_the_first_sign_off_and_fills_in_a_missing_text(store):
    from campaign.approval import approve
    from campaign.settings import get_settings

    s = get_settings()
    renderer = Renderer(s.templates_dir, s.clinic)
    current = content_hash(renderer, "gad/welcome")
    store.record_approval("gad/welcome", current, "Dr. Old", START)  # no text kept
    [again] = approve(store, renderer, ["gad/welcome"], by="Dr. New", role="reviewer", now=START)
    assert not again.new and again.by == "Dr. Old"
    kept = store.approval_record("gad/welcome", current)
    assert kept["approved_by"] == "Dr. Old" and json.loads(kept["source_text"])[0][0] == "gad/welcome.md"
