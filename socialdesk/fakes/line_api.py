"""A local fake of the LINE Messaging API (push messages, mark-as-read, message content) and builders
of the webhook bodies LINE posts to us.

It answers on both `api_url` and `data_api_url` paths, so one fake serves a whole LINE account.
Strict as LINE is, with LINE's error bodies (`{"message", "details": [{"message", "property"}]}`,
developers.line.biz/en/reference/messaging-api/#error-responses):
- a push body the official SDK's models (line-bot-sdk v3 `PushMessageRequest`) would refuse: `to`
  missing or not text, not 1 to 5 messages, a message of no known type or without its required fields,
  a field of the wrong JSON type;
- what LINE's server refuses beyond the models: an empty text, a text over 5,000 characters counted in
  UTF-16 code units as LINE counts them (developers.line.biz/en/docs/messaging-api/text-character-count),
  an `X-Line-Retry-Key` that is not a UUID;
- a retry key already accepted: 409 with the first answer's sent messages and
  `x-line-accepted-request-id` (developers.line.biz/en/docs/messaging-api/retrying-api-request).
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from aiohttp import web

from socialdesk.fakes.recorder import DemoConversation, FakeAPI, SentReply, Simulation

DEMO_TOKEN = "line-demo-channel-access-token"
DEMO_BOT_USER_ID = "U4af4980629d3b8a4f2c1e7d65a0b1c2d"
TEXT_LIMIT = 5000  # UTF-16 code units
MAX_MESSAGES = 5
MESSAGE_TYPES = ("text", "image", "video", "audio", "location", "sticker", "imagemap", "template", "flex")
# Each message type's required fields and their JSON types, as line-bot-sdk v3's models declare them
# (linebot/v3/messaging/models/*_message.py); `textV2` and `coupon` are newer types the models know too.
NUMBER = (int, float)
REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "text": {"text": str}, "textV2": {"text": str},
    "image": {"originalContentUrl": str, "previewImageUrl": str},
    "video": {"originalContentUrl": str, "previewImageUrl": str},
    "audio": {"originalContentUrl": str, "duration": int},
    "location": {"title": str, "address": str, "latitude": NUMBER, "longitude": NUMBER},
    "sticker": {"packageId": str, "stickerId": str},
    "imagemap": {"baseUrl": str, "altText": str, "baseSize": dict, "actions": list},
    "template": {"altText": str, "template": dict}, "flex": {"altText": str, "contents": dict},
    "coupon": {"couponId": str},
}
OPTIONAL: dict[str, type] = {"quoteToken": str, "quickReply": dict, "sender": dict}


class LineAPI(FakeAPI):
    """Accepts the given channel access tokens (Bearer); anything else gets LINE's 401."""

    def __init__(self, tokens: Iterable[str] = (DEMO_TOKEN,)) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.bots: dict[str, str] = {}  # channel access token -> the bot user id it acts for
        self.content: dict[str, tuple[bytes, str]] = {}
        self._accepted: dict[str, dict[str, Any]] = {}  # retry key -> the answer it got
        self._ids = itertools.count(461230966842064897)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v2/bot/message/push", self.push),
                web.post("/v2/bot/chat/markAsRead", self.mark_as_read),
                web.get("/v2/bot/message/{message_id}/content", self.get_content)]

    def read_tokens(self) -> list[str]:
        """The markAsReadTokens LINE was asked to mark read, in order."""
        return [r.json["markAsReadToken"] for r in self.sent("/v2/bot/chat/markAsRead")
                if isinstance(r.json, dict) and isinstance(r.json.get("markAsReadToken"), str)]

    def add_content(self, message_id: str, data: bytes, mime_type: str = "image/jpeg") -> None:
        """Make `GET /v2/bot/message/{message_id}/content` return this."""
        self.content[message_id] = (data, mime_type)

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[len("Bearer "):] not in self.tokens:
            return web.json_response({"message": "Authentication failed. Confirm that the access token in the "
                                                 "authorization header is valid."}, status=401)
        return None

    async def push(self, request: web.Request) -> web.Response:
        rec = await self.record(request)
        answer = self.scripted(request) or self._unauthorized(request)
        if answer is not None:
            return answer
        retry_key = request.headers.get("X-Line-Retry-Key", "")
        if retry_key and not _is_uuid(retry_key):
            # The retry key "shall be a hexadecimal UUID" (retrying-api-request).
            return web.json_response({"message": "The value of the X-Line-Retry-Key header is invalid"}, status=400)
        if retry_key and retry_key in self._accepted:
            return web.json_response({"message": "The retry key is already accepted",
                                      **self._accepted[retry_key]}, status=409,
                                     headers={"x-line-accepted-request-id": self._accepted_id(retry_key)})
        try:
            body = rec.json
        except ValueError:
            return web.json_response({"message": "The request body could not be parsed as JSON"}, status=400)
        refused = push_problem(body)
        if refused is not None:
            return web.json_response(refused, status=400)
        messages = body["messages"]
        result = {"sentMessages": [{"id": str(next(self._ids)), "quoteToken": uuid.uuid4().hex} for _ in messages]}
        if retry_key:
            self._accepted[retry_key] = result
        return web.json_response(result, headers={"x-line-request-id": str(uuid.uuid4())})

    async def mark_as_read(self, request: web.Request) -> web.Response:
        """`POST /v2/bot/chat/markAsRead` with `{"markAsReadToken": ...}` (line-bot-sdk v3
        `mark_messages_as_read_by_token`): an empty 200 once the token is taken."""
        rec = await self.record(request)
        answer = self.scripted(request) or self._unauthorized(request)
        if answer is not None:
            return answer
        try:
            body = rec.json
        except ValueError:
            return web.json_response({"message": "The request body could not be parsed as JSON"}, status=400)
        token = body.get("markAsReadToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            return web.json_response({"message": "The request body has 1 error(s)",
                                      "details": [{"message": "must be specified", "property": "markAsReadToken"}]},
                                     status=400)
        return web.json_response({})

    def _accepted_id(self, retry_key: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_OID, retry_key))

    async def get_content(self, request: web.Request) -> web.Response:
        await self.record(request)
        answer = self.scripted(request) or self._unauthorized(request)
        if answer is not None:
            return answer
        found = self.content.get(request.match_info["message_id"])
        if found is None:
            return web.json_response({"message": "Not found"}, status=404)
        data, mime_type = found
        return web.Response(body=data, content_type=mime_type)


