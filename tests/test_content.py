"""The shipped emails as a compliance reviewer reads them (issue 12): every audience x step,
rendered for leads with and without each optional field.

- no sentence claims something the lead did not tell us;
- the 20 emails are 20 different texts, and each sequence is mostly its own sentences
  (outside the shared partials);
- Flesch-Kincaid and SMOG at most 8 (text part, footer cut);
- nothing on a lock screen or in an inbox list names a condition or a treatment;
- one primary call to action, benefits always with the safety summary, technical words explained.
"""

from __future__ import annotations

import itertools
import re
from functools import cache
from html.parser import HTMLParser

import pytest
import textstat

from campaign.audiences import load_audiences
from campaign.lint import DEFAULT_HEALTH_TERMS, body_text, find_terms, text_links
from campaign.lint.matching import scan_html
from campaign.preview import SAMPLE_REPORTED
from campaign.render import Renderer, markdown_to_text, title_case
from campaign.settings import PROJECT_ROOT, get_settings

SETTINGS = get_settings(content_dir=PROJECT_ROOT)
CLINIC = SETTINGS.clinic
AUDIENCES = load_audiences(PROJECT_ROOT / "audiences")
TEMPLATES = [s.template for a in AUDIENCES for s in a.steps]
UNSUB = "https://clinic.example.org/unsubscribe/tok"

ANXIETY_TYPES = (None, "unspecified", "gad", "social", "treatment_resistant")
PRIOR_TREATMENTS = (None, 0, 1, 2, 3)
FIRST_NAMES = ("", "Sam")
LEADS = list(itertools.product(ANXIETY_TYPES, PRIOR_TREATMENTS, FIRST_NAMES))

# Every sentence that depends on what the lead reported, and the data that makes it true. A
# sentence that shows up only when a field is set must match one of these, so a new conditional
# sentence cannot slip in without saying what it claims.
Claim = tuple[str, "re.Pattern[str]", "callable"]
CLAIMS: list[tuple[str, re.Pattern[str], object]] = [
    (
        "a count of treatments tried",
        re.compile(r"\bYou told us (?:you have tried|about) (\d+) treatments?\b"),
        lambda m, kind, count: count == int(m.group(1)),
    ),
    (
        "no treatment tried",
        re.compile(r"\bYou told us you have not tried any treatment\b"),
        lambda m, kind, count: count == 0,
    ),
    ("worry", re.compile(r"\bYou told us that worry\b"), lambda m, kind, count: kind == "gad"),
    (
        "being around people",
        re.compile(r"\bYou told us that being around (?:other )?people\b"),
        lambda m, kind, count: kind == "social",
    ),
    (
        "treatments did not help enough",
        re.compile(r"\bYou told us that the treatments you tried have not helped enough\b"),
        lambda m, kind, count: kind == "treatment_resistant",
    ),
    # Branches for a lead who reported social anxiety, in whatever audience the lead landed.
    (
        "no phone call (social)",
        re.compile(r"\b(?:You never need to make a phone call|Booking never needs a phone call)\b"),
        lambda m, kind, count: kind == "social",
    ),
    (
        "send the list in writing (social)",
        re.compile(r"\bYou can send your list in writing\b"),
        lambda m, kind, count: kind == "social",
    ),
]
CLAIM_WORDS = re.compile(r"\b(?:told us|you said|you mentioned|you reported|you shared|as you know)\b", re.I)
# Sentences whose 'told us' is about us, not the lead (none yet; listed here if ever needed).
NOT_CLAIMS: tuple[str, ...] = ()


@cache
def renderer() -> Renderer:
    return Renderer(SETTINGS.templates_dir, CLINIC)


@cache
def render(name: str, kind: str | None, count: int | None, first_name: str):
    return renderer().render(
        name, first_name=first_name, unsubscribe_url=UNSUB, anxiety_type=kind, prior_treatments=count
    )


def without_cta_line(text: str, cta_text: str) -> str:
    """The text part's body: footer cut, and the layout's 'Button text: URL' line dropped."""
    body = body_text(text)
    return "\n".join(line for line in body.splitlines() if not line.startswith(f"{cta_text}: "))


