"""A local fake of the Slack Web API the bot calls, recording every call, and a signer of requests
shaped exactly as Slack sends them to `/slack/events` (slash commands, interactions, events).

Web API methods answer on `{url}/api/{method}` (GET query, form or JSON bodies, as slack_sdk sends
them) with Slack's `{"ok": true, ...}` envelope; `response_url`s answer on `{url}/response/{id}`;
uploaded files download from `{url}/files/{id}/{name}` with the bot token only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from socialdesk.fakes.recorder import FakeAPI

BOT_TOKEN = "xoxb-fake-bot-token"
SIGNING_SECRET = "fake-signing-secret"
TEAM_ID = "T0SOCIAL"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"


@dataclass
class Call:
    method: str
    args: dict[str, Any]


class SlackAPI(FakeAPI):
    """Slack's Web API: auth.test, chat.*, views.*, users.info, usergroups.users.list, files.info."""

    def __init__(self, token: str = BOT_TOKEN, team_id: str = TEAM_ID) -> None:
        super().__init__()
        self.token = token
        self.team_id = team_id
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []  # what was posted to response_urls
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, list[str]] = {}
        self.files: dict[str, tuple[str, str, bytes]] = {}
        self._ts = itertools.count(1)
        self._views = itertools.count(1)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/api/{method}", self.api), web.post("/response/{id}", self.response),
                web.get("/files/{id}/{name}", self.download)]

    # -- scripting ---------------------------------------------------------------------------------

    def add_user(self, user_id: str, name: str) -> None:
        self.users[user_id] = {"id": user_id, "team_id": self.team_id, "name": name.lower().replace(" ", "."),
                               "real_name": name, "is_bot": False,
                               "profile": {"real_name": name, "display_name": name}}

    def add_file(self, file_id: str, name: str, mimetype: str, data: bytes) -> dict[str, Any]:
        self.files[file_id] = (name, mimetype, data)
        return self._file(file_id)

    def response_url(self, name: str = "r1") -> str:
        return f"{self.url}/response/{name}"

    # -- reading what happened ---------------------------------------------------------------------

    def called(self, method: str) -> list[dict[str, Any]]:
        return [c.args for c in self.calls if c.method == method]

    def clear(self) -> None:
        self.calls.clear()
        self.responses.clear()

    # -- the API -----------------------------------------------------------------------------------

    def _file(self, file_id: str) -> dict[str, Any]:
        name, mimetype, data = self.files[file_id]
        return {"id": file_id, "name": name, "title": name, "mimetype": mimetype, "size": len(data),
                "url_private": f"{self.url}/files/{file_id}/{name}",
                "url_private_download": f"{self.url}/files/{file_id}/{name}"}

    async def api(self, request: web.Request) -> web.Response:
        rec = await self.record(request)
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        args.update({k: v.decode() if isinstance(v, bytes) else v for k, v in rec.form.items()})
        if rec.body:
            with contextlib.suppress(ValueError):
                args.update(json.loads(rec.body))
        for key in ("blocks", "view"):  # form-encoded calls carry these as JSON strings
            if isinstance(args.get(key), str):
                args[key] = json.loads(args[key])
        self.calls.append(Call(method, args))
        answer = self.scripted(request)
        if answer is not None:
            return answer
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        return web.json_response({"ok": True, **handler(args)})

    def m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://socialdesk.slack.com/", "team": "SocialDesk", "user": "socialdesk",
                "team_id": self.team_id, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}

    def _message(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = f"{1700000000 + next(self._ts)}.000100"
        return {"channel": args.get("channel"), "ts": ts,
                "message": {"text": args.get("text", ""), "ts": ts, "bot_id": BOT_ID}}

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel", "")
        if channel.startswith("U"):  # a DM: Slack answers with the IM channel id
            args = {**args, "channel": "D" + channel[1:]}
        return self._message(args)

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": args.get("channel"), "ts": args.get("ts"), "text": args.get("text", "")}

    def m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": f"{1700000000 + next(self._ts)}.000200"}

    def _view(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view") or {}
        view_id = args.get("view_id") or f"V{next(self._views):06d}"
        return {"view": {**view, "id": view_id, "team_id": self.team_id, "hash": f"h{time.time_ns()}"}}

    m_views_open = m_views_update = m_views_push = m_views_publish = _view

    def m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        uid = args.get("user", "")
        return {"user": self.users.get(uid) or {"id": uid, "team_id": self.team_id, "name": uid, "real_name": uid,
                                                "profile": {"real_name": uid}}}

    def m_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"users": self.groups.get(args.get("usergroup", ""), [])}

    def m_files_info(self, args: dict[str, Any]) -> dict[str, Any]:
        fid = args.get("file", "")
        if fid not in self.files:
            return {"ok": False, "error": "file_not_found"}
        return {"file": self._file(fid)}

    async def response(self, request: web.Request) -> web.Response:
        rec = await self.record(request)
        self.responses.append({"id": request.match_info["id"], **rec.json})
        return web.Response(text="ok")

    async def download(self, request: web.Request) -> web.Response:
        await self.record(request)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=302, headers={"Location": "https://slack.com/signin"})
        fid = request.match_info["id"]
        if fid not in self.files:
            return web.Response(status=404)
        _, mimetype, data = self.files[fid]
        return web.Response(body=data, content_type=mimetype)


