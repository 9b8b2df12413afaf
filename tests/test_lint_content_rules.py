"""The content rules of issue 12, each on a seeded bad template and a good counterpart (so each
can fail both ways): benefit-without-risk, lock-screen, one-primary-cta, smog, glossary,
text-heading-caps, reply-notice. The harness (real layouts, lint_templates end to end,
``@seeds``) is tests/test_lint.py's.
"""

from __future__ import annotations

import re

import pytest
from test_lint import GOOD_BODY, assert_only, errors, lint_one, md, seeds

from campaign.lint import GLOSSARY, JARGON, LOCK_SCREEN_TERMS, Grades, lint_email
from campaign.lint.compliance_rules import benefit_claim, missing_safety, unexplained_terms
from campaign.lint.inbox_rules import PREVIEW_CHARS, preview_window
from campaign.lint.matching import scan_html, sentence_blocks
from campaign.models import RenderedEmail
from campaign.settings import get_settings

NEUTRAL_START = (
    "Hi {{ greeting_name }},\n\n"
    "Here is a short note from us. It takes two minutes to read, and you can stop these notes at "
    "any time. We hope your week is going well so far.\n\n"
)
BENEFIT = "In small studies, ketamine may ease worry for some people. Larger studies are needed.\n"
# What the shared safety partial renders: a heading naming the risks and the required facts.
SAFETY = (
    "\n**Risks and side effects**\n\n"
    "Ketamine is a controlled substance. Some people misuse it. Side effects can include a "
    "dreamlike feeling, nausea and a short rise in blood pressure. It is not for everyone: an "
    "evaluation checks if it is safe for you.\n"
)
# The reply notice every email that invites a reply must carry.
REPLY_NOTICE = (
    "\nA person on our care team reads replies during office hours. Please don't send health "
    "details you would not want in an email. In a crisis, call or text 988, or call 911.\n"
)


@pytest.fixture(scope="module")
def clinic():
    return get_settings().clinic


def body(*parts: str) -> str:
    return NEUTRAL_START + "\n".join(parts) + "\n" + GOOD_BODY.split("\n\n", 1)[1]


def lint_body(tmp_path, clinic, *parts: str, **kw):
    return lint_one(tmp_path, clinic, md(body=body(*parts)), hostile_names=[""], **kw)


def test_the_building_blocks_are_clean_together(tmp_path, clinic):
    # The good counterparts below add these pieces; together they break no rule.
    parts = (BENEFIT, SAFETY, "Questions? Just hit reply.", REPLY_NOTICE)
    problems, grades = lint_body(tmp_path, clinic, *parts)
    assert errors(problems) == [], "\n".join(map(str, problems))
    assert grades["t/welcome"] <= 8 and grades.smog["t/welcome"] <= 8


# --- benefit-without-risk ---------------------------------------------------------------------


@seeds("benefit-without-risk")
def test_benefit_without_risk(tmp_path, clinic):
    problems, _ = lint_body(tmp_path, clinic, BENEFIT)
    assert_only(problems, "benefit-without-risk")
    message = errors(problems)[0].message
    assert "'may ease' about 'ketamine'" in message and "safety" in message
    assert "controlled substance" in message and "side effects" in message


@seeds("benefit-without-risk")
def test_benefit_with_an_incomplete_safety_summary(tmp_path, clinic):
    partial = SAFETY.replace("It is not for everyone: an evaluation checks if it is safe for you.", "")
    problems, _ = lint_body(tmp_path, clinic, BENEFIT, partial)
    assert_only(problems, "benefit-without-risk")
    message = errors(problems)[0].message
    assert "not for everyone" in message and "controlled substance" not in message


def test_benefit_with_the_safety_summary_passes(tmp_path, clinic):
    assert errors(lint_body(tmp_path, clinic, BENEFIT, SAFETY)[0]) == []


def test_benefit_with_a_link_to_the_safety_page_passes(tmp_path, clinic):
    link = "Before you decide, [read about the risks](https://freshstartketamine.example/safety).\n"
    assert errors(lint_body(tmp_path, clinic, BENEFIT, link)[0]) == []


