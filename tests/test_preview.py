"""Previews: the gallery (every card, both widths, text part, lint, approval state), one email
for one lead, the CLI, and the gallery opened in a real headless Chromium."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, distinct_colours
from conftest import utc
from typer.testing import CliRunner

from campaign.approval import approve
from campaign.audiences import load_audiences
from campaign.cli import app
from campaign.lint import PLACEHOLDER_TOKEN
from campaign.preview import SAMPLE_REPORTED, preview_one, single_html, write_gallery
from campaign.render import Renderer
from campaign.settings import PROJECT_ROOT

runner = CliRunner()


def shipped_templates() -> list[str]:
    return [s.template for a in load_audiences(PROJECT_ROOT / "audiences") for s in a.steps]


class Cards(HTMLParser):
    """Each <article class="card">: its attributes, iframes, <pre> text and all its text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.cards: dict[str, dict] = {}
        self.current: dict | None = None
        self.depth = 0
        self.in_pre = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "article" and "card" in (a.get("class") or "").split():
            self.current = {"attrs": a, "iframes": [], "pre": "", "text": ""}
            self.cards[a["data-template"]] = self.current
            self.depth = 1
            return
        if self.current is None:
            return
        if tag == "article":
            self.depth += 1
        if tag == "iframe":
            self.current["iframes"].append(a)
        if tag == "pre":
            self.in_pre = True
        if tag == "span" and "badge" in (a.get("class") or ""):
            self.current.setdefault("badges", []).append(a.get("class"))

    def handle_endtag(self, tag):
        if self.current is None:
            return
        if tag == "pre":
            self.in_pre = False
        if tag == "article":
            self.depth -= 1
            if self.depth == 0:
                self.current = None

    def handle_data(self, data):
        if self.current is not None:
            self.current["text"] += data
            if self.in_pre:
                self.current["pre"] += data


def parse_cards(html: str) -> dict[str, dict]:
    parser = Cards()
    parser.feed(html)
    return parser.cards


@pytest.fixture
def content(tmp_path):
    target = tmp_path / "content"
    shutil.copytree(PROJECT_ROOT / "templates", target / "templates")
    shutil.copytree(PROJECT_ROOT / "audiences", target / "audiences")
    shutil.copy(PROJECT_ROOT / "clinic.yaml", target / "clinic.yaml")
    return target


# ---- the gallery ----------------------------------------------------------------------------------


def test_gallery_has_every_email_with_both_widths_text_lint_and_draft_state(settings, sqlite_store, tmp_path):
    index = write_gallery(settings, tmp_path / "out", store=sqlite_store)
    assert index == tmp_path / "out" / "index.html"
    cards = parse_cards(index.read_text(encoding="utf-8"))
    names = shipped_templates()
    assert sorted(cards) == sorted(names) and len(cards) == 20
    renderer = Renderer(settings.templates_dir, settings.clinic)
    days = {s.template: s.delay.days for a in load_audiences(settings.audiences_dir) for s in a.steps}
    for name, card in cards.items():
        anxiety_type, prior_treatments = SAMPLE_REPORTED[name.split("/")[0]]  # the audience's sample lead
        email = renderer.render(
            name,
            first_name="Sam",
            unsubscribe_url=f"{settings.public_url}/unsubscribe/{PLACEHOLDER_TOKEN}",
            anxiety_type=anxiety_type,
            prior_treatments=prior_treatments,
        )
        frames = {f["class"]: f for f in card["iframes"]}
        assert set(frames) == {"phone", "desktop"}, name
        for frame in frames.values():  # the rendered email itself, inline (self-contained)
            assert email.subject in frame["srcdoc"] and PLACEHOLDER_TOKEN in frame["srcdoc"]
            assert "Fresh Start Ketamine" in frame["srcdoc"] and "988" in frame["srcdoc"]
        assert "375 px" in card["text"] and "640 px" in card["text"]
        assert card["pre"].strip() == email.text.strip()  # the text part, whole
        assert card["pre"].startswith("Hi Sam,")
        assert email.subject in card["text"] and email.preheader in card["text"]
        assert f"Day {days[name]}" in card["text"]
        assert (
            "lint ok" in card["text"]
            and "No problems found." in card["text"]
            and "Flesch-Kincaid" in card["text"]
        )
        assert card["attrs"]["data-approved"] == "false" and "DRAFT" in card["text"]  # shipped unapproved
        # Each email also on its own page.
        own = tmp_path / "out" / f"{name}.html"
        assert list(parse_cards(own.read_text(encoding="utf-8"))) == [name]


