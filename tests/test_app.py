"""The application layer the CLI calls: plain values back, the rules in one place."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaign.app.campaigns import launch_campaign
from campaign.app.content import approval_request, record_approvals, write_previews
from campaign.app.leads import mark_booked
from campaign.audiences import load_audiences
from campaign.campaigns import PreflightFailed, live_tick_problems
from campaign.runtime import open_store

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def launch_gad(store, settings, name, sandbox=False):
    return launch_campaign(
        store,
        settings,
        load_audiences(settings.audiences_dir),
        name=name,
        audience_names=["gad"],
        starts_at=None,
        sandbox=sandbox,
        now=NOW,
    )


def test_launch_uses_the_one_live_rule(make_settings):
    """SendGrid at https refuses unapproved drafts; the project's own server on loopback and a
    sandbox campaign launch them and list what a live send would refuse."""
    live = make_settings(sendgrid_api_key="SG.key", sendgrid_api_host="https://api.sendgrid.com")
    with open_store(live) as store:
        with pytest.raises(PreflightFailed) as refused:
            launch_gad(store, live, "Spring")
        assert any("not approved" in p for p in refused.value.problems)
        assert store.campaign("spring") is None
        sandboxed = launch_gad(store, live, "Sandboxed", sandbox=True)
        assert sandboxed.campaign["slug"] == "sandboxed" and sandboxed.drafts
    dev = make_settings(sendgrid_api_key="SG.dev-key", sendgrid_api_host="http://127.0.0.1:3030")
    with open_store(dev) as store:
        launched = launch_gad(store, dev, "Against the dev server")
        assert launched.campaign["state"] == "active" and launched.drafts == refused.value.problems
        # The tick's preflight (engine.run_tick) follows the same rule.
        assert live_tick_problems(dev, store, load_audiences(dev.audiences_dir)) == []
        live_problems = live_tick_problems(live, store, load_audiences(live.audiences_dir))
        assert any("not approved" in p for p in live_problems)


def test_gallery_counts_come_from_the_writer(settings, tmp_path):
    with open_store(settings) as store:
        first = write_previews(settings, tmp_path / "out", store)
        assert (first.cards, first.drafts) == (20, 20)
        request = approval_request(settings, load_audiences(settings.audiences_dir), "gad", None)
        assert len(request.templates) == 5
        record_approvals(store, settings, request.templates, "Dr. Lee")
        second = write_previews(settings, tmp_path / "out", store)
    assert (second.cards, second.drafts) == (20, 15) and second.index == tmp_path / "out" / "index.html"
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        write_previews(settings, tmp_path / "file", None)


def test_approval_request_names_what_there_is(settings):
    audiences = load_audiences(settings.audiences_dir)
    with pytest.raises(LookupError, match="audiences: .*gad"):
        approval_request(settings, audiences, "nope", None)
    with pytest.raises(LookupError, match="steps: welcome"):
        approval_request(settings, audiences, "gad", "nope")
    assert approval_request(settings, audiences, "gad", "welcome").templates == ["gad/welcome"]


def test_mark_booked_returns_the_addresses_that_are_no_lead(settings, tmp_path):
    from campaign.app.leads import import_file

    (tmp_path / "leads.csv").write_text("Email,Consent\nann@example.com,yes\n")
    with open_store(settings) as store:
        import_file(store, settings, tmp_path / "leads.csv", NOW)
        assert mark_booked(store, ["ANN@example.com", "nobody@example.com"], NOW) == ["nobody@example.com"]
