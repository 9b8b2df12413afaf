"""A SendGrid-compatible HTTP server for tests, the demo and benchmarks (`campaign dev-sendgrid`).

A development and test tool, not part of the product's delivery path: nothing in
``campaign.delivery`` imports it.

It speaks the part of SendGrid's v3 API we use (``POST /v3/mail/send``) closely enough that
the official client cannot tell the difference: Bearer auth, SendGrid-shaped errors, 202 with
``X-Message-Id``, 200 in sandbox mode. It records what it accepted, injects faults on demand
(seeded, so runs repeat), and posts signed Event Webhook batches shaped like SendGrid's.

Development endpoints (no auth; bind to loopback):

* ``GET  /_dev/messages``  accepted messages as JSON
* ``POST /_dev/reset``     forget messages and counters
* ``GET|POST /_dev/faults`` read / replace the fault settings (JSON of ``Faults``)
* ``GET  /_dev/public-key`` the webhook verification key (base64 DER, as SendGrid shows it)
* ``POST /_dev/events``    ``{"url", "send_id" | "message_id", "events": ["delivered", ...]}``
  posts signed events for one accepted message to ``url``

Modules: ``state`` (faults, records, counters), ``validation`` (mail-send bodies),
``events`` (signed Event Webhook batches), ``handler`` (HTTP routes and thread pool),
``running`` (``running_server`` for tests, ``main`` for the CLI).
"""

from campaign.devserver.events import (
    EVENT_TYPES,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    build_event,
    post_signed_events,
    public_key_b64,
    sign_event_body,
)
from campaign.devserver.running import SendGridServer, main, running_server
from campaign.devserver.state import (
    DEFAULT_API_KEY,
    MAIL_SEND_PATH,
    MAX_BODY_BYTES,
    Counters,
    Faults,
    RecordedMessage,
)
from campaign.devserver.validation import is_sandbox, validate_mail_send

__all__ = [
    "DEFAULT_API_KEY",
    "EVENT_TYPES",
    "MAIL_SEND_PATH",
    "MAX_BODY_BYTES",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Counters",
    "Faults",
    "RecordedMessage",
    "SendGridServer",
    "build_event",
    "is_sandbox",
    "main",
    "post_signed_events",
    "public_key_b64",
    "running_server",
    "sign_event_body",
    "validate_mail_send",
]
