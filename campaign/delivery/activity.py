"""SendGrid's Email Activity search: did SendGrid accept a send whose answer we never got?

``GET /v3/messages?query=unique_args['send_id']="..." OR ...`` lists the messages sent with
those send ids (custom_args are "unique_args" in this API). It needs the paid Email Activity
history add-on and an API key with Email Activity access, and allows about 6 requests a
minute: so one request asks for up to ``per_request`` sends, each to a different address, and
the answer's ``to_email`` tells which send each message was. Off by default
(CAMPAIGN_SENDGRID_ACTIVITY_LOOKUP).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaign.settings import Settings

ACTIVITY_PATH = "/v3/messages"


class ActivityUnavailable(Exception):
    """The search did not answer (no Email Activity access, rate limit, network): the sends it
    covered stay in doubt and are neither settled nor resent in this tick."""


def send_id_query(send_ids: list[str]) -> str:
    # Send ids are our own hex tokens: nothing to escape.
    return " OR ".join(f"unique_args['send_id']=\"{sid}\"" for sid in send_ids)


def groups(address_of: Mapping[str, str], size: int) -> list[dict[str, str]]:
    """Split {send_id: address} into groups of at most `size`, no address twice in a group."""
    out: list[dict[str, str]] = []
    for sid, address in address_of.items():
        key = address.casefold()
        home = next((g for g in out if len(g) < size and key not in {a.casefold() for a in g.values()}), None)
        if home is None:
            home = {}
            out.append(home)
        home[sid] = address
    return out


class ActivityLookup:
    def __init__(
        self, api_key: str, *, host: str, timeout: float = 10.0, per_request: int = 20, max_requests: int = 5
    ) -> None:
        self._api_key = api_key
        self.host = host.rstrip("/")
        self.timeout = timeout
        self.per_request = per_request
        self.max_requests = max_requests  # per tick: SendGrid allows about 6 a minute

    @classmethod
    def from_settings(cls, settings: Settings) -> ActivityLookup | None:
        if not settings.sendgrid_activity_lookup or settings.sendgrid_api_key is None:
            return None
        return cls(settings.sendgrid_api_key.get_secret_value(), host=settings.sendgrid_api_host)

    def __repr__(self) -> str:  # never show the key
        return f"ActivityLookup(host={self.host!r})"

    def accepted(self, address_of: Mapping[str, str]) -> tuple[dict[str, str | None], set[str]]:
        """For {send_id: address}: ({send_id: message id} of the sends SendGrid has, the
        send_ids looked up). Sends past this tick's request budget are not looked up.
        Raises ActivityUnavailable when a request fails (what it found so far is lost: the
        caller then resends nothing of these)."""
        found: dict[str, str | None] = {}
        looked: set[str] = set()
        for group in groups(address_of, self.per_request)[: self.max_requests]:
            by_address = {address.casefold(): sid for sid, address in group.items()}
            for message in self._search(list(group)):
                sid = by_address.get(str(message.get("to_email") or "").casefold())
                if sid is not None:
                    msg_id = message.get("msg_id")
                    found[sid] = msg_id.split(".", 1)[0] if isinstance(msg_id, str) and msg_id else None
            looked.update(group)
        return found, looked

    def _search(self, send_ids: list[str]) -> list[dict]:
        params = urllib.parse.urlencode({"query": send_id_query(send_ids), "limit": 1000})
        request = urllib.request.Request(
            f"{self.host}{ACTIVITY_PATH}?{params}",
            headers={"Authorization": f"Bearer {self._api_key}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            hint = " (does the key have Email Activity access?)" if exc.code in (401, 403) else ""
            raise ActivityUnavailable(f"SendGrid Email Activity answered {exc.code}{hint}") from None
        except (OSError, ValueError) as exc:
            raise ActivityUnavailable(f"SendGrid Email Activity did not answer: {exc}") from None
        messages = body.get("messages") if isinstance(body, dict) else None
        return [m for m in messages or [] if isinstance(m, dict)]
