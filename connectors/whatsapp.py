"""WhatsApp Cloud API: the `[[whatsapp]]` business numbers, their webhook and their send API.

Owns: the account configuration, routing by `metadata.phone_number_id` on the one
`/webhooks/whatsapp` URL, turning `messages[]` and `statuses[]` into InboundMessage / StatusUpdate,
sending text, one image or document (uploaded first) and templates, mapping Graph errors
(131047 window closed, 130429/131056 rate limits), and the two-step media download.
Shared Meta pieces (handshake, signature) live in connectors/meta.py.
"""

from __future__ import annotations

import logging
import re
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
from warehouse.model import Attachment, DeliveryState, InboundMessage, StatusUpdate

log = logging.getLogger(__name__)

SECTION = "whatsapp"
OBJECT = "whatsapp_business_account"
KEYS = ("phone_number_id", "display_phone_number", "app_secret", "verify_token", "access_token")
MEDIA_TYPES = {"image": "image", "document": "file", "audio": "audio", "video": "video", "sticker": "sticker"}
STATUSES: tuple[DeliveryState, ...] = ("sent", "delivered", "read", "failed")
WINDOW_CLOSED = 131047  # "Re-engagement message": more than 24 h since the customer wrote
RATE_LIMITED = {130429, 131056, 2}  # throughput, pair rate limit, Graph "service temporarily unavailable"
CAPTION_LIMIT = 1024
IMAGE_TYPES = ("image/jpeg", "image/png")  # anything else goes as a document, which takes any type
MEDIA_ID = re.compile(r"[0-9A-Za-z_-]+")


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    phone_number_id: str
    display_phone_number: str
    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    access_token: str = field(repr=False)
    api_url: str = meta.GRAPH_API_URL

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Account:
        check_table(table, SECTION, KEYS)
        return cls(
            name=text_value(table, "name", SECTION),
            phone_number_id=text_value(table, "phone_number_id", SECTION, allow_int=True),
            display_phone_number=text_value(table, "display_phone_number", SECTION, allow_int=True),
            app_secret=text_value(table, "app_secret", SECTION),
            verify_token=text_value(table, "verify_token", SECTION),
            access_token=text_value(table, "access_token", SECTION),
            api_url=meta.api_url_value(table, SECTION),
        )

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class Connector:
    channel: ClassVar[str] = "whatsapp"
    window: ClassVar[timedelta | None] = timedelta(hours=24)

    def __init__(self, accounts: Iterable[Account]) -> None:
        accounts = list(accounts)
        check_unique(SECTION, [(a.name, a.phone_number_id) for a in accounts], "phone_number_id")
        self._accounts = {a.phone_number_id: a for a in accounts}

    @classmethod
    def from_config(cls, tables: list[dict[str, Any]]) -> Connector:
        return cls(Account.from_table(table) for table in tables)

    def account_ids(self) -> list[str]:
        return list(self._accounts)

    def account(self, account_id: str) -> Account:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise UnknownAccount(f"no whatsapp account with phone_number_id {account_id!r}") from None

    def account_info(self, account_id: str) -> dict[str, Any]:
        account = self.account(account_id)
        return {"channel": self.channel, "account_name": account.name,
                "phone_number_id": account.phone_number_id, "display_phone_number": account.display_phone_number}

    # Webhook ----------------------------------------------------------------------------------

    def handshake(self, request: Incoming) -> web.Response | None:
        return meta.handshake(request, (a.verify_token for a in self._accounts.values()))

    def verify(self, request: Incoming) -> None:
        matched = meta.matching_secrets(request, (a.app_secret for a in self._accounts.values()))
        for phone_number_id in _routing_ids(request.body):
            account = self.account(phone_number_id)
            # One app's secret must not vouch for another app's numbers.
            if account.app_secret not in matched:
                raise BadSignature(f"signature is not from the app of account {account.name!r}")

    def parse(self, request: Incoming) -> list[InboundMessage | StatusUpdate]:
        data = meta.load_json(request.body, OBJECT)
        out: list[InboundMessage | StatusUpdate] = []
        for entry in data["entry"]:
            for change in meta.as_list(meta.as_dict(entry, "entry").get("changes"), "entry.changes"):
                change = meta.as_dict(change, "change")
                if change.get("field") != "messages":
                    log.info("whatsapp: skipping a %r change", change.get("field"))
                    continue
                out.extend(_parse_value(meta.as_dict(change.get("value"), "change value")))
        return out

    def acknowledge(self, request: Incoming) -> web.Response:
        return web.Response(text="OK")

    def simulate(self, account_id: str, body: bytes) -> tuple[dict[str, str], dict[str, str], bytes]:
        """The request Meta would send us with `body` for this number: JSON, signed with its app secret."""
        account = self.account(account_id)
        headers = {"Content-Type": "application/json", meta.SIGNATURE_HEADER: meta.sign(account.app_secret, body)}
        return headers, {}, body

    # Send -------------------------------------------------------------------------------------

    async def send(self, session: aiohttp.ClientSession, reply: OutboundReply) -> DeliveryResult:
        account = self._accounts.get(reply.account)
        if account is None:
            return DeliveryResult.failed(f"no whatsapp account with phone_number_id {reply.account!r} is configured")
        if reply.template is not None:
            template: dict[str, Any] = {"name": reply.template.name, "language": {"code": reply.template.language}}
            if reply.template.parameters:
                template["components"] = [{"type": "body", "parameters": [
                    {"type": "text", "text": p} for p in reply.template.parameters]}]
            return await self._post(session, account, {"messaging_product": "whatsapp", "to": reply.to,
                                                       "type": "template", "template": template})
        if not reply.text and reply.file is None:
            return DeliveryResult.failed("the reply has neither text nor a file")
        if reply.file is None:
            return await self._post(session, account, _text_message(reply.to, reply.text))
        # Upload before anything is sent, so a failed upload leaves the customer with nothing half-sent.
        media_id = await self._upload(session, account, reply.file)
        if isinstance(media_id, DeliveryResult):
            return media_id
        caption = reply.text if len(reply.text) <= CAPTION_LIMIT else ""
        media = _media_message(reply.to, reply.file, media_id, caption)
        if not reply.text or caption:
            return await self._post(session, account, media)
        first = await self._post(session, account, _text_message(reply.to, reply.text))
        if first.state != "sent" or first.platform_message_id is None:
            return first
        return meta.after_first_part(first.platform_message_id, await self._post(session, account, media))

    async def _post(self, session: aiohttp.ClientSession, account: Account, payload: dict[str, Any]) -> DeliveryResult:
        answer = await call_api(session, "POST", f"{account.api_url}/{account.phone_number_id}/messages",
                                json=payload, headers=account.auth)
        if isinstance(answer, DeliveryResult):
            return answer
        if answer.status == 200 and isinstance(answer.body, dict):
            messages = answer.body.get("messages")
            if isinstance(messages, list) and messages and isinstance(messages[0], dict) and messages[0].get("id"):
                return DeliveryResult.sent(str(messages[0]["id"]))
        return _error(answer, account)

    async def _upload(self, session: aiohttp.ClientSession, account: Account,
                      file: OutboundFile) -> str | DeliveryResult:
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", file.mime_type)
        form.add_field("file", file.data, filename=file.filename, content_type=file.mime_type)
        answer = await call_api(session, "POST", f"{account.api_url}/{account.phone_number_id}/media",
                                data=form, headers=account.auth)
        if isinstance(answer, DeliveryResult):
            return answer
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("id"):
            return str(answer.body["id"])
        result = _error(answer, account)
        return DeliveryResult(result.state, reason=f"uploading {file.filename}: {result.reason}",
                              retry_after=result.retry_after)

    async def fetch_media(self, session: aiohttp.ClientSession, account_id: str, media_id: str) -> Media:
        """Media ids from webhooks last 7 days: look the id up for a short-lived URL, then GET it."""
        account = self._accounts.get(account_id)
        if account is None:
            raise LookupError(f"no whatsapp account with phone_number_id {account_id!r} is configured")
        if not MEDIA_ID.fullmatch(media_id):
            raise LookupError(f"{media_id!r} is not a WhatsApp media id")
        what = f"WhatsApp media {media_id}"
        answer = await call_api(session, "GET", f"{account.api_url}/{media_id}", headers=account.auth)
        if isinstance(answer, DeliveryResult):
            raise LookupError(f"{what}: {answer.reason}")
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status != 200 or not isinstance(body.get("url"), str):
            raise LookupError(f"{what}: {_error(answer, account).reason}")
        mime_type = body.get("mime_type") if isinstance(body.get("mime_type"), str) else None
        return await meta.download(session, body["url"], headers=account.auth, what=what, mime_type=mime_type)


