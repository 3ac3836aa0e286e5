"""A local fake of the X API v2 DM endpoints (send a DM, upload media, download DM media) and
builders of the webhook bodies X posts to us: the Account Activity API's, and the X Activity API's
that supersede them (docs.x.com/x-api/activity/event-payloads).

Strict where X is: a DM carries text or one attachment uploaded by the sender, and its text is at
most 10,000 characters (developer.x.com, POST /2/dm_conversations/with/:participant_id/messages:
"Text messages support up to 10,000 characters"); refusals are X's v2 problem bodies.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from socialdesk.fakes.recorder import DemoConversation, FakeAPI, SentReply, Simulation

DEMO_USER_ID = "1529398240126005248"
DEMO_SCREEN_NAME = "socialdesk_demo"
DEMO_TOKEN = "x-demo-user-access-token"
TEXT_LIMIT = 10_000
INVALID_REQUEST = "https://api.twitter.com/2/problems/invalid-request"


def _problem(status: int, title: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response({"title": title, "detail": detail, "type": "about:blank", "status": status, **extra},
                             status=status)


class XAPI(FakeAPI):
    """`tokens` maps each accepted user access token (Bearer) to the user id it acts for, so a
    recorded request shows which business account a DM left from."""

    def __init__(self, tokens: dict[str, str] | None = None) -> None:
        super().__init__()
        self.tokens = dict(tokens) if tokens is not None else {DEMO_TOKEN: DEMO_USER_ID}
        self.media: dict[str, tuple[bytes, str]] = {}
        self.uploads: dict[str, str] = {}  # media id -> the user id that uploaded it
        self._ids = itertools.count(1719826441273409536)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/2/dm_conversations/with/{participant_id}/messages", self.send_dm),
                web.post("/2/media/upload", self.upload),
                web.get("/1.1/ton/data/dm/{path:.+}", self.get_media)]

    def add_media(self, name: str, data: bytes, mime_type: str = "image/jpeg") -> str:
        """Serve DM media the way ton.twitter.com does; returns its URL on this fake."""
        path = f"/1.1/ton/data/dm/{name}"
        self.media[path] = (data, mime_type)
        return f"{self.url}{path}"

    def _user(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return self.tokens.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None

    async def send_dm(self, request: web.Request) -> web.Response:
        rec = await self.record(request)
        scripted = self.scripted(request)
        if scripted is not None:
            return scripted
        user = self._user(request)
        if user is None:
            return _problem(401, "Unauthorized", "Unauthorized")
        try:
            body = rec.json
        except ValueError:
            body = None
        attachments = body.get("attachments") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not (body.get("text") or attachments):
            return _invalid("The request must carry text or attachments")
        attachments = attachments if isinstance(attachments, list) else []
        if len(attachments) > 1:
            return _invalid("Only one attachment is allowed")
        text = body.get("text")
        if text is not None and (not isinstance(text, str) or len(text) > TEXT_LIMIT):
            return _invalid(f"The `text` field must be at most {TEXT_LIMIT} characters", parameter="text",
                            value=str(text)[:40])
        for item in attachments:
            if self.uploads.get(str(item.get("media_id"))) != user:
                return _invalid("The media must be uploaded by the sending user")
        participant = request.match_info["participant_id"]
        low, high = sorted((user, participant), key=int)
        return web.json_response({"data": {"dm_conversation_id": f"{low}-{high}",
                                           "dm_event_id": str(next(self._ids))}}, status=201)

    async def upload(self, request: web.Request) -> web.Response:
        rec = await self.record(request)
        scripted = self.scripted(request)
        if scripted is not None:
            return scripted
        user = self._user(request)
        if user is None:
            return _problem(401, "Unauthorized", "Unauthorized")
        if not isinstance(rec.form.get("media"), bytes) or not rec.form.get("media_category"):
            return _invalid("media and media_category are required")
        media_id = str(next(self._ids))
        self.uploads[media_id] = user
        return web.json_response({"data": {"id": media_id, "media_key": f"3_{media_id}",
                                           "size": len(rec.form["media"]), "expires_after_secs": 86400}})

    async def get_media(self, request: web.Request) -> web.Response:
        await self.record(request)
        scripted = self.scripted(request)
        if scripted is not None:
            return scripted
        if self._user(request) is None:
            return _problem(401, "Unauthorized", "Unauthorized")
        found = self.media.get(request.path)
        if found is None:
            return _problem(404, "Not Found Error", "Could not find the media")
        return web.Response(body=found[0], content_type=found[1])


def _invalid(message: str, parameter: str | None = None, value: str = "") -> web.Response:
    """X v2's 400: a problem of type invalid-request listing each bad parameter."""
    error: dict[str, Any] = {"message": message}
    if parameter:
        error["parameters"] = {parameter: [value]}
    return web.json_response({"errors": [error], "title": "Invalid Request",
                              "detail": "One or more parameters to your request was invalid.",
                              "type": INVALID_REQUEST}, status=400)