def utf16_length(text: str) -> int:
    """A text's length as LINE counts it: UTF-16 code units (🍎 is 2)."""
    return len(text.encode("utf-16-le")) // 2


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def _invalid_property(name: str) -> dict[str, Any]:
    # LINE's answer when a property has the wrong JSON type; the position is not something we can know.
    return {"message": f"The property, '{name}', in the request body is invalid (line: 1, column: 1)"}


def push_problem(body: Any) -> dict[str, Any] | None:
    """LINE's 400 body for a push request it refuses, or None when it would accept it."""
    if not isinstance(body, dict):
        return {"message": "The request body could not be parsed as JSON"}
    if "to" in body and not isinstance(body["to"], str):
        return _invalid_property("to")
    if "messages" in body and not isinstance(body["messages"], list):
        return _invalid_property("messages")
    if "notificationDisabled" in body and not isinstance(body["notificationDisabled"], bool):
        return _invalid_property("notificationDisabled")
    details: list[dict[str, str]] = []
    if not body.get("to"):
        details.append({"message": "must be specified", "property": "to"})
    messages = body.get("messages")
    if messages is None:
        details.append({"message": "must be specified", "property": "messages"})
    elif not 1 <= len(messages) <= MAX_MESSAGES:
        details.append({"message": f"Size must be between 1 and {MAX_MESSAGES}", "property": "messages"})
    for i, message in enumerate(messages or []):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            return _invalid_property(where)
        kind = message.get("type")
        if kind not in REQUIRED:
            details.append({"message": f"Must be one of the following values: [{', '.join(MESSAGE_TYPES)}]",
                            "property": f"{where}.type"})
            continue
        for key, expected in {**REQUIRED[kind], **OPTIONAL}.items():
            value = message.get(key)
            if value is None:
                if key in REQUIRED[kind]:
                    details.append({"message": "must be specified", "property": f"{where}.{key}"})
            elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                return _invalid_property(f"{where}.{key}")
        text = message.get("text")
        if kind in ("text", "textV2") and isinstance(text, str):
            if not text:
                details.append({"message": "May not be empty", "property": f"{where}.text"})
            elif utf16_length(text) > TEXT_LIMIT:
                details.append({"message": f"Length must be between 0 and {TEXT_LIMIT}", "property": f"{where}.text"})
    if details:
        return {"message": f"The request body has {len(details)} error(s)", "details": details}
    return None


