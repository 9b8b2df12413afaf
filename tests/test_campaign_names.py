"""Campaign names never carry health words to SendGrid: launch refuses names with condition or
treatment words (the subject rule's list), and the SendGrid category is opaque anyway, so a
campaign named before the check sends nothing of its name."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr
from sendgrid_fixtures import KEY

from campaign.audiences import load_audiences
from campaign.campaigns import CampaignError, launch
from campaign.engine import run_tick
from campaign.lint import DEFAULT_HEALTH_TERMS
from campaign.models import AnxietyType, LeadIn
from campaign.runtime import build_context

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # Monday 10:00 in New York


def launch_named(store, settings, name: str) -> dict:
    return launch(
        store,
        load_audiences(settings.audiences_dir),
        name=name,
        audience_names=["gad"],
        starts_at=None,
        sandbox=False,
        now=NOW,
    )


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("Social Anxiety Ketamine Spring", "'social anxiety', 'ketamine'"),
        ("GAD push", "'gad'"),
        ("treatment_resistant-fall", "'treatment_resistant'"),
        ("Ketamine2026", "'ketamine'"),
        ("PanicAttacks", "'panic attacks'"),
        ("Spring DEPRESSION outreach", "'depression'"),
    ],
)
def test_launch_refuses_names_with_health_words_and_says_what_to_do(sqlite_store, settings, name, words):
    with pytest.raises(CampaignError) as refused:
        launch_named(sqlite_store, settings, name)
    message = str(refused.value)
    assert f"contains {words}:" in message
    assert "e.g. 'Spring 2026'" in message
    assert sqlite_store.campaign("spring-2026") is None and len(sqlite_store.campaigns()) == 1


@pytest.mark.parametrize("name", ["Spring 2026", "Gadget fans", "Panicle garden", "Newsletter signups"])
def test_launch_accepts_neutral_names(sqlite_store, settings, name):
    assert launch_named(sqlite_store, settings, name)["name"] == name


def test_a_campaign_named_before_the_check_sends_an_opaque_category(sg, settings):
    live = settings.model_copy(update={"sendgrid_api_key": SecretStr(KEY), "sendgrid_api_host": sg.url})
    ctx = build_context(live, now=NOW)
    try:
        ctx.store.set_campaign_state("evergreen", "paused")
        legacy = ctx.store.create_campaign(  # as launch made it before names were checked
            slug="social-anxiety-ketamine-spring",
            name="Social Anxiety Ketamine Spring",
            audiences=["social"],
            starts_at=None,
            sandbox=False,
            versions={"social": "v"},
            now=NOW,
        )
        ctx.store.upsert_leads(
            [LeadIn(email="s@example.com", consent=True, anxiety_type=AnxietyType.social)], NOW
        )
        assert sum(run_tick(ctx, NOW).sent.values()) == 1
    finally:
        ctx.store.close()
    [message] = sg.messages
    assert message.payload["categories"] == [f"campaign-{legacy['id']}"]
    metadata = json.dumps([message.payload["categories"], message.payload["custom_args"]]).lower()
    assert not [term for term in DEFAULT_HEALTH_TERMS if term.replace(" ", "-") in metadata]
