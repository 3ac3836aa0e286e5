"""A strict local fake of Meta's Graph API serving both WhatsApp Cloud API and Messenger Send API paths,
plus builders for the webhook payloads Meta sends us.

Routes (each with or without a `/v21.0`-style version prefix, so `api_url` may be either):
- `POST /{phone_number_id}/messages` (Bearer) and `POST /{page_id}/messages?access_token=...`
- `POST /{phone_number_id}/media` (multipart file, type, messaging_product)
- `POST /{page_id}/message_attachments` (multipart message + filedata)
- `GET /{media_id}` (Bearer) -> media URL, then `GET /whatsapp_business/attachments/?mid=...` (Bearer)
- `GET /messenger-cdn/{name}`: where Messenger attachment URLs point (no auth, like Meta's CDN)

It refuses what the platforms refuse, with their error bodies (HTTP 400, `{"error": {"message", "type",
"code", "error_subcode"?, "error_data"?, "fbtrace_id"}}`; a wrong token gets 401, code 190):
- WhatsApp: a free-form message to a customer who has not written in 24 hours (131047), more than
  `rate_per_second` messages a second from one number (130429), a template that is not approved
  (132001) or whose parameter count differs (132000), a text over 4,096 characters or a caption over
  1,024 (100), a `to` that is not a phone number or a `recipient` that is not a business-scoped user
  id (131009). `to` wins over `recipient` when both are given, as documented.
- Messenger: a customer it never heard from (100/2018001), RESPONSE or UPDATE more than 24 hours after
  the customer's last message (10/2018278), the HUMAN_AGENT tag from a Page without the Human Agent
  permission or more than 7 days after it, retired tags (100), a text over 2,000 characters (100).
It knows when customers wrote from `customers` (the sandbox tells it, `FakeAPI.customer_wrote`).

Sources for codes and bodies: ../shared/reference/channels.md sections 1e, 1f, 2e, 7; Meta's WhatsApp
error-code page (developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes,
body syntax with `error_data.details`) and Messenger error-code page (same site, messenger-platform/
error-codes: the body example); bodies as other projects recorded them from Meta: 131047 "(#131047)
Re-engagement message" + "Message failed to send because more than 24 hours have passed since the
customer last replied to this number.", "(#130429) Rate limit hit" + "Cloud API message throughput has
been reached.", "(#132000) Number of parameters does not match the expected number of params" + "body:
number of localizable_params (0) does not match the expected number of params (1)", "(#100) Param
text['body'] must be at most 4096 characters long.", "(#131009) Parameter value is not valid" (Azure's
SDK tests, several desks' fixtures), "(#10) This message is sent outside of allowed window. Learn more
about the new policy here: https://developers.facebook.com/docs/messenger-platform/policy-overview"
with error_subcode 2018278, "(#100) Length of param message[text] must be less than or equal to 2000".
UNCONFIRMED, our best reading: the subcode Meta gives a HUMAN_AGENT tag used without the permission
(2018065 here), the exact wording for a BSUID put in `to`, and that 130429 comes as HTTP 400 (some
report 429; both are retried).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from socialdesk.fakes.recorder import DemoConversation, FakeAPI, SentReply, Simulation

VERSION = r"/{version:v[0-9]+\.[0-9]+}"
WHATSAPP_TYPES = ("text", "image", "document", "audio", "video", "sticker", "template")
MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")
# Tags retired on 2026-04-27 (channels.md 2e); HUMAN_AGENT is the one a support desk uses.
RETIRED_TAGS = ("CONFIRMED_EVENT_UPDATE", "ACCOUNT_UPDATE", "POST_PURCHASE_UPDATE")
WHATSAPP_WINDOW = timedelta(hours=24)
MESSENGER_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
WHATSAPP_TEXT_LIMIT = 4096
WHATSAPP_CAPTION_LIMIT = 1024
MESSENGER_TEXT_LIMIT = 2000
MESSENGER_METADATA_LIMIT = 1000
THROUGHPUT = 80  # messages per second per business number, Meta's default (channels.md 1f)
PHONE = re.compile(r"\+?[1-9][0-9]{4,14}")
BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")
# The demo's business accounts (socialdesk/sandbox.py): two WhatsApp numbers and a Page.
WHATSAPP_PARIS = "106540352242922"
WHATSAPP_LYON = "106540352242923"
MESSENGER_PAGE = "682498302938465"


@dataclass(frozen=True, slots=True)
class StoredMedia:
    data: bytes
    mime_type: str
    filename: str | None = None


def graph_error(code: int, message: str, *, subcode: int | None = None, error_type: str = "OAuthException",
                details: str | None = None, whatsapp: bool = False) -> dict[str, Any]:
    """A Graph API error body, as the platform answers (use with `fail_next(1, 400, ...)`); WhatsApp's
    carry `error_data` with `messaging_product` and `details`."""
    error: dict[str, Any] = {"message": message, "type": error_type, "code": code}
    if details is not None or whatsapp:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details or message} if whatsapp \
            else {"details": details}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "A" + uuid.uuid4().hex[:22]
    return {"error": error}


def whatsapp_window_closed() -> dict[str, Any]:
    return graph_error(131047, "(#131047) Re-engagement message", whatsapp=True,
                       details="Message failed to send because more than 24 hours have passed since the customer "
                               "last replied to this number.")


def whatsapp_rate_limited() -> dict[str, Any]:
    return graph_error(130429, "(#130429) Rate limit hit", whatsapp=True,
                       details="Cloud API message throughput has been reached.")


def messenger_window_closed() -> dict[str, Any]:
    return graph_error(10, "(#10) This message is sent outside of allowed window. Learn more about the new policy "
                           "here: https://developers.facebook.com/docs/messenger-platform/policy-overview",
                       subcode=2018278)


def messenger_tag_not_permitted() -> dict[str, Any]:
    # UNCONFIRMED subcode (see the module docstring); code 10 is Meta's "permission" family.
    return graph_error(10, "(#10) This message is sent outside of allowed window. The HUMAN_AGENT tag requires the "
                           "Human Agent permission.", subcode=2018065)


class MetaGraphAPI(FakeAPI):
    """`whatsapp` maps phone_number_id -> access token, `pages` maps page_id -> page access token;
    `human_agent_pages` are the pages with Meta's Human Agent permission.

    Another product of the Messenger Platform is served by a subclass changing what differs: its text
    limit, its window-closed error body and how its requests authenticate (`page_auth`)."""

    text_limit = MESSENGER_TEXT_LIMIT

    def __init__(self, whatsapp: Mapping[str, str] | None = None, pages: Mapping[str, str] | None = None,
                 human_agent_pages: set[str] | None = None) -> None:
        super().__init__()
        self.whatsapp_tokens = dict(whatsapp or {})
        self.page_tokens = dict(pages or {})
        self.human_agent_pages = set(human_agent_pages or ())
        self.templates: dict[str, int] = {}  # approved: name -> body parameter count
        self.rate_per_second = THROUGHPUT
        self.media: dict[str, StoredMedia] = {}  # WhatsApp media ids: uploaded, or added for inbound tests
        self.attachments: dict[str, StoredMedia] = {}  # Messenger reusable attachment ids
        self.cdn: dict[str, StoredMedia] = {}
        self.message_ids: list[str] = []  # every message id handed out, in order
        self._counter = 0
        # The platform's clocks, replaceable by tests: wall time for windows, a monotonic one for rates.
        self.now: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.monotonic: Callable[[], float] = time.monotonic
        self._sent_at: dict[str, deque[float]] = defaultdict(deque)

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

    def approve_template(self, name: str, parameters: int) -> None:
        """A WhatsApp template the business has approved, with its body's parameter count."""
        self.templates[name] = parameters

    def _next_id(self) -> str:
        self._counter += 1
        return str(1_000_000_000_000_000 + self._counter)

    def _message_id(self, prefix: str) -> str:
        self.message_ids.append(prefix + self._next_id())
        return self.message_ids[-1]

    def _wrote_within(self, account: str, user: str, window: timedelta) -> bool | None:
        """Whether the customer wrote to `account` within `window`; None when they never wrote."""
        wrote = self.customers.get((account, user))
        if wrote is None and user.startswith("+"):
            wrote = self.customers.get((account, user[1:]))
        if wrote is None:
            return None
        return self.now() - wrote <= window

    def _over_throughput(self, node: str) -> bool:
        """One more message from this number would pass its messages-per-second (then it is not counted)."""
        now = self.monotonic()
        sent = self._sent_at[node]
        while sent and now - sent[0] >= 1.0:
            sent.popleft()
        if len(sent) >= self.rate_per_second:
            return True
        sent.append(now)
        return False

    # Handlers ---------------------------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.Response:
        rec = await self.record(request)
        if (scripted := self.scripted(request)) is not None:
            return scripted
        node = request.match_info["node"]
        if node in self.whatsapp_tokens:
            if (refused := self._bearer(request, self.whatsapp_tokens[node])) is not None:
                return refused
            return self._whatsapp_message(node, _json(rec.body))
        if node in self.page_tokens:
            if (refused := self.page_auth(request, self.page_tokens[node])) is not None:
                return refused
            return self._messenger_message(node, _json(rec.body))
        return _unknown_node(node, "post")

    def _whatsapp_message(self, node: str, body: Any) -> web.Response:
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return _invalid("(#100) The parameter messaging_product is required.", whatsapp=True)
        if body.get("recipient_type", "individual") != "individual":
            return _invalid("(#100) Invalid parameter", details="recipient_type must be individual", whatsapp=True)
        kind = body.get("type", "text")
        if kind not in WHATSAPP_TYPES or not isinstance(body.get(kind), dict):
            return _invalid("(#100) Invalid parameter", details=f"Unsupported message type {kind!r}", whatsapp=True)
        to, recipient = body.get("to"), body.get("recipient")
        if to is None and recipient is None:
            return _invalid("(#100) The parameter to is required.", whatsapp=True)
        if to is not None and not (isinstance(to, str) and PHONE.fullmatch(to)):
            # A business-scoped user id goes in `recipient`, never in `to` (channels.md 7).
            return _whatsapp_error(131009, "(#131009) Parameter value is not valid",
                                   "The phone number is malformed: Please use the format: +1234567890.")
        if to is None and not (isinstance(recipient, str) and BSUID.fullmatch(recipient)):
            return _whatsapp_error(131009, "(#131009) Parameter value is not valid",
                                   "recipient is not a valid business-scoped user id")
        user = str(to if to is not None else recipient)
        content = body[kind]
        if kind == "text":
            text = content.get("body")
            if not isinstance(text, str) or not text:
                return _invalid("(#100) The parameter text['body'] is required.", whatsapp=True)
            if len(text) > WHATSAPP_TEXT_LIMIT:
                return _invalid(f"(#100) Param text['body'] must be at most {WHATSAPP_TEXT_LIMIT} characters long.",
                                whatsapp=True)
        elif kind == "template":
            if (refused := self._template(content)) is not None:
                return refused
        else:
            if content.get("id") not in self.media and not content.get("link"):
                return _invalid(f"(#100) Invalid parameter: {kind}['id'] is not a valid media id", whatsapp=True)
            if len(str(content.get("caption") or "")) > WHATSAPP_CAPTION_LIMIT:
                return _invalid(f"(#100) Param {kind}['caption'] must be at most {WHATSAPP_CAPTION_LIMIT} "
                                "characters long.", whatsapp=True)
        # Templates reach a customer any time; everything else only within 24 h of their last message.
        if kind != "template" and not self._wrote_within(node, user.lstrip("+"), WHATSAPP_WINDOW):
            return web.json_response(whatsapp_window_closed(), status=400)
        if self._over_throughput(node):
            return web.json_response(whatsapp_rate_limited(), status=400)
        contact = {"input": user, "wa_id": user.lstrip("+")} if to is not None else {"input": user, "user_id": user}
        return web.json_response({"messaging_product": "whatsapp", "contacts": [contact],
                                  "messages": [{"id": self._message_id("wamid.FAKE")}]})

    def _template(self, content: dict[str, Any]) -> web.Response | None:
        name, language = content.get("name"), content.get("language")
        code = language.get("code") if isinstance(language, dict) else None
        if not name or not code:
            return _invalid("(#100) The parameter template['name'] and template['language'] are required.",
                            whatsapp=True)
        if name not in self.templates:
            return _whatsapp_error(132001, "(#132001) Template name does not exist in the translation",
                                   f"template name ({name}) does not exist in {code}")
        given = sum(len(c.get("parameters") or []) for c in content.get("components") or []
                    if isinstance(c, dict) and c.get("type") == "body")
        expected = self.templates[name]
        if given != expected:
            return _whatsapp_error(132000, "(#132000) Number of parameters does not match the expected number of "
                                   "params", f"body: number of localizable_params ({given}) does not match the "
                                   f"expected number of params ({expected})")
        return None

    def _messenger_message(self, page: str, body: Any) -> web.Response:
        if not isinstance(body, dict) or not isinstance(body.get("recipient"), dict) \
                or not body["recipient"].get("id"):
            return _invalid("(#100) The parameter recipient is required")
        kind = body.get("messaging_type")
        if kind not in MESSAGING_TYPES:
            return _invalid("(#100) Param messaging_type must be one of {RESPONSE, UPDATE, MESSAGE_TAG}")
        message = body.get("message")
        if not isinstance(message, dict) or not (message.get("text") or isinstance(message.get("attachment"), dict)):
            return _invalid("(#100) Must send either message or sender action")
        if len(str(message.get("text") or "")) > self.text_limit:
            return _invalid(f"(#100) Length of param message[text] must be less than or equal to "
                            f"{self.text_limit}")
        if len(str(message.get("metadata") or "")) > MESSENGER_METADATA_LIMIT:
            return _invalid(f"(#100) Length of param message[metadata] must be less than or equal to "
                            f"{MESSENGER_METADATA_LIMIT}")
        if "attachment" in message:
            payload = message["attachment"].get("payload") or {}
            if payload.get("attachment_id") not in self.attachments and not payload.get("url"):
                return _invalid("(#100) Invalid attachment_id")
        psid = str(body["recipient"]["id"])
        if (refused := self._messenger_window(page, psid, kind, body.get("tag"))) is not None:
            return refused
        return web.json_response({"recipient_id": psid, "message_id": self._message_id("m_FAKE")})

    def _messenger_window(self, page: str, psid: str, kind: str, tag: Any) -> web.Response | None:
        if kind == "MESSAGE_TAG":
            if tag in RETIRED_TAGS:
                return _invalid(f"(#100) The tag {tag} is no longer supported.")
            if tag != "HUMAN_AGENT":
                return _invalid("(#100) Param tag must be a valid message tag")
            if page not in self.human_agent_pages:
                return web.json_response(messenger_tag_not_permitted(), status=400)
            window = HUMAN_AGENT_WINDOW
        else:
            window = MESSENGER_WINDOW
        within = self._wrote_within(page, psid, window)
        if within is None:
            return web.json_response(graph_error(100, "(#100) No matching user found", subcode=2018001), status=400)
        if not within:
            return web.json_response(self.window_closed(), status=400)
        return None

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
            return _invalid("(#100) The parameter messaging_product, file and type are required.", whatsapp=True)
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
        if (refused := self.page_auth(request, self.page_tokens[node])) is not None:
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

    def page_auth(self, request: web.Request, token: str) -> web.Response | None:
        """None when a Send API request carries the account's token, else Meta's refusal."""
        return self._query_token(request, token)

    def window_closed(self) -> dict[str, Any]:
        """The error body of a send outside the messaging window."""
        return messenger_window_closed()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _bad_token() -> web.Response:
    return web.json_response(graph_error(190, "Invalid OAuth access token - Cannot parse access token"), status=401)


