"""A local fake of the WeChat Official Account API, plus builders of the XML WeChat pushes to us.

Speaks the real wire format: `GET /cgi-bin/token` hands out access tokens for the registered apps,
`POST /cgi-bin/message/custom/send`, `POST /cgi-bin/media/upload` (multipart field `media`) and
`GET /cgi-bin/media/get`. Like WeChat, every answer is HTTP 200 and errors are `{"errcode","errmsg"}`
(40001 for a wrong or expired access token). Tests script platform errors with `fail_next(...)`.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from xml.sax.saxutils import escape

from aiohttp import web

from socialdesk.fakes.recorder import FakeAPI, Recorded

INVALID_TOKEN = {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}
MEDIA_TYPES = ("image", "voice", "video", "thumb")


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
        if kind == "text" and not (body.get("text") or {}).get("content"):
            return web.json_response({"errcode": 44003, "errmsg": "empty news data"})
        if kind == "image" and (body.get("image") or {}).get("media_id") not in self.media:
            return web.json_response({"errcode": 40007, "errmsg": "invalid media_id"})
        if kind not in ("text", "image", "voice", "video", "music", "news", "mpnews", "msgmenu", "miniprogrampage"):
            return web.json_response({"errcode": 40008, "errmsg": "invalid message type"})
        return web.json_response({"errcode": 0, "errmsg": "ok"})

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