# Inbound webhook bodies -----------------------------------------------------------------------

def _user(user_id: str, name: str, screen_name: str) -> dict[str, Any]:
    return {"id": user_id, "created_timestamp": "1422556069340", "name": name, "screen_name": screen_name,
            "protected": False, "verified": False, "followers_count": 12, "friends_count": 40,
            "statuses_count": 310, "profile_image_url": f"http://pbs.twimg.com/profile_images/{user_id}/a.jpg",
            "profile_image_url_https": f"https://pbs.twimg.com/profile_images/{user_id}/a.jpg"}


def message_payload(account_id: str, user_id: str, text: str, message_id: str, *,
                    created_ms: int | None = None, name: str = "Demo Customer", screen_name: str = "demo_customer",
                    media: dict[str, Any] | None = None, account_screen_name: str = DEMO_SCREEN_NAME) -> bytes:
    """An Account Activity body carrying one DM from `user_id` to the subscribed `account_id`."""
    data: dict[str, Any] = {"text": text, "entities": {"hashtags": [], "symbols": [], "user_mentions": [],
                                                       "urls": []}}
    if media is not None:
        data["attachment"] = {"type": "media", "media": media}
    event = {"type": "message_create", "id": message_id,
             "created_timestamp": str(created_ms if created_ms is not None else int(time.time() * 1000)),
             "message_create": {"target": {"recipient_id": account_id}, "sender_id": user_id,
                                "message_data": data}}
    return json.dumps({"for_user_id": account_id, "direct_message_events": [event],
                       "users": {user_id: _user(user_id, name, screen_name),
                                 account_id: _user(account_id, "SocialDesk Demo", account_screen_name)}},
                      ensure_ascii=False).encode()


def photo(media_id: str, url: str) -> dict[str, Any]:
    """The `media` object of a DM photo attachment, pointing at `url` (e.g. `XAPI.add_media`)."""
    return {"id": int(media_id), "id_str": media_id, "indices": [0, 0], "media_url": url.replace("https:", "http:"),
            "media_url_https": url, "url": "https://t.co/Sk9vN2dMcQ", "display_url": "pic.x.com/Sk9vN2dMcQ",
            "expanded_url": "https://x.com/messages/media/" + media_id, "type": "photo",
            "sizes": {"large": {"w": 1024, "h": 768, "resize": "fit"}}}


def read_payload(account_id: str, user_id: str, last_read_event_id: str, *, created_ms: int | None = None) -> bytes:
    """An Account Activity body saying `user_id` read our DMs up to `last_read_event_id`."""
    event = {"created_timestamp": str(created_ms if created_ms is not None else int(time.time() * 1000)),
             "sender_id": user_id, "target": {"recipient_id": account_id},
             "last_read_event_id": last_read_event_id}
    return json.dumps({"for_user_id": account_id, "direct_message_mark_read_events": [event],
                       "users": {user_id: _user(user_id, "Demo Customer", "demo_customer")}}).encode()


def _v2_user(user_id: str, name: str, username: str) -> dict[str, Any]:
    """A user as the X Activity API lists it in `payload.users`: a v2 user object under `data`."""
    return {"data": {"id": user_id, "name": name, "username": username, "protected": False, "verified": False,
                     "description": "", "created_at": "2015-01-29T18:14:29.000Z",
                     "profile_image_url": f"https://pbs.twimg.com/profile_images/{user_id}/a_normal.jpg",
                     "public_metrics": {"followers_count": 12, "following_count": 40, "tweet_count": 310}}}