def _invalid(message: str, *, details: str | None = None, whatsapp: bool = False) -> web.Response:
    return web.json_response(graph_error(100, message, details=details, whatsapp=whatsapp), status=400)


def _whatsapp_error(code: int, message: str, details: str) -> web.Response:
    return web.json_response(graph_error(code, message, details=details, whatsapp=True), status=400)


def _unknown_node(node: str, method: str) -> web.Response:
    return web.json_response(graph_error(
        100, f"Unsupported {method} request. Object with ID '{node}' does not exist, cannot be loaded due to "
             "missing permissions, or does not support this operation.", subcode=33,
        error_type="GraphMethodException"), status=400)


# Webhook payloads Meta sends us -----------------------------------------------------------------

def _dump(payload: dict[str, Any]) -> bytes:
    # Meta sends compact JSON; signatures are over exactly these bytes.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _whatsapp(phone_number_id: str, value: dict[str, Any], display_phone_number: str,
              field: str = "messages") -> bytes:
    return _dump({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{
        "value": {"messaging_product": "whatsapp",
                  "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
                  **value},
        "field": field}]}]})


def whatsapp_message_payload(phone_number_id: str, wa_id: str | None, text: str = "", message_id: str | None = None,
                             *, name: str = "Test Customer", timestamp: int | None = None,
                             content: dict[str, Any] | None = None, user_id: str | None = None,
                             username: str | None = None, display_phone_number: str = "15550783881") -> bytes:
    """One inbound message; `content` replaces the text part, e.g.
    `{"type": "image", "image": {"id": media_id, "mime_type": "image/jpeg"}}`. `user_id` is the
    customer's business-scoped user id; `wa_id` None leaves the phone number out, as WhatsApp does for
    some users with a username (channels.md 7)."""
    message: dict[str, Any] = {"id": message_id or f"wamid.{uuid.uuid4().hex}",
                               "timestamp": str(timestamp or int(time.time()))}
    contact: dict[str, Any] = {"profile": {"name": name}}
    if wa_id is not None:
        message["from"] = contact["wa_id"] = wa_id
    if user_id is not None:
        message["from_user_id"] = contact["user_id"] = user_id
    if username is not None:
        contact["profile"]["username"] = username
    message.update(content or {"type": "text", "text": {"body": text}})
    return _whatsapp(phone_number_id, {"contacts": [contact], "messages": [message]}, display_phone_number)


