"""Content lint: every rule fails on a seeded bad template, and every shipped email passes.

Each rule test writes a small templates folder (the real layouts, possibly with one seeded
defect, plus one .md) into tmp_path, lints it end to end with lint_templates, and checks that
the errors reported are exactly that rule. ``@seeds(RULE)`` marks such a test: every registered
rule needs one, and the test fails unless it asserts that rule. The compliance and inbox rules
of issue 12 (fair balance, lock screen, calls to action, replies, glossary, SMOG, headings) have
their seeded tests in tests/test_lint_content_rules.py, on this module's harness.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from campaign import lint
from campaign.lint import (
    DEFAULT_HEALTH_TERMS,
    HOSTILE_NAMES,
    Problem,
    body_text,
    errors,
    find_terms,
    lint_email,
    lint_sequence,
    lint_templates,
    registered,
    url_health_terms,
)
from campaign.models import RenderedEmail
from campaign.render import Renderer
from campaign.settings import PROJECT_ROOT, get_settings

TEMPLATES = PROJECT_ROOT / "templates"
AUDIENCES = ("gad", "social", "treatment_resistant", "general")
STEPS = ("welcome", "brain", "ketamine", "treatment", "questions")
UNSUB = "https://freshstartketamine.example/unsubscribe/tok-123"

# A valid email: plain words, the words the sequence rules look for, and one button (md adds it).
GOOD_FRONT = 'subject: "A short note from Fresh Start"\npreheader: "A plain note with no news."'
GOOD_BODY = (
    "Hi {{ greeting_name }},\n\n"
    "This is a short note. We hope you are well.\n\n"
    "We will talk about the intake and the side effects. We will also talk about off-label use: a "
    "use that is not on the label.\n\n"
    "You can stop these notes at any time.\n"
)
# The one primary call to action every email needs (one-primary-cta).
CTA_FRONT = 'cta_text: "Visit our website"\ncta_url: "{{ clinic.website_url }}"'
# A neutral banner: the layout's may still show the clinic's legal name ("Fresh Start Ketamine"),
# which the lock-screen rule rejects; tests that are not about the banner use this one.
NEUTRAL_BANNER = "Fresh Start"
_BANNER = re.compile(r'(<mj-text color="#ffffff"[^>]*>)\{\{ clinic\.name \}\}(</mj-text>)')


@pytest.fixture(scope="module")
def clinic():
    return get_settings().clinic


def md(front: str = GOOD_FRONT, body: str = GOOD_BODY, *, cta: bool = True) -> str:
    """An email source; the front matter gets the standard button unless it has one or cta=False."""
    if cta and "cta_url" not in front:
        front = f"{front}\n{CTA_FRONT}"
    return f"---\n{front}\n---\n{body}"


def neutral_banner(mjml: str) -> str:
    return _BANNER.sub(rf"\g<1>{NEUTRAL_BANNER}\g<2>", mjml)


def make_renderer(tmp_path: Path, clinic, files: dict[str, str], *, mjml=None, txt=None) -> Renderer:
    """A templates folder with the real layouts (banner made neutral, optionally edited) and the
    given .md files."""
    tdir = tmp_path / "templates"
    tdir.mkdir(parents=True)
    layout = (TEMPLATES / "layout.mjml").read_text(encoding="utf-8")
    (tdir / "layout.mjml").write_text(neutral_banner(layout), encoding="utf-8")
    shutil.copy(TEMPLATES / "layout.txt", tdir / "layout.txt")
    shutil.copytree(TEMPLATES / "partials", tdir / "partials")  # the shared text emails include
    for path, edit in (("layout.mjml", mjml), ("layout.txt", txt)):
        if edit:
            f = tdir / path
            f.write_text(edit(f.read_text(encoding="utf-8")), encoding="utf-8")
    for name, text in files.items():
        target = tdir / f"{name}.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return Renderer(tdir, clinic)


def lint_one(tmp_path, clinic, text: str | None = None, *, mjml=None, txt=None, unsubscribe_url=UNSUB, **kw):
    renderer = make_renderer(
        tmp_path, clinic, {"t/welcome": text if text is not None else md()}, mjml=mjml, txt=txt
    )
    problems, grades = lint_templates(
        renderer, {"t": [("welcome", "t/welcome")]}, unsubscribe_url=unsubscribe_url, **kw
    )
    return problems, grades


# rule id -> the seeded bad-template tests that exercise it (filled as the tests are defined)
SEEDED: dict[str, list[str]] = {}
_asserted_rules: list[str] = []  # the rules the running test has asserted


def seeds(rule: str):
    """Mark a test as a seeded bad-template test of ``rule``; it fails unless it asserts it."""

    def decorate(test):
        SEEDED.setdefault(rule, []).append(test.__name__)

        @functools.wraps(test)
        def checked(*args, **kwargs):
            _asserted_rules.clear()
            test(*args, **kwargs)
            assert rule in _asserted_rules, f"{test.__name__} never asserted its rule {rule!r}"

        return checked

    return decorate


def error_rules(problems: list[Problem]) -> set[str]:
    return {p.rule for p in errors(problems)}


def assert_only(problems: list[Problem], rule: str) -> None:
    assert error_rules(problems) == {rule}, "\n".join(map(str, problems))
    for p in errors(problems):
        assert p.message and p.template
    _asserted_rules.append(rule)


def assert_reported(problems: list[Problem], rule: str, severity: str = "error") -> None:
    """``rule`` is among the problems of this severity (other rules may fire too)."""
    assert rule in {p.rule for p in problems if p.severity == severity}, "\n".join(map(str, problems))
    _asserted_rules.append(rule)


# --- the baseline ------------------------------------------------------------------------------


def test_the_seed_email_is_clean(tmp_path, clinic):
    problems, grades = lint_one(tmp_path, clinic)
    assert errors(problems) == [], "\n".join(map(str, problems))
    assert grades["t/welcome"] <= 8


# --- present: footer, unsubscribe, crisis line, subject, preheader ------------------------------


@seeds("clinic-name")
def test_clinic_name_missing(tmp_path, clinic):
    drop = lambda s: s.replace("{{ clinic.name }}", "Our clinic")
    assert_only(lint_one(tmp_path, clinic, mjml=drop, txt=drop)[0], "clinic-name")


@seeds("postal-address")
def test_postal_address_missing(tmp_path, clinic):
    drop = lambda s: s.replace("{{ clinic.postal_address }}", "")
    assert_only(lint_one(tmp_path, clinic, mjml=drop, txt=drop)[0], "postal-address")


@seeds("postal-address")
def test_postal_address_missing_from_text_part_only(tmp_path, clinic):
    problems, _ = lint_one(tmp_path, clinic, txt=lambda s: s.replace("{{ clinic.postal_address }}", ""))
    assert_only(problems, "postal-address")
    assert "text part" in errors(problems)[0].message


@seeds("unsubscribe-link")
def test_unsubscribe_link_missing(tmp_path, clinic):
    problems, _ = lint_one(
        tmp_path,
        clinic,
        mjml=lambda s: s.replace(
            '<a href="{{ unsubscribe_url }}" style="color:#12506b;">Unsubscribe</a> at any time.', ""
        ),
        txt=lambda s: s.replace("Unsubscribe: {{ unsubscribe_url }}", ""),
    )
    assert_only(problems, "unsubscribe-link")


@seeds("crisis-line")
def test_crisis_line_missing(tmp_path, clinic):
    drop = lambda s: s.replace("<strong>988</strong>", "a crisis line").replace(
        "text 988", "text a crisis line"
    )
    assert_only(lint_one(tmp_path, clinic, mjml=drop, txt=drop)[0], "crisis-line")


@seeds("disclaimer")
def test_disclaimer_missing(tmp_path, clinic):
    drop = lambda s: s.replace("It is not medical advice. ", "")
    assert_only(lint_one(tmp_path, clinic, mjml=drop, txt=drop)[0], "disclaimer")


@seeds("subject-missing")
def test_subject_missing(tmp_path, clinic):
    text = md('subject: "{{ \'\' }}"\npreheader: "A plain note with no news."')
    assert_only(lint_one(tmp_path, clinic, text)[0], "subject-missing")


@seeds("subject-too-long")
def test_subject_too_long(tmp_path, clinic):
    text = md(f'subject: "{"A calm and plain note " * 4}"\npreheader: "A plain note with no news."')
    assert_only(lint_one(tmp_path, clinic, text)[0], "subject-too-long")


@seeds("preheader-missing")
def test_preheader_missing(tmp_path, clinic):
    text = md('subject: "A short note"\npreheader: "{{ \'\' }}"')
    assert_only(lint_one(tmp_path, clinic, text)[0], "preheader-missing")


@seeds("preheader-too-long")
def test_preheader_too_long_is_a_warning(tmp_path, clinic):
    text = md(f'subject: "A short note"\npreheader: "{"A calm and plain note. " * 8}"')
    problems, _ = lint_one(tmp_path, clinic, text)
    assert errors(problems) == []
    assert_reported(problems, "preheader-too-long", "warning")


# --- absent: health words, names, hostile input, promises ---------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "Help for your anxiety",
        "About GAD",
        "When panic hits",
        "Is ketamine for you?",
        "Treatment-resistant? Read on",
        "Fear of people",
    ],
)
@seeds("health-in-subject")
def test_health_term_in_subject(tmp_path, clinic, subject):
    text = md(f'subject: "{subject}"\npreheader: "A plain note with no news."')
    assert_only(lint_one(tmp_path, clinic, text)[0], "health-in-subject")


@seeds("health-in-subject")
def test_clinic_name_in_subject_leaks_the_treatment(tmp_path, clinic):
    # "Fresh Start Ketamine" names the treatment: keep {{ clinic.name }} out of subjects.
    text = md('subject: "News from {{ clinic.name }}"\npreheader: "A plain note with no news."')
    assert_only(lint_one(tmp_path, clinic, text)[0], "health-in-subject")


@seeds("health-in-preheader")
def test_health_term_in_preheader(tmp_path, clinic):
    text = md('subject: "A short note"\npreheader: "Some ideas about your worry."')
    assert_only(lint_one(tmp_path, clinic, text)[0], "health-in-preheader")


@seeds("name-in-subject")
def test_name_in_subject(tmp_path, clinic):
    text = md('subject: "A note for {{ first_name }}"\npreheader: "A plain note with no news."')
    problems, _ = lint_one(tmp_path, clinic, text)
    # The 200-character name also makes it too long, and a name in the subject lands in the
    # HTML <title>/aria-label; the rule that names the cause must be among them.
    assert "name-in-subject" in error_rules(problems)
    assert error_rules(problems) <= {"name-in-subject", "subject-too-long", "unescaped-input"}
    problems, _ = lint_one(tmp_path / "x", clinic, text, hostile_names=["Maria"])
    assert_only(problems, "name-in-subject")


@seeds("health-in-url")
def test_health_word_in_url(tmp_path, clinic):
    body = GOOD_BODY + "\nRead [more](https://freshstartketamine.example/social-anxiety).\n"
    assert_only(lint_one(tmp_path, clinic, md(body=body))[0], "health-in-url")


@seeds("health-in-url")
def test_audience_in_url_query(tmp_path, clinic):
    body = GOOD_BODY + "\nRead [more](https://freshstartketamine.example/learn?a=treatment_resistant).\n"
    assert_only(lint_one(tmp_path, clinic, md(body=body))[0], "health-in-url")


@seeds("health-in-url")
def test_audience_in_unsubscribe_url(tmp_path, clinic):
    problems, _ = lint_one(
        tmp_path, clinic, unsubscribe_url="https://freshstartketamine.example/unsubscribe/gad/tok-123"
    )
    assert_only(problems, "health-in-url")


@seeds("unescaped-input")
def test_unescaped_hostile_input(tmp_path, clinic):
    # A layout that marks a lead-derived value safe lets '<script>' from a name through.
    text = md(
        'subject: "A short note"\npreheader: "A plain note."\n'
        'cta_text: "Go on, {{ greeting_name }}"\ncta_url: "{{ booking_url }}"'
    )
    problems, _ = lint_one(
        tmp_path,
        clinic,
        text,
        mjml=lambda s: s.replace(">{{ cta_text }}</mj-button>", ">{{ cta_text|safe }}</mj-button>"),
    )
    assert_only(problems, "unescaped-input")


def test_attribute_breakout_is_caught():
    html = (
        '<html lang="en"><body><a href="https://x.example/unsubscribe/t" title="Ann" '
        'onmouseover="alert(1)">x</a></body></html>'
    )
    email = RenderedEmail(subject="A note", preheader="A note", html=html, text="A note.\n----\nx")
    rules = {
        p.rule
        for p in lint_email(
            email, template="t", clinic=get_settings().clinic, hostile_inputs=['Ann" onmouseover="alert(1)']
        )
    }
    assert "unescaped-input" in rules


@seeds("unrendered-jinja")
def test_unrendered_jinja(tmp_path, clinic):
    body = GOOD_BODY + "\nYour code is {% raw %}{{ code }}{% endraw %}.\n"
    assert_only(lint_one(tmp_path, clinic, md(body=body))[0], "unrendered-jinja")


def test_a_name_that_looks_like_jinja_is_not_a_leftover(tmp_path, clinic):
    problems, _ = lint_one(tmp_path, clinic, hostile_names=["{{ clinic.phone }}", "{% if %}"])
    assert errors(problems) == []


@pytest.mark.parametrize(
    "phrase",
    [
        "This may cure you.",
        "Results are guaranteed.",
        "It works 100% of the time.",
        "The change is permanent.",
    ],
)
@seeds("promise")
def test_promise(tmp_path, clinic, phrase):
    body = GOOD_BODY + f"\n{phrase}\n"
    assert_only(lint_one(tmp_path, clinic, md(body=body))[0], "promise")


# --- reading grade, size ----------------------------------------------------------------------


# Long sentences of short words: a high Flesch-Kincaid grade, a low SMOG index, no jargon.
LONG_SENTENCES = (
    "We sat in the sun and read a book and then went for a walk down by the lake where the ducks "
    "swim and the kids play and the dogs run and bark at the birds that fly by in the blue sky and "
    "the wind blows through the tall grass and trees. "
) * 5


@seeds("reading-grade")
def test_reading_grade(tmp_path, clinic):
    body = GOOD_BODY + "\n" + LONG_SENTENCES + "\n"
    problems, grades = lint_one(tmp_path, clinic, md(body=body), hostile_names=[""])
    assert_only(problems, "reading-grade")
    assert grades["t/welcome"] > 8 and grades.smog["t/welcome"] <= 8
    assert f"{grades['t/welcome']:.1f}" in errors(problems)[0].message


def test_dense_jargon_fails_every_reading_rule(tmp_path, clinic):
    body = GOOD_BODY + (
        "\nPharmacological interventions targeting glutamatergic neurotransmission demonstrate "
        "considerable heterogeneity regarding therapeutic responsiveness, necessitating "
        "comprehensive individualized psychiatric evaluation preceding administration.\n"
    )
    problems, grades = lint_one(tmp_path, clinic, md(body=body), hostile_names=[""])
    assert error_rules(problems) == {"reading-grade", "smog", "glossary"}, "\n".join(map(str, problems))
    assert grades["t/welcome"] > 8 and grades.smog["t/welcome"] > 8


def test_reading_grade_ignores_the_footer():
    text = (
        "We are here. You can rest.\n\n----\n"
        + "Incomprehensibly multisyllabic administrative documentation. " * 20
    )
    assert lint.reading_grade(text) < 3


@seeds("html-size")
def test_html_size(tmp_path, clinic):
    body = GOOD_BODY + "\n" + "We sat down. " * 9_000 + "\n"
    assert_only(lint_one(tmp_path, clinic, md(body=body), hostile_names=[""])[0], "html-size")


def test_html_size_counts_utf8_bytes_and_warns_near_the_limit(clinic):
    def size_rules(html: str) -> set[tuple[str, str]]:
        email = RenderedEmail(subject="A note", preheader="A note", html=html, text="A note.\n")
        problems = lint_email(email, template="t", clinic=clinic)
        return {(p.rule, p.severity) for p in problems if p.rule == "html-size"}

    assert size_rules("x" * 89_000) == set()
    assert size_rules("x" * 95_000) == {("html-size", "warning")}
    # Bytes, not characters: 34,000 three-byte characters are 102,000 bytes.
    assert size_rules("€" * 34_000) == {("html-size", "error")}


# --- links and HTML structure -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://freshstartketamine.example/visit",
        "/visit",
        "freshstartketamine.example/visit",
        "ftp://freshstartketamine.example/file",
    ],
)
@seeds("insecure-link")
def test_insecure_or_relative_link(tmp_path, clinic, url):
    body = GOOD_BODY + f"\nSee [our page]({url}).\n"
    assert_only(lint_one(tmp_path, clinic, md(body=body))[0], "insecure-link")


@seeds("insecure-link")
def test_local_http_unsubscribe_only_when_allowed(tmp_path, clinic):
    local = "http://localhost:8000/unsubscribe/tok-123"
    assert_only(lint_one(tmp_path / "a", clinic, unsubscribe_url=local)[0], "insecure-link")
    problems, _ = lint_one(
        tmp_path / "b", clinic, unsubscribe_url=local, allow_http_hosts={"localhost", "127.0.0.1"}
    )
    assert errors(problems) == []
    # ...and the allowance covers the unsubscribe link only, on a local host only.
    body = GOOD_BODY + "\nSee [our page](http://localhost:8000/visit).\n"
    problems, _ = lint_one(
        tmp_path / "c", clinic, md(body=body), unsubscribe_url=local, allow_http_hosts={"localhost"}
    )
    assert_only(problems, "insecure-link")
    problems, _ = lint_one(
        tmp_path / "d",
        clinic,
        unsubscribe_url="http://mail.example/unsubscribe/t",
        allow_http_hosts={"mail.example"},
    )
    assert_only(problems, "insecure-link")


@seeds("img-alt")
def test_img_without_alt(tmp_path, clinic):
    mjml = lambda s: s.replace(
        '<mj-section background-color="#fff7e6"',
        '<mj-section><mj-column><mj-image src="https://freshstartketamine.example/logo.png" />'
        '</mj-column></mj-section><mj-section background-color="#fff7e6"',
        1,
    )
    assert_only(lint_one(tmp_path, clinic, mjml=mjml)[0], "img-alt")


@seeds("html-lang")
def test_html_lang_missing(tmp_path, clinic):
    assert_only(
        lint_one(tmp_path, clinic, mjml=lambda s: s.replace('<mjml lang="en">', "<mjml>"))[0], "html-lang"
    )


@seeds("table-role")
def test_table_without_role(tmp_path, clinic):
    mjml = lambda s: s.replace(
        "<mj-raw>{% endif %}</mj-raw>", "<mj-raw>{% endif %}<table><tr><td>x</td></tr></table></mj-raw>"
    )
    assert_only(lint_one(tmp_path, clinic, mjml=mjml)[0], "table-role")


@seeds("render")
def test_render_error_becomes_a_problem(tmp_path, clinic):
    problems, _ = lint_one(tmp_path, clinic, "No front matter here.\n")
    assert_reported(problems, "render")
    assert "front matter" in next(p.message for p in problems if p.rule == "render")


# --- the sequence --------------------------------------------------------------------------------


def _seeded_sequence(tmp_path, clinic, edit):
    """The shipped gad sequence, with edit(step, text) applied to each file, and to each shared
    partial it includes (as edit("partials/<name>", text))."""
    files = {
        f"s/{step}": edit(step, (TEMPLATES / "gad" / f"{step}.md").read_text(encoding="utf-8"))
        for step in STEPS
    }
    for partial in sorted((TEMPLATES / "partials").glob("*.md")):
        name = f"partials/{partial.stem}"
        files[name] = edit(name, partial.read_text(encoding="utf-8"))
    renderer = make_renderer(tmp_path, clinic, files)
    return lint_templates(
        renderer, {"s": [(step, f"s/{step}") for step in STEPS]}, unsubscribe_url=UNSUB, hostile_names=[""]
    )[0]


@seeds("off-label")
def test_off_label_missing_from_ketamine_step(tmp_path, clinic):
    def edit(step, text):
        # The statement lives in a shared partial: the ketamine step stops including it.
        return text.replace('{% include "partials/off_label.md" %}', "") if step == "ketamine" else text

    problems = _seeded_sequence(tmp_path, clinic, edit)
    assert_only(problems, "off-label")
    assert [p.template for p in errors(problems)] == ["s/ketamine"]


@seeds("off-label")
def test_off_label_missing_everywhere(tmp_path, clinic):
    def edit(step, text):
        return text.replace("off-label", "unusual")

    problems = _seeded_sequence(tmp_path, clinic, edit)
    assert_only(problems, "off-label")
    assert {p.template for p in errors(problems)} == {"s", "s/ketamine", "s/treatment"}


@seeds("side-effects")
def test_side_effects_missing(tmp_path, clinic):
    problems = _seeded_sequence(
        tmp_path, clinic, lambda step, text: text.replace("side effects", "other effects")
    )
    # The safety summary loses its side effects too, so the emails that state a benefit are
    # flagged as well: both rules, and nothing else.
    assert error_rules(problems) == {"side-effects", "benefit-without-risk"}, "\n".join(map(str, problems))
    _asserted_rules.append("side-effects")


@seeds("intake")
def test_intake_missing(tmp_path, clinic):
    problems = _seeded_sequence(
        tmp_path,
        clinic,
        lambda step, text: text.replace("intake evaluation", "first talk").replace("intake", "first talk"),
    )
    assert_only(problems, "intake")


def test_lint_sequence_accepts_plain_step_keys():
    email = RenderedEmail(
        subject="s", preheader="p", html="", text="About ketamine.\n----\noff-label side effects intake"
    )
    problems = lint_sequence([("welcome", email), ("ketamine", email)], audience="gad")
    # The footer does not count: nothing in the bodies satisfies the rules.
    assert {p.rule for p in problems} == {"off-label", "side-effects", "intake"}
    assert "gad/ketamine" in {p.template for p in problems}


# --- matching helpers ------------------------------------------------------------------------------


def test_terms_match_whole_words_only():
    assert find_terms("A gadget for panicky days", DEFAULT_HEALTH_TERMS) == []
    assert find_terms("GAD and Treatment resistant, treatment_resistant", DEFAULT_HEALTH_TERMS) == [
        "gad",
        "treatment resistant",
        "treatment_resistant",
    ]
    assert find_terms("Ketamine-curious", DEFAULT_HEALTH_TERMS) == ["ketamine"]
    assert find_terms("It is 100% safe", lint.DEFAULT_PROMISE_TERMS) == ["100%"]


def test_custom_term_lists(tmp_path, clinic):
    text = md('subject: "About stress"\npreheader: "A plain note with no news."')
    assert errors(lint_one(tmp_path / "a", clinic, text)[0]) == []
    problems, _ = lint_one(tmp_path / "b", clinic, text, health_terms=("stress",))
    assert_only(problems, "health-in-subject")


def test_url_terms_use_tokens():
    assert (
        url_health_terms(
            "https://freshstartketamine.example/consultation",
            (*DEFAULT_HEALTH_TERMS, *lint.URL_AUDIENCE_TERMS),
        )
        == []
    )
    assert url_health_terms("https://x.example/ketamine/faq", ("ketamine",)) == ["ketamine"]
    assert url_health_terms("https://x.example/p?aud=treatment_resistant", ("treatment_resistant",)) == [
        "treatment_resistant"
    ]


def test_body_text_cuts_the_last_footer_rule():
    assert body_text("a\n----\nb\n----\nfooter\n") == "a\n----\nb\n"
    assert body_text("no footer\n") == "no footer\n"


def test_hostile_names_cover_the_cases():
    assert "<script>alert(1)</script>" in HOSTILE_NAMES and "" in HOSTILE_NAMES
    assert any(len(n) >= 200 for n in HOSTILE_NAMES)
    assert {"José", "Зоя", "李小龙", "محمد"} <= set(HOSTILE_NAMES)


# --- the registry ----------------------------------------------------------------------------------


def test_every_registered_rule_has_a_seeded_bad_template_test():
    # A new rule needs a test marked @seeds(its id) that makes it fire on a bad template.
    import test_lint_content_rules  # noqa: F401  (its @seeds marks register on import)

    assert set(SEEDED) == {rule.id for rule in registered()}


def test_registered_rules_are_described():
    rules = registered()
    assert len({r.id for r in rules}) == len(rules)
    for rule in rules:
        assert rule.severity in ("error", "warning") and rule.scope in ("email", "sequence", "render")
        assert rule.description and "\n" not in rule.description and len(rule.description) <= 100
    assert {r.id for r in registered("sequence")} == {"off-label", "side-effects", "intake"}


def test_a_rule_id_registers_once():
    with pytest.raises(ValueError, match="twice"):
        lint.email_rule("clinic-name", "again")(lambda ctx: [])


def test_cli_lists_the_rules():
    from campaign.cli import app

    runner = CliRunner()
    shown = runner.invoke(app, ["lint", "--rules"])
    assert shown.exit_code == 0, shown.output
    for rule in registered():
        assert rule.id in shown.output  # descriptions wrap in the table; the JSON has them whole
    as_json = runner.invoke(app, ["lint", "--rules", "--json"])
    assert as_json.exit_code == 0, as_json.output
    rows = json.loads(as_json.output)
    assert [(row["id"], row["description"]) for row in rows] == [(r.id, r.description) for r in registered()]
    assert {row["id"]: row["severity"] for row in rows}["preheader-too-long"] == "warning"
    assert all(set(row) == {"id", "severity", "scope", "description"} for row in rows)


# --- the shipped emails ------------------------------------------------------------------------------


def test_every_shipped_email_passes(clinic, capsys):
    renderer = Renderer(TEMPLATES, clinic)
    sequences = {aud: [(step, f"{aud}/{step}") for step in STEPS] for aud in AUDIENCES}
    problems, grades = lint_templates(renderer, sequences, unsubscribe_url=UNSUB)
    with capsys.disabled():
        print("\nReading grades (text part, footer cut): Flesch-Kincaid, SMOG")
        for name in sorted(grades):
            print(f"  {name:32s} {grades[name]:5.2f} {grades.smog[name]:5.2f}")
        for p in problems:
            print(f"  {p}")
    assert errors(problems) == [], "\n".join(map(str, errors(problems)))
    assert set(grades) == set(grades.smog) == {f"{a}/{s}" for a in AUDIENCES for s in STEPS}
    assert max(grades.values()) <= 8 and max(grades.smog.values()) <= 8


def test_shipped_emails_stay_in_length(clinic):
    renderer = Renderer(TEMPLATES, clinic)
    for aud in AUDIENCES:
        for step in STEPS:
            email = renderer.render(f"{aud}/{step}", first_name="Sam", unsubscribe_url=UNSUB)
            words = len(body_text(email.text).split())
            # The balanced safety summary and who may not have it (issue 12) make the longest
            # emails about 650 words: a three-minute read.
            assert 150 <= words <= 700, f"{aud}/{step}: {words} words"
            assert "Sam" not in email.subject
