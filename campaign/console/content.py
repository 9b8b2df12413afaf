"""/console/content: every email (subject, day, lint, approval), one email at phone and desktop
width with its text part, lint results and what changed since its approval, and a reviewer's
attested approval. The email itself is a framed page of its own (`email.html`) with a CSP that
allows its inline styles and nothing else, framed by the console only."""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from campaign.app.content import (
    ATTESTATION,
    ApprovalRefused,
    approve,
    content_index,
    email_frame_html,
    email_review,
)
from campaign.console.pages import PageRequest, require
from campaign.console.shared import audiences_of, notice, page_or_problem
from campaign.preview import DESKTOP_WIDTH, PHONE_WIDTH
from campaign.render import TemplateError

# The framed email: inline styles (emails carry them), images over https or data:, no script,
# no forms, sandboxed, and framed only by a console page.
EMAIL_FRAME_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; font-src https: data:; "
        "form-action 'none'; frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"
    ),
    "X-Frame-Options": "SAMEORIGIN",
}
NOTICES = {"approved": "Approved. The approval records your name, your role, the time and the content."}


@require("content.view")
@page_or_problem
def content(page: PageRequest) -> Response:
    audiences = audiences_of(page)
    index = content_index(page.store, page.settings, audiences)
    return page.render(
        "content.html",
        title="Content",
        audiences=audiences,
        cards=index.cards,
        audience_problems=index.audience_problems,
        drafts=index.drafts,
    )


def _review_page(page: PageRequest, audience: str, step: str, *, error: str = "", status: int = 200):
    try:
        review = email_review(page.store, page.settings, audiences_of(page), audience, step)
    except LookupError as missing:
        return page.render("error.html", title="Not found", message=str(missing), status=404)
    banners = notice(page, NOTICES) + ([{"kind": "error", "text": error}] if error else [])
    return page.render(
        "content_email.html",
        title=f"{audience} · {step}",
        review=review,
        card=review.card,
        attestation=ATTESTATION,
        reviewer_name=page.user.name or page.user.email,
        widths={"phone": PHONE_WIDTH, "desktop": DESKTOP_WIDTH},
        banners=banners,
        status=status,
    )


@require("content.view")
@page_or_problem
def content_email(page: PageRequest) -> Response:
    params = page.request.path_params
    return _review_page(page, params["audience"], params["step"])


@require("content.view")
@page_or_problem
def email_frame(page: PageRequest) -> Response:
    params = page.request.path_params
    try:
        body = email_frame_html(page.settings, audiences_of(page), params["audience"], params["step"])
    except LookupError as missing:
        return page.render("error.html", title="Not found", message=str(missing), status=404)
    except TemplateError as broken:
        message = f"<p>This email does not render: {escape(str(broken))}</p>"
        return HTMLResponse(message, status_code=500, headers=EMAIL_FRAME_HEADERS)
    return HTMLResponse(body, headers=EMAIL_FRAME_HEADERS)


@require("content.approve")
@page_or_problem
def content_approve(page: PageRequest) -> Response:
    params = page.request.path_params
    audience, step = params["audience"], params["step"]
    try:
        approve(
            page.store,
            page.accounts,
            page.settings,
            audiences_of(page),
            audience=audience,
            step=step,
            reviewer=page.user.name or page.user.email,
            actor=page.actor,
            attested=page.field("attest") == "yes",
            reviewed_hash=page.field("content_hash"),
            now=page.now,
        )
    except LookupError as missing:
        return page.render("error.html", title="Not found", message=str(missing), status=404)
    except ApprovalRefused as refused:
        return _review_page(page, audience, step, error=str(refused), status=400)
    return page.redirect(f"/content/{quote(audience)}/{quote(step)}?done=approved")


routes = [
    Route("/content", content, methods=["GET"]),
    Route("/content/{audience}/{step}", content_email, methods=["GET"]),
    Route("/content/{audience}/{step}/email.html", email_frame, methods=["GET"]),
    Route("/content/{audience}/{step}/approve", content_approve, methods=["POST"]),
]
