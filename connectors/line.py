"""LINE Messaging API connector: webhook signature, event parsing, push sends and content download.

Owns the `[[line]]` configuration section. One webhook URL per LINE channel, `/webhooks/line/{name}`,
so the account is chosen by the configured name; the payload's `destination` must be that account's
bot user id. LINE has no GET challenge (the console's Verify button POSTs an empty, signed event list),
so `handshake` always answers None. LINE sends no delivery or read receipts for normal chats, so
`parse` only ever yields messages. Replies go out as push messages (there is no messaging window),
with an `X-Line-Retry-Key` so a retried push is never delivered twice.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from connectors.base import (
    SEND_TIMEOUT,
    BadSignature,
    DeliveryResult,
    HttpAnswer,
    Incoming,
    MalformedPayload,
    Media,
    OutboundReply,
    UnknownAccount,
    call_api,
    check_table,
    check_unique,
    header,
    hmac_sha256,
    same,
    text_value,
    url_value,
)
from warehouse.model import Attachment, InboundMessage, StatusUpdate, from_unix_ms

log = logging.getLogger(__name__)

SECTION = "line"
KEYS = ("name", "bot_user_id", "channel_secret", "channel_access_token", "api_url", "data_api_url")
API_URL = "https://api.line.me"
DATA_API_URL = "https://api-data.line.me"  # binary content lives on its own host
TEXT_LIMIT = 5000  # characters per LINE text message
MESSAGES_PER_PUSH = 5
MEDIA_TYPES = {"image", "video", "audio"}
# Retry keys derive from the outbox row when the caller gave none, so retries of one row share a key.
RETRY_KEY_NAMESPACE = uuid.UUID("9b4c1f7e-2d6a-4f0e-8a51-6c3d2b7e1a90")
FILE_REASON = ("LINE only sends images and files from a public HTTPS URL, which SocialDesk does not host; "
               "share a link to the file in the text instead")


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    bot_user_id: str
    channel_secret: str = field(repr=False)
    channel_access_token: str = field(repr=False)
    api_url: str = API_URL
    data_api_url: str = DATA_API_URL


def signature(channel_secret: str, body: bytes) -> str:
    """The `x-line-signature` LINE puts on a webhook body: base64 HMAC-SHA256, no prefix."""
    return base64.b64encode(hmac_sha256(channel_secret, body)).decode()


def _load(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayload("LINE webhook body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise MalformedPayload("LINE webhook body has no 'events' list")
    if not isinstance(payload.get("destination"), str):
        raise MalformedPayload("LINE webhook body has no 'destination'")
    return payload


class Connector:
    channel: ClassVar[str] = "line"
    window: ClassVar[timedelta | None] = None  # push messages have no conversation window

    def __init__(self, accounts: list[Account]) -> None:
        check_unique(SECTION, [(a.name, a.bot_user_id) for a in accounts], "bot_user_id")
        self._by_name = {a.name: a for a in accounts}
        self._by_id = {a.bot_user_id: a for a in accounts}

    @classmethod
    def from_config(cls, tables: list[dict[str, Any]]) -> Connector:
        accounts = []
        for table in tables:
            check_table(table, SECTION, KEYS, optional=())
            accounts.append(Account(
                name=text_value(table, "name", SECTION),
                bot_user_id=text_value(table, "bot_user_id", SECTION),
                channel_secret=text_value(table, "channel_secret", SECTION),
                channel_access_token=text_value(table, "channel_access_token", SECTION),
                api_url=url_value(table, SECTION, API_URL),
                data_api_url=url_value(table, SECTION, DATA_API_URL, "data_api_url"),
            ))
        return cls(accounts)

    # -- accounts -------------------------------------------------------------------------------

    def account_ids(self) -> list[str]:
        return list(self._by_id)

    def account(self, account_id: str) -> Account:
        try:
            return self._by_id[account_id]
        except KeyError:
            raise UnknownAccount(f"no LINE account with bot user id {account_id!r}") from None

    def account_info(self, account_id: str) -> dict[str, Any]:
        account = self.account(account_id)
        return {"channel": self.channel, "account_name": account.name, "bot_user_id": account.bot_user_id}

    # -- webhooks -------------------------------------------------------------------------------

    def handshake(self, request: Incoming) -> web.Response | None:
        # LINE never sends a GET challenge; its Verify button is an ordinary signed POST.
        return None

    def verify(self, request: Incoming) -> None:
        if not request.name or request.name not in self._by_name:
            raise UnknownAccount(f"no LINE account named {request.name!r}")
        account = self._by_name[request.name]
        given = header(request, "x-line-signature")
        if not given:
            raise BadSignature("LINE webhook without x-line-signature")
        if not same(given, signature(account.channel_secret, request.body)):
            raise BadSignature(f"LINE signature mismatch for account {account.name!r}")
        destination = _load(request.body)["destination"]
        if destination != account.bot_user_id:
            raise UnknownAccount(f"LINE webhook for account {account.name!r} names another bot ({destination!r})")

    def parse(self, request: Incoming) -> list[InboundMessage | StatusUpdate]:
        payload = _load(request.body)
        bot = payload["destination"]
        out: list[InboundMessage | StatusUpdate] = []
        for event in payload["events"]:
            if not isinstance(event, dict):
                raise MalformedPayload("LINE event is not an object")
            message = self._message(bot, event)
            if message is not None:
                out.append(message)
        return out

    def _message(self, bot: str, event: dict[str, Any]) -> InboundMessage | None:
        kind = event.get("type")
        source = event.get("source") or {}
        if kind != "message":
            log.info("LINE %s event skipped", kind)
            return None
        if source.get("type") != "user":
            # Group and room chats are not support conversations: pushing to them would reach everyone.
            log.info("LINE message from a %s skipped", source.get("type"))
            return None
        try:
            msg = event["message"]
            user_id = str(source["userId"])
            message_id = str(msg["id"])  # the same on a redelivery, so it is the dedupe key
            sent_at = from_unix_ms(event["timestamp"])
            mtype = msg["type"]
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedPayload(f"LINE message event without {exc}") from None
        text = ""
        attachments: tuple[Attachment, ...] = ()
        if mtype == "text":
            text = str(msg.get("text") or "")
        elif mtype in MEDIA_TYPES:
            provider = msg.get("contentProvider") or {}
            if provider.get("type") == "external":
                # Content lives on the sender's server; LINE's content endpoint has nothing for it.
                attachments = (Attachment(type=mtype, url=provider.get("originalContentUrl")),)
            else:
                attachments = (Attachment(type=mtype, media_id=message_id),)
        elif mtype == "file":
            attachments = (Attachment(type="file", media_id=message_id, filename=msg.get("fileName")),)
        elif mtype == "sticker":
            attachments = (Attachment(type="sticker", title=f"{msg.get('packageId')}/{msg.get('stickerId')}",
                                      caption=", ".join(msg.get("keywords") or []) or None),)
        elif mtype == "location":
            try:
                attachments = (Attachment(type="location", title=msg.get("title"), caption=msg.get("address"),
                                          latitude=float(msg["latitude"]), longitude=float(msg["longitude"])),)
            except (KeyError, TypeError, ValueError):
                raise MalformedPayload("LINE location message without coordinates") from None
        else:
            log.info("LINE %s message skipped", mtype)
            return None
        return InboundMessage(channel=self.channel, account=bot, user_id=user_id, message_id=message_id,
                              sent_at=sent_at, text=text, attachments=attachments,
                              profile={"line_user_id": user_id})

    def acknowledge(self, request: Incoming) -> web.Response:
        return web.Response(text="OK")

    def simulate(self, account_id: str, body: bytes) -> tuple[dict[str, str], dict[str, str], bytes]:
        """What LINE would send us for this body; post it to /webhooks/line/{account_info()['account_name']}."""
        account = self.account(account_id)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "x-line-signature": signature(account.channel_secret, body)}
        return headers, {}, body

    # -- sending --------------------------------------------------------------------------------

    async def send(self, session: aiohttp.ClientSession, reply: OutboundReply) -> DeliveryResult:
        account = self._by_id.get(reply.account)
        if account is None:
            return DeliveryResult.failed(f"no LINE account with bot user id {reply.account!r} is configured")
        if not reply.text:
            if reply.file is not None:
                return DeliveryResult.failed(FILE_REASON)
            return DeliveryResult.failed("nothing to send: LINE replies need text")
        chunks = [reply.text[i:i + TEXT_LIMIT] for i in range(0, len(reply.text), TEXT_LIMIT)]
        if len(chunks) > MESSAGES_PER_PUSH:
            return DeliveryResult.failed(
                f"message too long for LINE: at most {TEXT_LIMIT * MESSAGES_PER_PUSH} characters")
        retry_key = reply.retry_key or str(uuid.uuid5(RETRY_KEY_NAMESPACE, f"outbox:{reply.outbox_id}"))
        answer = await call_api(
            session, "POST", f"{account.api_url}/v2/bot/message/push",
            headers={"Authorization": f"Bearer {account.channel_access_token}", "X-Line-Retry-Key": retry_key},
            json={"to": reply.to, "messages": [{"type": "text", "text": c} for c in chunks]},
        )
        if isinstance(answer, DeliveryResult):
            return answer
        result = _read_push(answer, retry_key)
        if result.state == "sent" and reply.file is not None:
            return DeliveryResult.failed(f"the text was sent; the file was not: {FILE_REASON}")
        return result

    async def fetch_media(self, session: aiohttp.ClientSession, account_id: str, media_id: str) -> Media:
        """The content of an image, video, audio or file message, by LINE message id."""
        account = self.account(account_id)
        url = f"{account.data_api_url}/v2/bot/message/{media_id}/content"
        headers = {"Authorization": f"Bearer {account.channel_access_token}"}
        async with session.get(url, headers=headers, timeout=SEND_TIMEOUT) as resp:
            if resp.status != 200:
                raise LookupError(f"LINE has no content for message {media_id} (HTTP {resp.status}); "
                                  "content expires after a while and external content is not kept by LINE")
            data = await resp.read()
            return Media(data, resp.headers.get("Content-Type", "application/octet-stream").split(";")[0])



def _read_push(answer: HttpAnswer, retry_key: str) -> DeliveryResult:
    body = answer.body if isinstance(answer.body, dict) else {}
    sent = body.get("sentMessages") or []
    first_id = str(sent[0].get("id")) if sent and isinstance(sent[0], dict) and sent[0].get("id") else None
    if answer.status == 200:
        return DeliveryResult.sent(first_id or answer.headers.get("x-line-request-id", ""))
    if answer.status == 409:
        # Same retry key already accepted: an earlier attempt went through, so this one counts as sent.
        return DeliveryResult.sent(first_id or answer.headers.get("x-line-accepted-request-id") or retry_key)
    if answer.status == 401:
        return DeliveryResult.failed("LINE rejected the channel access token (HTTP 401); check the account's "
                                     "channel_access_token")
    reason = str(body.get("message") or f"HTTP {answer.status}")
    details = [f"{d.get('property', '')}: {d.get('message', '')}".strip(": ")
               for d in body.get("details") or [] if isinstance(d, dict)]
    if details:
        reason += " (" + "; ".join(details) + ")"
    return DeliveryResult.failed(f"LINE refused the message: {reason}")
