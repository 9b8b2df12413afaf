"""The lead API (FastAPI), mounted at /api/v1 by campaign.web.create_app.

    POST /api/v1/leads          one lead, JSON or form-encoded (scope leads:write): 201 new,
                                200 updated or unchanged; 422 names each bad field
    POST /api/v1/leads/batch    {"leads": [...]}, up to 1,000, one result per item
    GET  /api/v1/leads/{email}  where a lead stands (scope leads:read); never raw events
    GET  /api/v1/openapi.json   the schema (no docs page: it would load scripts from a CDN)

`Authorization: Bearer cmp_...` (401 missing or wrong, 403 without the scope), a token bucket per
token (429 with Retry-After), `Idempotency-Key` on posts (a retry within 24 hours gets the first
answer and changes nothing), `Cache-Control: no-store` on every answer. The rules are the
application layer's (campaign.app.intake): this module reads requests and writes answers.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from urllib.parse import parse_qsl

from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from campaign.accounts import AccountStore, Actor, Forbidden, Unauthorized, audit, verify_token
from campaign.api.group_commit import GroupCommit
from campaign.api.limits import AudienceCache, RateLimiter, retry_after
from campaign.api.schemas import (
    MAX_BATCH,
    BatchPayload,
    BatchResult,
    ErrorBody,
    LeadPayload,
    LeadResult,
    LeadStatus,
)
from campaign.app.forms import ConfirmationMailer, claim
from campaign.app.intake import LeadOutcome, Submission, UnknownLead, lead_status, take_leads
from campaign.lead_fields import FIELDS
from campaign.settings import Settings
from campaign.store import Store, Upserted

log = logging.getLogger("campaign.api")

IDEMPOTENCY_HEADER = "Idempotency-Key"
NO_STORE = {"Cache-Control": "no-store"}
FORM = "application/x-www-form-urlencoded"
ERRORS = {status: {"model": ErrorBody} for status in (401, 403, 409, 413, 415, 422, 429)}


class ApiError(Exception):
    def __init__(self, status: int, message: str, fields: dict[str, str] | None = None, headers=None):
        super().__init__(message)
        self.status, self.message, self.fields, self.headers = status, message, fields, headers or {}


def error_response(status: int, message: str, fields=None, headers=None) -> JSONResponse:
    body = {"error": message} if fields is None else {"error": message, "fields": fields}
    return JSONResponse(body, status_code=status, headers={**NO_STORE, **(headers or {})})


class NoStore:
    """ASGI middleware: every answer of the API says Cache-Control: no-store (lead data)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def send_no_store(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                message = {**message, "headers": [*headers, (b"cache-control", b"no-store")]}
            await send(message)

        await self.app(scope, receive, send_no_store)


# ---- reading a request -------------------------------------------------------------------------


def read_body(body: bytes, content_type: str) -> object:
    """JSON or form-encoded; anything else is 415. Form fields repeat? The last one counts."""
    media = content_type.split(";")[0].strip().lower()
    try:
        if media == FORM:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        if media == "application/json" or media.endswith("+json"):
            return json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, f"the body is not valid {'form data' if media == FORM else 'JSON'}") from None
    raise ApiError(415, f"send the lead as application/json or {FORM} (got {media or 'no Content-Type'})")


def raw_values(item: object) -> tuple[dict[str, str], dict[str, str]]:
    """A JSON object or form -> (field -> text, problems). Unknown fields are ignored; null is
    "not given"; true/false and numbers are spelled as a CSV cell would be."""
    if not isinstance(item, dict):
        return {}, {"lead": 'a lead is an object of fields, like {"email": "ann@example.com"}'}
    values, problems = {}, {}
    for name in FIELDS:
        value = item.get(name)
        if value is None:
            continue
        if isinstance(value, bool):
            values[name] = "yes" if value else "no"
        elif isinstance(value, (int, float, str)):
            values[name] = str(value)
        else:
            problems[name] = f"{name} must be text, a number or true/false"
    return values, problems


def request_hash(request: Request, body: bytes) -> str:
    digest = hashlib.sha256(
        f"{request.method} {request.url.path} {request.headers.get('content-type')}\n".encode()
    )
    digest.update(body)
    return digest.hexdigest()


# ---- the app -----------------------------------------------------------------------------------


