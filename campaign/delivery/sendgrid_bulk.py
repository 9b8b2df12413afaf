"""Bulk requests through SendGridTransport: up to 1,000 recipients of one email per request.

Exactly once per recipient, as for single emails:

- each personalization is checked first; a recipient SendGrid would refuse fails alone and the
  rest of the request goes;
- 202: every recipient of the request is sent (one X-Message-Id for all);
- 400 (should not happen after the checks): the request is split in halves until the bad
  recipient is alone, and only it fails;
- 403, 413 and other final answers: every recipient fails;
- timeout, reset after sending, 5xx after every retry when one may have got through: every
  recipient is unknown, each reconciled by its own send id; when none can have: failed,
  retryable (released);
- 401: Unauthorized; who may have been sent is unknown, the rest not sent.

The hooks: ``before_request`` (or ``before_send`` per recipient) right before a request leaves;
``after_request`` once with a request's results as it settles (or ``after_send`` per result).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from campaign.delivery import AfterSend, BatchStopped, BeforeSend, Unauthorized, stop_from_hook
from campaign.delivery.bulk_payload import (
    build_bulk_payload,
    bulk_personalization,
    check_bulk_personalization,
    plainly_valid,
)
from campaign.delivery.payload import MAX_PERSONALIZATIONS, check_limits
from campaign.models import SendResult, SendStatus

# send ids about to go -> those that may (a lead who left since the claim may not)
BeforeRequest = Callable[[list[str]], set[str]]
# a request's results, once, as it settles (one call for a thousand recipients)
AfterRequest = Callable[[list[SendResult]], None]

if TYPE_CHECKING:
    from campaign.bulk import BulkEmail, BulkRecipient
    from campaign.delivery.sendgrid_transport import SendGridTransport


def send_bulk(
    transport: SendGridTransport,
    emails: Sequence[BulkEmail],
    before_send: BeforeSend | None = None,
    after_send: AfterSend | None = None,
    before_request: BeforeRequest | None = None,
    after_request: AfterRequest | None = None,
) -> list[SendResult]:
    """Send every recipient of every email once; results grouped by request. Raises like
    SendGridTransport.send_batch (BatchStopped with ``results`` and ``not_sent``).
    ``before_request(send_ids)``, when given, replaces ``before_send``: one call right before a
    request leaves, returning the send ids that may go (one query for a thousand recipients).
    ``after_request(results)``, when given, replaces ``after_send``: one call with each
    request's results (those of its recipients skipped or refused by the checks included)."""
    requests = [
        (email, email.recipients[i : i + MAX_PERSONALIZATIONS])
        for email in emails
        for i in range(0, len(email.recipients), MAX_PERSONALIZATIONS)
    ]
    stop = threading.Event()
    stop_reason: list[BatchStopped] = []
    lock = threading.Lock()

    def halt(exc: BatchStopped) -> None:
        with lock:
            if not stop_reason:
                stop_reason.append(exc)
        stop.set()

    def one(request) -> tuple[list[SendResult], list[str]]:
        email, recipients = request
        if stop.is_set():
            return [], [r.send_id for r in recipients]
        transport.rate_limit_pause.wait()
        results: list[SendResult] = []
        ready: list[BulkRecipient] = []
        if before_request is not None:
            try:
                allowed = before_request([r.send_id for r in recipients])
            except Exception as exc:
                halt(stop_from_hook(exc, "before_request"))
                return results, [r.send_id for r in recipients]
            ready = [r for r in recipients if r.send_id in allowed]
            results += [
                _result(r, SendStatus.skipped, "unsubscribed or suppressed before sending")
                for r in recipients
                if r.send_id not in allowed
            ]
            recipients = []
        for n, r in enumerate(recipients):
            if stop.is_set():
                return results, [x.send_id for x in recipients[n:]] + [x.send_id for x in ready]
            try:
                go = before_send is None or before_send(r.send_id)
            except Exception as exc:
                halt(stop_from_hook(exc, "before_send"))
                return results, [x.send_id for x in recipients[n:]] + [x.send_id for x in ready]
            if go:
                ready.append(r)
            else:
                results.append(_result(r, SendStatus.skipped, "unsubscribed or suppressed before sending"))

        def unauthorized(error: str) -> None:
            halt(
                Unauthorized(
                    f"SendGrid refused the API key ({error}): check SENDGRID_API_KEY "
                    "(or the account's credits); sending stopped"
                )
            )

        settled, not_sent = _deliver(transport, email, ready, stop, unauthorized)
        results += settled
        if after_request is not None:
            try:
                after_request(results)
            except Exception as exc:
                halt(stop_from_hook(exc, "after_request"))
        elif after_send is not None:
            for result in results:
                try:
                    after_send(result)
                except Exception as exc:
                    halt(stop_from_hook(exc, "after_send"))
        return results, not_sent

    with ThreadPoolExecutor(
        max_workers=min(transport.concurrency, max(1, len(requests))), thread_name_prefix="sendgrid-bulk"
    ) as pool:
        outcomes = list(pool.map(one, requests))
    results = [r for done, _ in outcomes for r in done]
    if stop_reason:
        raise stop_reason[0].with_outcome(results, [s for _, not_sent in outcomes for s in not_sent])
    return results


