"""Campaigns: launch, pause, resume, stop, preflight and status (rules here; SQL in store).

A new database holds one evergreen campaign over every audience, active, so import and tick
work with no launch step. Named campaigns add their own audiences, start time and state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo

from campaign.audiences import Audience
from campaign.settings import DEV_SECRET_KEY, Clinic, Settings
from campaign.store import ALL_AUDIENCES, EVERGREEN, Store

STATES = ("active", "paused", "stopped")
TRANSITIONS = {
    "pause": ({"active"}, "paused"),
    "resume": ({"paused"}, "active"),
    "stop": ({"active", "paused"}, "stopped"),
}


class CampaignError(ValueError):
    """A request that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class Preflight:
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.casefold()).strip("-")
    if not slug:
        raise CampaignError(f"campaign name {name!r} needs at least one letter or digit")
    return slug[:64]


def health_words_in_name(name: str) -> list[str]:
    """Condition and treatment words in a campaign name (the subject rule's list), also where
    they touch digits or run together in camel case ("Ketamine2026", "SocialAnxiety")."""
    from campaign.lint import DEFAULT_HEALTH_TERMS, find_terms

    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])|(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])", " ", name)
    return find_terms(spaced, DEFAULT_HEALTH_TERMS)


@dataclass(frozen=True)
class Check:
    """One item of the live-send preflight: what is checked and, when it fails, what to do."""

    label: str  # in a coordinator's words, e.g. "Content approved"
    problems: tuple[str, ...] = ()
    # About the emails' content (lint, approval), not the settings: a draft test may override it.
    content: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems


def preflight_checks(settings: Settings, *, lint_errors: list[str], unapproved: list[str]) -> list[Check]:
    """Every item a live send needs, passing or not, in the order a coordinator fixes them."""
    clinic = settings.clinic
    checks = [Check("No lint errors in the emails", tuple(f"lint: {e}" for e in lint_errors), content=True)]
    checks.append(
        Check(
            "Every email approved in its current form",
            (
                f"content not approved since its last change: {', '.join(sorted(unapproved))}; "
                "review with `campaign preview`, then `campaign approve AUDIENCE --by NAME --role ROLE`",
            )
            if unapproved
            else (),
            content=True,
        )
    )
    checks.append(
        Check(
            "The clinic's real postal address in every footer",
            (
                "clinic.yaml: postal_address is the example address; put the clinic's real postal address "
                "(CAN-SPAM) and set postal_address_is_example: false",
            )
            if clinic.postal_address_is_example
            else (),
        )
    )
    checks.append(
        Check(
            "Unsubscribe links use https",
            ()
            if settings.public_url.startswith("https://")
            else (
                f"CAMPAIGN_PUBLIC_URL is {settings.public_url!r}; unsubscribe links need the https address "
                "of `campaign serve`",
            ),
        )
    )
    checks.append(
        Check(
            "A secret key of its own (not the development key)",
            ("CAMPAIGN_SECRET_KEY is the development key; set a long random secret",)
            if settings.secret_key.get_secret_value() == DEV_SECRET_KEY
            else (),
        )
    )
    checks.append(
        Check(
            "SendGrid's event webhook key, to trust delivery events",
            ()
            if getattr(settings, "sendgrid_webhook_public_key", None)
            else (
                "SENDGRID_WEBHOOK_PUBLIC_KEY is not set; copy the Signed Event Webhook's verification key "
                "from SendGrid",
            ),
        )
    )
    real_sender = clinic.sender_email and not clinic.sender_email.endswith(".example")
    checks.append(
        Check(
            "A real sender address",
            ()
            if real_sender
            else (
                f"clinic.yaml: sender_email {clinic.sender_email!r} is not a real sender; use an address on "
                "the clinic's authenticated domain",
            ),
        )
    )
    unset = unset_clinic_facts(clinic)
    checks.append(Check("The clinic's visit, cost and office-hours facts filled in", tuple(unset)))
    return checks


def preflight(settings: Settings, *, lint_errors: list[str], unapproved: list[str]) -> Preflight:
    """What a live send needs. Every problem at once, each with what to do."""
    checks = preflight_checks(settings, lint_errors=lint_errors, unapproved=unapproved)
    return Preflight([problem for check in checks for problem in check.problems])