def test_what_counts_as_a_benefit_claim():
    def claim(text: str) -> str | None:
        return benefit_claim(sentence_blocks(text))

    assert "'may help' about 'ketamine'" in claim("Ketamine acts on glutamate. This may help the brain.")
    assert "'relief' about 'infusion'" in claim("An infusion can bring relief.")
    assert claim("A walk may help you rest.") is None  # no treatment named
    assert claim("Ketamine is a drug. Our team helps you book.") is None  # 'helps' is not about it
    assert claim("Esketamine is approved for depression that has not eased with two drugs.") is None
    assert claim("Ketamine is studied.\n\nIt may help.") is None  # another paragraph


def test_missing_safety_names_what_is_missing():
    assert missing_safety(body(SAFETY)) == []
    missing = missing_safety("Safety facts\n\nIt is a Schedule III drug.\n")
    assert missing == ["its side effects", "that it is not for everyone and an evaluation checks"]


# --- lock-screen ----------------------------------------------------------------------------------


@seeds("lock-screen")
def test_treatment_word_in_the_opening_lines(tmp_path, clinic):
    start = "Hi {{ greeting_name }},\n\nThis note is about infusions at our clinic.\n\n"
    problems, _ = lint_one(tmp_path, clinic, md(body=start + GOOD_BODY), hostile_names=[""])
    assert_only(problems, "lock-screen")
    messages = " ".join(p.message for p in errors(problems))
    assert "HTML part's inbox preview" in messages and "text part's first 150" in messages
    assert "'infusions'" in messages


@seeds("lock-screen")
def test_banner_that_names_the_treatment(tmp_path, clinic):
    def banner(mjml: str) -> str:  # whatever the layout's banner says (a name, display_name)
        pattern = r'(<mj-text color="#ffffff"[^>]*>)[^<]*(</mj-text>)'
        return re.sub(pattern, r"\1Fresh Start Ketamine\2", mjml, count=1)

    problems, _ = lint_one(tmp_path, clinic, mjml=banner)
    assert_only(problems, "lock-screen")
    assert [p.message for p in errors(problems)][0].startswith("the HTML part's inbox preview")
    assert "'ketamine'" in errors(problems)[0].message


@pytest.mark.parametrize(
    ("preheader", "shown"),
    [("A short note, and it is not your fault.", "not your fault"), ("A note about therapy.", "therapy")],
)
@seeds("lock-screen")
def test_preheader_hint_or_treatment_word(tmp_path, clinic, preheader, shown):
    text = md(f'subject: "A short note"\npreheader: "{preheader}"')
    problems, _ = lint_one(tmp_path, clinic, text, hostile_names=[""])
    assert_only(problems, "lock-screen")
    message = errors(problems)[0].message
    assert message.startswith("the preheader") and repr(shown) in message


PADDING = "&#847;&zwnj;&nbsp;" * 100


def _padded(mjml: str) -> str:
    return mjml.replace("{{ preheader }}</mj-preview>", "{{ preheader }}" + PADDING + "</mj-preview>")


@seeds("lock-screen")
def test_preheader_padding_does_not_count(tmp_path, clinic):
    # 300 invisible characters of padding do not push the opening lines out of the window.
    start = "Hi {{ greeting_name }},\n\nWe hope you like this note about ketamine.\n\n"
    problems, _ = lint_one(tmp_path, clinic, md(body=start + GOOD_BODY), mjml=_padded, hostile_names=[""])
    assert_only(problems, "lock-screen")


def test_treatment_word_after_the_preview_passes(tmp_path, clinic):
    later = "We can also tell you about ketamine at the clinic.\n"
    problems, _ = lint_one(tmp_path / "a", clinic, md(body=body(later)), mjml=_padded, hostile_names=[""])
    assert errors(problems) == []


