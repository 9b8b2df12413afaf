"""The `campaign` command: a thin Typer shell over the application layer (campaign.app) and the
flows. A command parses options, calls one use case, prints what it returns and picks the exit
code; no rule lives here.

  base       the Typer apps, consoles, fail(), settings, the store as a context manager
  output     --format table|json|csv (and --json) for every listing command
  leads      import, leads, timeline, booked, forget
  content    audiences (and check), lint, approve, preview
  campaigns  launch, pause, resume, stop, status, report
  delivery   tick, schedule, demo, dev-sendgrid, test-send
  web        serve
  forms      form create, list, disable (sign-up forms)

Quick commands never import Prefect (about 1.3 s); only tick, demo and the flow commands do,
after campaign.prefect_env has set Prefect's defaults for this process.
Exit codes: 0 ok, 1 problems found (lint, checks), 2 bad input (unreadable file, bad option).
"""

from __future__ import annotations

from importlib import import_module

from campaign import prefect_env
from campaign.cli.base import app

# Before any command imports Prefect: no telemetry, and Prefect's state out of ~/.prefect.
prefect_env.apply()

# Importing a command module registers its commands on `app`, in the order `--help` lists them.
for _module in ("leads", "delivery", "campaigns", "content", "web"):
    import_module(f"campaign.cli.{_module}")

from campaign.cli.accounts import token_app, user_app  # noqa: E402
from campaign.cli.forms import form_app  # noqa: E402

app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(form_app, name="form")

__all__ = ["app", "main"]


def main():  # pragma: no cover
    app()
