"""A local fake of the Telegram Bot API (sendMessage, sendPhoto, sendDocument, getFile and file downloads)
and builders of the `Update` bodies Telegram posts to a bot's webhook.

Strict as Telegram is, with its answers (`{"ok": false, "error_code", "description", "parameters"}`,
core.telegram.org/bots/api#making-requests):
- a token in the path that is not a bot's: 401 `Unauthorized`; a method it does not know: 404 `Not Found`;
- a `chat_id` missing, or of a chat that never wrote to the bot: 400 `Bad Request: chat not found`
  (a bot cannot start a conversation); a customer who blocked the bot: 403 `Forbidden: bot was blocked
  by the user`;
- a text empty or over 4,096 characters: 400 `Bad Request: message text is empty` / `message is too
  long`; a caption over 1,024: `Bad Request: message caption is too long`; a photo or document missing;
- scripted flood control: 429 `Too Many Requests: retry after N` with `parameters.retry_after`
  (`flood`).
Parameters are read as Telegram reads them: a JSON body, a form (multipart for uploads) or the query.
Sent messages are answered with a `Message` whose `message_id` counts up in each chat.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aiohttp import web

from socialdesk.fakes.recorder import DemoConversation, FakeAPI, SentReply, Simulation

DEMO_BOT_ID = "7061234501"
SECOND_BOT_ID = "7061234502"
TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024
SENDS = ("sendMessage", "sendPhoto", "sendDocument")


def error(code: int, description: str, **parameters: Any) -> web.Response:
    """Telegram's refusal, as every Bot API method answers one."""
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)


class TelegramAPI(FakeAPI):
    """Serves the bots whose tokens it was given; anything else is Telegram's 401."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: dict[str, str] = {}  # bot token -> bot id
        self.usernames: dict[str, str] = {}  # bot id -> username
        self.blocked: set[tuple[str, str]] = set()  # (bot id, chat id) of customers who blocked the bot
        self.files: dict[str, tuple[str, bytes]] = {}  # file_id -> (file_path, content)
        self.taken: list[tuple[str, dict[str, Any]]] = []  # (bot id, parameters) of every message it took
        self._ids: dict[tuple[str, str], itertools.count[int]] = {}

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/bot{token}/{method}", self.method),
                web.get("/file/bot{token}/{path:.+}", self.download)]

    def add_bot(self, token: str, username: str = "") -> str:
        """Accept this bot token (`<bot id>:<secret>`); its bot id is returned."""
        bot_id = token.split(":", 1)[0]
        self.tokens[token] = bot_id
        self.usernames[bot_id] = username or f"demo{bot_id}_bot"
        return bot_id

    def add_file(self, file_id: str, data: bytes, file_path: str = "photos/file_0.jpg") -> None:
        """Make `getFile(file_id)` name `file_path`, and the file server return `data` there."""
        self.files[file_id] = (file_path, data)

    def block(self, bot_id: str, chat_id: str) -> None:
        self.blocked.add((bot_id, chat_id))

    def flood(self, seconds: int, method: str = "") -> None:
        """Answer the next call (of `method`) with flood control: wait `seconds`."""
        self.fail_next(1, 429, {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after "
                                f"{seconds}", "parameters": {"retry_after": seconds}}, path_contains=method)

    async def _parameters(self, request: web.Request, rec: Any) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if rec.form:
            params.update(rec.form)
        elif rec.body:
            try:
                body = json.loads(rec.body)
            except ValueError:
                body = None
            if isinstance(body, dict):
                params.update(body)
        return params

    async def method(self, request: web.Request) -> web.Response:
        rec = await self.record(request)
        answer = self.scripted(request)
        if answer is not None:
            return answer
        bot_id = self.tokens.get(request.match_info["token"])
        if bot_id is None:
            return error(401, "Unauthorized")
        params = await self._parameters(request, rec)
        name = request.match_info["method"]
        if name == "getFile":
            return self._get_file(str(params.get("file_id") or ""))
        if name == "getMe":
            return web.json_response({"ok": True, "result": {"id": int(bot_id), "is_bot": True, "first_name": "Demo",
                                                             "username": self.usernames.get(bot_id, "")}})
        if name not in SENDS:
            return error(404, "Not Found")
        return self._send(bot_id, name, params)

    def _send(self, bot_id: str, name: str, params: dict[str, Any]) -> web.Response:
        chat_id = str(params.get("chat_id") or "")
        if not chat_id:
            return error(400, "Bad Request: chat_id is empty")
        if not any(account == bot_id and user == chat_id for account, user in self.customers):
            return error(400, "Bad Request: chat not found")
        if (bot_id, chat_id) in self.blocked:
            return error(403, "Forbidden: bot was blocked by the user")
        message: dict[str, Any] = {}
        if name == "sendMessage":
            text = params.get("text")
            if not isinstance(text, str) or not text.strip():
                return error(400, "Bad Request: message text is empty")
            if len(text) > TEXT_LIMIT:
                return error(400, "Bad Request: message is too long")
            message["text"] = text
        else:
            field = "photo" if name == "sendPhoto" else "document"
            content = params.get(field)
            if not content:
                return error(400, f"Bad Request: there is no {field} in the request")
            caption = params.get("caption")
            if isinstance(caption, str) and len(caption) > CAPTION_LIMIT:
                return error(400, "Bad Request: message caption is too long")
            if caption:
                message["caption"] = caption
            file_id = f"{field}-{len(self.files) + 1}"
            self.files[file_id] = (f"{field}s/file_{len(self.files)}", content if isinstance(content, bytes) else b"")
            message[field] = ([{"file_id": file_id, "file_unique_id": file_id, "width": 1, "height": 1}]
                              if field == "photo" else {"file_id": file_id, "file_unique_id": file_id})
        counter = self._ids.setdefault((bot_id, chat_id), itertools.count(1001))
        result = {"message_id": next(counter), "date": int(time.time()),
                  "from": {"id": int(bot_id), "is_bot": True, "first_name": "Demo",
                           "username": self.usernames.get(bot_id, "")},
                  "chat": {"id": int(chat_id), "type": "private"}, **message}
        self.taken.append((bot_id, params))
        return web.json_response({"ok": True, "result": result})

    def _get_file(self, file_id: str) -> web.Response:
        found = self.files.get(file_id)
        if found is None:
            return error(400, "Bad Request: invalid file_id")
        path, data = found
        return web.json_response({"ok": True, "result": {"file_id": file_id, "file_unique_id": file_id,
                                                         "file_size": len(data), "file_path": path}})

    async def download(self, request: web.Request) -> web.Response:
        await self.record(request)
        answer = self.scripted(request)
        if answer is not None:
            return answer
        if request.match_info["token"] not in self.tokens:
            return error(401, "Unauthorized")
        found = next((data for path, data in self.files.values() if path == request.match_info["path"]), None)
        if found is None:
            return error(404, "Not Found")
        return web.Response(body=found, content_type="application/octet-stream")

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        """Every message the fake took: (bot id, its parameters), in order."""
        return list(self.taken)


# Inbound webhook bodies -----------------------------------------------------------------------

_updates = itertools.count(735210001)


def user(user_id: str, name: str = "Demo Customer", username: str | None = None) -> dict[str, Any]:
    first, _, last = name.partition(" ")
    found: dict[str, Any] = {"id": int(user_id), "is_bot": False, "first_name": first}
    if last:
        found["last_name"] = last
    if username:
        found["username"] = username
    found["language_code"] = "en"
    return found


def message(user_id: str, message_id: int, content: dict[str, Any], *, date: int | None = None,
            name: str = "Demo Customer", chat: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `Message` from `user_id` in their private chat with the bot (or in `chat`)."""
    sender = user(user_id, name)
    private = {"id": int(user_id), "type": "private", "first_name": sender["first_name"]}
    if "last_name" in sender:
        private["last_name"] = sender["last_name"]
    return {"message_id": message_id, "from": sender, "chat": chat or private,
            "date": date if date is not None else int(time.time()), **content}