def sentences(text: str) -> list[str]:
    """Paragraphs and list items split into sentences, whitespace collapsed; a 'sentence' needs
    two words (so 'Hi Sam,' counts, a lone '----' does not)."""
    found = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:- |\d+\. ))", text):
        block = re.sub(r"^\s*(?:- |\d+\. )", "", block.strip())
        for sentence in re.split(r"(?<=[.!?])\s+", " ".join(block.split())):
            if len(sentence.split()) >= 2:
                found.append(sentence)
    return found


def email_sentences(name: str, kind=None, count=None, first_name: str = "Sam") -> list[str]:
    email = render(name, kind, count, first_name)
    cta_text = renderer().source(name).cta_text
    return sentences(without_cta_line(email.text, cta_text.render() if cta_text else "\0"))


@cache
def partial_sentences() -> frozenset[str]:
    """Every sentence the shared partials can produce, for every lead they may be rendered for."""
    found: set[str] = set()
    for path in sorted((SETTINGS.templates_dir / "partials").glob("*.md")):
        template = renderer().env.get_template(f"partials/{path.name}")
        for kind, count in itertools.product(ANXIETY_TYPES, PRIOR_TREATMENTS):
            markdown = template.render(clinic=CLINIC, anxiety_type=kind, prior_treatments=count)
            found.update(sentences(markdown_to_text(markdown)))
    return frozenset(found)


def sample_sentences(name: str) -> list[str]:
    kind, count = SAMPLE_REPORTED[name.split("/")[0]]
    return email_sentences(name, kind, count)


# ---- say only what the lead told us ---------------------------------------------------------------


def check_claims(name: str, kind, count, first_name) -> list[str]:
    problems = []
    found = email_sentences(name, kind, count, first_name)
    baseline = set(email_sentences(name, None, None, first_name))
    for sentence in found:
        matched = False
        for label, pattern, holds in CLAIMS:
            for match in pattern.finditer(sentence):
                matched = True
                if not holds(match, kind, count):
                    problems.append(f"{name} says '{label}' to a lead with {kind=}, {count=}: {sentence!r}")
        if not matched and sentence not in NOT_CLAIMS:
            if CLAIM_WORDS.search(sentence):
                problems.append(f"{name}: unregistered claim about the lead: {sentence!r}")
            elif sentence not in baseline:
                problems.append(
                    f"{name}: a sentence that only a lead with {kind=}, {count=} reads is not in CLAIMS: "
                    f"{sentence!r}"
                )
    return problems


@pytest.mark.parametrize("name", TEMPLATES)
def test_no_sentence_claims_data_the_lead_lacks(name):
    problems = [p for kind, count, first_name in LEADS for p in check_claims(name, kind, count, first_name)]
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("name", TEMPLATES)
def test_a_lead_who_reported_nothing_reads_no_claim(name):
    for first_name in FIRST_NAMES:
        text = render(name, None, None, first_name).text
        assert not CLAIM_WORDS.search(text), name
        assert not any(pattern.search(text) for _, pattern, _ in CLAIMS), name


def test_the_greeting_uses_the_name_only_when_there_is_one():
    for name in TEMPLATES:
        assert render(name, None, None, "").text.startswith("Hi there,\n"), name
        assert render(name, None, None, "Sam").text.startswith("Hi Sam,\n"), name


def test_claims_are_checked_against_the_data():
    # The checker itself: a claim that does not hold is reported.
    assert check_claims("treatment_resistant/welcome", "treatment_resistant", 3, "Sam") == []
    sentences_for_three = email_sentences("treatment_resistant/welcome", None, 3)
    assert "You told us you have tried 3 treatments so far." in " ".join(sentences_for_three)
    label, pattern, holds = CLAIMS[0]
    match = pattern.search("You told us you have tried 3 treatments so far.")
    assert holds(match, None, 3) and not holds(match, None, 2) and not holds(match, None, None)


@pytest.mark.parametrize("audience", [a.name for a in AUDIENCES])
def test_a_lead_who_reported_social_anxiety_reads_that_booking_needs_no_call(audience):
    """Whatever audience such a lead lands in (e.g. treatment_resistant, by a count of two or
    more), the sequence tells them booking never needs a phone call; other leads are not told
    they reported it."""
    names = [s.template for a in AUDIENCES if a.name == audience for s in a.steps]
    social = " ".join(render(n, "social", 2, "Sam").text for n in names)
    assert re.search(r"never need to make a phone call|never needs a phone call", social)
    for kind in ("gad", "treatment_resistant", "unspecified", None):
        other = " ".join(render(n, kind, 2, "Sam").text for n in names)
        assert not re.search(r"never need to make a phone call|never needs a phone call", other)


