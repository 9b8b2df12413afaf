"""`campaign form ...`: the embeddable sign-up forms (campaign.app.forms).

`create` prints the form's key and page on standard error and the HTML snippet alone on standard
output (`campaign form create web > form.html`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from campaign.cli.base import CampaignTyper, console, err, fail, settings, store_for
from campaign.cli.output import print_table

form_app = CampaignTyper(
    help="Sign-up forms: create (key, HTML snippet), list, disable.", no_args_is_help=True
)


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "-"


@form_app.command("create")
def form_create(
    name: Annotated[str, typer.Argument(help="The form's name, like website or instagram.")],
    audience_question: Annotated[
        str | None, typer.Option("--audience-question", metavar="TEXT", help="The anxiety question's label.")
    ] = None,
    consent_text: Annotated[
        str | None,
        typer.Option("--consent-text", metavar="TEXT", help="The consent checkbox's exact wording."),
    ] = None,
):
    """Create a sign-up form: its key, page and HTML snippet.

    Its leads always confirm their address by email (double opt-in) before any sequence starts."""
    from campaign.app.forms import FormProblem, create_form, form_url
    from campaign.forms_web import snippet

    s = settings()
    with store_for(s) as store:
        try:
            form = create_form(store, s, name, audience_question, consent_text, datetime.now(UTC))
        except FormProblem as exc:
            fail(str(exc))
    err.print(
        f"Form {form.name} created. Key: {form.key}\nIts page: {form_url(s, form)}\n"
        f"Consent wording version: {form.consent_version}\nThe HTML snippet for your site is on "
        "standard output (no JavaScript needed).",
        highlight=False,
        soft_wrap=True,
    )
    print(snippet(s, form))


@form_app.command("list")
def form_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
):
    """List the sign-up forms.

    Every form: name, key, page, consent wording version, created, disabled."""
    from campaign.app.forms import form_url

    s = settings()
    with store_for(s) as store:
        found = store.forms()
    rows = [
        {
            "name": f.name,
            "key": f.key,
            "url": form_url(s, f),
            "consent_version": f.consent_version,
            "created_at": f.created_at.isoformat(),
            "disabled_at": f.disabled_at.isoformat() if f.disabled_at else None,
        }
        for f in found
    ]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    if not rows:
        console.print("No forms yet. Create one: campaign form create website", highlight=False)
        return
    table = Table("name", "key", "page", "created", "disabled")
    for f, row in zip(found, rows):
        table.add_row(f.name, f.key, row["url"], _when(f.created_at), _when(f.disabled_at))
    print_table(table)


@form_app.command("disable")
def form_disable(name: Annotated[str, typer.Argument(help="The form's name.")]):
    """Disable a sign-up form (its page then answers 404)."""
    s = settings()
    with store_for(s) as store:
        done = store.disable_form(name, datetime.now(UTC))
    if not done:
        fail(f"no enabled form is named {name!r}; see campaign form list")
    console.print(f"Form {name} disabled.", highlight=False)