# Parsing ----------------------------------------------------------------------------------------

def _routing_ids(body: bytes) -> set[str]:
    """The phone_number_ids a payload speaks for (changes without metadata name none)."""
    data = meta.load_json(body, OBJECT)
    ids: set[str] = set()
    for entry in data["entry"]:
        for change in meta.as_list(meta.as_dict(entry, "entry").get("changes"), "entry.changes"):
            value = meta.as_dict(change, "change").get("value")
            metadata = value.get("metadata") if isinstance(value, dict) else None
            if isinstance(metadata, dict):
                ids.add(meta.text_field(metadata, "phone_number_id", "metadata"))
    return ids


def _parse_value(value: dict[str, Any]) -> list[InboundMessage | StatusUpdate]:
    account = meta.text_field(meta.as_dict(value.get("metadata"), "value.metadata"), "phone_number_id", "metadata")
    profiles: dict[str, dict[str, Any]] = {}
    for contact in meta.as_list(value.get("contacts"), "value.contacts"):
        contact = meta.as_dict(contact, "contact")
        wa_id = str(contact.get("wa_id") or "")
        if not wa_id:
            continue  # a profile we cannot tie to a sender only loses the name, not the message
        profile = contact.get("profile") if isinstance(contact.get("profile"), dict) else {}
        profiles[wa_id] = {"name": profile.get("name")} if profile.get("name") else {}
    out: list[InboundMessage | StatusUpdate] = []
    for message in meta.as_list(value.get("messages"), "value.messages"):
        parsed = _parse_message(account, meta.as_dict(message, "message"), profiles)
        if parsed is not None:
            out.append(parsed)
    for status in meta.as_list(value.get("statuses"), "value.statuses"):
        parsed_status = _parse_status(account, meta.as_dict(status, "status"))
        if parsed_status is not None:
            out.append(parsed_status)
    if value.get("errors"):
        log.info("whatsapp: skipping webhook-level errors for %s", account)
    return out