def test_gallery_shows_approval_and_changes_since(make_settings, content, tmp_path):
    from campaign.runtime import open_store

    settings = make_settings(content_dir=content)
    store = open_store(settings)
    try:
        approve(
            store,
            Renderer(settings.templates_dir, settings.clinic),
            ["gad/welcome", "gad/brain"],
            by="Dr. Jane Lee",
            now=utc(2026, 3, 2, 15),
        )
        brain = content / "templates" / "gad" / "brain.md"
        brain.write_text(brain.read_text(encoding="utf-8") + "\nOne more short line.\n", encoding="utf-8")
        cards = parse_cards(
            write_gallery(settings, tmp_path / "out", store=store).read_text(encoding="utf-8")
        )
    finally:
        store.close()
    welcome, brain_card = cards["gad/welcome"], cards["gad/brain"]
    assert welcome["attrs"]["data-approved"] == "true"
    assert "APPROVED" in welcome["text"] and "DRAFT" not in welcome["text"]
    assert "approved by Dr. Jane Lee on 2026-03-02" in welcome["text"]
    assert brain_card["attrs"]["data-approved"] == "false"
    assert "DRAFT" in brain_card["text"] and "changed since Dr. Jane Lee approved it" in brain_card["text"]
    assert sum(c["attrs"]["data-approved"] == "true" for c in cards.values()) == 1


def test_gallery_shows_lint_problems_on_the_right_card(make_settings, content, tmp_path):
    path = content / "templates" / "social" / "questions.md"
    text = path.read_text(encoding="utf-8")
    start = text.index("subject:")
    end = text.index("\n", start)
    path.write_text(text[:start] + 'subject: "Help for your anxiety"' + text[end:], encoding="utf-8")
    cards = parse_cards(
        write_gallery(make_settings(content_dir=content), tmp_path / "out").read_text(encoding="utf-8")
    )
    bad = cards["social/questions"]
    assert int(bad["attrs"]["data-lint-errors"]) >= 1
    assert (
        "health-in-subject" in bad["text"] and "'anxiety'" in bad["text"] and "lint error(s)" in bad["text"]
    )
    assert all(c["attrs"]["data-lint-errors"] == "0" for n, c in cards.items() if n != "social/questions")


def test_a_template_that_does_not_render_still_gets_its_card(make_settings, content, tmp_path):
    (content / "templates" / "gad" / "brain.md").write_text("no front matter here\n", encoding="utf-8")
    cards = parse_cards(
        write_gallery(make_settings(content_dir=content), tmp_path / "out").read_text(encoding="utf-8")
    )
    assert len(cards) == 20
    broken = cards["gad/brain"]
    assert (
        "Does not render" in broken["text"] and "front matter" in broken["text"] and broken["iframes"] == []
    )


def test_one_email_for_a_hostile_name_is_escaped(settings):
    name = "<script>alert(1)</script>"
    card = preview_one(settings, "gad", "welcome", first_name=name)
    page = single_html(card, settings.clinic.name, first_name=name, approvals_known=False)
    assert card.text.startswith(f"Hi {name},")  # the text part keeps the value as given
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)" in page
    assert list(parse_cards(page)) == ["gad/welcome"]
    with pytest.raises(LookupError, match="welcome"):
        preview_one(settings, "gad", "nope")
    with pytest.raises(LookupError, match="social"):
        preview_one(settings, "nope", "welcome")


# ---- the CLI --------------------------------------------------------------------------------------