def test_the_preview_is_what_an_inbox_shows():
    html = (
        '<html><head><title>Ketamine</title><style>.x{}</style></head><body><div style="display:none">'
        "A plain note.\u034f\u200c\u00a0\u034f\u200c\u00a0</div><div>Fresh Start</div><p>Hi Sam,</p>"
        "</body></html>"
    )
    assert scan_html(html).visible_text == "A plain note. Fresh Start Hi Sam,"
    assert preview_window("a" * 148 + " ketamine is here") == "a" * 148 + " ketamine"
    assert len(preview_window("word " * 100)) == PREVIEW_CHARS
    assert {"treatment", "therapy", "medication"} <= set(LOCK_SCREEN_TERMS)


# --- one-primary-cta --------------------------------------------------------------------------------


@seeds("one-primary-cta")
def test_no_primary_call_to_action(tmp_path, clinic):
    problems, _ = lint_one(tmp_path, clinic, md(cta=False), hostile_names=[""])
    assert_only(problems, "one-primary-cta")
    assert "no primary call to action" in errors(problems)[0].message


@pytest.mark.parametrize(
    "extra",
    [
        "[Book now](https://freshstartketamine.example/consultation).",
        "Or [schedule a visit](https://freshstartketamine.example/visit-us).",
    ],
)
@seeds("one-primary-cta")
def test_a_second_primary_call_to_action(tmp_path, clinic, extra):
    problems, _ = lint_body(tmp_path, clinic, extra)
    assert_only(problems, "one-primary-cta")
    assert "2 primary calls to action" in errors(problems)[0].message


@seeds("one-primary-cta")
def test_more_than_one_secondary_ask(tmp_path, clinic):
    asks = "Reply to this email, or call us at {{ clinic.phone }}.\n"
    problems, _ = lint_body(tmp_path, clinic, asks, REPLY_NOTICE)
    assert_only(problems, "one-primary-cta")
    assert "reply invitation" in errors(problems)[0].message and "phone" in errors(problems)[0].message


def test_one_button_and_a_reply_invitation_pass(tmp_path, clinic):
    problems, _ = lint_body(tmp_path, clinic, "Questions? Reply to this email.", REPLY_NOTICE)
    assert errors(problems) == []


# --- smog ------------------------------------------------------------------------------------------

# Short sentences, each with two or three long everyday words: SMOG rises, Flesch-Kincaid stays low.
LONG_WORDS = (
    "It is important to remember that a hard day now and then is ordinary. Everybody has a day when "
    "the hours feel heavy and long. Several of us find it helpful to celebrate the small things we "
    "do. A beautiful walk in the community park can make a difference. Especially in the evening, a "
    "quiet moment is valuable for the family.\n"
)


@seeds("smog")
def test_smog_above_eight(tmp_path, clinic):
    problems, grades = lint_body(tmp_path, clinic, LONG_WORDS)
    assert_only(problems, "smog")
    assert grades.smog["t/welcome"] > 8 and grades["t/welcome"] <= 8
    assert f"{grades.smog['t/welcome']:.1f}" in errors(problems)[0].message


def test_grades_keep_fk_as_the_mapping_and_smog_beside_it():
    grades = Grades()
    grades.add("a/b", "We sat down. " * 5 + "\n----\nfooter\n")
    assert set(grades) == set(grades.smog) == {"a/b"}
    assert grades.rows() == {"a/b": {"fk": round(grades["a/b"], 2), "smog": round(grades.smog["a/b"], 2)}}


# --- glossary ----------------------------------------------------------------------------------------


@seeds("glossary")
def test_glossary_word_not_explained(tmp_path, clinic):
    problems, _ = lint_body(tmp_path, clinic, "Some pills act on GABA. We can talk about them.\n")
    assert_only(problems, "glossary")
    assert "'GABA' without explaining it" in errors(problems)[0].message


@seeds("glossary")
def test_jargon(tmp_path, clinic):
    problems, _ = lint_body(tmp_path, clinic, "It blocks one receptor in the brain.\n")
    assert_only(problems, "glossary")
    assert "jargon ('receptor')" in errors(problems)[0].message