def serialize(payload: dict[str, Any]) -> bytes:
    """A request body as UTF-8 JSON, made once (orjson: 1,000 personalizations in 0.3 ms;
    json.dumps took 8 ms, twice: for check_limits and in the client)."""
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError:  # what orjson refuses (an integer past 64 bits ...)
        return json.dumps(payload).encode("utf-8")


def _result(r: BulkRecipient, status: SendStatus, error: str | None = None, **extra: Any) -> SendResult:
    return SendResult(send_id=r.send_id, status=status, error=error, **extra)


def _shared_results(recipients: list[BulkRecipient], status: SendStatus, **fields: Any) -> list[SendResult]:
    """The same outcome for every recipient of a request: SendResults validated from dicts by
    the model's own validator (as SendResult(**fields) does, at about half its cost a result:
    a thousand a request)."""
    validate = SendResult.__pydantic_validator__.validate_python
    return [validate({"send_id": r.send_id, "status": status, **fields}) for r in recipients]


def _deliver(
    transport: SendGridTransport,
    email: BulkEmail,
    recipients: list[BulkRecipient],
    stop: threading.Event,
    unauthorized: Callable[[str], None],
) -> tuple[list[SendResult], list[str]]:
    """One request for `recipients` (each checked first), split on a 400. Returns the settled
    results and the send ids never sent."""
    results, good = [], []
    for r in recipients:
        # The common case told in a few operations; anything else gets the full check.
        if plainly_valid(r):
            good.append((r, bulk_personalization(r)))
            continue
        personalization = bulk_personalization(r)
        if problems := check_bulk_personalization(personalization):
            results.append(_result(r, SendStatus.failed, "; ".join(problems)))
        else:
            good.append((r, personalization))
    if not good:
        return results, []
    settled, not_sent = _post(transport, email, good, stop, unauthorized)
    return results + settled, not_sent


def _post(
    transport: SendGridTransport,
    email: BulkEmail,
    batch: list[tuple[BulkRecipient, dict]],
    stop: threading.Event,
    unauthorized: Callable[[str], None],
) -> tuple[list[SendResult], list[str]]:
    recipients = [r for r, _ in batch]
    payload = build_bulk_payload(
        email,
        [p for _, p in batch],
        sandbox=transport.sandbox or email.sandbox,
        asm_group_id=transport.asm_group_id,
        track_opens=transport.track_opens,
        track_clicks=transport.track_clicks,
    )
    body = serialize(payload)  # once: checked by its size, then posted as it is
    problems = check_limits(payload, now=time.time(), personalizations_checked=True, size=len(body))
    if problems:  # request-wide (content, size): nobody of it can go
        return [_result(r, SendStatus.failed, "; ".join(problems)) for r in recipients], []
    if stop.is_set():
        return [], [r.send_id for r in recipients]
    attempt, maybe_delivered = transport.post_until_settled(body, stop, recipients[0].send_id)
    if attempt.kind == "sent":
        return _shared_results(recipients, SendStatus.sent, message_id=attempt.message_id), []
    if attempt.kind == "final":
        if attempt.status == 400 and len(batch) > 1:
            # One bad recipient must not fail a thousand: halves until it is alone.
            half = len(batch) // 2
            first, first_not_sent = _post(transport, email, batch[:half], stop, unauthorized)
            second, second_not_sent = _post(transport, email, batch[half:], stop, unauthorized)
            return first + second, first_not_sent + second_not_sent
        return [_result(r, SendStatus.failed, attempt.error) for r in recipients], []
    if attempt.kind == "unauthorized":
        unauthorized(attempt.error or "401")
    if maybe_delivered:
        # Timeout, reset after sending, or stopped after such an attempt: each recipient is
        # reconciled by its own send id.
        return [_result(r, SendStatus.unknown, attempt.error) for r in recipients], []
    if attempt.kind in ("unauthorized", "stopped"):
        return [], [r.send_id for r in recipients]
    return [
        _result(r, SendStatus.failed, f"retryable: {attempt.error}", retryable=True) for r in recipients
    ], []
