"""Content commands: audiences (and audiences check), lint, approve, preview."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from campaign.cli.base import (
    app,
    audiences_app,
    console,
    err,
    fail,
    load_audiences_or_fail,
    settings,
    store_for,
    store_if_exists,
)
from campaign.cli.output import Format, FormatOption, JsonOption, chosen, emit, print_table

if TYPE_CHECKING:
    from campaign.settings import Settings
    from campaign.store import Store

PROBLEM_COLUMNS = ("template", "file", "rule", "severity", "message")


def print_problem(problem: dict) -> None:
    """Errors to stderr in red, warnings to stdout: file, rule id, what to change."""
    colour = "red" if problem["severity"] == "error" else "yellow"
    (err if problem["severity"] == "error" else console).print(
        f"[{colour}]{problem['severity']}[/] {escape(problem['file'])} "
        f"[dim]\\[{escape(problem['rule'])}][/] {escape(problem['message'])}",
        highlight=False,
    )


def steps_text(steps: list[dict]) -> str:
    return ", ".join(f"{st['key']} ({st['day']:g})" for st in steps)


# ---- audiences ----------------------------------------------------------------------------------


@audiences_app.callback()
def audiences_list(
    ctx: typer.Context, output_format: FormatOption = Format.table, as_json: JsonOption = False
):
    """Each audience: its rule, its steps (day), its lead count."""
    if ctx.invoked_subcommand:
        return
    from campaign.app.audiences import audience_rows

    output_format = chosen(output_format, as_json)
    s = settings()
    found = load_audiences_or_fail(s)
    with store_if_exists(s) as store:
        rows = audience_rows(found, store)

    def show() -> None:
        table = Table("priority", "audience", "rule", "steps (day)", "leads")
        for r in rows:
            table.add_row(
                str(r["priority"]), r["audience"], r["rule"], steps_text(r["steps"]), str(r["leads"])
            )
        print_table(table)

    emit(
        output_format,
        rows=[{**r, "steps": steps_text(r["steps"])} for r in rows],
        columns=("priority", "audience", "rule", "steps", "leads"),
        data=rows,
        table=show,
    )


@audiences_app.command("check")
def audiences_check():
    """Validate the audience files and their templates.

    Checks audiences/*.yaml and renders every step's template; exits 1 listing every problem."""
    from campaign.app.audiences import check_audiences

    result = check_audiences(settings())
    if not result.ok:
        for p in result.problems:
            err.print(f"[red]✗[/] {p}", highlight=False)
        err.print(f"{len(result.problems)} problem(s).")
        raise typer.Exit(1)
    console.print(f"[green]✓[/] {result.audiences} audiences, {result.steps} steps, every template renders.")


# ---- lint ---------------------------------------------------------------------------------------


@app.command()
def lint(
    output_format: FormatOption = Format.table,
    as_json: JsonOption = False,
    list_rules: Annotated[
        bool, typer.Option("--rules", help="List the rules (id, severity, what each checks) and exit.")
    ] = False,
):
    """Check every email's content; exit 1 on an error.

    Lints every email (audience x step), rendered for sample leads including hostile names:
    footer, unsubscribe link, 988 line, privacy of subjects/preheaders/URLs, escaping, promises,
    off-label statement, reading grades (Flesch-Kincaid and SMOG, each at most 8), size, links,
    images. Prints each problem with its template file and what to change, and each email's
    grades.
    Exits 1 on any error; warnings do not fail. --rules lists the rules instead."""
    from campaign.app.content import lint_content

    output_format = chosen(output_format, as_json)
    if list_rules:
        from campaign.lint import rule_rows

        rows = rule_rows()

        def rules_table() -> None:
            table = Table(*rows[0], title="Lint rules")
            table.columns[0].no_wrap = True
            for row in rows:
                table.add_row(*row.values())
            print_table(table)

        emit(output_format, rows=rows, columns=list(rows[0]), table=rules_table)
        return
    s = settings()
    report = lint_content(s, load_audiences_or_fail(s))

    def show() -> None:
        for p in report.problems:
            print_problem(p)
        table = Table(
            "audience",
            "step",
            "day",
            "grade (FK)",
            "SMOG",
            "errors",
            "warnings",
            title=f"Reading grades per email ({report.templates_dir}/AUDIENCE/STEP.md; text part "
            "without the footer; each at most 8)",
        )
        for e in report.emails:
            grade, smog = ("-" if g is None else f"{g:.1f}" for g in (e["grade"], e["smog"]))
            table.add_row(
                e["audience"], e["step"], f"{e['day']:g}", grade, smog, str(e["errors"]), str(e["warnings"])
            )
        print_table(table)
        total = len(report.emails)
        if report.errors:
            err.print(
                f"[red]✗[/] {report.errors} error(s), {report.warnings} warning(s) in {total} emails.",
                highlight=False,
            )
        else:
            console.print(
                f"[green]✓[/] {total} emails, no errors, {report.warnings} warning(s).", highlight=False
            )

    emit(output_format, rows=report.problems, columns=PROBLEM_COLUMNS, data=report.as_dict(), table=show)
    if not report.ok:
        raise typer.Exit(1)


# ---- approve ------------------------------------------------------------------------------------


@app.command()
def approve(
    audience: Annotated[str, typer.Argument(help="The audience whose emails to approve.")],
    step: Annotated[
        str | None, typer.Argument(help="One step's key; default: every step of the audience.")
    ] = None,
    by: Annotated[
        str, typer.Option("--by", metavar="NAME", help="The reviewer's name, recorded with the approval.")
    ] = ...,
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            metavar="ROLE",
            help='The reviewer\'s credential, shown in the footer: e.g. "MD", "NP", "PharmD", '
            '"clinical reviewer".',
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Approve even though lint finds errors (they are listed).")
    ] = False,
):
    """Record a reviewer's sign-off of emails.

    One step's email, or every step of an audience: the reviewer, their role, the date and a
    hash of the content. Emails sent while the content is as approved carry "Medically reviewed
    by NAME, ROLE, DATE" in the footer. The hash covers templates/<audience>/<step>.md, the
    partials it includes AND the shared layouts templates/layout.mjml and templates/layout.txt,
    so editing an email or a layout makes it need approval again. Live SendGrid sends refuse
    unapproved emails; the outbox and the sandbox accept drafts. Lint runs first and errors
    refuse the approval unless --force."""
    from campaign.app.content import approval_request, record_approvals
    from campaign.approval import ROLE_EXAMPLES
    from campaign.render import TemplateError

    if not (role or "").strip():
        fail(
            "give the reviewer's role, shown in the emails' footer: --role ROLE, e.g. "
            + ", ".join(f'"{r}"' for r in ROLE_EXAMPLES)
        )
    s = settings()
    try:
        request = approval_request(s, load_audiences_or_fail(s), audience, step)
    except LookupError as exc:
        fail(str(exc).strip("'\""))
    for p in request.blocking:
        print_problem(p)
    if request.blocking and not force:
        fail(
            f"lint found {len(request.blocking)} error(s) in what you asked to approve; nothing was "
            "approved. Fix them (see `campaign lint`), or approve anyway with --force.",
            code=1,
        )
    if request.blocking:
        err.print(
            f"[yellow]warning:[/] approving despite {len(request.blocking)} lint error(s) (--force).",
            highlight=False,
        )
    with store_for(s) as store:
        try:
            done = record_approvals(store, s, request.templates, by, role=role)
        except ValueError as exc:
            fail(str(exc))
        except (TemplateError, OSError) as exc:
            fail(f"cannot read the template: {exc}; nothing was approved", code=1)
    for a in done:
        if a.new:
            console.print(
                f"[green]✓[/] {a.template} approved by {escape(a.by)} ({escape(role.strip())}) on "
                f"{a.at:%Y-%m-%d} "
                f"(content {a.content_hash[:12]})",
                highlight=False,
            )
        else:
            console.print(
                f"  {a.template}: this content was already approved by {escape(a.by)} on {a.at:%Y-%m-%d}",
                highlight=False,
            )
    console.print(
        "A change to these templates or to templates/layout.mjml or layout.txt needs approval again.",
        highlight=False,
    )


# ---- preview ------------------------------------------------------------------------------------


@app.command()
def preview(
    audience: Annotated[
        str | None, typer.Argument(help="With STEP: preview one email. Omit both for the gallery.")
    ] = None,
    step: Annotated[str | None, typer.Argument(help="The step's key (e.g. welcome).")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            metavar="PATH",
            help=(
                "Gallery: a folder (default preview/). One email: an .html file (default "
                "preview-AUDIENCE-STEP.html)."
            ),
        ),
    ] = None,
    lead: Annotated[
        str | None,
        typer.Option(
            "--lead",
            metavar="EMAIL",
            help="One email: render it for this lead's first name (from the database).",
        ),
    ] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the result in a web browser.")] = False,
):
    """Write HTML previews of the emails.

    With no arguments: a self-contained HTML gallery
    (PATH/index.html): per audience, each step with its day, subject, preheader, the email at
    phone and desktop widths, its text part, lint results and approval state (DRAFT when not
    approved). With AUDIENCE STEP: one email (for a sample lead, or --lead EMAIL's first name)
    written to an .html file; the subject, preheader and text part are printed here."""
    from campaign.audiences import AudienceFileError

    s = settings()
    if audience is not None and step is None:
        fail("give the STEP too (e.g. `campaign preview gad welcome`), or nothing for the gallery")
    if audience is None and lead is not None:
        fail("--lead needs AUDIENCE STEP: the gallery is rendered for a sample lead")
    try:
        with store_if_exists(s) as store:
            if audience is None:
                target = _gallery(s, out, store)
            else:
                target = _one_email(s, store, audience, step, lead=lead, out=out)
    except AudienceFileError as exc:
        fail("the audience files have problems:\n  " + "\n  ".join(exc.problems), code=1)
    from campaign.preview import placeholder_address_warning

    warning = placeholder_address_warning(s)
    if warning:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    if open_:
        import webbrowser

        webbrowser.open(target.resolve().as_uri())


def _gallery(s: Settings, out: Path | None, store: Store | None) -> Path:
    from campaign.app.content import write_previews

    try:
        written = write_previews(s, out, store)
    except NotADirectoryError as exc:
        fail(str(exc))
    console.print(
        f"Gallery of {written.cards} emails ({written.drafts} DRAFT): {written.index.resolve()}",
        highlight=False,
    )
    return written.index


def _one_email(
    s: Settings, store: Store | None, audience: str, step: str, *, lead: str | None, out: Path | None
) -> Path:
    from campaign.app.content import preview_recipient, write_email_preview

    try:
        recipient = preview_recipient(store, lead, audience, s)
    except LookupError as exc:
        fail(str(exc), code=1)
    if recipient.note:
        err.print(f"[yellow]note:[/] {recipient.note}", highlight=False)
    try:
        result = write_email_preview(s, store, audience, step, first_name=recipient.first_name, out=out)
    except LookupError as exc:
        fail(str(exc).strip("'\""))
    card = result.card
    if card.error:
        err.print(f"[red]does not render:[/] {escape(card.error)}", highlight=False)
    typer.echo(f"Subject:   {card.subject}")
    typer.echo(f"Preheader: {card.preheader}")
    approval = card.state.label if result.approvals_known else "DRAFT: no database, so no approvals"
    typer.echo(f"Approval:  {approval}")
    grade = "-" if card.grade is None else f"{card.grade:.1f}"
    smog = "-" if card.smog is None else f"{card.smog:.1f}"
    typer.echo(
        f"Lint:      {card.errors} error(s), {len(card.problems) - card.errors} warning(s); "
        f"reading grade {grade} (Flesch-Kincaid), {smog} (SMOG)"
    )
    for p in card.problems:
        typer.echo(f"  {p.severity} [{p.rule}] {p.message}")
    typer.echo("\n" + card.text)
    console.print(f"Preview written: {result.path.resolve()}", highlight=False)
    if card.error:
        raise typer.Exit(1)
    return result.path
