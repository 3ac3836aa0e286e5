"""A local fake of the WeChat Official Account API, plus builders of the XML WeChat pushes to us.

Speaks the real wire format: `GET /cgi-bin/token` hands out access tokens for the registered apps,
`POST /cgi-bin/message/custom/send`, `POST /cgi-bin/media/upload` (multipart field `media`) and
`GET /cgi-bin/media/get`. Like WeChat, every answer is HTTP 200 and errors are `{"errcode","errmsg"}`
(40001 for a wrong or expired access token). Tests script platform errors with `fail_next(...)`.

Strict as WeChat is with customer-service messages, for the customers it was told about
(`customer_wrote`, from the sandbox that builds their webhooks; WeChat knows from the messages it
delivered). The time is the store's clock, so tests that move it move the fake's too.
- 45015 more than 48 hours after the customer last wrote (channels.md 4e; errmsg as WeChat words it,
  with its trailing hint);
- 45047 for a sixth message since the customer last wrote ("5 customer-service messages within 48 h");
- 45002 for a text over 2,048 bytes of UTF-8. WeChat does not publish the customer-service text limit;
  2,048 bytes is what third parties report (and what WeCom documents for its text): UNCONFIRMED;
- 40007 for a media id it never issued.
A customer the fake was never told about is taken as inside the window: the fake cannot know.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from socialdesk.fakes.recorder import (
    AS_CONFIGURED,
    AccountVariant,
    DemoConversation,
    FakeAPI,
    Recorded,
    SentReply,
    Simulation,
)
from warehouse import clock

INVALID_TOKEN = {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
MEDIA_TYPES = ("image", "voice", "video", "thumb")
WINDOW = timedelta(hours=48)
REPLIES_PER_MESSAGE = 5
TEXT_LIMIT_BYTES = 2048  # UNCONFIRMED, see the module docstring
DEMO_ACCOUNT = "gh_97417a04a28d"  # the demo's official account (original ID) and its app
DEMO_APP = "wx5e1f0a2b3c4d5e6f"


def _error(code: int, errmsg: str) -> web.Response:
    """WeChat's error answer: HTTP 200, the code, and the message with the request's hint as WeChat adds it."""
    return web.json_response({"errcode": code, "errmsg": f"{errmsg} hint: [{secrets.token_hex(7)}]"})


@dataclass
class StoredMedia:
    data: bytes
    mime_type: str
    filename: str
    type: str


class FakeWeChatAPI(FakeAPI):
    def __init__(self, apps: dict[str, str] | None = None) -> None:
        """`apps`: app_id -> app_secret of the accounts this fake WeChat knows."""
        super().__init__()
        self.apps = dict(apps or {})
        self.live_tokens: dict[str, str] = {}  # access_token -> app_id, while valid
        self.issued: dict[str, str] = {}  # every access_token ever issued -> app_id
        self.media: dict[str, StoredMedia] = {}
        self._replies: dict[str, list[datetime]] = {}  # openid -> when each message since they wrote went out

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/cgi-bin/token", self._token),
                web.post("/cgi-bin/message/custom/send", self._custom_send),
                web.post("/cgi-bin/media/upload", self._upload),
                web.get("/cgi-bin/media/get", self._media_get),
                web.get("/fake-video/{media_id}", self._video)]

    # Test helpers -------------------------------------------------------------------------------

    def add_app(self, app_id: str, app_secret: str) -> None:
        self.apps[app_id] = app_secret

    def expire_tokens(self) -> None:
        """Every token issued so far now answers 42001, as after WeChat's 2-hour expiry."""
        self.live_tokens.clear()

    def add_media(self, media_id: str, data: bytes, mime_type: str, filename: str = "") -> None:
        """Inbound media a user sent, for fetch_media to download."""
        kind = "video" if mime_type.startswith("video/") else "image"
        self.media[media_id] = StoredMedia(data, mime_type, filename or f"{media_id}.bin", kind)

    def app_of(self, request: Recorded) -> str | None:
        """The app (account) whose access token a recorded request carried."""
        return self.issued.get(request.query.get("access_token", ""))

    def token_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/cgi-bin/token"]

    def messages(self) -> list[dict]:
        """The customer-service messages sent so far, as JSON."""
        return [r.json for r in self.sent("/cgi-bin/message/custom/send")]

    # Routes -------------------------------------------------------------------------------------

    def _auth(self, request: web.Request) -> str | web.Response:
        token = request.query.get("access_token", "")
        if token in self.live_tokens:
            return self.live_tokens[token]
        if token in self.issued:
            return web.json_response({"errcode": 42001, "errmsg": "access_token expired"})
        return web.json_response(INVALID_TOKEN)

    async def _token(self, request: web.Request) -> web.Response:
        await self.record(request)
        if (scripted := self.scripted(request)) is not None:
            return scripted
        q = request.query
        if q.get("grant_type") != "client_credential":
            return web.json_response({"errcode": 40002, "errmsg": "invalid grant_type"})
        if q.get("appid") not in self.apps:
            return web.json_response({"errcode": 40013, "errmsg": "invalid appid"})
        if q.get("secret") != self.apps[q["appid"]]:
            return web.json_response({"errcode": 40125, "errmsg": "invalid appsecret"})
        token = secrets.token_urlsafe(24)
        self.live_tokens[token] = self.issued[token] = q["appid"]
        return web.json_response({"access_token": token, "expires_in": 7200})

    async def _custom_send(self, request: web.Request) -> web.Response:
        rec = await self.record(request)
        if (scripted := self.scripted(request)) is not None:
            return scripted
        app = self._auth(request)
        if isinstance(app, web.Response):
            return app
        try:
            body = json.loads(rec.body.decode("utf-8"))
        except ValueError:
            return web.json_response({"errcode": 47001, "errmsg": "data format error"})
        if not isinstance(body, dict) or not body.get("touser"):
            return web.json_response({"errcode": 40003, "errmsg": "invalid openid"})
        kind = body.get("msgtype")
        if kind not in ("text", "image", "voice", "video", "music", "news", "mpnews", "msgmenu", "miniprogrampage"):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        content = (body.get("text") or {}).get("content") if kind == "text" else None
        if kind == "text" and not content:
            return web.json_response({"errcode": 44003, "errmsg": "empty news data"})
        if kind == "text" and len(str(content).encode("utf-8")) > TEXT_LIMIT_BYTES:
            return _error(45002, "content size out of limit")
        if kind in ("image", "voice", "video") and (body.get(kind) or {}).get("media_id") not in self.media:
            return _error(40007, "invalid media_id")
        refused = self._window(str(body["touser"]))
        if refused is not None:
            return refused
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    def _window(self, openid: str) -> web.Response | None:
        """45015 past 48 hours, 45047 past 5 messages, for a customer the fake knows; else counts this one."""
        # OpenIDs are per official account, so the openid alone names the customer.
        wrote = max((at for (_, user), at in self.customers.items() if user == openid), default=None)
        if wrote is None:
            return None
        now = clock.now().replace(tzinfo=UTC)
        if now - wrote > WINDOW:
            return _error(45015, "response out of time limit or subscription is canceled")
        since = [at for at in self._replies.get(openid, []) if at >= wrote]
        if len(since) >= REPLIES_PER_MESSAGE:
            return _error(45047, "out of response count limit")
        self._replies[openid] = [*since, now]
        return None

    async def _upload(self, request: web.Request) -> web.Response:
        rec = await self.record(request)
        if (scripted := self.scripted(request)) is not None:
            return scripted
        app = self._auth(request)
        if isinstance(app, web.Response):
            return app
        kind = request.query.get("type", "")
        if kind not in MEDIA_TYPES:
            return web.json_response({"errcode": 40004, "errmsg": "invalid media type"})
        field = (await request.post()).get("media")  # cached by aiohttp: record() already read it
        if not isinstance(field, web.FileField) or not rec.form.get("media"):
            return web.json_response({"errcode": 41005, "errmsg": "media data missing"})
        media_id = secrets.token_urlsafe(32)
        self.media[media_id] = StoredMedia(rec.form["media"], field.content_type, field.filename, kind)
        return web.json_response({"type": kind, "media_id": media_id, "created_at": int(time.time())})

    async def _media_get(self, request: web.Request) -> web.Response:
        await self.record(request)
        if (scripted := self.scripted(request)) is not None:
            return scripted
        app = self._auth(request)
        if isinstance(app, web.Response):
            return app
        media_id = request.query.get("media_id", "")
        media = self.media.get(media_id)
        if media is None:
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        if media.type == "video":
            # WeChat answers video media with a download address, not the bytes.
            return web.json_response({"video_url": f"{self.url}/fake-video/{media_id}"})
        return web.Response(body=media.data, content_type=media.mime_type,
                            headers={"Content-Disposition": f'attachment; filename="{media.filename}"'})

    async def _video(self, request: web.Request) -> web.Response:
        await self.record(request)
        media = self.media.get(request.match_info["media_id"])
        if media is None:
            return web.Response(status=404)
        return web.Response(body=media.data, content_type=media.mime_type)