@pytest.fixture
def env(settings, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("CAMPAIGN_PUBLIC_URL", settings.public_url)
    monkeypatch.setenv("CAMPAIGN_SECRET_KEY", "cli-test-secret")
    monkeypatch.setenv("COLUMNS", "200")
    return settings


def test_cli_preview_gallery_without_a_database_creates_none(env, tmp_path):
    result = runner.invoke(app, ["preview", "--out", str(tmp_path / "gallery")])
    assert result.exit_code == 0, result.output
    index = tmp_path / "gallery" / "index.html"
    assert str(index) in result.output.replace("\n", "") and "20 emails (20 DRAFT)" in result.output
    assert len(parse_cards(index.read_text(encoding="utf-8"))) == 20
    assert not Path(env.database_url.removeprefix("sqlite:///")).exists()


def test_cli_preview_one_email_for_a_lead(env, tmp_path):
    leads = tmp_path / "leads.csv"
    leads.write_text("Email,First Name,Consent,Anxiety\nann@example.com,Annabel,yes,GAD\n")
    assert runner.invoke(app, ["import", str(leads)]).exit_code == 0
    out = tmp_path / "one" / "welcome.html"
    result = runner.invoke(app, ["preview", "gad", "welcome", "--lead", "ann@example.com", "--out", str(out)])
    assert result.exit_code == 0, result.output
    renderer = Renderer(env.templates_dir, env.clinic)
    email = renderer.render(
        "gad/welcome", first_name="Annabel", unsubscribe_url="https://x.example/unsubscribe/t"
    )
    assert f"Subject:   {email.subject}" in result.output and f"Preheader: {email.preheader}" in result.output
    assert "Hi Annabel," in result.output and "DRAFT" in result.output and "reading grade" in result.output
    assert str(out.resolve()) in result.output.replace("\n", "")
    page = out.read_text(encoding="utf-8")
    assert "Hi Annabel," in page and PLACEHOLDER_TOKEN in page  # never the lead's real unsubscribe token
    # Without --lead: the sample lead, Sam; default file name in the current folder.
    sample = runner.invoke(app, ["preview", "social", "brain", "--out", str(tmp_path / "s.html")])
    assert sample.exit_code == 0 and "Hi Sam," in sample.output


def test_cli_preview_bad_input(env, tmp_path):
    assert runner.invoke(app, ["preview", "gad"]).exit_code == 2  # STEP missing
    assert runner.invoke(app, ["preview", "gad", "nope", "--out", str(tmp_path / "x.html")]).exit_code == 2
    assert runner.invoke(app, ["preview", "--lead", "a@example.com"]).exit_code == 2
    leads = tmp_path / "leads.csv"
    leads.write_text("Email,Consent\nann@example.com,yes\n")
    runner.invoke(app, ["import", str(leads)])
    missing = runner.invoke(
        app, ["preview", "gad", "welcome", "--lead", "nobody@example.com", "--out", str(tmp_path / "x.html")]
    )
    assert missing.exit_code == 1 and "nobody@example.com" in missing.output
    assert not (tmp_path / "x.html").exists()


def test_cli_lint_passes_on_shipped_content_and_prints_grades(env):
    result = runner.invoke(app, ["lint"])
    assert result.exit_code == 0, result.output
    assert "grade" in result.output and "20 emails, no errors" in result.output
    for audience in ("gad", "social", "treatment_resistant", "general"):
        assert audience in result.output
    import json

    data = json.loads(runner.invoke(app, ["lint", "--json"]).stdout)
    assert data["ok"] is True and data["errors"] == 0 and len(data["grades"]) == 20
    assert all(g <= 8 for g in data["grades"].values())


def test_cli_lint_fails_naming_the_file_and_the_fix(env, content, monkeypatch):
    monkeypatch.setenv("CAMPAIGN_CONTENT_DIR", str(content))
    path = content / "templates" / "gad" / "ketamine.md"
    # The off-label statement comes from a shared partial: drop the include.
    without = path.read_text(encoding="utf-8").replace('{% include "partials/off_label.md" %}', "")
    path.write_text(without, encoding="utf-8")
    result = runner.invoke(app, ["lint"])
    assert result.exit_code == 1
    assert (
        "ketamine.md" in result.output
        and "off-label" in result.output
        and "add a plain sentence" in result.output
    )
    import json

    data = json.loads(runner.invoke(app, ["lint", "--json"]).stdout)
    assert data["ok"] is False and any(
        p["rule"] == "off-label" and p["file"].endswith("gad/ketamine.md") for p in data["problems"]
    )


# ---- a real browser -------------------------------------------------------------------------------


@pytest.mark.browser
def test_gallery_in_headless_chromium(settings, sqlite_store, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not at /usr/bin/chromium (apt-get install -y chromium); .ci/run installs it"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    index = write_gallery(settings, tmp_path / "gallery", store=sqlite_store)
    expected = shipped_templates()
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            blank = page.screenshot()  # about:blank: one colour, the baseline
            page.goto(index.as_uri())
            page.wait_for_load_state("load")
            cards = page.locator("article.card")
            assert cards.count() == 20
            assert sorted(cards.evaluate_all("els => els.map(e => e.dataset.template)")) == sorted(expected)
            assert page.locator("article.card .badge.draft").count() == 20
            # Every frame shows its email (frames grow to their email's height once loaded).
            assert page.locator("iframe.phone").count() == 20 and page.locator("iframe.desktop").count() == 20
            first = page.frame_locator("#gad-welcome iframe.phone")
            sync_api.expect(first.get_by_role("link", name="Unsubscribe", exact=True)).to_be_visible()
            heights = page.locator("iframe").evaluate_all(
                "fs => fs.map(f => f.getBoundingClientRect().height)"
            )
            assert min(heights) > 400, heights
            shot_path = tmp_path / "gallery.png"
            shot = page.screenshot(path=str(shot_path))
        finally:
            browser.close()
    assert shot_path.stat().st_size > 10_000
    assert distinct_colours(blank) <= 2
    colours = distinct_colours(shot)
    assert colours > 50, f"the screenshot looks blank: {colours} colours ({shot_path})"