def update(kind: str, msg: dict[str, Any], update_id: int | None = None) -> bytes:
    return json.dumps({"update_id": update_id if update_id is not None else next(_updates), kind: msg},
                      ensure_ascii=False).encode()


def text_update(user_id: str, text: str, message_id: int, *, date: int | None = None,
                name: str = "Demo Customer", update_id: int | None = None) -> bytes:
    """An update carrying one text message from `user_id`'s private chat."""
    return update("message", message(user_id, message_id, {"text": text}, date=date, name=name), update_id)


# How the sandbox drives Telegram (socialdesk/sandbox.py) -----------------------------------------

class TelegramSimulation(Simulation):
    channel = "telegram"
    api = TelegramAPI
    account_ids = (DEMO_BOT_ID, SECOND_BOT_ID)
    customer = "482915377"
    signs_body = False  # Telegram proves itself with setWebhook's secret_token, in a header
    id_key = "bot_id"  # optional in the configuration, where the token's prefix says it anyway
    demo = (
        DemoConversation(0, "482915377", "Olena Kovalenko", 40, "Hi! Can I change the delivery address?",
                         reply="Of course: reply with the new address and we will update it."),
        DemoConversation(1, "519203466", "Marco Rossi", 20, "Do you ship to Italy?"),
    )

    def accounts(self, api: TelegramAPI, secret: Callable[[], str]) -> list[dict[str, Any]]:
        tables = []
        for name, bot_id in (("shop", DEMO_BOT_ID), ("returns", SECOND_BOT_ID)):
            token = f"{bot_id}:AA{secret()}"
            api.add_bot(token, f"{name}_demo_bot")
            tables.append({"name": name, "bot_token": token, "secret_token": secret(), "username": f"{name}_demo_bot",
                           "api_url": api.url})
        return tables

    def message(self, account: str, user: str, text: str, message_id: str, sent_at: datetime,
                name: str) -> bytes:
        # Telegram numbers messages in each chat; the sandbox's ids are any text, so they are hashed to one.
        number = int(hashlib.sha256(message_id.encode()).hexdigest()[:8], 16) % 2_000_000_000 + 1
        return text_update(user, text, number, date=int(sent_at.timestamp()), name=name)

    def replies(self, api: TelegramAPI) -> list[SentReply]:
        return [SentReply(bot_id, str(params.get("chat_id")), str(params.get("text") or params.get("caption") or ""))
                for bot_id, params in api.messages()]

    def routing_ids(self, body: bytes) -> set[str]:
        return set()  # an update never names the bot it is for: each bot has its own webhook URL

    def fresh_routing_id(self, index: int) -> str:
        return f"6{index:09d}"  # a bot id: 10 digits

    def with_routing_id(self, table: dict[str, Any], routing_id: str) -> dict[str, Any]:
        # The bot's id is its token's prefix too, and the configuration refuses the two disagreeing.
        secret = str(table["bot_token"]).partition(":")[2]
        return {**table, self.id_key: routing_id, "bot_token": f"{routing_id}:{secret}"}


TELEGRAM = TelegramSimulation()
