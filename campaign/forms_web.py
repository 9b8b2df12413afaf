"""The public sign-up form and its double opt-in pages, beside the unsubscribe pages (campaign.web).

    GET  /forms/{key}        the form: a full, accessible page with a fresh signed "shown at"
    POST /forms/{key}        a sign-up: the same thank-you for every address (see campaign.app.forms);
                             the form again for a bad address or no consent; a post from a copy of
                             the form (no "shown at") gets the form filled in, to check and send
    GET  /confirm/{token}    a page with one button: GET never confirms (mail scanners open links)
    POST /confirm/{token}    confirms the address: the lead's sequence starts at the next tick

Plain HTML, no JavaScript, no cookies; the pages' headers are the unsubscribe pages'. Logs carry
outcomes, never an address.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from urllib.parse import parse_qsl

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from campaign.app.forms import (
    ANSWERS,
    HONEYPOT,
    PRIOR_TREATMENTS,
    SHOWN,
    ClientLimiter,
    ConfirmationMailer,
    confirm,
    take_post,
)
from campaign.forms_tokens import make_shown_token
from campaign.settings import Clinic, Settings
from campaign.store import Form, Store
from campaign.web import render_page

log = logging.getLogger("campaign.forms")
e = html.escape

# Off-screen, not display:none or type=hidden: a bot filling every input fills this one too.
HONEYPOT_STYLE = "position:absolute;left:-10000px;top:auto;width:1px;height:1px;overflow:hidden"
FORM_STYLE = """<style>
.signup label{display:block;font-weight:600;margin:1rem 0 .35rem}
.signup input[type=email],.signup input[type=text],.signup select{font:inherit;width:100%;
 box-sizing:border-box;min-height:44px;padding:.5rem .6rem;border:2px solid #6b6b66;border-radius:.35rem;
 background:#fff;color:#1b1b1b}
.signup input:focus-visible,.signup select:focus-visible{outline:3px solid #111;outline-offset:2px}
.signup .consent{display:flex;gap:.6rem;align-items:flex-start;margin:1.25rem 0}
.signup .consent input{width:1.4rem;height:1.4rem;margin-top:.2rem;flex:none}
.signup .consent label{display:inline;font-weight:400;margin:0}
.signup .problem{color:#a0001c;font-weight:600;margin:.25rem 0 0}
.problems{border:2px solid #a0001c;padding:.5rem 1rem;border-radius:.35rem}
</style>"""


def form_fields(
    form: Form, values: Mapping[str, str], problems: Mapping[str, str], shown: str | None, action: str = ""
) -> str:
    """The <form>: for our page (posts back to its own URL, with "shown at") and, with `action`
    and no `shown`, for the snippet a clinic copies onto its own site."""

    def problem(name: str) -> tuple[str, str]:
        if name not in problems:
            return "", ""
        return (
            f' aria-invalid="true" aria-describedby="{name}-problem"',
            f'\n<p class="problem" id="{name}-problem">{e(problems[name])}</p>',
        )

    def options(choices, chosen: str) -> str:
        return "".join(
            f'<option value="{e(value)}"{" selected" if value == chosen else ""}>{e(label)}</option>'
            for value, label in choices
        )

    email_attrs, email_problem = problem("email")
    consent_attrs, consent_problem = problem("consent")
    checked = " checked" if values.get("consent") == "yes" else ""
    answers = [("", "Choose one (optional)"), *((a, a) for a in ANSWERS)]
    prior = [("", "Choose one (optional)"), *PRIOR_TREATMENTS]
    action_attr = f' action="{e(action)}"' if action else ""
    shown_field = f'\n<input type="hidden" name="{SHOWN}" value="{e(shown)}">' if shown else ""
    return f"""<form method="post"{action_attr} class="signup" aria-label="Sign up for emails">
<label for="email">Email address</label>
<input id="email" name="email" type="email" autocomplete="email" required maxlength="320" \
value="{e(values.get("email", ""))}"{email_attrs}>{email_problem}
<label for="first_name">First name (optional)</label>
<input id="first_name" name="first_name" type="text" autocomplete="given-name" maxlength="200" \
value="{e(values.get("first_name", ""))}">
<label for="anxiety_type">{e(form.audience_question)}</label>
<select id="anxiety_type" name="anxiety_type">{options(answers, values.get("anxiety_type", ""))}</select>
<label for="prior_treatments">How many treatments for anxiety have you tried?</label>
<select id="prior_treatments" name="prior_treatments">\
{options(prior, values.get("prior_treatments", ""))}</select>
<p class="consent">\
<input id="consent" name="consent" type="checkbox" value="yes" required{checked}{consent_attrs}>
<label for="consent">{e(form.consent_text)}</label></p>{consent_problem}
<div style="{HONEYPOT_STYLE}" aria-hidden="true"><label for="{HONEYPOT}">Leave this field empty</label>
<input id="{HONEYPOT}" name="{HONEYPOT}" type="text" tabindex="-1" autocomplete="off"></div>{shown_field}
<button type="submit">Sign up</button>
</form>"""


def snippet(settings: Settings, form: Form) -> str:
    """The HTML a clinic pastes into its site: the same form, posting to /forms/{key}."""
    url = f"{settings.public_url.rstrip('/')}/forms/{form.key}"
    return (
        f"<!-- {e(settings.clinic.display_name)} sign-up form '{e(form.name)}'. Works without "
        "JavaScript. The first press opens our page to check and send (bots are held back there). -->\n"
        + form_fields(form, {}, {}, None, action=url)
    )


def form_page(
    clinic: Clinic, form: Form, shown: str, values=None, problems=None, review=False
) -> HTMLResponse:
    problems = problems or {}
    intro = (
        "Please check your details and press Sign up to send them."
        if review
        else f"Short notes from {e(clinic.display_name)} about anxiety and treatment options, by email. "
        "We first send you a link to confirm your address."
    )
    summary = ""
    if problems:
        items = "".join(f'<li><a href="#{name}">{e(text)}</a></li>' for name, text in problems.items())
        summary = f'<div class="problems" role="alert"><p>Please fix this:</p><ul>{items}</ul></div>'
    body = f"""{FORM_STYLE}
<h1>Sign up for emails from {e(clinic.display_name)}</h1>
<p>{intro}</p>
{summary}
{form_fields(form, values or {}, problems, shown)}
<p class="fine">We keep your answers private. Every email has a link to unsubscribe.</p>"""
    return render_page(clinic, "Sign up", body, status=422 if problems else 200)


def thanks_page(clinic: Clinic) -> HTMLResponse:
    """The one answer to every accepted post: it never depends on the address."""
    return render_page(
        clinic,
        "Check your email",
        """<h1>Thank you. Please check your email</h1>
<p role="status">We have sent a link to the address you gave, if it can get our emails. Press it to
confirm that you want our emails. The link works for 7 days.</p>
<p>We send nothing else until you confirm. If nothing arrives in a few minutes, look in your spam
or junk folder.</p>""",
    )


def message_page(clinic: Clinic, title: str, text: str, status: int) -> HTMLResponse:
    return render_page(clinic, title, f"<h1>{e(title)}</h1>\n<p>{text}</p>", status=status)


def form_routes(settings: Settings, store: Store, clock: Callable[[], datetime]) -> list[Route]:
    secret = settings.secret_key.get_secret_value()
    clinic = settings.clinic
    limiter = ClientLimiter(settings.form_posts_per_client_minute)
    mailer = ConfirmationMailer(settings, store, clock)
    not_found = (
        "This form is not available",
        f"The link may be out of date. You can call us at {e(clinic.phone)}.",
        404,
    )

    async def show_form(request: Request) -> Response:
        form = await run_in_threadpool(store.form_by_key, request.path_params["key"])
        if form is None:
            return message_page(clinic, *not_found)
        return form_page(clinic, form, make_shown_token(form.key, secret, clock()))

    async def post_form(request: Request) -> Response:
        form = await run_in_threadpool(store.form_by_key, request.path_params["key"])
        if form is None:
            return message_page(clinic, *not_found)
        body = await request.body()  # BodyLimit has capped it
        values = dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))
        client = request.client.host if request.client else ""
        now = clock()
        outcome = await run_in_threadpool(take_post, store, settings, form, values, client, now, limiter)
        log.info("form post: %s", outcome.dropped or outcome.kind)
        if outcome.kind == "review" or outcome.kind == "invalid":
            kept = {k: v for k, v in values.items() if k not in (HONEYPOT, SHOWN)}
            shown = make_shown_token(form.key, secret, now)
            return form_page(clinic, form, shown, kept, outcome.problems, review=outcome.kind == "review")
        response = thanks_page(clinic)
        if outcome.confirmation is not None:
            response.background = BackgroundTask(mailer.send, [outcome.confirmation])
        return response

    async def confirm_link(request: Request) -> Response:
        apply = request.method == "POST"
        found = await run_in_threadpool(
            confirm, store, settings, request.path_params["token"], clock(), apply
        )
        log.info("confirmation link: %s", found)
        if found == "valid":
            return render_page(
                clinic,
                "Confirm your email",
                f"""<h1 id="title">Confirm your email</h1>
<p>Press the button to confirm that you want emails from {e(clinic.display_name)}.</p>
<form method="post" aria-labelledby="title"><button type="submit">Confirm my email</button></form>
<p class="fine">Did not ask for this? Just close this page. Nothing happens until you press the \
button.</p>""",
            )
        if found in ("confirmed", "already"):
            return render_page(
                clinic,
                "Email confirmed",
                f"""<h1>Your email is confirmed</h1>
<p role="status">Thank you. Your first email from {e(clinic.display_name)} will arrive soon.</p>
<p>Every email has a link to unsubscribe at any time.</p>""",
            )
        if found == "expired":
            return message_page(
                clinic,
                "This link has expired",
                "Confirmation links work for 7 days. To get our emails, please fill in the sign-up "
                "form again.",
                410,
            )
        return message_page(
            clinic,
            "This link does not work",
            "It may have been cut short when it was copied, or it was made for another address. "
            "Please use the link in the most recent email, or fill in the sign-up form again.",
            400,
        )

    return [
        Route("/forms/{key}", show_form, methods=["GET"]),
        Route("/forms/{key}", post_form, methods=["POST"]),
        Route("/confirm/{token}", confirm_link, methods=["GET", "POST"]),
    ]
