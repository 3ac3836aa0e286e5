"""A strict local fake of Instagram's Send API (the Messenger Platform for Instagram), plus builders for
the webhook payloads Meta sends us for Instagram direct messages, and how the sandbox drives them.

Instagram's Send API is Messenger's on another host, so the fake is Meta's Graph API fake
(`meta_api.MetaGraphAPI`) with what differs: `POST /{ig account id}/messages` authenticated by a Bearer
Instagram User access token (a wrong one gets 401, code 190), a text over 1,000 characters refused
(100), and outside the 24 hours without the HUMAN_AGENT tag the error code 10 / subcode 2534022. As for
Messenger it refuses a customer who never wrote (100/2018001), the HUMAN_AGENT tag from an account
without the Human Agent permission (`human_agent_pages`) or after 7 days, and retired tags.

Sources: Meta's "Send a Message" for Instagram (messenger-platform/instagram/features/send-message:
"Text message must be less than 1000 characters"; the `{"recipient_id", "message_id"}` answer), the
Instagram API with Instagram Login's messaging guide (graph.instagram.com, Bearer token), the Instagram
webhook examples (`object: instagram`, `read.mid`, `reply_to.story`, `story_mention`, `is_deleted`) and
../shared/reference/channels.md "Messenger and Instagram" (`ig_post` from 2026-04-27). UNCONFIRMED, our
best reading: the exact message text Meta gives with subcode 2534022.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from aiohttp import web

from socialdesk.fakes.meta_api import MetaGraphAPI, entry_ids, graph_error
from socialdesk.fakes.recorder import DemoConversation, SentReply, Simulation

TEXT_LIMIT = 1000
WINDOW_CLOSED_SUBCODE = 2534022
# The demo's business account (socialdesk/sandbox.py), an Instagram professional account id.
INSTAGRAM_ACCOUNT = "17841405793187218"


def window_closed() -> dict[str, Any]:
    return graph_error(10, "(#10) This message is sent outside of allowed window.", subcode=WINDOW_CLOSED_SUBCODE)


def not_available() -> dict[str, Any]:
    """Code 551: the person blocked the account, deactivated theirs or cannot be messaged."""
    return graph_error(551, "This person isn't available right now.", subcode=1545041)


class InstagramAPI(MetaGraphAPI):
    """`accounts` maps an Instagram professional account id -> its access token; `human_agent_pages` are
    the accounts with Meta's Human Agent permission."""

    text_limit = TEXT_LIMIT

    def __init__(self, accounts: Mapping[str, str] | None = None,
                 human_agent_accounts: set[str] | None = None) -> None:
        super().__init__(pages=accounts, human_agent_pages=human_agent_accounts)

    def page_auth(self, request: web.Request, token: str) -> web.Response | None:
        return self._bearer(request, token)

    def window_closed(self) -> dict[str, Any]:
        return window_closed()


# Webhook payloads Meta sends us -----------------------------------------------------------------

def _instagram(account_id: str, event: dict[str, Any], time_ms: int) -> bytes:
    # Compact, as Meta sends it: the signature is over exactly these bytes.
    return json.dumps({"object": "instagram", "entry": [{"id": account_id, "time": time_ms, "messaging": [event]}]},
                      separators=(",", ":"), ensure_ascii=False).encode()


def _now_ms() -> int:
    return int(time.time() * 1000)


def message_payload(account_id: str, igsid: str, text: str = "", message_id: str | None = None, *,
                    timestamp_ms: int | None = None, attachments: list[dict[str, Any]] | None = None,
                    reply_to: dict[str, Any] | None = None, **flags: bool) -> bytes:
    """One message from `igsid`; `attachments` as Meta sends them (e.g. `[{"type": "ig_post", "payload":
    {"url": ..., "title": ...}}]`), `reply_to` `{"mid": ...}` or `{"story": {"url", "id"}}`, `flags`
    e.g. `is_deleted=True`."""
    at = timestamp_ms or _now_ms()
    message: dict[str, Any] = {"mid": message_id or f"aWdfZAG1faXRlbToxOk{uuid.uuid4().hex}"}
    if text:
        message["text"] = text
    if attachments:
        message["attachments"] = attachments
    if reply_to:
        message["reply_to"] = reply_to
    message.update(flags)
    return _instagram(account_id, {"sender": {"id": igsid}, "recipient": {"id": account_id}, "timestamp": at,
                                   "message": message}, at)


