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