# Inbound webhook bodies -----------------------------------------------------------------------

def event(user_id: str, message: dict[str, Any], *, timestamp_ms: int | None = None,
          source_type: str = "user") -> dict[str, Any]:
    """One `message` event as LINE delivers it from a one-to-one chat (or a group/room)."""
    source: dict[str, Any] = {"type": source_type, "userId": user_id}
    if source_type == "group":
        source["groupId"] = "Ca56f94637c5e4b6bd9f3b9bd4a9d1b07"
    elif source_type == "room":
        source["roomId"] = "Ra8dbf4673c4c812cd491258042226c99"
    return {"type": "message", "message": message, "webhookEventId": _ulid(),
            "deliveryContext": {"isRedelivery": False},
            "timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
            "source": source, "replyToken": uuid.uuid4().hex, "mode": "active"}


def payload(account_id: str, events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"destination": account_id, "events": events}, ensure_ascii=False).encode()


def message_payload(account_id: str, user_id: str, text: str, message_id: str, *,
                    timestamp_ms: int | None = None, mark_as_read_token: str | None = None) -> bytes:
    """A webhook body carrying one text message from `user_id` to the bot `account_id` (with the
    `markAsReadToken` LINE adds when the channel has chat mode on)."""
    message = {"id": message_id, "type": "text", "text": text, "quoteToken": uuid.uuid4().hex}
    if mark_as_read_token:
        message["markAsReadToken"] = mark_as_read_token
    return payload(account_id, [event(user_id, message, timestamp_ms=timestamp_ms)])


def image_payload(account_id: str, user_id: str, message_id: str, *, timestamp_ms: int | None = None) -> bytes:
    """A webhook body carrying one image whose content LINE keeps (fetch it by message id)."""
    message = {"id": message_id, "type": "image", "quoteToken": uuid.uuid4().hex,
               "contentProvider": {"type": "line"}}
    return payload(account_id, [event(user_id, message, timestamp_ms=timestamp_ms)])


def _ulid() -> str:
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = uuid.uuid4().int >> 2
    return "".join(alphabet[(value >> (5 * i)) & 31] for i in range(26))


# How the sandbox drives LINE (socialdesk/sandbox.py) ---------------------------------------------

class LineSimulation(Simulation):
    channel = "line"
    api = LineAPI
    account_ids = (DEMO_BOT_USER_ID,)
    customer = "U206d25c2ea6bd87c17655609a1c37cb8"
    id_key = "bot_user_id"
    demo = (
        DemoConversation(0, "U206d25c2ea6bd87c17655609a1c37cb8", "Sato Yui", 50, "注文をキャンセルできますか？",
                         reply="キャンセルを承りました。"),
        DemoConversation(0, "U8b3c2f1e0d9a8b7c6d5e4f3a2b1c0d9e", "Kenji Ito", 45, "Thanks for the delivery!"),
    )

    def accounts(self, api: LineAPI, secret: Callable[[], str]) -> list[dict[str, Any]]:
        api.bots[DEMO_TOKEN] = DEMO_BOT_USER_ID
        return [{"name": "jp", "bot_user_id": DEMO_BOT_USER_ID, "channel_secret": secret(),
                 "channel_access_token": DEMO_TOKEN, "api_url": api.url, "data_api_url": api.url}]

    def message(self, account: str, user: str, text: str, message_id: str, sent_at: datetime,
                name: str) -> bytes:
        return message_payload(account, user, text, message_id, timestamp_ms=int(sent_at.timestamp()) * 1000)

    def replies(self, api: LineAPI) -> list[SentReply]:
        out = []
        for r in api.sent("/v2/bot/message/push"):
            bot = api.bots.get(r.headers.get("Authorization", "").removeprefix("Bearer "), "")
            out += [SentReply(bot, str(r.json.get("to")), str(m.get("text") or ""))
                    for m in r.json.get("messages") or []]
        return out

    def routing_ids(self, body: bytes) -> set[str]:
        destination = json.loads(body).get("destination")  # the bot the events are for
        return {str(destination)} if destination else set()

    def fresh_routing_id(self, index: int) -> str:
        return f"U{index:032x}"  # a user id: U and 32 hex digits


LINE = LineSimulation()