def echo_payload(account_id: str, igsid: str, text: str, message_id: str, *, timestamp_ms: int | None = None) -> bytes:
    """What the account sent to `igsid` (from us, or from the Instagram app)."""
    at = timestamp_ms or _now_ms()
    return _instagram(account_id, {"sender": {"id": account_id}, "recipient": {"id": igsid}, "timestamp": at,
                                   "message": {"mid": message_id, "text": text, "is_echo": True}}, at)


def read_payload(account_id: str, igsid: str, message_id: str, *, timestamp_ms: int | None = None) -> bytes:
    """`igsid` read our message `message_id` (Instagram names the message, no watermark)."""
    at = timestamp_ms or _now_ms()
    return _instagram(account_id, {"sender": {"id": igsid}, "recipient": {"id": account_id}, "timestamp": at,
                                   "read": {"mid": message_id}}, at)


def reaction_payload(account_id: str, igsid: str, message_id: str, reaction: str = "love", emoji: str = "❤️", *,
                     action: str = "react", timestamp_ms: int | None = None) -> bytes:
    at = timestamp_ms or _now_ms()
    return _instagram(account_id, {"sender": {"id": igsid}, "recipient": {"id": account_id}, "timestamp": at,
                                   "reaction": {"mid": message_id, "action": action, "reaction": reaction,
                                                "emoji": emoji}}, at)


# How the sandbox drives Instagram (socialdesk/sandbox.py) -----------------------------------------

class InstagramSimulation(Simulation):
    channel = "instagram"
    api = InstagramAPI
    account_ids = (INSTAGRAM_ACCOUNT,)
    customer = "6543210987654321"
    id_key = "account_id"
    demo = (
        DemoConversation(0, "6543210987654321", "Chloé M.", 40, "Hi! Is the linen shirt from your last post "
                         "still available in S?", claim=True),
        DemoConversation(0, "6543210987654321", "Chloé M.", 38, "The white one",
                         reply="Hi Chloé, yes: we have two left in S.", status="pending"),
        DemoConversation(0, "6123456789012345", "Marco B.", 15, "Replied to your story: love these colours!"),
    )

    def accounts(self, api: InstagramAPI, secret: Callable[[], str]) -> list[dict[str, Any]]:
        api.page_tokens[INSTAGRAM_ACCOUNT] = token = secret()
        return [{"name": "brand-instagram", "account_id": INSTAGRAM_ACCOUNT, "username": "socialdesk.demo",
                 "app_secret": secret(), "verify_token": secret(), "access_token": token,
                 "api_url": api.url + "/v21.0"}]

    def message(self, account: str, user: str, text: str, message_id: str, sent_at: datetime,
                name: str) -> bytes:
        return message_payload(account, user, text, message_id, timestamp_ms=int(sent_at.timestamp()) * 1000)

    def receipt(self, account: str, user: str, platform_message_id: str, status: str) -> bytes | None:
        # Instagram sends read receipts only, never a delivery one.
        return read_payload(account, user, platform_message_id) if status == "read" else None

    def replies(self, api: InstagramAPI) -> list[SentReply]:
        return [SentReply(r.path.split("/")[-2], str(r.json["recipient"]["id"]),
                          str((r.json.get("message") or {}).get("text") or ""))
                for r in api.sent("/messages") if r.path.split("/")[-2] in api.page_tokens and r.body]

    def routing_ids(self, body: bytes) -> set[str]:
        return entry_ids(body)  # the professional account, as Messenger's entries name the Page

    def fresh_routing_id(self, index: int) -> str:
        return f"1784{index:013d}"  # an Instagram professional account id: 17 digits


INSTAGRAM = InstagramSimulation()
