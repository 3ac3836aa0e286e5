"""A local fake of the LINE Messaging API (push messages, message content) and builders of the
webhook bodies LINE posts to us.

It answers on both `api_url` and `data_api_url` paths, so one fake serves a whole LINE account.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from socialdesk.fakes.recorder import FakeAPI

DEMO_TOKEN = "line-demo-channel-access-token"
DEMO_BOT_USER_ID = "U4af4980629d3b8a4f2c1e7d65a0b1c2d"


class LineAPI(FakeAPI):
    """Accepts the given channel access tokens (Bearer); anything else gets LINE's 401."""

    def __init__(self, tokens: Iterable[str] = (DEMO_TOKEN,)) -> None:
        super().__init__()
        self.tokens = set(tokens)
        self.content: dict[str, tuple[bytes, str]] = {}
        self._accepted: dict[str, dict[str, Any]] = {}  # retry key -> the answer it got
        self._ids = itertools.count(461230966842064897)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v2/bot/message/push", self.push),
                web.get("/v2/bot/message/{message_id}/content", self.get_content)]

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
        if retry_key and retry_key in self._accepted:
            return web.json_response({"message": "The retry key is already accepted",
                                      **self._accepted[retry_key]}, status=409,
                                     headers={"x-line-accepted-request-id": self._accepted_id(retry_key)})
        try:
            body = rec.json
        except ValueError:
            body = None
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not isinstance(body.get("to"), str) or not body["to"]:
            return web.json_response({"message": "The request body has 1 error(s)",
                                      "details": [{"message": "must be specified", "property": "to"}]}, status=400)
        details = [{"message": "May not be empty", "property": f"messages[{i}].text"}
                   for i, m in enumerate(messages) if m.get("type") == "text" and not m.get("text")]
        if not 1 <= len(messages) <= 5:
            details.append({"message": "Size must be between 1 and 5", "property": "messages"})
        if details:
            return web.json_response({"message": f"The request body has {len(details)} error(s)",
                                      "details": details}, status=400)
        result = {"sentMessages": [{"id": str(next(self._ids)), "quoteToken": uuid.uuid4().hex} for _ in messages]}
        if retry_key:
            self._accepted[retry_key] = result
        return web.json_response(result, headers={"x-line-request-id": str(uuid.uuid4())})

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
                    timestamp_ms: int | None = None) -> bytes:
    """A webhook body carrying one text message from `user_id` to the bot `account_id`."""
    message = {"id": message_id, "type": "text", "text": text, "quoteToken": uuid.uuid4().hex}
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