# Inbound payloads: what WeChat POSTs to /webhooks/wechat/{name} (before simulate() signs/encrypts) ----

def xml_message(fields: dict[str, str | int | float]) -> bytes:
    """A WeChat message XML from its fields; strings in CDATA, numbers bare, as WeChat writes them."""
    parts = []
    for tag, value in fields.items():
        if isinstance(value, str):
            inner = "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"
        else:
            inner = escape(str(value))
        parts.append(f"<{tag}>{inner}</{tag}>")
    return f"<xml>{''.join(parts)}</xml>".encode()


def _msg_id(message_id: str | int) -> str | int:
    # WeChat's MsgId is a bare 64-bit number; other ids (demo data) go in as text.
    return int(message_id) if str(message_id).isdigit() else str(message_id)


def message_payload(account_id: str, user_id: str, text: str, message_id: str | int,
                    create_time: int | None = None) -> bytes:
    """A text message from OpenID `user_id` to the account with original ID `account_id` (gh_...)."""
    return xml_message({"ToUserName": account_id, "FromUserName": user_id,
                        "CreateTime": create_time or int(time.time()), "MsgType": "text", "Content": text,
                        "MsgId": _msg_id(message_id)})


def image_payload(account_id: str, user_id: str, media_id: str, message_id: str | int,
                  pic_url: str = "http://mmbiz.qpic.cn/mmbiz_jpg/example/0", create_time: int | None = None) -> bytes:
    return xml_message({"ToUserName": account_id, "FromUserName": user_id,
                        "CreateTime": create_time or int(time.time()), "MsgType": "image", "PicUrl": pic_url,
                        "MediaId": media_id, "MsgId": _msg_id(message_id)})