def whatsapp_status_payload(phone_number_id: str, recipient_id: str, message_id: str, status: str, *,
                            timestamp: int | None = None, error: tuple[int, str] | None = None,
                            pricing: dict[str, Any] | None = None,
                            display_phone_number: str = "15550783881") -> bytes:
    """A sent/delivered/read/played/failed receipt for one of our messages; `error` is (code, title);
    `pricing` as WhatsApp reports it, e.g. `{"billable": True, "pricing_model": "PMP", "category": "utility"}`."""
    item: dict[str, Any] = {"id": message_id, "status": status, "timestamp": str(timestamp or int(time.time())),
                            "recipient_id": recipient_id}
    if error:
        item["errors"] = [{"code": error[0], "title": error[1], "message": error[1],
                           "error_data": {"details": error[1]}}]
    if pricing:
        item["pricing"] = pricing
    return _whatsapp(phone_number_id, {"statuses": [item]}, display_phone_number)


def whatsapp_echo_payload(phone_number_id: str, to: str, text: str, message_id: str | None = None, *,
                          to_user_id: str | None = None, timestamp: int | None = None,
                          display_phone_number: str = "15550783881") -> bytes:
    """A message the business sent from the WhatsApp Business app on a shared number (coexistence)."""
    echo: dict[str, Any] = {"from": display_phone_number, "to": to, "id": message_id or f"wamid.{uuid.uuid4().hex}",
                            "timestamp": str(timestamp or int(time.time())), "type": "text", "text": {"body": text}}
    if to_user_id:
        echo["to_user_id"] = to_user_id
    return _whatsapp(phone_number_id, {"message_echoes": [echo]}, display_phone_number, field="smb_message_echoes")


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


