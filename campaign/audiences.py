"""Audiences: load and validate audiences/*.yaml, and match a lead to one (pure but for loading).

A rule is a small tree: {field: {op: value}} leaves combined with all/any/not.
Each consenting lead joins exactly one audience: the first that matches, by priority.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from campaign.models import LeadIn, SendWindow, Step

RULE_FIELDS = {"anxiety_type", "prior_treatments", "consent", "state", "source", "timezone", "booked"}
OPERATORS = {"equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "is_blank"}
# Never two emails to one lead closer than this, unless the audience file sets min_gap_hours.
DEFAULT_MIN_GAP_HOURS = 48


class AudienceFileError(ValueError):
    """One or more problems in audiences/; each line names the file, the field and the fix."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class StepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[a-z0-9_]+$")
    day: float = Field(ge=0, description="days after enrollment")
    template: str | None = None  # default: <audience>/<key>


class Audience(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    description: str = ""
    priority: int
    match: dict[str, Any] | Literal["all"]
    steps: tuple[Step, ...]
    send_window: SendWindow = SendWindow()
    min_gap_hours: float = Field(DEFAULT_MIN_GAP_HOURS, ge=0)

    @property
    def min_gap(self) -> timedelta:
        return timedelta(hours=self.min_gap_hours)

    def step(self, key: str) -> Step | None:
        return next((s for s in self.steps if s.key == key), None)

    @property
    def version(self) -> str:
        """A hash of what decides timing; stored on enrollments to notice live edits."""
        data = json.dumps(
            [[s.key, s.delay.total_seconds()] for s in self.steps]
            + [self.send_window.model_dump(), self.min_gap_hours],
            sort_keys=True,
        )
        return hashlib.sha256(data.encode()).hexdigest()[:16]

    def describe_rule(self) -> str:
        return describe_rule(self.match)


class AudienceFile(BaseModel):
    """The YAML as written."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    priority: int
    match: dict[str, Any] | Literal["all"]
    steps: list[StepSpec] = Field(min_length=1)
    send_window: SendWindow = SendWindow()
    min_gap_hours: float = Field(DEFAULT_MIN_GAP_HOURS, ge=0)

    @field_validator("match")
    @classmethod
    def _check_rule(cls, rule):
        if rule != "all":
            check_rule(rule)
        return rule

    @model_validator(mode="after")
    def _unique_keys(self):
        keys = [s.key for s in self.steps]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"step keys must be unique; repeated: {dupes}")
        if self.send_window.start_hour >= self.send_window.end_hour:
            raise ValueError("send_window.start_hour must be before end_hour")
        return self


def check_rule(rule: Any, path: str = "match") -> None:
    if not isinstance(rule, dict) or len(rule) != 1:
        raise ValueError(f"{path}: each rule is a mapping with exactly one key (a field, or all/any/not)")
    ((key, value),) = rule.items()
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise ValueError(f"{path}.{key}: give a non-empty list of rules")
        for i, sub in enumerate(value):
            check_rule(sub, f"{path}.{key}[{i}]")
    elif key == "not":
        check_rule(value, f"{path}.not")
    elif key in RULE_FIELDS:
        if not isinstance(value, dict) or len(value) != 1:
            raise ValueError(
                f"{path}.{key}: write one operator, e.g. {{equals: ...}}; operators: {sorted(OPERATORS)}"
            )
        ((op, _),) = value.items()
        if op not in OPERATORS:
            raise ValueError(f"{path}.{key}: unknown operator {op!r}; use one of {sorted(OPERATORS)}")
    else:
        raise ValueError(f"{path}: unknown field {key!r}; use one of {sorted(RULE_FIELDS)} or all/any/not")


def matches(rule: dict[str, Any] | str, lead: LeadIn) -> bool:
    if rule == "all":
        return True
    ((key, value),) = rule.items()
    if key == "all":
        return all(matches(r, lead) for r in value)
    if key == "any":
        return any(matches(r, lead) for r in value)
    if key == "not":
        return not matches(value, lead)
    actual = getattr(lead, key)
    actual = actual.value if hasattr(actual, "value") else actual
    ((op, expected),) = value.items()
    if op == "is_blank":
        return (actual in (None, "")) == bool(expected)
    if op == "equals":
        return actual == expected
    if op == "not_equals":
        return actual != expected
    if op == "in":
        return actual in expected
    if op == "not_in":
        return actual not in expected
    if actual is None:  # an unknown number never passes a comparison
        return False
    return {
        "gt": actual > expected,
        "gte": actual >= expected,
        "lt": actual < expected,
        "lte": actual <= expected,
    }[op]


def describe_rule(rule: dict[str, Any] | str) -> str:
    if rule == "all":
        return "everyone"
    ((key, value),) = rule.items()
    if key in ("all", "any"):
        joiner = " and " if key == "all" else " or "
        return "(" + joiner.join(describe_rule(r) for r in value) + ")"
    if key == "not":
        return f"not {describe_rule(value)}"
    ((op, expected),) = value.items()
    symbol = {
        "equals": "=",
        "not_equals": "!=",
        "in": "in",
        "not_in": "not in",
        "gt": ">",
        "gte": ">=",
        "lt": "<",
        "lte": "<=",
        "is_blank": "is blank:",
    }[op]
    return f"{key} {symbol} {expected}"


def load_audience(path: Path) -> Audience:
    """Raises AudienceFileError naming the file and each bad field."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AudienceFileError([f"{path}: not valid YAML: {exc}"]) from None
    try:
        spec = AudienceFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            if err["type"] == "extra_forbidden":
                problems.append(f"{path}: {where}: unknown key; remove it or check its spelling")
            elif err["type"] == "missing":
                problems.append(f"{path}: {where}: required; add it")
            else:
                problems.append(f"{path}: {where}: {err['msg'].removeprefix('Value error, ')}")
        raise AudienceFileError(problems) from None
    name = path.stem
    steps = tuple(
        Step(key=s.key, delay=timedelta(days=s.day), template=s.template or f"{name}/{s.key}")
        for s in sorted(spec.steps, key=lambda s: s.day)
    )
    return Audience(
        name=name,
        description=spec.description,
        priority=spec.priority,
        match=spec.match,
        steps=steps,
        send_window=spec.send_window,
        min_gap_hours=spec.min_gap_hours,
    )


def read_audiences(directory: Path) -> tuple[list[Audience], list[str]]:
    """Every audiences/*.yaml that is valid, sorted by priority, and every problem found."""
    problems, audiences = [], []
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        problems.append(f"{directory}: no audience files (*.yaml); add at least one")
    for path in files:
        try:
            audiences.append(load_audience(path))
        except AudienceFileError as exc:
            problems.extend(exc.problems)
    priorities = [a.priority for a in audiences]
    for audience in audiences:
        if priorities.count(audience.priority) > 1:
            problems.append(
                f"{directory}/{audience.name}.yaml: priority {audience.priority} is shared with another "
                "audience; give each a distinct priority"
            )
    return sorted(audiences, key=lambda a: a.priority), problems


def load_audiences(directory: Path) -> list[Audience]:
    """Every audience, sorted by priority; raises AudienceFileError listing every problem."""
    audiences, problems = read_audiences(directory)
    if problems:
        raise AudienceFileError(problems)
    return audiences


def match_audience(audiences: list[Audience], lead: LeadIn) -> Audience | None:
    """The first audience (by priority) whose rule the lead meets."""
    return next((a for a in audiences if matches(a.match, lead)), None)


# ---- why a lead matches (in plain words, for the console's lead page) --------------------------

FIELD_WORDS = {
    "anxiety_type": "anxiety type",
    "prior_treatments": "prior treatments",
    "consent": "consent",
    "state": "state",
    "source": "source",
    "timezone": "time zone",
    "booked": "booked",
}
_COMPARISONS = {"gt": "more than", "gte": "at least", "lt": "less than", "lte": "at most"}


@dataclass(frozen=True)
class Verdict:
    """One audience checked against a lead: whether its rule matched, and why in plain words."""

    audience: str
    priority: int
    rule: str  # the rule itself (describe_rule)
    matched: bool
    reasons: tuple[str, ...]


def explain_match(audiences: list[Audience], lead: LeadIn) -> list[Verdict]:
    """Each audience by priority up to the first that matches (the lead's), with the reasons:
    for the ones before it, why they did not match; for it, why it did."""
    verdicts = []
    for audience in audiences:
        matched, reasons = explain_rule(audience.match, lead)
        verdicts.append(Verdict(audience.name, audience.priority, audience.describe_rule(), matched, reasons))
        if matched:
            break
    return verdicts


def explain_rule(rule: dict[str, Any] | str, lead: LeadIn) -> tuple[bool, tuple[str, ...]]:
    """Whether `rule` matches `lead` (as `matches` decides), and the facts that decide it."""
    if rule == "all":
        return True, ("this audience takes everyone",)
    ((key, value),) = rule.items()
    if key in ("all", "any"):
        results = [explain_rule(r, lead) for r in value]
        passed = all(ok for ok, _ in results) if key == "all" else any(ok for ok, _ in results)
        if key == "any" and passed:  # one reason is enough
            return True, next(why for ok, why in results if ok)
        # all: every part (when it passed) or the failing parts; any that failed: every part
        deciding = [why for ok, why in results if ok == passed or key == "any"]
        return passed, tuple(reason for why in deciding for reason in why)
    if key == "not":
        passed, why = explain_rule(value, lead)
        return not passed, why
    actual = getattr(lead, key)
    actual = actual.value if hasattr(actual, "value") else actual
    ((op, expected),) = value.items()
    passed = matches(rule, lead)
    return passed, (_leaf_words(FIELD_WORDS.get(key, key), op, expected, actual, passed),)


def _words(value: Any) -> str:
    if value is None or value == "":
        return "blank"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple | set):
        return " or ".join(_words(v) for v in value)
    return f'"{value}"' if isinstance(value, str) else str(value)


def _leaf_words(name: str, op: str, expected: Any, actual: Any, passed: bool) -> str:
    given = f"{name} is {_words(actual)}"
    if op == "is_blank":
        wants_blank = bool(expected)
        return given if passed == wants_blank or actual in (None, "") else f"{given}, not blank"
    if op in ("equals", "not_equals"):
        same = passed == (op == "equals")
        return given if same else f"{given}, not {_words(expected)}"
    if op in ("in", "not_in"):
        inside = passed == (op == "in")
        return f"{given}, {'one' if inside else 'none'} of {', '.join(_words(v) for v in expected)}"
    if actual is None:
        return f"{name} is not known, so it is not {_COMPARISONS[op]} {expected}"
    return f"{given}, {'' if passed else 'not '}{_COMPARISONS[op]} {expected}"