def activity_payload(account_id: str, event_type: str, payload: dict[str, Any], *, tag: str = "") -> bytes:
    """An X Activity API webhook body: `event_type` for the subscription filtered on `account_id`."""
    return json.dumps({"data": {"event_uuid": str(next(_event_uuids)), "filter": {"user_id": account_id},
                                "event_type": event_type, "tag": tag, "payload": payload}},
                      ensure_ascii=False).encode()


def activity_message_payload(account_id: str, sender: str, recipient: str, text: str, message_id: str, *,
                             created_ms: int | None = None, name: str = "Demo Customer",
                             screen_name: str = "demo_customer") -> bytes:
    """An X Activity API DM: `dm.received` when the account is the recipient, `dm.sent` when it is the sender."""
    event = {"type": "message_create", "id": message_id,
             "created_timestamp": str(created_ms if created_ms is not None else int(time.time() * 1000)),
             "message_create": {"target": {"recipient_id": recipient}, "sender_id": sender,
                                "message_data": {"text": text, "entities": {"hashtags": [], "symbols": [],
                                                                            "user_mentions": [], "urls": []}}}}
    customer = recipient if sender == account_id else sender
    users = {customer: _v2_user(customer, name, screen_name),
             account_id: _v2_user(account_id, "SocialDesk Demo", DEMO_SCREEN_NAME)}
    kind = "dm.sent" if sender == account_id else "dm.received"
    return activity_payload(account_id, kind, {"direct_message_events": [event], "users": users},
                            tag="dm-outbound" if kind == "dm.sent" else "dm-inbound")


_event_uuids = itertools.count(-6850472171600526495, 7919)


# How the sandbox drives X (socialdesk/sandbox.py) ------------------------------------------------

class XSimulation(Simulation):
    channel = "x"
    api = XAPI
    account_ids = (DEMO_USER_ID,)
    customer = "272953809"
    id_key = "user_id"
    demo = (
        DemoConversation(0, "272953809", "Nicolas Pottier", 30, "My discount code DEMO10 doesn't work"),
        DemoConversation(0, "272953809", "Nicolas Pottier", 29, "It says expired, but the email says today",
                         reply="Sorry! Here is a new code: DEMO15"),
    )

    def accounts(self, api: XAPI, secret: Callable[[], str]) -> list[dict[str, Any]]:
        api.tokens[DEMO_TOKEN] = DEMO_USER_ID
        return [{"name": "brand", "user_id": DEMO_USER_ID, "screen_name": DEMO_SCREEN_NAME,
                 "consumer_secret": secret(), "access_token": DEMO_TOKEN, "api_url": api.url}]

    def message(self, account: str, user: str, text: str, message_id: str, sent_at: datetime,
                name: str) -> bytes:
        return message_payload(account, user, text, message_id, created_ms=int(sent_at.timestamp()) * 1000,
                               name=name, screen_name=name.lower().replace(" ", "_"))

    def receipt(self, account: str, user: str, platform_message_id: str, status: str) -> bytes | None:
        return read_payload(account, user, platform_message_id) if status == "read" else None

    def replies(self, api: XAPI) -> list[SentReply]:
        return [SentReply(api.tokens.get(r.headers.get("Authorization", "").removeprefix("Bearer "), ""),
                          r.path.split("/")[-2], str(r.json.get("text") or ""))
                for r in api.sent("/dm_conversations/with/")]

    def routing_ids(self, body: bytes) -> set[str]:
        # The Account Activity API says whose subscription an event is for in `for_user_id`; the X
        # Activity API in the filter the subscription was made with.
        data = json.loads(body)
        found = {str(data["for_user_id"])} if data.get("for_user_id") else set()
        user = ((data.get("data") or {}).get("filter") or {}).get("user_id")
        return found | ({str(user)} if user else set())

    def fresh_routing_id(self, index: int) -> str:
        return f"7{index:017d}"  # a user id (a snowflake): 18 digits


X = XSimulation()
