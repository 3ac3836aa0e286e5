"""A local fake of Meta's Graph API serving both WhatsApp Cloud API and Messenger Send API paths,
plus builders for the webhook payloads Meta sends us.

Routes (each with or without a `/v21.0`-style version prefix, so `api_url` may be either):
- `POST /{phone_number_id}/messages` (Bearer) and `POST /{page_id}/messages?access_token=...`
- `POST /{phone_number_id}/media` (multipart file, type, messaging_product)
- `POST /{page_id}/message_attachments` (multipart message + filedata)
- `GET /{media_id}` (Bearer) -> media URL, then `GET /whatsapp_business/attachments/?mid=...` (Bearer)
- `GET /messenger-cdn/{name}`: where Messenger attachment URLs point (no auth, like Meta's CDN)
A wrong token gets 401 with a Graph `OAuthException` (code 190) body.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from socialdesk.fakes.recorder import FakeAPI

VERSION = r"/{version:v[0-9]+\.[0-9]+}"
WHATSAPP_TYPES = ("text", "image", "document", "audio", "video", "sticker", "template")
MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")


@dataclass(frozen=True, slots=True)
class StoredMedia:
    data: bytes
    mime_type: str
    filename: str | None = None


def graph_error(code: int, message: str, *, subcode: int | None = None,
                error_type: str = "OAuthException") -> dict[str, Any]:
    """A Graph API error body, as the platform answers (use with `fail_next(1, 400, ...)`)."""
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code,
                             "fbtrace_id": "A" + uuid.uuid4().hex[:22]}
    if subcode is not None:
        error["error_subcode"] = subcode
    return {"error": error}


def whatsapp_window_closed() -> dict[str, Any]:
    return graph_error(131047, "Re-engagement message", error_type="OAuthException")


def messenger_window_closed() -> dict[str, Any]:
    return graph_error(10, "(#10) This message is sent outside of allowed window.", subcode=2018278)


class MetaGraphAPI(FakeAPI):
    """`whatsapp` maps phone_number_id -> access token, `pages` maps page_id -> page access token."""

    def __init__(self, whatsapp: Mapping[str, str] | None = None, pages: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.whatsapp_tokens = dict(whatsapp or {})
        self.page_tokens = dict(pages or {})
        self.media: dict[str, StoredMedia] = {}  # WhatsApp media ids: uploaded, or added for inbound tests
        self.attachments: dict[str, StoredMedia] = {}  # Messenger reusable attachment ids
        self.cdn: dict[str, StoredMedia] = {}
        self.message_ids: list[str] = []  # every message id handed out, in order
        self._counter = 0

    def routes(self) -> list[web.RouteDef]:
        routes = [web.get("/whatsapp_business/attachments/", self._whatsapp_download),
                  web.get("/messenger-cdn/{name}", self._cdn_download)]
        for prefix in ("", VERSION):
            routes += [web.post(prefix + "/{node}/messages", self._messages),
                       web.post(prefix + "/{node}/media", self._whatsapp_upload),
                       web.post(prefix + "/{node}/message_attachments", self._messenger_upload),
                       web.get(prefix + "/{media_id}", self._whatsapp_media_url)]
        return routes

    # Test helpers ----------------------------------------------------------------------------

    def add_media(self, data: bytes, mime_type: str, filename: str | None = None, media_id: str | None = None) -> str:
        """Make a WhatsApp media id downloadable (as if a customer had sent it); returns the id."""
        media_id = media_id or self._next_id()
        self.media[media_id] = StoredMedia(data, mime_type, filename)
        return media_id

    def add_cdn_file(self, data: bytes, mime_type: str) -> str:
        """A Messenger attachment URL serving `data` (call after start())."""
        name = hashlib.sha256(data).hexdigest()[:16]
        self.cdn[name] = StoredMedia(data, mime_type)
        return f"{self.url}/messenger-cdn/{name}?_nc_oc=fake&oh=fake"

    def _next_id(self) -> str:
        self._counter += 1
        return str(1_000_000_000_000_000 + self._counter)

    def _message_id(self, prefix: str) -> str:
        self.message_ids.append(prefix + self._next_id())
        return self.message_ids[-1]

    # Handlers ---------------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.Response:
        rec = await self.record(request)
        if (scripted := self.scripted(request)) is not None:
            return scripted
        node = request.match_info["node"]
        if node in self.whatsapp_tokens:
            if (refused := self._bearer(request, self.whatsapp_tokens[node])) is not None:
                return refused
            return self._whatsapp_message(_json(rec.body))
        if node in self.page_tokens:
            if (refused := self._query_token(request, self.page_tokens[node])) is not None:
                return refused
            return self._messenger_message(_json(rec.body))
        return _unknown_node(node, "post")

    def _whatsapp_message(self, body: Any) -> web.Response:
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return _invalid("The parameter messaging_product is required.")
        kind = body.get("type", "text")
        if not body.get("to") or kind not in WHATSAPP_TYPES or not isinstance(body.get(kind), dict):
            return _invalid("Invalid parameter")
        content = body[kind]
        if kind == "text" and not content.get("body"):
            return _invalid("The parameter text['body'] is required.")
        if kind not in ("text", "template") and content.get("id") not in self.media and not content.get("link"):
            return _invalid(f"Invalid parameter: {kind}['id'] is not a valid media id")
        if kind == "template" and not (content.get("name") and isinstance(content.get("language"), dict)):
            return _invalid("Template name does not exist in the translation")
        return web.json_response({"messaging_product": "whatsapp",
                                  "contacts": [{"input": body["to"], "wa_id": body["to"]}],
                                  "messages": [{"id": self._message_id("wamid.FAKE")}]})

    def _messenger_message(self, body: Any) -> web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("recipient"), dict) \
                or not body["recipient"].get("id"):
            return _invalid("(#100) The parameter recipient is required")
        if body.get("messaging_type", "RESPONSE") not in MESSAGING_TYPES:
            return _invalid("(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}")
        message = body.get("message")
        if not isinstance(message, dict) or not (message.get("text") or isinstance(message.get("attachment"), dict)):
            return _invalid("(#100) Must send either message or sender action")
        if "attachment" in message:
            payload = message["attachment"].get("payload") or {}
            if payload.get("attachment_id") not in self.attachments and not payload.get("url"):
                return _invalid("(#100) Invalid attachment_id")
        return web.json_response({"recipient_id": body["recipient"]["id"],
                                  "message_id": self._message_id("m_FAKE")})

    async def _whatsapp_upload(self, request: web.Request) -> web.Response:
        await self.record(request)
        if (scripted := self.scripted(request)) is not None:
            return scripted
        node = request.match_info["node"]
        if node not in self.whatsapp_tokens:
            return _unknown_node(node, "post")
        if (refused := self._bearer(request, self.whatsapp_tokens[node])) is not None:
            return refused
        form = await request.post()  # cached by aiohttp: the recorder already read it
        file = form.get("file")
        if form.get("messaging_product") != "whatsapp" or not isinstance(file, web.FileField) or not form.get("type"):
            return _invalid("(#100) The parameter messaging_product, file and type are required.")
        media_id = self._next_id()
        file.file.seek(0)
        self.media[media_id] = StoredMedia(file.file.read(), str(form["type"]), file.filename)
        return web.json_response({"id": media_id})

    async def _messenger_upload(self, request: web.Request) -> web.Response:
        await self.record(request)
        if (scripted := self.scripted(request)) is not None:
            return scripted
        node = request.match_info["node"]
        if node not in self.page_tokens:
            return _unknown_node(node, "post")
        if (refused := self._query_token(request, self.page_tokens[node])) is not None:
            return refused
        form = await request.post()
        file = form.get("filedata")
        message = _json(str(form.get("message") or "").encode())
        attachment = message.get("attachment") if isinstance(message, dict) else None
        if not isinstance(attachment, dict) or not attachment.get("type") or not isinstance(file, web.FileField):
            return _invalid("(#100) Upload attachment failure.")
        attachment_id = self._next_id()
        file.file.seek(0)
        self.attachments[attachment_id] = StoredMedia(file.file.read(), file.content_type, file.filename)
        return web.json_response({"attachment_id": attachment_id})

    async def _whatsapp_media_url(self, request: web.Request) -> web.Response:
        await self.record(request)
        if (scripted := self.scripted(request)) is not None:
            return scripted
        if (refused := self._any_bearer(request)) is not None:
            return refused
        media_id = request.match_info["media_id"]
        media = self.media.get(media_id)
        if media is None:
            return _unknown_node(media_id, "get")
        return web.json_response({
            "messaging_product": "whatsapp",
            "url": f"{self.url}/whatsapp_business/attachments/?mid={media_id}&ext={int(time.time())}&hash=fake",
            "mime_type": media.mime_type, "sha256": hashlib.sha256(media.data).hexdigest(),
            "file_size": len(media.data), "id": media_id})

    async def _whatsapp_download(self, request: web.Request) -> web.Response:
        await self.record(request)
        if (scripted := self.scripted(request)) is not None:
            return scripted
        if (refused := self._any_bearer(request)) is not None:
            return refused
        media = self.media.get(request.query.get("mid", ""))
        if media is None:
            return web.Response(status=404)
        return web.Response(body=media.data, headers={"Content-Type": media.mime_type})

    async def _cdn_download(self, request: web.Request) -> web.Response:
        await self.record(request)
        if (scripted := self.scripted(request)) is not None:
            return scripted
        media = self.cdn.get(request.match_info["name"])
        if media is None:
            return web.Response(status=404, text="URL signature expired")
        return web.Response(body=media.data, headers={"Content-Type": media.mime_type})

    # Auth -------------------------------------------------------------------------------------

    def _bearer(self, request: web.Request, token: str) -> web.Response | None:
        return None if request.headers.get("Authorization") == f"Bearer {token}" else _bad_token()

    def _any_bearer(self, request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "")
        ok = any(given == f"Bearer {t}" for t in self.whatsapp_tokens.values())
        return None if ok else _bad_token()

    def _query_token(self, request: web.Request, token: str) -> web.Response | None:
        return None if request.query.get("access_token") == token else _bad_token()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _bad_token() -> web.Response:
    return web.json_response(graph_error(190, "Invalid OAuth access token - Cannot parse access token"), status=401)


def _invalid(message: str) -> web.Response:
    return web.json_response(graph_error(100, message), status=400)


def _unknown_node(node: str, method: str) -> web.Response:
    return web.json_response(graph_error(
        100, f"Unsupported {method} request. Object with ID '{node}' does not exist, cannot be loaded due to "
             "missing permissions, or does not support this operation.", subcode=33,
        error_type="GraphMethodException"), status=400)


# Webhook payloads Meta sends us -----------------------------------------------------------------

def _dump(payload: dict[str, Any]) -> bytes:
    # Meta sends compact JSON; signatures are over exactly these bytes.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _whatsapp(phone_number_id: str, value: dict[str, Any], display_phone_number: str) -> bytes:
    return _dump({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
                  **value},
        "field": "messages"}]}]})


def whatsapp_message_payload(phone_number_id: str, wa_id: str, text: str = "", message_id: str | None = None, *,
                             name: str = "Test Customer", timestamp: int | None = None,
                             content: dict[str, Any] | None = None,
                             display_phone_number: str = "15550783881") -> bytes:
    """One inbound message; `content` replaces the text part, e.g.
    `{"type": "image", "image": {"id": media_id, "mime_type": "image/jpeg"}}`."""
    message: dict[str, Any] = {"from": wa_id, "id": message_id or f"wamid.{uuid.uuid4().hex}",
                               "timestamp": str(timestamp or int(time.time()))}
    message.update(content or {"type": "text", "text": {"body": text}})
    return _whatsapp(phone_number_id, {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                                       "messages": [message]}, display_phone_number)


def whatsapp_status_payload(phone_number_id: str, recipient_id: str, message_id: str, status: str, *,
                            timestamp: int | None = None, error: tuple[int, str] | None = None,
                            display_phone_number: str = "15550783881") -> bytes:
    """A sent/delivered/read/failed receipt for one of our messages; `error` is (code, title)."""
    item: dict[str, Any] = {"id": message_id, "status": status, "timestamp": str(timestamp or int(time.time())),
                            "recipient_id": recipient_id}
    if error:
        item["errors"] = [{"code": error[0], "title": error[1], "message": error[1],
                           "error_data": {"details": error[1]}}]
    return _whatsapp(phone_number_id, {"statuses": [item]}, display_phone_number)


def _messenger(page_id: str, event: dict[str, Any], time_ms: int) -> bytes:
    return _dump({"object": "page", "entry": [{"id": page_id, "time": time_ms, "messaging": [event]}]})


def messenger_message_payload(page_id: str, psid: str, text: str = "", message_id: str | None = None, *,
                              timestamp_ms: int | None = None,
                              attachments: list[dict[str, Any]] | None = None) -> bytes:
    """One inbound message; `attachments` as Meta sends them, e.g.
    `[{"type": "image", "payload": {"url": fake.add_cdn_file(data, "image/png")}}]`."""
    at = timestamp_ms or int(time.time() * 1000)
    message: dict[str, Any] = {"mid": message_id or f"m_{uuid.uuid4().hex}"}
    if text:
        message["text"] = text
    if attachments:
        message["attachments"] = attachments
    return _messenger(page_id, {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": at,
                                "message": message}, at)


def messenger_delivery_payload(page_id: str, psid: str, mids: list[str] | None, watermark_ms: int) -> bytes:
    delivery: dict[str, Any] = {"watermark": watermark_ms}
    if mids:
        delivery["mids"] = mids
    return _messenger(page_id, {"sender": {"id": psid}, "recipient": {"id": page_id}, "delivery": delivery},
                      watermark_ms)


def messenger_read_payload(page_id: str, psid: str, watermark_ms: int) -> bytes:
    now = int(time.time() * 1000)
    return _messenger(page_id, {"sender": {"id": psid}, "recipient": {"id": page_id}, "timestamp": now,
                                "read": {"watermark": watermark_ms}}, now)


def message_payload(channel: str, account_id: str, user_id: str, text: str, message_id: str | None = None) -> bytes:
    """A text message from `user_id` to the business account, for `channel` "whatsapp" or "messenger"."""
    if channel == "whatsapp":
        return whatsapp_message_payload(account_id, user_id, text, message_id)
    if channel == "messenger":
        return messenger_message_payload(account_id, user_id, text, message_id)
    raise ValueError(f"the Meta fake speaks whatsapp and messenger, not {channel!r}")