# ---- 20 different texts, each sequence mostly its own --------------------------------------------


def test_the_twenty_emails_are_distinct_texts():
    bodies = {name: set(sample_sentences(name)) - partial_sentences() for name in TEMPLATES}
    assert len({frozenset(b) for b in bodies.values()}) == 20
    for first, second in itertools.combinations(TEMPLATES, 2):
        shared = bodies[first] & bodies[second]
        smaller = min(len(bodies[first]), len(bodies[second]))
        # Beyond the greeting and a stock line or two, no two emails share their own sentences.
        assert len(shared) <= max(2, smaller // 10), f"{first} and {second} share {sorted(shared)}"


def own_share(audience: str) -> tuple[int, int]:
    """(sentences only this sequence has, outside the partials; all its sentences)."""
    mine = [s.template for a in AUDIENCES if a.name == audience for s in a.steps]
    others = {s for name in TEMPLATES if name not in mine for s in sample_sentences(name)}
    found = [s for name in mine for s in sample_sentences(name)]
    own = [s for s in found if s not in partial_sentences() and s not in others]
    return len(own), len(found)


@pytest.mark.parametrize("audience", [a.name for a in AUDIENCES])
def test_each_sequence_is_at_least_half_its_own_sentences(audience):
    own, total = own_share(audience)
    assert own / total >= 0.5, f"{audience}: {own} of {total} sentences are its own"


def test_the_sentence_count_sees_the_partials():
    # The measure itself: the safety summary's sentences count as shared, not as the email's own.
    ketamine = sample_sentences("gad/ketamine")
    shared = [s for s in ketamine if s in partial_sentences()]
    assert any("dissociation" in s for s in shared) and len(shared) >= 10
    assert not any("Glue, 2017" in s for s in shared)


# ---- reading level ------------------------------------------------------------------------------

GRADE_LEADS = [(kind, count) for kind in ANXIETY_TYPES for count in (None, 3)]


def grades(name: str) -> tuple[float, float]:
    """The highest Flesch-Kincaid grade and SMOG index over the leads (text part, footer cut)."""
    fk = smog = 0.0
    for kind, count in GRADE_LEADS:
        body = body_text(render(name, kind, count, "Sam").text)
        fk = max(fk, textstat.flesch_kincaid_grade(body))
        smog = max(smog, textstat.smog_index(body))
    return fk, smog


def test_every_email_reads_at_grade_eight_or_below(capsys):
    table = {name: grades(name) for name in TEMPLATES}
    with capsys.disabled():
        print("\nReading level (text part, footer cut; highest over the sample leads):")
        for name, (fk, smog) in sorted(table.items()):
            print(f"  {name:32s} Flesch-Kincaid {fk:4.1f}   SMOG {smog:4.1f}")
    too_hard = {name: g for name, g in table.items() if g[0] > 8 or g[1] > 8}
    assert too_hard == {}


# ---- lock screens and inbox lists ------------------------------------------------------------------

INVISIBLE = dict.fromkeys(map(ord, "\u034f\u200b\u200c\u200d\u2060\ufeff\u00ad"), None) | {0xA0: " "}
# Beyond the condition and treatment words: phrases that hint at a stigmatized problem.
HINTS = (
    "fault",
    "alone",
    "struggle",
    "struggling",
    "suffer",
    "suffering",
    "judged",
    "alarm",
    "alert",
    "calm",
    "calmer",
    "nervous",
    "stress",
    "mind",
    "brain",
    "mood",
    "relief",
    "therapy",
    "medicine",
    "drug",
    "treatment",
)


class VisibleText(HTMLParser):
    """Text a mail client can show, in order: the hidden preheader first (inbox previews read it),
    nothing from <head>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("head", "style", "script", "title"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("head", "style", "script", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).translate(INVISIBLE).split())


def first_visible(text: str, limit: int = 150) -> str:
    return " ".join(text.translate(INVISIBLE).split())[:limit]


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_first_150_visible_characters_name_no_condition_or_treatment(name):
    for kind, count in (*GRADE_LEADS, ("gad", 1), ("social", 0)):
        email = render(name, kind, count, "")  # no name: the body starts soonest
        for part, text in (("HTML", visible(email.html)), ("text", email.text)):
            opening = first_visible(text)
            found = find_terms(opening, DEFAULT_HEALTH_TERMS)
            assert found == [], f"{name} ({part} part, {kind=}) shows {found} in {opening!r}"


@pytest.mark.parametrize("name", TEMPLATES)
def test_subjects_and_preheaders_hint_at_nothing(name):
    email = render(name, None, None, "Sam")
    for field in (email.subject, email.preheader):
        assert find_terms(field, (*DEFAULT_HEALTH_TERMS, *HINTS)) == [], f"{name}: {field!r}"


def test_the_preheader_is_padded_and_the_banner_is_neutral():
    email = render("gad/welcome", None, None, "Sam")
    preview = re.search(r'<div style="display:none[^>]*>(.*?)</div>', email.html, re.S).group(1)
    assert preview.startswith(email.preheader)
    # The zero-width filler (CSS inlining writes &#847; and &zwnj; out as characters).
    assert preview.count("\u034f") >= 50 and preview.count("\u200c") >= 50
    assert CLINIC.display_name == "Fresh Start"
    banner = visible(email.html).removeprefix(email.preheader).strip()
    assert banner.startswith(f"{CLINIC.display_name} Hi Sam,")
    # The legal name (which names the treatment) is in the footer only.
    assert visible(email.html).index(CLINIC.name) > visible(email.html).index("Unsubscribe") - 400


# ---- one next step; benefits with risks; plain words ----------------------------------------------


@pytest.mark.parametrize("name", TEMPLATES)
def test_one_primary_call_to_action_and_at_most_one_secondary(name):
    email = render(name, "social", 2, "Sam")
    source = renderer().source(name)
    assert source.cta_text and source.cta_url, f"{name}: give it one button (cta_text and cta_url)"
    cta_url = source.cta_url.render(booking_url=CLINIC.booking_url, clinic=CLINIC)
    assert cta_url in (CLINIC.booking_url, CLINIC.website_url)
    hrefs = scan_html(email.html).hrefs
    assert sorted(set(hrefs)) == sorted({cta_url, UNSUB}), f"{name}: links besides the button: {hrefs}"
    assert hrefs.count(cta_url) == 1
    assert set(text_links(body_text(email.text))) == {cta_url}
    body = body_text(email.text)
    # The secondary action is a reply; the phone number stays in the footer.
    assert CLINIC.phone not in body, f"{name}: a phone number in the body is a second secondary action"
    if re.search(r"\breply\b", body, re.I):
        assert "partials/reply.md" in source.includes, f"{name} invites a reply without the reply notice"


BENEFIT = re.compile(
    r"\b(?:may help|may ease|felt less|feel less|felt better|feel better|when ketamine helps|"
    r"showed more change|did better|went better|a change for a while)\b",
    re.I,
)


@pytest.mark.parametrize("name", TEMPLATES)
def test_an_email_that_states_a_benefit_carries_the_safety_summary(name):
    source = renderer().source(name)
    own_text = " ".join(s for s in sample_sentences(name) if s not in partial_sentences())
    if BENEFIT.search(own_text) or name.endswith(("/ketamine", "/questions")):
        assert "partials/safety.md" in source.includes, f"{name} states a benefit without the safety summary"
    text = render(name, "gad", 3, "Sam").text
    assert "hours to days" not in text and "4 to 8 weeks" not in text  # no implied head-to-head


@pytest.mark.parametrize("audience", [a.name for a in AUDIENCES])
def test_studies_are_described_as_they_are(audience):
    ketamine = render(f"{audience}/ketamine", None, None, "Sam").text
    studies = {"Glue, 2017": "12 adults", "Glue, 2018": "20 adults", "Taylor, 2018": "18 adults"}
    named = [study for study in studies if study in ketamine]
    assert named, f"{audience}/ketamine names no study"
    for study in named:
        assert studies[study] in ketamine
    if "Glue, 2018" in ketamine:
        assert "no placebo group" in ketamine or "no dummy dose group" in ketamine
    if "Taylor, 2018" in ketamine:
        assert "own ratings" in ketamine and "did not" in ketamine
    assert re.search(r"no one can say it works better or faster", ketamine, re.I)


# Technical words and the explanation each email that uses one must give (first use or near it).
GLOSSARY = {
    r"\bdissociation\b": r"This is called dissociation",
    r"\bIV\b": r"IV, a (?:thin|small) tube|tube called an IV|through an IV, a small tube",
    r"\bplacebo\b": r"placebo (?:is|group,|group, meaning) (?:a )?(?:dummy|group given|which means|no one)"
    r"|placebo group, a group given a dummy dose|A placebo is a dummy dose|dummy dose \(a placebo\)",
    r"\b[Ee]sketamine\b": r"Esketamine \(Spravato\)[^.]*nasal spray|esketamine \(Spravato\), a nasal spray",
    r"Schedule III": r"Schedule III\), which means the law limits it",
    r"boxed warning": r"boxed warning, the strongest kind",
    r"\bFDA\b": r"FDA, which approves drugs|FDA, the agency that approves drugs",
    r"\bTMS\b": r"TMS[^.]*(?:magnetic|coil)|(?:coil|magnetic)[^.]*\.",
    r"\bCBT\b": r"CBT[^.]*(?:talk therapy|therapy)|talk therapy[^.]*CBT|called CBT",
    r"GAD-7": r"GAD-7[^.]*\.\s*It asks seven questions",
    r"\bamygdala\b": r"called the amygdala",
    r"\bserotonin\b": r"(?:signal|messenger)s?[^.]*serotonin|serotonin, one of the chemical",
    r"\bglutamate\b": r"glutamate, a chemical|called glutamate|(?:signal|messenger)[^.]*glutamate",
    r"benzodiazepines": r"benzodiazepines \(calming pills",
    r"lamotrigine": r"lamotrigine \(a seizure and mood drug\)",
    r"\bpsychosis\b": r"psychosis, which means",
    r"\baneurysm\b": r"aneurysm \(a weak spot",
    r"\b(?:HSA|FSA)\b": r"health savings or spending account \(HSA or FSA\)",
    r"\binfusion\b": r"infusion(?:, which means|\s+means|, a slow drip| is a slow drip|: the drug drips)",
    r"\bintake\b": r"intake visit(?:,| \(| is)[^.]*medical check"
    r"|intake visit[^.]*\. (?:This|It) is a medical check",
    r"treatment-resistant": r"two or more",
    r"\boff-label\b": r"(?:not approved|has not approved|not FDA-approved)[^.]*(?:\.[^.]*)?off-label",
}


@pytest.mark.parametrize("name", TEMPLATES)
def test_every_technical_word_is_explained_in_the_email_that_uses_it(name):
    text = " ".join(body_text(render(name, "social", 3, "Sam").text).split())
    missing = [
        term
        for term, explained in GLOSSARY.items()
        if re.search(term, text) and not re.search(explained, text)
    ]
    assert missing == [], f"{name} uses {missing} without explaining them"


# ---- the plain-text part -------------------------------------------------------------------------


def test_text_part_headings_are_title_case_not_capitals():
    assert title_case("what the studies found") == "What the Studies Found"
    assert title_case("how we track how you are doing") == "How We Track How You Are Doing"
    assert title_case("GAD-7 and TMS, in plain words") == "GAD-7 and TMS, in Plain Words"
    assert title_case("step 1: a first talk") == "Step 1: A First Talk"
    assert title_case('what "hard to treat" means') == 'What "Hard to Treat" Means'
    assert title_case("I have tried so much. is this one more thing?") == (
        "I Have Tried So Much. Is This One More Thing?"
    )
    text = markdown_to_text("## the risks, in plain words\n\nText.\n")
    assert text == "The Risks, in Plain Words\n\nText.\n"
    for name in TEMPLATES:
        for line in body_text(render(name, None, None, "Sam").text).splitlines():
            letters = re.sub(r"[^A-Za-z]", "", line)
            assert not (len(letters) > 8 and letters.isupper()), f"{name}: ALL CAPS line {line!r}"
