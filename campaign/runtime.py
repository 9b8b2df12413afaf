"""Wiring: build the store, audiences, renderer and transport from Settings.

The one place that decides which transport runs: SendGrid when SENDGRID_API_KEY is set,
else the outbox.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from campaign.audiences import load_audiences
from campaign.delivery import Transport
from campaign.engine import Context
from campaign.render import Renderer
from campaign.settings import Settings
from campaign.store import Store


def open_store(settings: Settings) -> Store:
    return Store.open(settings.database_url, secret_key=settings.secret_key.get_secret_value())


def make_transport(settings: Settings, clock: Callable[[], datetime] | None = None) -> Transport:
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

    return OutboxTransport(settings.outbox_dir, clock=clock)


def transport_label(settings: Settings) -> str:
    if settings.sendgrid_api_key is None:
        return f"outbox ({settings.outbox_dir})"
    return f"SendGrid at {settings.sendgrid_api_host}" + (" (sandbox)" if settings.sandbox else "")


def build_context(settings: Settings, *, now: datetime | None = None, store: Store | None = None) -> Context:
    """`now` fixes the transport's clock (simulated runs write simulated dates)."""
    clock = (lambda: now) if now is not None else (lambda: datetime.now(UTC))
    return Context(
        settings=settings,
        store=store or open_store(settings),
        audiences=load_audiences(settings.audiences_dir),
        renderer=Renderer(settings.templates_dir, settings.clinic),
        transport=make_transport(settings, clock),
    )
