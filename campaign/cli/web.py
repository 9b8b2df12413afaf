"""The web app command: serve."""

from __future__ import annotations

from typing import Annotated

import typer

from campaign.cli.base import app, fail, settings


@app.command()
def serve(
    host: Annotated[
        str,
        typer.Option(metavar="HOST", help="Address to listen on (put a TLS proxy in front for the public)."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(metavar="N", help="Port to listen on.")] = 8000,
    console: Annotated[
        bool,
        typer.Option(
            "--console/--no-console",
            help="Serve the coordinator console at /console (--no-console: public pages and webhooks only).",
        ),
    ] = True,
):
    """Run the web app: console, API, webhooks.

    The coordinator console (/console), the lead API (/api/v1), unsubscribe pages, one-click
    unsubscribe, the SendGrid and booking webhooks."""
    import uvicorn

    from campaign.web import create_app
    from campaign.webhook_signature import InvalidPublicKey

    try:
        web_app = create_app(settings(), console=console)
    except InvalidPublicKey as exc:
        fail(str(exc))
    # No access log: unsubscribe URLs carry tokens, and a log reader could replay them.
    uvicorn.run(web_app, host=host, port=port, proxy_headers=True, access_log=False)