@pytest.mark.parametrize(
    "sentence",
    [
        "Some pills act on GABA, the brain's slow-down signal.",
        "Some pills act on a slow-down signal called GABA.",
        "Some pills act on GABA (a slow-down signal).",
        "GABA is a slow-down signal in the brain.",
        "GABA means a slow-down signal in the brain.",
    ],
)
def test_an_explained_glossary_word_passes(tmp_path, clinic, sentence):
    assert errors(lint_body(tmp_path, clinic, sentence + "\n")[0]) == []


def test_what_counts_as_an_explanation():
    def unexplained(text: str) -> list[str]:
        return unexplained_terms(sentence_blocks(text))

    assert unexplained("They got a dummy dose (a placebo).") == []
    assert unexplained("There was no placebo group, a group given a dummy dose.") == []
    assert unexplained("- TMS. A coil held near the head sends gentle pulses.") == []
    assert unexplained("- TMS.\n- Pills.") == ["TMS"]  # a label with nothing after it
    # Explained once is enough, singular or plural.
    assert unexplained("SSRIs (daily pills) act slowly. An SSRI can take weeks.") == []
    assert unexplained("It acts on glutamate rather than serotonin.") == ["glutamate", "serotonin"]
    assert not set(GLOSSARY) & set(JARGON)


# --- text-heading-caps -------------------------------------------------------------------------------


@seeds("text-heading-caps")
def test_all_caps_heading_in_the_text_part(tmp_path, clinic):
    problems, _ = lint_body(tmp_path, clinic, "WHAT TO EXPECT\n\nYou will get five short notes.\n")
    assert_only(problems, "text-heading-caps")
    assert "'WHAT TO EXPECT'" in errors(problems)[0].message


def test_title_case_headings_acronyms_and_names_in_capitals_pass(tmp_path, clinic):
    text = body("What to Expect\n\nYou will get five short notes.\n", "FAQ\n\nAsk us anything.\n")
    problems, _ = lint_one(tmp_path, clinic, md(body=text), hostile_names=["JOSÉ MARIA", "李小龙李小龙"])
    assert errors(problems) == []


# --- reply-notice ------------------------------------------------------------------------------------


@seeds("reply-notice")
def test_reply_invitation_without_the_notice(tmp_path, clinic):
    # The layout footer gives 988 and 911: it does not count, the notice goes with the invitation.
    problems, _ = lint_body(tmp_path, clinic, "Questions are welcome: just hit reply.\n")
    assert_only(problems, "reply-notice")
    message = errors(problems)[0].message
    assert "'hit reply'" in message
    for missing in ("who reads replies", "office hours", "health details", "988"):
        assert missing in message


@seeds("reply-notice")
def test_reply_notice_without_the_crisis_line(tmp_path, clinic):
    notice = REPLY_NOTICE.replace(" In a crisis, call or text 988, or call 911.", "")
    problems, _ = lint_body(tmp_path, clinic, "Questions? Reply to this email.", notice)
    assert_only(problems, "reply-notice")
    message = errors(problems)[0].message
    assert "988" in message and "office hours" not in message


def test_no_invitation_needs_no_notice(clinic):
    text = "Hi Sam,\n\nAbout replies: we read them.\n----\nfooter 988 911\n"
    email = RenderedEmail(subject="A note", preheader="A note", html="<html></html>", text=text)
    assert "reply-notice" not in {p.rule for p in lint_email(email, template="t", clinic=clinic)}


# --- the README ----------------------------------------------------------------------------------


def test_the_readme_lists_every_rule_and_the_hand_checks():
    from campaign.lint import registered
    from campaign.settings import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    rules = readme.split("### Content rules", 1)[1].split("\n### ", 1)[0]
    missing = [rule.id for rule in registered() if f"`{rule.id}`" not in rules]
    assert missing == [], f"README 'Content rules' does not list {missing}"
    assert "### What a reviewer must check by hand" in readme