def create_api(settings: Settings, store: Store, clock: Callable[[], datetime]) -> FastAPI:
    accounts = AccountStore(store.engine)
    limiter = RateLimiter(settings.api_rate_limit)
    audiences = AudienceCache(settings.audiences_dir)
    tz = settings.clinic.timezone  # for a lead with no time zone and no known state
    api = FastAPI(
        title="campaign lead API",
        version="1",
        description="Hand leads over the moment they are submitted. See the README's API section.",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    api.add_middleware(NoStore)

    @api.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return error_response(exc.status, exc.message, exc.fields, exc.headers)

    @api.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    @api.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        fields = {".".join(str(p) for p in e["loc"][1:]) or "request": e["msg"] for e in exc.errors()}
        return error_response(422, "the request is not valid", fields)

    def token_for(scope: str) -> Callable[[Request], Awaitable[Actor]]:
        async def authorize(request: Request) -> Actor:
            header = request.headers.get("authorization", "")
            kind, _, token = header.partition(" ")
            token = token.strip() if kind.lower() == "bearer" else None
            try:
                name = await run_in_threadpool(verify_token, accounts, token, scope, clock())
            except Unauthorized as exc:
                raise ApiError(401, str(exc), headers={"WWW-Authenticate": "Bearer"}) from None
            except Forbidden as exc:
                raise ApiError(403, str(exc)) from None
            wait = limiter.take(name)
            if wait:
                raise ApiError(
                    429,
                    f"too many requests for this token (limit {settings.api_rate_limit:g} a second); "
                    "retry after the Retry-After seconds",
                    headers={"Retry-After": retry_after(wait)},
                )
            return Actor.for_token(name, request.client.host if request.client else "")

        return authorize

    writer, reader = Depends(token_for("leads:write")), Depends(token_for("leads:read"))
    # CAMPAIGN_DOUBLE_OPT_IN: new leads wait for their confirmation, as a form's do (app.forms).
    double_opt_in = settings.double_opt_in
    mailer = ConfirmationMailer(settings, store, clock) if double_opt_in else None
    group = GroupCommit(lambda jobs: write_together(store, jobs))

    def write(incoming, now, audit):
        return group.submit((incoming, now, audit))

    async def idempotent(request: Request, actor: Actor, body: bytes, run: Callable[[], Awaitable[Response]]):
        """With an Idempotency-Key: the first answer, again, for a retry of the same request."""
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return await run()
        if not (1 <= len(key) <= 255 and key.isascii() and key.isprintable()):
            raise ApiError(422, f"{IDEMPOTENCY_HEADER} must be 1 to 255 printable ASCII characters")
        digest = request_hash(request, body)
        seen = await run_in_threadpool(store.remember_request, actor.name, key, digest, clock())
        if seen is not None:
            if seen.request_hash != digest:
                # 422, as the IETF Idempotency-Key draft says: the key is reused for another request.
                raise ApiError(
                    422, f"this {IDEMPOTENCY_HEADER} was used for a different request; use a new key"
                )
            if seen.status_code is None:
                raise ApiError(
                    409,
                    f"the first request with this {IDEMPOTENCY_HEADER} is still running; retry shortly",
                    headers={"Retry-After": "1"},
                )
            return Response(
                seen.response,
                status_code=seen.status_code,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        try:
            response = await run()
        except BaseException:
            await run_in_threadpool(store.forget_request, actor.name, key)
            raise
        await run_in_threadpool(
            store.remember_response, actor.name, key, response.status_code, response.body.decode()
        )
        return response

    def take(actor: Actor, items: list[object]) -> tuple[list[LeadOutcome], BackgroundTask | None]:
        """Each item read into a submission (one that is no object is refused alone), then taken;
        with CAMPAIGN_DOUBLE_OPT_IN, the confirmation emails of the new leads to send after."""
        submissions, refused = [], {}
        for i, item in enumerate(items):
            values, problems = raw_values(item)
            if "lead" in problems:
                refused[i] = problems
            else:
                submissions.append(Submission(values, "api", actor.name, problems))
        now = clock()
        done = take_leads(
            store,
            audiences.get(),
            submissions,
            now,
            default_timezone=tz,
            actor=actor,
            unconfirmed=double_opt_in,
        )
        taken = iter(done)
        outcomes = [
            LeadOutcome("invalid", problems=refused[i]) if i in refused else next(taken)
            for i in range(len(items))
        ]
        if not double_opt_in:
            return outcomes, None
        # A new lead that gave consent and is not suppressed: "waiting for confirmation".
        created = [o.id for o in done if o.outcome == "created" and o.status == "waiting for confirmation"]
        return outcomes, BackgroundTask(mailer.send, claim(store, settings, created, now))

    @api.post(
        "/leads",
        status_code=201,
        response_model=LeadResult,
        responses={
            200: {"model": LeadResult, "description": "An existing lead, updated or unchanged"},
            **ERRORS,
        },
        openapi_extra={"requestBody": _body_schema("LeadPayload", form=True)},
    )
    async def post_lead(request: Request, actor: Actor = writer):
        """One lead. 201 when it is new, 200 when it was known (updated or unchanged)."""
        body = await request.body()

        async def run() -> Response:
            data = read_body(body, request.headers.get("content-type", ""))
            if isinstance(data, list):
                raise ApiError(422, "one lead is a JSON object; post a list to /api/v1/leads/batch")
            (outcome,), confirmations = await run_in_threadpool(take, actor, [data])
            if outcome.outcome == "invalid":
                return error_response(422, "the lead is not valid", outcome.problems)
            return JSONResponse(
                jsonable_encoder(_result(outcome)),
                status_code=201 if outcome.outcome == "created" else 200,
                background=confirmations,
            )

        return await idempotent(request, actor, body, run)

    @api.post(
        "/leads/batch",
        response_model=BatchResult,
        responses=ERRORS,
        openapi_extra={"requestBody": _body_schema("BatchPayload")},
    )
    async def post_batch(request: Request, actor: Actor = writer):
        """Up to 1,000 leads, one result per item (in order): a bad item never sinks the rest."""
        body = await request.body()

        async def run() -> Response:
            data = read_body(body, request.headers.get("content-type", ""))
            items = data.get("leads") if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ApiError(422, 'a batch is a JSON object {"leads": [...]}', {"leads": "a list of leads"})
            if len(items) > MAX_BATCH:
                raise ApiError(422, f"at most {MAX_BATCH:,} leads per batch (got {len(items):,})")
            outcomes, confirmations = await run_in_threadpool(take, actor, items)
            results = [
                {"index": i, "fields": o.problems} if o.outcome == "invalid" else {"index": i, **_result(o)}
                for i, o in enumerate(outcomes)
            ]
            for result, outcome in zip(results, outcomes):
                result["outcome"] = outcome.outcome
            counts = {
                k: sum(o.outcome == k for o in outcomes)
                for k in ("created", "updated", "unchanged", "invalid")
            }
            return JSONResponse(
                jsonable_encoder({"results": results, "counts": counts}), background=confirmations
            )

        return await idempotent(request, actor, body, run)

    @api.get("/leads/{email}", response_model=LeadStatus, responses={404: {"model": ErrorBody}, **ERRORS})
    async def get_lead(email: str, actor: Actor = reader):
        """Where a lead stands, for a CRM to sync: status, audience, campaign, consent, and its
        steps sent and planned. Never the raw events."""
        now = clock()
        try:
            found = await run_in_threadpool(lead_status, store, settings, audiences.get(), email, now)
        except UnknownLead as exc:
            raise ApiError(404, str(exc)) from None
        await run_in_threadpool(
            audit, accounts, actor, "lead.view", now=now, object_type="lead", object_id=found["id"]
        )
        return JSONResponse(jsonable_encoder(found))

    def openapi() -> dict:
        if api.openapi_schema is None:
            schema = get_openapi(
                title=api.title, version=api.version, description=api.description, routes=api.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (LeadPayload, BatchPayload):
                found = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(found.pop("$defs", {}))
                components[model.__name__] = found
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi
    return api


def write_together(store: Store, jobs: list[tuple]) -> list[list[Upserted]]:
    """Several requests' leads (each job: leads, time, audit) in one transaction; each request
    gets its own leads' outcomes, and its own audit rows (its token)."""
    auditors = {item.lead.email: audit for incoming, _, audit in jobs for item in incoming}
    done = store.intake_leads(
        [item for incoming, _, _ in jobs for item in incoming],
        max(now for _, now, _ in jobs),
        lambda upserted: auditors[upserted.lead.email](upserted),
    )
    by_email = {u.lead.email: u for u in done}
    return [[by_email[item.lead.email] for item in incoming] for incoming, _, _ in jobs]


def _result(outcome: LeadOutcome) -> dict:
    return {
        "id": outcome.id,
        "outcome": outcome.outcome,
        "audience": outcome.audience,
        "campaign": outcome.campaign,
        "status": outcome.status,
        "first_email_at": outcome.first_email_at,
        "first_email_reason": outcome.first_email_reason,
    }


def _body_schema(model: str, form: bool = False) -> dict:
    ref = {"schema": {"$ref": f"#/components/schemas/{model}"}}
    content = {"application/json": ref, **({FORM: ref} if form else {})}
    return {"required": True, "content": content}
