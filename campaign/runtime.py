"""Wiring: build the store, audiences, renderer and transport from Settings.

The one place that decides which transport runs: SendGrid when SENDGRID_API_KEY is set,
else the outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from campaign.audiences import load_audiences
from campaign.delivery import Transport
from campaign.delivery.activity import ActivityLookup
from campaign.engine import Context
from campaign.render import Renderer
from campaign.settings import Settings
from campaign.store import Store


def open_store(settings: Settings) -> Store:
    return Store.open(settings.database_url, secret_key=settings.secret_key.get_secret_value())


def make_transport(
    settings: Settings,
    clock: Callable[[], datetime] | None = None,
    describe: Callable[[list[str]], dict[str, dict]] | None = None,
) -> Transport:
    """`describe` labels the outbox's index rows (audience, step, campaign); SendGrid never
    gets it."""
    if settings.sendgrid_api_key is not None:
        from campaign.delivery.sendgrid_transport import SendGridTransport

        return SendGridTransport(
            api_key=settings.sendgrid_api_key.get_secret_value(),
            host=settings.sendgrid_api_host,
            sandbox=settings.sandbox,
            concurrency=settings.send_concurrency,
            # A request that may have reached SendGrid is never retried blind: it
            # becomes 'unknown' and the ledger's reconciliation settles it (exactly once).
            retry_ambiguous=False,
        )
    from campaign.delivery.outbox import OutboxTransport

    return OutboxTransport(settings.outbox_dir, clock=clock, describe=describe)


def ledger_labels(store: Store) -> Callable[[list[str]], dict[str, dict]]:
    """For the outbox's local index: send id -> the audience, step and campaign of its ledger row."""

    def describe(send_ids: list[str]) -> dict[str, dict]:
        wanted = set(send_ids)
        return {
            fact["send_id"]: {
                "audience": fact["audience"],
                "step": fact["step_key"],
                "campaign": fact["campaign"],
            }
            for fact in store.report_facts()
            if fact["send_id"] in wanted
        }

    return describe


def transport_label(settings: Settings) -> str:
    if settings.sendgrid_api_key is None:
        return f"outbox ({settings.outbox_dir})"
    return f"SendGrid at {settings.sendgrid_api_host}" + (" (sandbox)" if settings.sandbox else "")


def build_context(settings: Settings, *, now: datetime | None = None, store: Store | None = None) -> Context:
    """`now` fixes the transport's clock (simulated runs write simulated dates)."""
    clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    store = store or open_store(settings)
    return Context(
        settings=settings,
        store=store,
        audiences=load_audiences(settings.audiences_dir),
        renderer=Renderer(settings.templates_dir, settings.clinic),
        transport=make_transport(settings, clock, describe=ledger_labels(store)),
        activity=ActivityLookup.from_settings(settings),
    )