def messenger_echo_payload(page_id: str, psid: str, text: str, message_id: str, *, app_id: int | None = None,
                           metadata: str | None = None, timestamp_ms: int | None = None) -> bytes:
    """The echo of a message the page sent (from us, another app or the Page inbox) to `psid`."""
    at = timestamp_ms or int(time.time() * 1000)
    message: dict[str, Any] = {"is_echo": True, "mid": message_id, "text": text}
    if app_id is not None:
        message["app_id"] = app_id
    if metadata is not None:
        message["metadata"] = metadata
    return _messenger(page_id, {"sender": {"id": page_id}, "recipient": {"id": psid}, "timestamp": at,
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


# How the sandbox drives WhatsApp and Messenger (socialdesk/sandbox.py) ----------------------------

def _sent_text(message: dict[str, Any]) -> str:
    kind = message.get("type", "text")
    part = message[kind] if isinstance(message.get(kind), dict) else {}
    return str(part.get("body") or part.get("caption") or part.get("name") or "")


def entry_ids(body: bytes) -> set[str]:
    """The `entry[].id`s of a Messenger or Instagram webhook body: the Page or the professional account
    each entry is for, which Meta routes it by."""
    return {str(entry["id"]) for entry in json.loads(body).get("entry") or [] if entry.get("id")}


class WhatsAppSimulation(Simulation):
    channel = "whatsapp"
    api = MetaGraphAPI
    account_ids = (WHATSAPP_PARIS, WHATSAPP_LYON)
    customer = "33612345678"
    id_key = "phone_number_id"
    templates = ({"name": "order_update", "language": "en_US", "parameters": ["order number"]},)
    demo = (
        DemoConversation(0, "33612345678", "Amélie Dupont", 95, "Bonjour, ma commande A-1042 n'est pas arrivée",
                         claim=True, person="amelie"),
        DemoConversation(0, "33612345678", "Amélie Dupont", 93, "Le suivi indique livrée hier ?",
                         reply="Bonjour Amélie, je vérifie avec le transporteur.", status="pending"),
        DemoConversation(1, "33798765432", "Louis Martin", 80, "Do you have the blue jacket in size M?", claim=True),
        # 26 hours ago: the agent's answer meets WhatsApp's closed 24-hour window (R22).
        DemoConversation(0, "4915112345678", "Jonas Weber", 26 * 60, "Can I still change my delivery address?",
                         reply="Hello Jonas, yes you can!"),
        DemoConversation(1, "447700900123", "Olivia Brown", 20, "Card 4111 1111 1111 1111 was charged twice"),
    )

    def accounts(self, api: MetaGraphAPI, secret: Callable[[], str]) -> list[dict[str, Any]]:
        app_secret = secret()  # one Meta app serves both numbers
        for template in self.templates:  # approved in WhatsApp Manager, as the configuration says
            api.approve_template(template["name"], len(template["parameters"]))
        tables = []
        for name, number, display in (("paris", WHATSAPP_PARIS, "+33 1 86 95 00 01"),
                                      ("lyon", WHATSAPP_LYON, "+33 4 28 29 00 02")):
            api.whatsapp_tokens[number] = token = secret()
            tables.append({"name": name, "phone_number_id": number, "display_phone_number": display,
                           "app_secret": app_secret, "verify_token": secret(), "access_token": token,
                           "api_url": api.url + "/v21.0"})
        return tables

    def message(self, account: str, user: str, text: str, message_id: str, sent_at: datetime,
                name: str) -> bytes:
        return whatsapp_message_payload(account, user, text, message_id, name=name,
                                        timestamp=int(sent_at.timestamp()))

    def receipt(self, account: str, user: str, platform_message_id: str, status: str) -> bytes | None:
        return whatsapp_status_payload(account, user, platform_message_id, status)

    def replies(self, api: MetaGraphAPI) -> list[SentReply]:
        return [SentReply(r.path.split("/")[-2], str(r.json.get("to") or r.json.get("recipient")), _sent_text(r.json))
                for r in api.sent("/messages") if r.path.split("/")[-2] in api.whatsapp_tokens and r.body]

    def routing_ids(self, body: bytes) -> set[str]:
        # Each change names the business number it is for in its metadata.
        return {str(change["value"]["metadata"]["phone_number_id"])
                for entry in json.loads(body).get("entry") or [] for change in entry.get("changes") or []
                if ((change.get("value") or {}).get("metadata") or {}).get("phone_number_id")}

    def fresh_routing_id(self, index: int) -> str:
        return f"9{index:014d}"  # a phone number id: 15 digits


class MessengerSimulation(Simulation):
    channel = "messenger"
    api = MetaGraphAPI
    account_ids = (MESSENGER_PAGE,)
    customer = "1254459154682919"
    id_key = "page_id"
    demo = (
        DemoConversation(0, "1254459154682919", "Amélie D.", 70, "Hi! I also wrote on WhatsApp", person="amelie"),
        DemoConversation(0, "2093847561029384", "Priya Nair", 55, "Is the store open on Sunday?"),
        DemoConversation(0, "3847561029384756", "Diego Ruiz", 10, "Where can I find my invoice?"),
    )

    def accounts(self, api: MetaGraphAPI, secret: Callable[[], str]) -> list[dict[str, Any]]:
        api.page_tokens[MESSENGER_PAGE] = token = secret()
        return [{"name": "brand-page", "page_id": MESSENGER_PAGE, "page_name": "SocialDesk Demo",
                 "app_secret": secret(), "verify_token": secret(), "page_access_token": token,
                 "api_url": api.url + "/v21.0"}]

    def message(self, account: str, user: str, text: str, message_id: str, sent_at: datetime,
                name: str) -> bytes:
        return messenger_message_payload(account, user, text, message_id,
                                         timestamp_ms=int(sent_at.timestamp()) * 1000)

    def receipt(self, account: str, user: str, platform_message_id: str, status: str) -> bytes | None:
        now = int(time.time() * 1000)
        if status == "delivered":
            return messenger_delivery_payload(account, user, [platform_message_id], now)
        return messenger_read_payload(account, user, now) if status == "read" else None

    def replies(self, api: MetaGraphAPI) -> list[SentReply]:
        return [SentReply(r.path.split("/")[-2], str(r.json["recipient"]["id"]),
                          str((r.json.get("message") or {}).get("text") or ""))
                for r in api.sent("/messages") if r.path.split("/")[-2] in api.page_tokens and r.body]

    def routing_ids(self, body: bytes) -> set[str]:
        return entry_ids(body)

    def fresh_routing_id(self, index: int) -> str:
        return f"8{index:014d}"  # a Page id: 15 digits


WHATSAPP = WhatsAppSimulation()
MESSENGER = MessengerSimulation()