def _parse_message(account: str, message: dict[str, Any],
                   profiles: dict[str, dict[str, Any]]) -> InboundMessage | None:
    kind = str(message.get("type") or "")
    user = meta.text_field(message, "from", "message")
    message_id = meta.text_field(message, "id", "message")
    sent_at = meta.timestamp(message.get("timestamp"), f"message {message_id}")
    text = ""
    attachments: tuple[Attachment, ...] = ()
    if kind == "text":
        text = str(meta.as_dict(message.get("text"), "text message").get("body") or "")
    elif kind in MEDIA_TYPES:
        media = meta.as_dict(message.get(kind), f"{kind} message")
        attachments = (Attachment(MEDIA_TYPES[kind], media_id=meta.text_field(media, "id", f"{kind} message"),
                                  mime_type=media.get("mime_type"), filename=media.get("filename"),
                                  caption=media.get("caption")),)
    elif kind == "location":
        place = meta.as_dict(message.get("location"), "location message")
        title = ", ".join(str(place[k]) for k in ("name", "address") if place.get(k)) or None
        attachments = (Attachment("location", latitude=meta.number(place.get("latitude"), "latitude"),
                                  longitude=meta.number(place.get("longitude"), "longitude"), title=title,
                                  url=place.get("url")),)
    elif kind == "interactive":
        # A tap on one of our reply buttons or list rows: the customer "said" its title.
        interactive = meta.as_dict(message.get("interactive"), "interactive message")
        chosen = interactive.get(str(interactive.get("type") or ""))
        text = str(chosen.get("title") or "") if isinstance(chosen, dict) else ""
    elif kind == "button":
        text = str(meta.as_dict(message.get("button"), "button message").get("text") or "")
    if not text and not attachments:
        log.info("whatsapp: skipping a %r message %s", kind, message_id)
        return None
    profile = {**profiles.get(user, {}), "phone": f"+{user.lstrip('+')}"}
    return InboundMessage("whatsapp", account, user, message_id, sent_at, text, attachments, profile)


def _parse_status(account: str, status: dict[str, Any]) -> StatusUpdate | None:
    state = status.get("status")
    message_id = meta.text_field(status, "id", "status")
    if state not in STATUSES:
        log.info("whatsapp: skipping a %r status for %s", state, message_id)
        return None
    errors = [e for e in meta.as_list(status.get("errors"), "status.errors") if isinstance(e, dict)]
    error = "; ".join(f"{e.get('code')}: {e.get('title') or e.get('message') or 'unknown error'}"
                      for e in errors) or None
    return StatusUpdate("whatsapp", account, meta.text_field(status, "recipient_id", "status"), state,
                        meta.timestamp(status.get("timestamp"), f"status {message_id}"),
                        message_id=message_id, error=error)


# Sending ----------------------------------------------------------------------------------------

def _text_message(to: str, text: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
            "text": {"preview_url": False, "body": text}}


def _media_message(to: str, file: OutboundFile, media_id: str, caption: str) -> dict[str, Any]:
    kind = "image" if file.mime_type in IMAGE_TYPES else "document"
    media: dict[str, Any] = {"id": media_id}
    if kind == "document":
        media["filename"] = file.filename
    if caption:
        media["caption"] = caption
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": kind, kind: media}


def _error(answer: HttpAnswer, account: Account) -> DeliveryResult:
    error = meta.graph_error(answer)
    if error.code is None:
        reason = f"WhatsApp answered HTTP {answer.status} without a message id"
    else:
        reason = f"WhatsApp error {error.code}: {error.message}"
    reason = meta.safe_reason(reason, account.access_token, account.app_secret)
    if error.code == WINDOW_CLOSED:
        return DeliveryResult.failed(reason, window_closed=True)
    if error.code in RATE_LIMITED:
        return DeliveryResult.retry(reason)
    return DeliveryResult.failed(reason)