def event_payload(account_id: str, user_id: str, event: str = "subscribe", event_key: str = "",
                  create_time: int | None = None) -> bytes:
    fields: dict[str, str | int | float] = {"ToUserName": account_id, "FromUserName": user_id,
                                            "CreateTime": create_time or int(time.time()), "MsgType": "event",
                                            "Event": event}
    if event_key:
        fields["EventKey"] = event_key
    return xml_message(fields)


# How the sandbox drives WeChat (socialdesk/sandbox.py) -------------------------------------------

# An account without an EncodingAESKey is in plain mode (bodies in clear); with one, in safe mode
# (bodies encrypted), as `WeChatSimulation.accounts` configures it, WeChat's recommendation.
PLAIN_MODE = AccountVariant(without=("encoding_aes_key",))
SAFE_MODE = AccountVariant("safe")
TO_USER = re.compile(rb"<ToUserName><!\[CDATA\[(.*?)\]\]></ToUserName>")


class WeChatSimulation(Simulation):
    channel = "wechat"
    api = FakeWeChatAPI
    account_ids = (DEMO_ACCOUNT,)
    customer = "o9AgO5Kd5ggOC-bXrbNODIiE3bGY"
    id_key = "original_id"  # the official account's original ID, gh_...
    demo = (
        DemoConversation(0, "o9AgO5Kd5ggOC-bXrbNODIiE3bGY", "Li Wei", 40, "请问可以开发票吗？",
                         reply="可以，我们今天会把发票发到您的邮箱。"),
        DemoConversation(0, "oX7pQ2rS4tU6vW8xY0zA1bC3dE5f", "Wang Fang", 5, "你好，包裹还没到"),
    )

    def accounts(self, api: FakeWeChatAPI, secret: Callable[[], str]) -> list[dict[str, Any]]:
        api.apps[DEMO_APP] = app_secret = secret()
        # Safe mode, as recommended: the demo's messages are encrypted with a fresh EncodingAESKey.
        return [{"name": "cn", "original_id": DEMO_ACCOUNT, "app_id": DEMO_APP, "app_secret": app_secret,
                 "token": secret(), "encoding_aes_key": base64.b64encode(os.urandom(32)).decode()[:43],
                 "api_url": api.url}]

    def message(self, account: str, user: str, text: str, message_id: str, sent_at: datetime,
                name: str) -> bytes:
        return message_payload(account, user, text, message_id, create_time=int(sent_at.timestamp()))

    def replies(self, api: FakeWeChatAPI) -> list[SentReply]:
        accounts = {DEMO_APP: DEMO_ACCOUNT}
        return [SentReply(accounts.get(api.app_of(r) or "", ""), str(r.json.get("touser")),
                          str((r.json.get("text") or {}).get("content") or ""))
                for r in api.sent("/cgi-bin/message/custom/send")]

    def routing_ids(self, body: bytes) -> set[str]:
        return {found.decode() for found in TO_USER.findall(body)}

    def fresh_routing_id(self, index: int) -> str:
        return f"gh_{index:012x}"  # an original ID: gh_ and 12 hex digits

    def readdress(self, body: bytes, routing_id: str) -> bytes:
        # WeChat posts XML, each value in its own CDATA section: a whole value is a whole section.
        for old in self.routing_ids(body):
            body = body.replace(f"<![CDATA[{old}]]>".encode(), f"<![CDATA[{routing_id}]]>".encode())
        return body

    def variants(self, body: bytes) -> tuple[AccountVariant, ...]:
        # A body WeChat already encrypted (its own safe-mode sample) is readable on a safe-mode account
        # only: one case, named as its file. Any other is worth checking in both modes.
        if b"<Encrypt>" in body:
            return (AS_CONFIGURED,)
        return (PLAIN_MODE, SAFE_MODE)


WECHAT = WeChatSimulation()