def unset_clinic_facts(clinic: Clinic) -> list[str]:
    """The facts the emails state from clinic.yaml that a coordinator has not filled in yet."""
    problems = []
    if not (clinic.office_hours or "").strip():
        problems.append(
            "clinic.yaml: office_hours is not set; the emails that invite a reply say when the care team "
            "reads replies (e.g. 'Monday to Friday, 9 am to 5 pm Eastern time')"
        )
    unset = clinic.cost_and_commitment.unset()
    if unset:
        problems.append(
            f"clinic.yaml: cost_and_commitment has no value for {', '.join(unset)}; fill each in as it "
            "should read in a sentence (the emails state them to every reader)"
        )
    return problems


def is_live(settings: Settings) -> bool:
    """A live send really delivers: SendGrid configured and sandbox off, and the API host not
    plain http on loopback (the project's own SendGrid-compatible server, `campaign dev-sendgrid`
    and `campaign demo --sendgrid`, delivers nothing; SendGrid itself is https only)."""
    return (
        settings.sendgrid_api_key is not None
        and not settings.sandbox
        and not is_local_dev_host(settings.sendgrid_api_host)
    )


def is_local_dev_host(host: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(host)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def live_preflight(settings: Settings, store: Store, template_names: list[str]) -> list[str]:
    """Everything that stops a live send of these templates (empty when all is well)."""
    from campaign.approval import unapproved
    from campaign.render import Renderer

    renderer = Renderer(settings.templates_dir, settings.clinic)
    errors = lint_errors(settings, template_names, renderer)
    return preflight(
        settings, lint_errors=errors, unapproved=unapproved(store, renderer, template_names)
    ).problems


def test_send_problems(
    settings: Settings, store: Store | None, template: str, sequence: list[str]
) -> tuple[list[str], list[str]]:
    """What stops a live test send of `template` (one step of `sequence`, its audience's
    templates): (content problems, settings problems); nothing when the send is not live. Lint
    runs over the whole sequence (its rules need every step) and keeps what concerns this
    email or the sequence. A draft test may override the content problems only."""
    from campaign.approval import unapproved
    from campaign.render import Renderer

    if not is_live(settings):
        return [], []
    if store is None:
        raise ValueError("a live test send needs the store (its approvals)")
    renderer = Renderer(settings.templates_dir, settings.clinic)
    concerned = (f"{template}: ", f"{template.split('/')[0]}: ")
    errors = [e for e in lint_errors(settings, sequence, renderer) if e.startswith(concerned)]
    checks = preflight_checks(
        settings, lint_errors=errors, unapproved=unapproved(store, renderer, [template])
    )
    content = [p for c in checks if c.content for p in c.problems]
    return content, [p for c in checks if not c.content for p in c.problems]


def lint_errors(settings: Settings, template_names: list[str], renderer=None) -> list[str]:
    """The lint errors (not warnings) of these templates, as preflight lists them."""
    from campaign.lint import lint_templates
    from campaign.render import Renderer

    renderer = renderer or Renderer(settings.templates_dir, settings.clinic)
    sequences: dict[str, list] = {}
    for name in template_names:
        sequences.setdefault(name.split("/")[0], []).append((name.split("/")[-1], name))
    # Lint judges the content; the public URL itself is a settings item of the preflight.
    problems, _ = lint_templates(
        renderer, sequences, unsubscribe_url="https://clinic.example.org/unsubscribe/x"
    )
    return [f"{p.template}: {p.message}" for p in problems if p.severity == "error"]


def live_tick_problems(settings: Settings, store: Store, audiences: list[Audience]) -> list[str]:
    """What stops a tick of every audience: nothing when the send is not live (the store is
    not even read), else the live preflight of every step's template."""
    if not is_live(settings):
        return []
    return live_preflight(settings, store, [step.template for a in audiences for step in a.steps])


class PreflightFailed(RuntimeError):
    def __init__(self, problems: list[str]):
        super().__init__("a live send is refused until these are fixed:\n  - " + "\n  - ".join(problems))
        self.problems = problems


def launch(
    store: Store,
    audiences: list[Audience],
    *,
    name: str,
    audience_names: list[str],
    starts_at: datetime | None,
    sandbox: bool,
    now: datetime,
) -> dict:
    slug = check_launch(store, audiences, name=name, audience_names=audience_names)
    known = {a.name: a for a in audiences}
    versions = {n: known[n].version for n in audience_names}
    return store.create_campaign(
        slug=slug,
        name=name,
        audiences=audience_names,
        starts_at=starts_at,
        sandbox=sandbox,
        versions=versions,
        now=now,
    )


def check_launch(store: Store, audiences: list[Audience], *, name: str, audience_names: list[str]) -> str:
    """The slug a launch would create; CampaignError when the audiences or the name will not do."""
    known = {a.name: a for a in audiences}
    unknown = [n for n in audience_names if n not in known]
    if unknown or not audience_names:
        raise CampaignError(
            f"unknown audience(s) {unknown or '(none given)'}; choose from {', '.join(known)}"
        )
    found = health_words_in_name(name)
    if found:
        raise CampaignError(
            f"campaign name {name!r} contains {', '.join(repr(w) for w in found)}: campaign names show in "
            "status, reports, Prefect and logs that others read, so they must not name a condition or a "
            "treatment; name it by season or purpose instead, e.g. 'Spring 2026' or 'Newsletter signups'"
        )
    slug = slugify(name)
    if store.campaign(slug) is not None:
        raise CampaignError(
            f"a campaign named {slug!r} exists; choose another name or `campaign resume {slug}`"
        )
    return slug


def change_state(store: Store, name: str, action: str, reason: str | None = None) -> dict:
    campaign = store.campaign(slugify(name))
    if campaign is None:
        names = ", ".join(c["slug"] for c in store.campaigns())
        raise CampaignError(f"no campaign named {name!r}; campaigns: {names}")
    allowed, target = TRANSITIONS[action]
    if campaign["state"] not in allowed:
        raise CampaignError(f"campaign {campaign['slug']!r} is {campaign['state']}; it cannot {action}")
    store.set_campaign_state(campaign["slug"], target, reason if action == "pause" else None)
    return store.campaign(campaign["slug"])


def status(store: Store, settings: Settings, now: datetime) -> list[dict]:
    """Per campaign: state, leads per audience (by enrollment state) and step (by send status),
    sent today (the clinic's day), due in the next 24 hours, failures, unknown sends (and those
    at the resend cap: never sent again), why paused."""
    tz = ZoneInfo(settings.clinic.timezone)
    day_start = datetime.combine(now.astimezone(tz).date(), time(0), tzinfo=tz)
    result = []
    campaigns = store.campaigns()
    every = store.campaign_statuses([c["id"] for c in campaigns], now, day_start, settings.max_resends)
    for c in campaigns:
        facts = every[c["id"]]
        audiences: dict[str, dict] = {}
        for row in facts["per_audience"]:
            audiences.setdefault(
                row["audience"], {"enrolled": 0, "active": 0, "finished": 0, "exited": 0, "steps": {}}
            )
            audiences[row["audience"]][row["state"]] += row["n"]
            audiences[row["audience"]]["enrolled"] += row["n"]
        failures = unknown = 0
        for row in facts["per_step"]:
            entry = audiences.setdefault(
                row["audience"], {"enrolled": 0, "active": 0, "finished": 0, "exited": 0, "steps": {}}
            )
            entry["steps"].setdefault(row["step_key"], {}).update({row["status"]: row["n"]})
            failures += row["n"] if row["status"] == "failed" else 0
            unknown += row["n"] if row["status"] == "unknown" else 0
        result.append(
            {
                "campaign": c["slug"],
                "name": c["name"],
                "state": c["state"],
                "sandbox": c["sandbox"],
                "audiences": "all" if c["audiences"] == ALL_AUDIENCES else c["audiences"],
                "starts_at": c["starts_at"].isoformat() if c["starts_at"] else None,
                "paused_reason": c["paused_reason"],
                "sent_today": facts["sent_today"],
                "due_next_24h": facts["due_24h"],
                "failures": failures,
                "unknown": unknown,
                "unknown_capped": facts["unknown_capped"],
                "per_audience": audiences,
            }
        )
    return result


__all__ = [
    "CampaignError",
    "Check",
    "EVERGREEN",
    "health_words_in_name",
    "Preflight",
    "PreflightFailed",
    "change_state",
    "check_launch",
    "is_live",
    "launch",
    "lint_errors",
    "live_preflight",
    "live_tick_problems",
    "preflight",
    "preflight_checks",
    "slugify",
    "status",
]