# -- requests as Slack sends them to /slack/events ------------------------------------------------

def sign(body: str, secret: str = SIGNING_SECRET, ts: int | None = None) -> dict[str, str]:
    """The headers Slack adds: `v0=` HMAC-SHA256 of `v0:{ts}:{body}` (channels.md section 6)."""
    ts = int(time.time()) if ts is None else ts
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": f"v0={digest}"}


def command_body(command: str, text: str, user_id: str, *, response_url: str, team_id: str = TEAM_ID,
                 channel_id: str = "C0GENERAL") -> tuple[str, str]:
    form = {"token": "legacy", "team_id": team_id, "team_domain": "socialdesk", "channel_id": channel_id,
            "channel_name": "general", "user_id": user_id, "user_name": user_id.lower(), "command": command,
            "text": text, "api_app_id": "A0SOCIAL", "is_enterprise_install": "false",
            "response_url": response_url, "trigger_id": f"trig.{time.time_ns()}"}
    return urllib.parse.urlencode(form), "application/x-www-form-urlencoded"


def interaction_body(payload: dict[str, Any]) -> tuple[str, str]:
    return urllib.parse.urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"


def block_actions(user_id: str, action: dict[str, Any], *, team_id: str = TEAM_ID, view: dict[str, Any] | None = None,
                  channel: str | None = None, message_ts: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "block_actions", "team": {"id": team_id, "domain": "socialdesk"},
        "user": {"id": user_id, "team_id": team_id}, "api_app_id": "A0SOCIAL", "token": "legacy",
        "trigger_id": f"trig.{time.time_ns()}", "actions": [{"block_id": "b", "action_ts": str(time.time()),
                                                             **action}]}
    if view is not None:
        payload["view"] = view
        payload["container"] = {"type": "view", "view_id": view.get("id")}
    elif channel:
        payload["channel"] = {"id": channel}
        payload["container"] = {"type": "message", "channel_id": channel, "message_ts": message_ts}
        payload["message"] = {"ts": message_ts}
    else:
        payload["container"] = {"type": "view", "view_id": "VHOME"}
        payload["view"] = {"id": "VHOME", "type": "home", "callback_id": "home", "private_metadata": ""}
    return payload


def view_submission(user_id: str, view: dict[str, Any], values: dict[str, dict[str, Any]], *,
                    team_id: str = TEAM_ID) -> dict[str, Any]:
    return {"type": "view_submission", "team": {"id": team_id, "domain": "socialdesk"},
            "user": {"id": user_id, "team_id": team_id}, "api_app_id": "A0SOCIAL", "token": "legacy",
            "trigger_id": f"trig.{time.time_ns()}",
            "view": {**view, "state": {"values": values}}}


def event_body(event: dict[str, Any], *, team_id: str = TEAM_ID) -> tuple[str, str]:
    return json.dumps({"token": "legacy", "team_id": team_id, "api_app_id": "A0SOCIAL", "type": "event_callback",
                       "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time()),
                       "authorizations": [{"team_id": team_id, "user_id": BOT_USER_ID, "is_bot": True}],
                       "event": event}), "application/json"
