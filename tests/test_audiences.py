"""Audience files: validation errors that name the file and field; matching by priority."""

from __future__ import annotations

from pathlib import Path

import pytest

from campaign.audiences import AudienceFileError, load_audiences, match_audience, matches
from campaign.models import AnxietyType, LeadIn
from campaign.settings import PROJECT_ROOT

SHIPPED = load_audiences(PROJECT_ROOT / "audiences")


def lead(**kw) -> LeadIn:
    return LeadIn(email="a@example.com", consent=True, **kw)


@pytest.mark.parametrize(
    "kw, expected",
    [
        ({"anxiety_type": AnxietyType.gad}, "gad"),
        ({"anxiety_type": AnxietyType.social}, "social"),
        ({"anxiety_type": AnxietyType.treatment_resistant}, "treatment_resistant"),
        ({"anxiety_type": AnxietyType.unspecified}, "general"),
        # Two or more first-line treatments is the clinical definition, whatever else was reported.
        ({"anxiety_type": AnxietyType.social, "prior_treatments": 2}, "treatment_resistant"),
        ({"anxiety_type": AnxietyType.gad, "prior_treatments": 5}, "treatment_resistant"),
        ({"anxiety_type": AnxietyType.gad, "prior_treatments": 1}, "gad"),
        ({"anxiety_type": AnxietyType.unspecified, "prior_treatments": None}, "general"),
    ],
)
def test_shipped_audiences_priority(kw, expected):
    assert match_audience(SHIPPED, lead(**kw)).name == expected


def test_shipped_audiences_are_ordered_by_priority_and_have_five_steps():
    assert [a.name for a in SHIPPED] == ["treatment_resistant", "social", "gad", "general"]
    assert all(
        [s.key for s in a.steps] == ["welcome", "brain", "ketamine", "treatment", "questions"]
        for a in SHIPPED
    )


def test_rule_operators():
    l = lead(anxiety_type=AnxietyType.gad, prior_treatments=1, state="NC")
    assert matches({"all": [{"state": {"in": ["NC", "SC"]}}, {"not": {"prior_treatments": {"gt": 1}}}]}, l)
    assert matches({"any": [{"state": {"equals": "CA"}}, {"prior_treatments": {"lte": 1}}]}, l)
    assert not matches({"prior_treatments": {"gte": 2}}, lead(prior_treatments=None))  # unknown never passes
    assert matches({"prior_treatments": {"is_blank": True}}, lead(prior_treatments=None))


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / name).write_text(text)
    return tmp_path


def test_unknown_field_is_named_with_file(tmp_path):
    write(tmp_path, "x.yaml", "priority: 1\nmatch: {mood: {equals: sad}}\nsteps: [{key: a, day: 0}]\n")
    with pytest.raises(AudienceFileError) as info:
        load_audiences(tmp_path)
    assert "x.yaml" in str(info.value) and "unknown field 'mood'" in str(info.value)


def test_every_problem_is_listed_at_once(tmp_path):
    write(tmp_path, "a.yaml", "priority: 1\nmatch: all\nsteps: []\n")
    write(tmp_path, "b.yaml", "priority: 2\nmatch: all\nsteps: [{key: a, day: 0}]\nextra: 1\n")
    write(tmp_path, "c.yaml", "priority: 3\nmatch: all\nsteps: [{key: a, day: 0}, {key: a, day: 1}]\n")
    with pytest.raises(AudienceFileError) as info:
        load_audiences(tmp_path)
    text = str(info.value)
    assert (
        "a.yaml: steps" in text
        and "b.yaml: extra: unknown key" in text
        and "c.yaml" in text
        and "unique" in text
    )


def test_shared_priority_is_an_error(tmp_path):
    write(tmp_path, "a.yaml", "priority: 1\nmatch: all\nsteps: [{key: a, day: 0}]\n")
    write(tmp_path, "b.yaml", "priority: 1\nmatch: all\nsteps: [{key: a, day: 0}]\n")
    with pytest.raises(AudienceFileError, match="priority 1 is shared"):
        load_audiences(tmp_path)


def test_bad_operator_names_the_choices(tmp_path):
    write(tmp_path, "a.yaml", "priority: 1\nmatch: {state: {like: N%}}\nsteps: [{key: a, day: 0}]\n")
    with pytest.raises(AudienceFileError, match="unknown operator 'like'"):
        load_audiences(tmp_path)


# ---- why a lead matches, in words (the console's lead page) ------------------------------------


def test_explain_match_says_why_each_audience_before_the_lead_s_did_not_match():
    from campaign.audiences import explain_match

    verdicts = explain_match(SHIPPED, lead(anxiety_type=AnxietyType.gad, prior_treatments=1))
    assert [(v.audience, v.matched) for v in verdicts] == [
        ("treatment_resistant", False),
        ("social", False),
        ("gad", True),
    ]
    assert verdicts[0].reasons == (
        'anxiety type is "gad", not "treatment_resistant"',
        "prior treatments is 1, not at least 2",
    )
    assert verdicts[-1].reasons == ('anxiety type is "gad"',) and verdicts[-1].rule == "anxiety_type = gad"
    everyone = explain_match(SHIPPED, lead())[-1]
    assert (everyone.audience, everyone.reasons) == ("general", ("this audience takes everyone",))


@pytest.mark.parametrize(
    "rule, kw, matched, reasons",
    [
        (
            {"any": [{"state": {"equals": "CA"}}, {"prior_treatments": {"gte": 2}}]},
            {"state": "CA"},
            True,
            ('state is "CA"',),
        ),
        (
            {"all": [{"state": {"in": ["CA", "NY"]}}, {"booked": {"equals": False}}]},
            {"state": "TX"},
            False,
            ('state is "TX", none of "CA", "NY"',),
        ),
        (
            {"all": [{"state": {"in": ["CA", "NY"]}}, {"booked": {"equals": False}}]},
            {"state": "NY"},
            True,
            ('state is "NY", one of "CA", "NY"', "booked is no"),
        ),
        ({"not": {"source": {"equals": "ads"}}}, {"source": "ads"}, False, ('source is "ads"',)),
        ({"state": {"is_blank": True}}, {}, True, ("state is blank",)),
        ({"state": {"is_blank": True}}, {"state": "CA"}, False, ('state is "CA", not blank',)),
        (
            {"prior_treatments": {"lt": 2}},
            {},
            False,
            ("prior treatments is not known, so it is not less than 2",),
        ),
        ({"timezone": {"not_equals": "UTC"}}, {}, True, ('time zone is "America/New_York", not "UTC"',)),
    ],
)
def test_explain_rule_agrees_with_matches_and_names_the_deciding_facts(rule, kw, matched, reasons):
    from campaign.audiences import explain_rule

    subject = lead(**kw)
    assert matches(rule, subject) is matched
    assert explain_rule(rule, subject) == (matched, reasons)
