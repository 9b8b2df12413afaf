"""The lead-facing web app: unsubscribe pages, RFC 8058 one-click, and two webhooks.

    GET  /healthz                      {"ok": true}
    GET  /unsubscribe/<token>          a page with one button; GET never unsubscribes (mail
                                       scanners and link previews open every link)
    POST /unsubscribe/<token>          unsubscribes at once: the page's button, and RFC 8058
                                       one-click (List-Unsubscribe=One-Click, no cookies/auth)
    POST /resubscribe/<token>          the signed undo offered on the confirmation page
    POST /webhooks/sendgrid            SendGrid's signed Event Webhook
    POST /webhooks/booking             {"email": ...} signed with HMAC-SHA256(CAMPAIGN_SECRET_KEY)
    /api/v1/...                        the lead API (campaign.api, FastAPI), token-authenticated
    /forms/{key}, /confirm/{token}     sign-up forms and double opt-in (campaign.forms_web)

Every request body is capped before it is read whole (413 past CAMPAIGN_SENDGRID_MAX_BODY_BYTES
for the SendGrid webhook, CAMPAIGN_MAX_BODY_BYTES for the rest): an unsigned post of any size
costs at most that much memory.

Pages are plain HTML: no JavaScript, no cookies, no third-party anything. Tokens name a lead
by its opaque public id only. Logs carry counts, never an address.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from campaign.api import create_api
from campaign.events import MalformedEvents, parse_events
from campaign.settings import DEV_SECRET_KEY, Clinic, Settings
from campaign.store import Store
from campaign.tokens import InvalidToken, make_token, make_undo_token, read_token, read_undo_token
from campaign.webhook_signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureRejected, WebhookVerifier

log = logging.getLogger("campaign.web")

BOOKING_SIGNATURE_HEADER = "X-Campaign-Signature"
SENDGRID_WEBHOOK_PATH = "/webhooks/sendgrid"
API_PREFIX = "/api/v1"
CONSOLE_UPLOAD_PATH = "/console/import"  # the console's lead file upload (campaign.console.lead_import)

# The token is in the URL: never send it on as a Referer; never cache; never frame.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}

STYLE = """
body{margin:0;background:#f6f6f3;color:#1b1b1b;\
font:1.0625rem/1.55 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:34rem;margin:0 auto;padding:2rem 1.25rem 3rem}
.clinic{font-weight:600;color:#1b1b1b;margin:0 0 1.5rem}
h1{font-size:1.6rem;line-height:1.25;margin:0 0 1rem}
form{margin:1.75rem 0}
button{font:inherit;font-weight:600;width:100%;min-height:48px;padding:.75rem 1rem;border-radius:.4rem;
 border:2px solid #1a4fb8;background:#1a4fb8;color:#fff;cursor:pointer}
button.secondary{background:#fff;color:#1a4fb8}
button:focus-visible{outline:3px solid #111;outline-offset:3px}
.fine{font-size:.95rem;color:#3d3d3d}
footer{margin-top:2.5rem;border-top:1px solid #c9c9c2;padding-top:1rem;font-size:.95rem;color:#3d3d3d}
"""


def _now() -> datetime:
    return datetime.now(UTC)


# ---- pages ------------------------------------------------------------------------------------


def render_page(clinic: Clinic, title: str, body: str, status: int = 200) -> HTMLResponse:
    e = html.escape
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex, nofollow">
<title>{e(title)} · {e(clinic.name)}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<p class="clinic">{e(clinic.name)}</p>
{body}
<footer>
<p>{e(clinic.name)} · {e(clinic.postal_address)} · {e(clinic.phone)}</p>
<p>In a crisis, call or text 988 (Suicide &amp; Crisis Lifeline). In an emergency, call 911.</p>
</footer>
</main>
</body>
</html>
"""
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)


def confirm_page(clinic: Clinic) -> HTMLResponse:
    e = html.escape
    # No action attribute: the form posts back to this very URL (works behind any prefix).
    return render_page(
        clinic,
        "Unsubscribe",
        f"""<h1 id="title">Unsubscribe from {e(clinic.name)} emails?</h1>
<p>If you unsubscribe, we will stop sending you our emails about anxiety and treatment options.
It takes effect right away.</p>
<p>It does not cancel an appointment or change your care. You can still call us at {e(clinic.phone)}.</p>
<form method="post" aria-labelledby="title">
<input type="hidden" name="confirm" value="yes">
<button type="submit">Unsubscribe</button>
</form>
<p class="fine">Opened this page by mistake? Just close it. Nothing changes until you press the \
button.</p>""",
    )


def unsubscribed_page(clinic: Clinic, resubscribe_token: str | None) -> HTMLResponse:
    e = html.escape
    undo = ""
    if resubscribe_token:
        undo = f"""<form method="post" action="../resubscribe/{e(resubscribe_token)}" aria-labelledby="undo">
<p id="undo">Did you mean to do this? You can undo it.</p>
<button type="submit" class="secondary">Undo: keep getting emails</button>
</form>"""
    return render_page(
        clinic,
        "Unsubscribed",
        f"""<h1>You are unsubscribed</h1>
<p role="status">{e(clinic.name)} will not send you any more of these emails. You do not need to do anything \
else.</p>
{undo}""",
    )


def resubscribed_page(clinic: Clinic, unsubscribe_token: str) -> HTMLResponse:
    e = html.escape
    return render_page(
        clinic,
        "Subscribed again",
        f"""<h1>You are subscribed again</h1>
<p role="status">You will keep getting emails from {e(clinic.name)}.</p>
<form method="post" action="../unsubscribe/{e(unsubscribe_token)}" aria-labelledby="again">
<p id="again">Changed your mind?</p>
<button type="submit" class="secondary">Unsubscribe</button>
</form>""",
    )


def bad_link_page(clinic: Clinic, expired: bool) -> HTMLResponse:
    e = html.escape
    title = "This link has expired" if expired else "This link does not work"
    why = (
        "Links in our emails stop working after a while."
        if expired
        else "It may have been cut short when it was copied."
    )
    return render_page(
        clinic,
        title,
        f"""<h1>{title}</h1>
<p>{why} To stop our emails, use the unsubscribe link in the most recent email you got from us,
reply to that email and ask, or call us at {e(clinic.phone)}.</p>""",
        status=410 if expired else 400,
    )


def used_undo_page(clinic: Clinic) -> HTMLResponse:
    e = html.escape
    return render_page(
        clinic,
        "This link was already used",
        f"""<h1>This link was already used</h1>
<p>An undo link works once, and only until your email choice changes again. Your latest choice \
stands.</p>
<p>To change it, use the link in the most recent email you got from us, reply to that email, or call
us at {e(clinic.phone)}.</p>""",
        status=410,
    )


# ---- helpers ----------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: reads each request body with a size limit before the app sees it.

    A Content-Length over the limit is refused at once, before a byte of the body is read; a
    chunked body is refused as soon as it passes the limit. The app then gets the body as read.
    The 413 closes the connection: the rest of the body is never read. A path whose limit is
    None reads its own body (the console's file upload streams to disk with its own limit)."""

    def __init__(self, app, limit_for: Callable[[str], int | None]):
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", "")) or "/"
        limit = self.limit_for(path)
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        # len() first: int() of thousands of digits is slow, or raises past 4,300.
        if declared.isdigit() and (len(declared) > 15 or int(declared) > limit):
            await too_large(scope, receive, send)
            return
        parts, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nothing to answer
            size += len(message.get("body", b""))
            if size > limit:
                await too_large(scope, receive, send)
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(parts), False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()  # after the body: only http.disconnect is left
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def too_large(scope, receive, send) -> None:
    response = PlainTextResponse(
        "too large", status_code=413, headers={"Connection": "close", "Cache-Control": "no-store"}
    )
    await response(scope, receive, send)


FORBIDDEN = "forbidden"


def forbidden() -> Response:
    return PlainTextResponse(FORBIDDEN, status_code=403)


def booking_signature(body: bytes, secret: str) -> str:
    """What the booking system sends in X-Campaign-Signature: hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ---- the app ----------------------------------------------------------------------------------


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Callable[[], datetime] = _now,
    console: bool = True,
) -> Starlette:
    """The app. Opens (and migrates) the store unless one is given; a configured webhook key
    that cannot be parsed fails here, at start-up, not on SendGrid's first post. `console`
    mounts the coordinator console at /console (off for a webhook-only instance)."""
    secret = settings.secret_key.get_secret_value()
    clinic = settings.clinic
    verifier = None
    if settings.sendgrid_webhook_public_key:
        verifier = WebhookVerifier(
            settings.sendgrid_webhook_public_key, max_age=settings.webhook_max_age_seconds
        )
    elif settings.webhook_insecure_dev:
        log.warning(
            "SendGrid webhook accepts UNSIGNED posts (CAMPAIGN_WEBHOOK_INSECURE_DEV): development only"
        )
    else:
        log.warning("SendGrid webhook refuses every post: SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
    dev_secret = secret == DEV_SECRET_KEY
    if dev_secret:
        log.warning(
            "CAMPAIGN_SECRET_KEY is the development key: links can be forged; the booking webhook "
            "refuses posts unless CAMPAIGN_WEBHOOK_INSECURE_DEV is set"
        )
    owned_store = store is None
    db = store or Store.open(settings.database_url, secret_key=secret)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def unsubscribe_form(request: Request) -> Response:
        try:
            read_token(request.path_params["token"], secret)
        except InvalidToken as exc:
            return bad_link_page(clinic, exc.expired)
        return confirm_page(clinic)  # GET changes nothing

    async def unsubscribe(request: Request) -> Response:
        # The button's post and RFC 8058's one-click post ("List-Unsubscribe=One-Click") are
        # handled alike: the signed token in the URL is the whole authority; the body is ignored.
        try:
            public_id = read_token(request.path_params["token"], secret)
        except InvalidToken as exc:
            return bad_link_page(clinic, exc.expired)
        unsubscribed_at = await run_in_threadpool(db.unsubscribe_lead, public_id, clock())
        log.info("unsubscribe: %s", "done" if unsubscribed_at else "no such lead (forgotten?)")
        # The undo names this unsubscribe: it stops working at the lead's next change.
        return unsubscribed_page(
            clinic, make_undo_token(public_id, unsubscribed_at, secret) if unsubscribed_at else None
        )

    async def resubscribe(request: Request) -> Response:
        try:
            public_id, unsubscribed_at = read_undo_token(request.path_params["token"], secret)
        except InvalidToken as exc:
            return bad_link_page(clinic, exc.expired)
        undone = await run_in_threadpool(
            db.resubscribe_lead, public_id, unsubscribed_at=unsubscribed_at, now=clock()
        )
        if not undone:
            log.info("resubscribe: refused (used, or the lead changed since)")
            return used_undo_page(clinic)
        log.info("resubscribe: done")
        return resubscribed_page(clinic, make_token(public_id, secret, purpose="unsubscribe"))

    async def sendgrid_webhook(request: Request) -> Response:
        body = await request.body()  # BodyLimit has capped it
        # Signature first, over the raw bytes; JSON is parsed only after it holds.
        if verifier is not None:
            try:
                verifier.verify(
                    body, request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
                )
            except SignatureRejected:
                log.warning("sendgrid webhook: post refused (signature)")
                return forbidden()
        elif not settings.webhook_insecure_dev:
            log.warning("sendgrid webhook: post refused (no public key configured)")
            return forbidden()
        try:
            parsed = parse_events(body)
        except MalformedEvents as exc:
            log.warning("sendgrid webhook: malformed body: %s", exc)  # position and field, no values
            return PlainTextResponse("malformed body", status_code=400)
        counts = await run_in_threadpool(db.record_events, parsed, clock())
        log.info("sendgrid webhook: %s", counts.as_dict())
        return JSONResponse(counts.as_dict())

    async def booking_webhook(request: Request) -> Response:
        body = await request.body()  # BodyLimit has capped it
        if dev_secret and not settings.webhook_insecure_dev:
            return forbidden()
        given = request.headers.get(BOOKING_SIGNATURE_HEADER, "").strip().lower()
        if not hmac.compare_digest(given.encode(), booking_signature(body, secret).encode()):
            log.warning("booking webhook: post refused (signature)")
            return forbidden()
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            data = None
        email = data.get("email") if isinstance(data, dict) else None
        if not isinstance(email, str) or "@" not in email or len(email) > 320:
            return PlainTextResponse('expected a JSON object {"email": "..."}', status_code=400)
        found = await run_in_threadpool(db.mark_booked, email, clock())
        log.info("booking webhook: %s", "lead marked booked" if found else "no lead with that address")
        return JSONResponse({"ok": True, "lead_found": found})

    def body_limit(path: str) -> int | None:
        if path == SENDGRID_WEBHOOK_PATH:
            return settings.sendgrid_max_body_bytes
        if path == f"{API_PREFIX}/leads/batch":
            return settings.api_batch_max_body_bytes
        if console and path == CONSOLE_UPLOAD_PATH:
            return None  # streamed to a file, with settings.console_upload_max_bytes
        return settings.max_body_bytes

    @asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        if owned_store:
            db.close()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe_form, methods=["GET"]),
        Route("/unsubscribe/{token}", unsubscribe, methods=["POST"]),
        Route("/resubscribe/{token}", resubscribe, methods=["POST"]),
        Route(SENDGRID_WEBHOOK_PATH, sendgrid_webhook, methods=["POST"]),
        Route("/webhooks/booking", booking_webhook, methods=["POST"]),
        Mount(API_PREFIX, app=create_api(settings, db, clock)),  # the lead API (campaign.api)
    ]
    from campaign.forms_web import form_routes  # that module uses this one's pages

    routes += form_routes(settings, db, clock)  # /forms/{key} and /confirm/{token}
    if console:
        from campaign.console import create_console

        routes.append(Mount("/console", app=create_console(settings, db, clock)))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit, limit_for=body_limit)],
        lifespan=lifespan,
    )
    app.state.store = db
    app.state.settings = settings
    return app
