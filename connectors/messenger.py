"""Facebook Messenger Platform: the `[[messenger]]` Pages, their webhook and the Send API.

Owns: the page configuration, routing by page id (`entry[].id`) on the one `/webhooks/messenger`
URL, turning `messaging[]` events (messages, postbacks, delivery and read watermarks) into
InboundMessage / StatusUpdate while skipping the page's own echoes, sending text and one file
(uploaded through the Attachment Upload API first), mapping Graph errors (code 10 window closed,
4/32/613 rate limits), and downloading attachments by their URL.
Shared Meta pieces (handshake, signature) live in connectors/meta.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from connectors import meta
from connectors.base import (
    BadSignature,
    DeliveryResult,
    HttpAnswer,
    Incoming,
    Media,
    OutboundFile,
    OutboundReply,
    UnknownAccount,
    call_api,
    check_table,
    check_unique,
    text_value,
)
from warehouse.model import Attachment, InboundMessage, StatusUpdate

log = logging.getLogger(__name__)

SECTION = "messenger"
OBJECT = "page"
KEYS = ("page_id", "page_name", "app_secret", "verify_token", "page_access_token")
MEDIA_TYPES = ("image", "video", "audio", "file")
WINDOW_CLOSED_CODE = 10  # "(#10) This message is sent outside of allowed window"
WINDOW_CLOSED_SUBCODE = 2018278
RATE_LIMITED = {4, 32, 613, 2}  # app, page and send rate limits; 2 is "service temporarily unavailable"


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    page_id: str
    page_name: str
    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    page_access_token: str = field(repr=False)
    api_url: str = meta.GRAPH_API_URL

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Account:
        check_table(table, SECTION, KEYS)
        return cls(
            name=text_value(table, "name", SECTION),
            page_id=text_value(table, "page_id", SECTION, allow_int=True),
            page_name=text_value(table, "page_name", SECTION),
            app_secret=text_value(table, "app_secret", SECTION),
            verify_token=text_value(table, "verify_token", SECTION),
            page_access_token=text_value(table, "page_access_token", SECTION),
            api_url=meta.api_url_value(table, SECTION),
        )

    @property
    def token_param(self) -> dict[str, str]:
        # Meta documents the page token as a query parameter; never log or echo the URL it ends up in.
        return {"access_token": self.page_access_token}


class Connector:
    channel: ClassVar[str] = "messenger"
    window: ClassVar[timedelta | None] = timedelta(hours=24)

    def __init__(self, accounts: Iterable[Account]) -> None:
        accounts = list(accounts)
        check_unique(SECTION, [(a.name, a.page_id) for a in accounts], "page_id")
        self._accounts = {a.page_id: a for a in accounts}

    @classmethod
    def from_config(cls, tables: list[dict[str, Any]]) -> Connector:
        return cls(Account.from_table(table) for table in tables)

    def account_ids(self) -> list[str]:
        return list(self._accounts)

    def account(self, account_id: str) -> Account:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise UnknownAccount(f"no messenger account with page_id {account_id!r}") from None

    def account_info(self, account_id: str) -> dict[str, Any]:
        account = self.account(account_id)
        return {"channel": self.channel, "account_name": account.name, "page_id": account.page_id,
                "page_name": account.page_name}

    # Webhook ----------------------------------------------------------------------------------

    def handshake(self, request: Incoming) -> web.Response | None:
        return meta.handshake(request, (a.verify_token for a in self._accounts.values()))

    def verify(self, request: Incoming) -> None:
        matched = meta.matching_secrets(request, (a.app_secret for a in self._accounts.values()))
        data = meta.load_json(request.body, OBJECT)
        for entry in data["entry"]:
            account = self.account(meta.text_field(meta.as_dict(entry, "entry"), "id", "entry"))
            # One app's secret must not vouch for another app's pages.
            if account.app_secret not in matched:
                raise BadSignature(f"signature is not from the app of account {account.name!r}")

    def parse(self, request: Incoming) -> list[InboundMessage | StatusUpdate]:
        data = meta.load_json(request.body, OBJECT)
        out: list[InboundMessage | StatusUpdate] = []
        for entry in data["entry"]:
            entry = meta.as_dict(entry, "entry")
            page = meta.text_field(entry, "id", "entry")
            if "messaging" not in entry:
                log.info("messenger: skipping an entry without messaging events (%s)", ", ".join(sorted(entry)))
                continue
            for event in meta.as_list(entry["messaging"], "entry.messaging"):
                out.extend(_parse_event(page, meta.as_dict(event, "messaging event")))
        return out

    def acknowledge(self, request: Incoming) -> web.Response:
        return web.Response(text="OK")

    def simulate(self, account_id: str, body: bytes) -> tuple[dict[str, str], dict[str, str], bytes]:
        """The request Meta would send us with `body` for this page: JSON, signed with its app secret."""
        account = self.account(account_id)
        headers = {"Content-Type": "application/json", meta.SIGNATURE_HEADER: meta.sign(account.app_secret, body)}
        return headers, {}, body

    # Send -------------------------------------------------------------------------------------

    async def send(self, session: aiohttp.ClientSession, reply: OutboundReply) -> DeliveryResult:
        account = self._accounts.get(reply.account)
        if account is None:
            return DeliveryResult.failed(f"no messenger account with page_id {reply.account!r} is configured")
        if reply.template is not None:
            return DeliveryResult.failed("message templates are a WhatsApp feature; Messenger cannot send one")
        if not reply.text and reply.file is None:
            return DeliveryResult.failed("the reply has neither text nor a file")
        if reply.file is None:
            return await self._post(session, account, reply.to, {"text": reply.text})
        # Upload before anything is sent, so a failed upload leaves the customer with nothing half-sent.
        uploaded = await self._upload(session, account, reply.file)
        if isinstance(uploaded, DeliveryResult):
            return uploaded
        attachment = {"attachment": {"type": _kind(reply.file), "payload": {"attachment_id": uploaded}}}
        if not reply.text:
            return await self._post(session, account, reply.to, attachment)
        first = await self._post(session, account, reply.to, {"text": reply.text})
        if first.state != "sent" or first.platform_message_id is None:
            return first
        return meta.after_first_part(first.platform_message_id,
                                     await self._post(session, account, reply.to, attachment))

    async def _post(self, session: aiohttp.ClientSession, account: Account, to: str,
                    message: dict[str, Any]) -> DeliveryResult:
        body = {"recipient": {"id": to}, "messaging_type": "RESPONSE", "message": message}
        answer = await call_api(session, "POST", f"{account.api_url}/{account.page_id}/messages",
                                params=account.token_param, json=body)
        if isinstance(answer, DeliveryResult):
            return answer
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("message_id"):
            return DeliveryResult.sent(str(answer.body["message_id"]))
        return _error(answer, account)

    async def _upload(self, session: aiohttp.ClientSession, account: Account,
                      file: OutboundFile) -> str | DeliveryResult:
        form = aiohttp.FormData()
        form.add_field("message", json.dumps({"attachment": {"type": _kind(file), "payload": {"is_reusable": True}}}))
        form.add_field("filedata", file.data, filename=file.filename, content_type=file.mime_type)
        answer = await call_api(session, "POST", f"{account.api_url}/{account.page_id}/message_attachments",
                                params=account.token_param, data=form)
        if isinstance(answer, DeliveryResult):
            return answer
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("attachment_id"):
            return str(answer.body["attachment_id"])
        result = _error(answer, account)
        return DeliveryResult(result.state, reason=f"uploading {file.filename}: {result.reason}",
                              retry_after=result.retry_after)

    async def fetch_media(self, session: aiohttp.ClientSession, account_id: str, media_id: str) -> Media:
        """Messenger attachments carry their own (signed CDN) URL: `media_id` is that URL."""
        if account_id not in self._accounts:
            raise LookupError(f"no messenger account with page_id {account_id!r} is configured")
        return await meta.download(session, media_id, what="Messenger attachment")


# Parsing ----------------------------------------------------------------------------------------

def _parse_event(page: str, event: dict[str, Any]) -> list[InboundMessage | StatusUpdate]:
    sender = meta.text_field(meta.as_dict(event.get("sender"), "sender"), "id", "sender")
    if "message" in event:
        message = meta.as_dict(event["message"], "message")
        if message.get("is_echo"):
            return []  # what the page itself sent: ours, or typed in the Page inbox
        return _parse_message(page, sender, event, message)
    if "postback" in event:
        postback = meta.as_dict(event["postback"], "postback")
        at = meta.timestamp(event.get("timestamp"), "postback", ms=True)
        # Older postbacks carry no mid; sender + time is stable across Meta's retries.
        message_id = str(postback.get("mid") or f"postback-{sender}-{event.get('timestamp')}")
        text = str(postback.get("title") or postback.get("payload") or "")
        return [InboundMessage("messenger", page, sender, message_id, at, text, (), {"psid": sender})]
    if "delivery" in event:
        delivery = meta.as_dict(event["delivery"], "delivery")
        watermark = meta.timestamp(delivery.get("watermark"), "delivery watermark", ms=True)
        at = meta.timestamp(event["timestamp"], "delivery", ms=True) if "timestamp" in event else watermark
        mids = meta.as_list(delivery.get("mids"), "delivery.mids")
        if mids:
            return [StatusUpdate("messenger", page, sender, "delivered", at, message_id=str(mid)) for mid in mids]
        return [StatusUpdate("messenger", page, sender, "delivered", at, watermark=watermark)]
    if "read" in event:
        read = meta.as_dict(event["read"], "read")
        watermark = meta.timestamp(read.get("watermark"), "read watermark", ms=True)
        at = meta.timestamp(event["timestamp"], "read", ms=True) if "timestamp" in event else watermark
        return [StatusUpdate("messenger", page, sender, "read", at, watermark=watermark)]
    kinds = sorted(set(event) - {"sender", "recipient", "timestamp"})
    log.info("messenger: skipping a %s event for page %s", "/".join(kinds) or "empty", page)
    return []


def _parse_message(page: str, sender: str, event: dict[str, Any],
                   message: dict[str, Any]) -> list[InboundMessage | StatusUpdate]:
    message_id = meta.text_field(message, "mid", "message")
    at = meta.timestamp(event.get("timestamp"), f"message {message_id}", ms=True)
    text = message.get("text") if isinstance(message.get("text"), str) else ""
    attachments = tuple(a for a in (_attachment(meta.as_dict(item, "attachment"))
                                    for item in meta.as_list(message.get("attachments"), "message.attachments"))
                        if a is not None)
    if not text and not attachments:
        log.info("messenger: skipping message %s with nothing we can show", message_id)
        return []
    return [InboundMessage("messenger", page, sender, message_id, at, text, attachments, {"psid": sender})]


def _attachment(item: dict[str, Any]) -> Attachment | None:
    kind = item.get("type")
    payload = item.get("payload") if isinstance(item.get("payload"), dict) else {}
    if kind == "image" and payload.get("sticker_id") is not None:
        return Attachment("sticker", url=payload.get("url"))
    if kind in MEDIA_TYPES:
        return Attachment(str(kind), url=payload.get("url"))
    if kind == "location":
        coordinates = meta.as_dict(payload.get("coordinates"), "location coordinates")
        return Attachment("location", latitude=meta.number(coordinates.get("lat"), "latitude"),
                          longitude=meta.number(coordinates.get("long"), "longitude"),
                          title=item.get("title"), url=item.get("url"))
    log.info("messenger: skipping a %r attachment", kind)
    return None


# Sending ----------------------------------------------------------------------------------------

def _kind(file: OutboundFile) -> str:
    return "image" if file.mime_type.startswith("image/") else "file"


def _error(answer: HttpAnswer, account: Account) -> DeliveryResult:
    error = meta.graph_error(answer)
    if error.code is None:
        reason = f"Messenger answered HTTP {answer.status} without a message id"
    else:
        reason = f"Messenger error {error.code}: {error.message}"
    reason = meta.safe_reason(reason, account.page_access_token, account.app_secret)
    if error.code == WINDOW_CLOSED_CODE or error.subcode == WINDOW_CLOSED_SUBCODE:
        return DeliveryResult.failed(reason, window_closed=True)
    if error.code in RATE_LIMITED:
        return DeliveryResult.retry(reason)
    return DeliveryResult.failed(reason)
