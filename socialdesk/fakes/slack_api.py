"""A strict local fake of the Slack Web API the bot calls, and a signer of requests shaped exactly as
Slack sends them to `/slack/events` (slash commands, interactions, events).

Strict: it refuses what Slack refuses (`../shared/reference/slack.md`), with Slack's own bodies, so a
test sees what a real workspace would do to the app:
- Block Kit on every surface (`check_blocks`, `check_view`): `invalid_blocks` for messages and
  `invalid_arguments` for views, each naming the offending JSON pointer in
  `response_metadata.messages`; `view_too_large`; `msg_too_long`; `no_text`.
- Rate limits: `chat.postMessage` about one message a second per channel with a short burst, every
  other method its tier per minute; past them HTTP 429 with `Retry-After` (whole seconds).
- Workspace state: channels with their members and the bot's membership (`not_in_channel`,
  `channel_not_found`, `is_archived`, `user_not_in_channel`), messages (`message_not_found`,
  `cant_update_message`), views and their hashes (`not_found`, `hash_conflict`), trigger ids handed
  out by the request helpers below (`expired_trigger_id` after 3 s, `exchanged_trigger_id` the
  second time, `invalid_trigger_id` if never issued), response_urls (5 uses in 30 minutes).
Its clock is injectable (`clock=`), so tests need not sleep through rate windows or trigger expiry;
the defaults are Slack's real numbers.

Every refusal is recorded (`refusals`); a test declares those it provokes (`expect`) and the
harness fails on any other (`unexpected()`). Answers scripted with `fail_next` are the test's own
doing and are not refusals.

Web API methods answer on `{url}/api/{method}` (GET query, form or JSON bodies, as slack_sdk sends
them); `response_url`s on `{url}/response/{id}`; uploaded files download from `{url}/files/{id}/{name}`
with the bot token only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from socialdesk.fakes.recorder import FakeAPI

BOT_TOKEN = "xoxb-fake-bot-token"
SIGNING_SECRET = "fake-signing-secret"
TEAM_ID = "T0SOCIAL"
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"

# -- Slack's numbers (reference/slack.md) ----------------------------------------------------------

TRIGGER_TTL = 3.0  # seconds a trigger_id may be used, once
POST_PER_SECOND = 1.0  # chat.postMessage per channel
POST_BURST = 3  # "short bursts allowed": Slack gives no figure; a few messages
# Per minute, per method, per workspace (the tiers).
TIER_PER_MINUTE = {
    "chat.update": 50, "chat.delete": 50, "reactions.add": 50, "conversations.replies": 50,
    "conversations.history": 50,
    "views.open": 100, "views.update": 100, "views.push": 100, "views.publish": 100, "chat.postEphemeral": 100,
    "users.info": 100, "files.info": 100,
    "usergroups.users.list": 20, "conversations.members": 20,
}
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60.0
MSG_TEXT_MAX = 40_000
VIEW_MAX_BYTES = 250_000  # "users report about 250 kB"
MAX_BLOCKS = {"message": 50, "modal": 100, "home": 100}


# -- Block Kit ---------------------------------------------------------------------------------------

BLOCK_TYPES = {
    "message": {"section", "divider", "image", "actions", "context", "header", "rich_text", "video", "file",
                "markdown"},
    "modal": {"section", "divider", "image", "actions", "context", "header", "input", "rich_text", "video"},
    "home": {"section", "divider", "image", "actions", "context", "header", "input", "rich_text", "video"},
}
SELECTS = {"static_select", "users_select", "conversations_select", "channels_select", "external_select",
           "multi_static_select", "multi_users_select", "multi_conversations_select", "multi_channels_select",
           "multi_external_select"}
INTERACTIVE = SELECTS | {"button", "overflow", "datepicker", "timepicker", "datetimepicker", "checkboxes",
                         "radio_buttons"}
ACCESSORIES = INTERACTIVE | {"image"}
INPUT_ELEMENTS = SELECTS | {"plain_text_input", "file_input", "datepicker", "timepicker", "datetimepicker",
                            "checkboxes", "radio_buttons", "email_text_input", "url_text_input", "number_input",
                            "rich_text_input"}


class _Checker:
    """Walks a surface and collects Slack's `[ERROR] ... [json-pointer:/...]` messages."""

    def __init__(self, surface: str, root: str) -> None:
        self.surface = surface
        self.root = root
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"[ERROR] {message} [json-pointer:{self.root}{path}]")

    def length(self, value: Any, path: str, most: int, least: int = 1) -> None:
        if not isinstance(value, str):
            self.error(path, "must be a string")
        elif len(value) > most:
            self.error(path, f"must be less than {most + 1} characters")
        elif len(value) < least:
            self.error(path, f"must be more than {least - 1} characters")

    def text(self, obj: Any, path: str, most: int, *, plain: bool = False) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
            self.error(path, "must provide an object of type plain_text or mrkdwn")
            return
        if plain and obj["type"] != "plain_text":
            self.error(path + "/type", "must be plain_text")
        self.length(obj.get("text"), path + "/text", most)

    def action_id(self, el: dict[str, Any], path: str, required: bool = True) -> None:
        if "action_id" in el or required:
            self.length(el.get("action_id"), path + "/action_id", 255)

    def option(self, opt: Any, path: str) -> None:
        if not isinstance(opt, dict):
            self.error(path, "must provide an object")
            return
        self.text(opt.get("text"), path + "/text", 75)
        self.length(opt.get("value"), path + "/value", 150)
        if "description" in opt:
            self.text(opt["description"], path + "/description", 75)

    def element(self, el: Any, path: str, allowed: set[str]) -> None:
        if not isinstance(el, dict):
            self.error(path, "must provide an object")
            return
        kind = el.get("type")
        if kind not in allowed:
            self.error(path + "/type", f"unsupported type: {kind}")
            return
        if kind == "image":
            self.length(el.get("alt_text"), path + "/alt_text", 2000)
            return
        self.action_id(el, path, required=kind not in ("button",) or "action_id" in el)
        if "placeholder" in el:
            self.text(el["placeholder"], path + "/placeholder", 150, plain=True)
        if kind == "button":
            self.text(el.get("text"), path + "/text", 75, plain=True)
            if "value" in el:
                self.length(el["value"], path + "/value", 2000)
            if "url" in el:
                self.length(el["url"], path + "/url", 3000)
            if "style" in el and el["style"] not in ("primary", "danger"):
                self.error(path + "/style", "must be one of primary, danger")
        elif kind in ("static_select", "multi_static_select", "overflow", "checkboxes", "radio_buttons"):
            options = el.get("options")
            groups = el.get("option_groups")
            if options is None and groups is not None and kind.endswith("static_select"):
                options = [o for g in groups if isinstance(g, dict) for o in (g.get("options") or [])]
            if not isinstance(options, list):
                self.error(path + "/options", "must provide an array")
                return
            low, high = {"overflow": (2, 5), "checkboxes": (1, 10), "radio_buttons": (1, 10)}.get(kind, (1, 100))
            if len(options) > high:
                self.error(path + "/options", f"no more than {high} items allowed")
            elif len(options) < low:
                self.error(path + "/options", f"must provide at least {low} items")
            for i, opt in enumerate(options):
                self.option(opt, f"{path}/options/{i}")
            initial = el.get("initial_option")
            if initial is not None and initial not in options:
                self.error(path + "/initial_option", "must match one of the options")
        elif kind == "plain_text_input":
            shortest, longest = el.get("min_length"), el.get("max_length")
            if shortest is not None and (not isinstance(shortest, int) or not 0 <= shortest <= 3000):
                self.error(path + "/min_length", "must be between 0 and 3000")
            if longest is not None and (not isinstance(longest, int) or not 1 <= longest <= 3000):
                self.error(path + "/max_length", "must be between 1 and 3000")
            if isinstance(shortest, int) and isinstance(longest, int) and shortest > longest:
                self.error(path + "/min_length", "must be less than or equal to max_length")
            initial = el.get("initial_value")
            if initial is not None:
                most = longest if isinstance(longest, int) and 1 <= longest <= 3000 else 3000
                self.length(initial, path + "/initial_value", most, least=shortest if isinstance(shortest, int) else 0)
        elif kind == "file_input":
            if self.surface != "modal":
                self.error(path + "/type", "file_input is only allowed in modals")
            files = el.get("max_files", 10)
            if not isinstance(files, int) or not 1 <= files <= 10:
                self.error(path + "/max_files", "must be between 1 and 10")

    def blocks(self, blocks: Any, path: str = "/blocks") -> None:
        if not isinstance(blocks, list):
            self.error(path, "must provide an array")
            return
        most = MAX_BLOCKS[self.surface]
        if len(blocks) > most:
            self.error(path, f"no more than {most} items allowed")
        seen_ids: set[str] = set()
        for i, block in enumerate(blocks):
            self.block(block, f"{path}/{i}", seen_ids)

    def block(self, block: Any, path: str, seen_ids: set[str]) -> None:
        if not isinstance(block, dict):
            self.error(path, "must provide an object")
            return
        kind = block.get("type")
        if kind not in BLOCK_TYPES[self.surface]:
            self.error(path + "/type", f"unsupported type: {kind}")
            return
        if "block_id" in block:
            self.length(block["block_id"], path + "/block_id", 255)
            if block["block_id"] in seen_ids:
                self.error(path + "/block_id", f"duplicate block_id: {block['block_id']}")
            seen_ids.add(block["block_id"])
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.error(path, "must provide either text or fields")
            if "text" in block:
                self.text(block["text"], path + "/text", 3000)
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not fields:
                    self.error(path + "/fields", "must provide a non-empty array")
                else:
                    if len(fields) > 10:
                        self.error(path + "/fields", "no more than 10 items allowed")
                    for i, f in enumerate(fields):
                        self.text(f, f"{path}/fields/{i}", 2000)
            if "accessory" in block:
                self.element(block["accessory"], path + "/accessory", ACCESSORIES)
        elif kind == "header":
            self.text(block.get("text"), path + "/text", 150, plain=True)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.error(path + "/elements", "must provide a non-empty array")
                return
            if len(elements) > 10:
                self.error(path + "/elements", "no more than 10 items allowed")
            for i, el in enumerate(elements):
                if isinstance(el, dict) and el.get("type") == "image":
                    self.element(el, f"{path}/elements/{i}", {"image"})
                else:
                    self.text(el, f"{path}/elements/{i}", 3000)
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements:
                self.error(path + "/elements", "must provide a non-empty array")
                return
            if len(elements) > 25:
                self.error(path + "/elements", "no more than 25 items allowed")
            action_ids: set[str] = set()
            for i, el in enumerate(elements):
                self.element(el, f"{path}/elements/{i}", INTERACTIVE)
                aid = el.get("action_id") if isinstance(el, dict) else None
                if aid is not None:
                    if aid in action_ids:
                        self.error(f"{path}/elements/{i}/action_id",
                                   f"action_id must be unique within the block: {aid}")
                    action_ids.add(aid)
        elif kind == "input":
            if self.surface == "home" and not block.get("dispatch_action"):
                self.error(path + "/type", "input blocks in a Home tab need dispatch_action")
            self.text(block.get("label"), path + "/label", 2000, plain=True)
            if "hint" in block:
                self.text(block["hint"], path + "/hint", 2000, plain=True)
            self.element(block.get("element"), path + "/element", INPUT_ELEMENTS)
        elif kind == "image":
            self.length(block.get("alt_text"), path + "/alt_text", 2000)


def check_blocks(blocks: Any, surface: str = "message", root: str = "") -> list[str]:
    """Slack's error messages for these blocks on this surface ([] when Slack takes them)."""
    checker = _Checker(surface, root)
    checker.blocks(blocks)
    return checker.errors


def check_view(view: Any) -> tuple[str, list[str]]:
    """(error, messages) Slack answers for this view, or ("", []) when it takes it."""
    if not isinstance(view, dict) or view.get("type") not in ("modal", "home"):
        return "invalid_arguments", ["[ERROR] failed to match all allowed schemas [json-pointer:/view]"]
    if len(json.dumps(view, ensure_ascii=False).encode()) > VIEW_MAX_BYTES:
        return "view_too_large", []
    checker = _Checker(view["type"], "/view")
    checker.blocks(view.get("blocks"))
    if view["type"] == "modal":
        checker.text(view.get("title"), "/title", 24, plain=True)
        for key in ("submit", "close"):
            if key in view:
                checker.text(view[key], f"/{key}", 24, plain=True)
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks") or [])
        if has_input and "submit" not in view:
            checker.error("/blocks", "must define `submit` to use an `input` block in modals")
    if "private_metadata" in view:
        checker.length(view["private_metadata"], "/private_metadata", 3000, least=0)
    if "callback_id" in view:
        checker.length(view["callback_id"], "/callback_id", 255)
    if "external_id" in view:
        checker.length(view["external_id"], "/external_id", 255)
    if checker.errors:
        return "invalid_arguments", ["[ERROR] failed to match all allowed schemas [json-pointer:/view]",
                                     *checker.errors]
    return "", []


def check_view_answer(view: dict[str, Any], answer: dict[str, Any]) -> list[str]:
    """What is wrong with an app's answer to a view_submission (empty, or a `response_action`)."""
    action = answer.get("response_action")
    if not answer:
        return []
    if action == "errors":
        errors = answer.get("errors")
        inputs = {b.get("block_id") for b in view.get("blocks") or [] if b.get("type") == "input"}
        if not isinstance(errors, dict) or not errors:
            return ["errors must be a non-empty object"]
        return [f"errors names {key!r}, which is not an input block of the view" for key in errors
                if key not in inputs]
    if action in ("update", "push"):
        error, messages = check_view(answer.get("view"))
        return [f"{error}: {m}" for m in messages] or ([error] if error else [])
    if action == "clear":
        return []
    return [f"unknown response_action {action!r}"]


# Special mentions and links in mrkdwn: what a message pings and links to.
TOKEN = re.compile(r"<([^<>]*)>")


def tokens(text: str) -> list[str]:
    """Every `<...>` token Slack would render specially in this mrkdwn (mentions, links, dates)."""
    return TOKEN.findall(text or "")


def mrkdwn_texts(payload: dict[str, Any]) -> list[str]:
    """The texts of a message that Slack parses as mrkdwn: the top-level `text` and mrkdwn objects."""
    out = [payload.get("text") or ""] if payload.get("mrkdwn", True) is not False else []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
                out.append(node["text"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(payload.get("blocks") or [])
    return out


# -- rate limits -----------------------------------------------------------------------------------

class Bucket:
    """A token bucket: `capacity` calls at once, refilled at `rate` a second."""

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.at = now

    def take(self, now: float) -> float:
        """0 if a call may go now (and counts it), else the seconds until one may."""
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1 - 1e-9:  # clocks are floats: a refill to exactly 1 may land a hair short
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


# -- trigger ids -----------------------------------------------------------------------------------

_counter = itertools.count(1)
_UNBOUND: dict[str, float] = {}  # trigger ids minted without a fake at hand, on time.monotonic()


def _trigger_id() -> str:
    return f"{int(time.time() * 1000)}.{next(_counter)}.{secrets.token_hex(10)}"


def issue_trigger(api: SlackAPI | None = None) -> str:
    """A trigger id as Slack puts in an interaction; `api` (if given) judges its age on its own clock."""
    if api is not None:
        return api.issue_trigger()
    trigger = _trigger_id()
    _UNBOUND[trigger] = time.monotonic()
    return trigger


# -- the workspace -----------------------------------------------------------------------------------

@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float = 0.0  # on the fake's clock, when the call arrived (benchmarks time what Slack saw)


@dataclass
class Refusal:
    method: str
    error: str
    status: int
    args: dict[str, Any]
    messages: list[str] = field(default_factory=list)


@dataclass
class Expected:
    error: str
    method: str | None
    times: int | None  # None: any number


@dataclass
class Channel:
    id: str
    name: str
    private: bool = False
    archived: bool = False
    bot: bool = True  # the app is a member
    members: set[str] = field(default_factory=set)
    is_im: bool = False


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    thread_ts: str | None
    bot_id: str | None
    user: str | None
    edits: int = 0


class SlackAPI(FakeAPI):
    """Slack's Web API: auth.test, chat.*, views.*, users.info, usergroups.users.list, files.info."""

    def __init__(self, token: str = BOT_TOKEN, team_id: str = TEAM_ID, *,
                 clock: Callable[[], float] = time.monotonic, post_burst: int = POST_BURST,
                 rate_limits: bool = True) -> None:
        super().__init__()
        self.token = token
        self.team_id = team_id
        self.clock = clock
        self.post_burst = post_burst
        self.rate_limits = rate_limits
        self.calls: list[Call] = []
        self.responses: list[dict[str, Any]] = []  # what was posted to response_urls
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, list[str]] = {}
        self.files: dict[str, tuple[str, str, bytes]] = {}
        self.channels: dict[str, Channel] = {}
        self.messages: dict[tuple[str, str], Message] = {}
        self.views: dict[str, dict[str, Any]] = {}
        self.homes: dict[str, str] = {}  # user -> the id of their Home view
        self.last_modal_id = ""  # the modal opened, pushed or updated last
        self.refusals: list[Refusal] = []
        self.rate_limited: list[Refusal] = []  # the 429s, also in `refusals`
        self._expected: list[Expected] = []
        self._triggers: dict[str, float] = {}
        self._used_triggers: set[str] = set()
        self._response_urls: dict[str, list[float]] = {}  # name -> when it was used
        self._response_issued: dict[str, float] = {}
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._ts = itertools.count(1)
        self._views = itertools.count(1)
        self._responses = itertools.count(1)

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/api/{method}", self.api), web.post("/response/{id}", self.response),
                web.get("/files/{id}/{name}", self.download)]

    # -- scripting the workspace ---------------------------------------------------------------------

    def add_user(self, user_id: str, name: str) -> None:
        self.users[user_id] = {"id": user_id, "team_id": self.team_id, "name": name.lower().replace(" ", "."),
                               "real_name": name, "is_bot": False,
                               "profile": {"real_name": name, "display_name": name}}

    def add_channel(self, channel_id: str, name: str | None = None, *, members: Iterable[str] = (),
                    private: bool = False, bot: bool = True, archived: bool = False) -> Channel:
        """A channel, who is in it, and whether the app is (`bot`)."""
        channel = Channel(channel_id, name or channel_id.lower(), private, archived, bot, set(members))
        self.channels[channel_id] = channel
        return channel

    def add_file(self, file_id: str, name: str, mimetype: str, data: bytes) -> dict[str, Any]:
        self.files[file_id] = (name, mimetype, data)
        return self._file(file_id)

    def post_as_user(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> str:
        """A person's message (the app cannot edit it); returns its ts."""
        ts = self._next_ts()
        self.messages[(channel, ts)] = Message(channel, ts, text, [], thread_ts, None, user)
        return ts

    def response_url(self, name: str | None = None) -> str:
        """A fresh response_url (Slack gives one per command or interaction)."""
        name = name or f"r{next(self._responses)}"
        self._response_issued.setdefault(name, self.clock())
        return f"{self.url}/response/{name}"

    def issue_trigger(self) -> str:
        trigger = _trigger_id()
        self._triggers[trigger] = self.clock()
        return trigger

    # -- refusals the test provokes ------------------------------------------------------------------

    def expect(self, error: str, method: str | None = None, times: int | None = 1) -> None:
        """Declare a refusal the test provokes (`times=None`: any number of them)."""
        self._expected.append(Expected(error, method, times))

    def unexpected(self) -> list[Refusal]:
        """The refusals no `expect` covers: each is something Slack would have refused the app."""
        budget = [Expected(e.error, e.method, e.times) for e in self._expected]
        out = []
        for r in self.refusals:
            match = next((e for e in budget if e.error == r.error and e.method in (None, r.method)
                          and (e.times is None or e.times > 0)), None)
            if match is None:
                out.append(r)
            elif match.times is not None:
                match.times -= 1
        return out

    # -- reading what happened -------------------------------------------------------------------------

    def called(self, method: str) -> list[dict[str, Any]]:
        return [c.args for c in self.calls if c.method == method]

    def clear(self) -> None:
        self.calls.clear()
        self.responses.clear()

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The replies in a message's thread, oldest first."""
        return sorted((m for m in self.messages.values() if m.channel == channel and m.thread_ts == ts),
                      key=lambda m: float(m.ts))

    def in_channel(self, channel: str) -> list[Message]:
        """The channel's top-level messages, oldest first."""
        return sorted((m for m in self.messages.values() if m.channel == channel and not m.thread_ts),
                      key=lambda m: float(m.ts))

    def posted_tokens(self) -> list[str]:
        """Every mention, link or date token in what the app posted, published or answered."""
        found = []
        for c in self.calls:
            if c.method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
                found += [t for text in mrkdwn_texts(c.args) for t in tokens(text)]
            elif c.method.startswith("views.") and isinstance(c.args.get("view"), dict):
                found += [t for text in mrkdwn_texts({"blocks": c.args["view"].get("blocks")}) for t in tokens(text)]
        for r in self.responses:
            found += [t for text in mrkdwn_texts(r) for t in tokens(text)]
        return found

    # -- the API ---------------------------------------------------------------------------------------

    def _file(self, file_id: str) -> dict[str, Any]:
        name, mimetype, data = self.files[file_id]
        return {"id": file_id, "name": name, "title": name, "mimetype": mimetype, "size": len(data),
                "url_private": f"{self.url}/files/{file_id}/{name}",
                "url_private_download": f"{self.url}/files/{file_id}/{name}"}

    def _next_ts(self) -> str:
        return f"{1700000000 + next(self._ts)}.000100"

    def _refuse(self, method: str, args: dict[str, Any], error: str, messages: list[str] | None = None,
                status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        refusal = Refusal(method, error, status, args, list(messages or []))
        self.refusals.append(refusal)
        body: dict[str, Any] = {"ok": False, "error": error}
        if messages:
            body["response_metadata"] = {"messages": list(messages)}
        return web.json_response(body, status=status, headers=headers)

    def _limited(self, method: str, args: dict[str, Any]) -> float:
        """0 when the call is within Slack's limits, else the seconds to wait."""
        if not self.rate_limits:
            return 0.0
        now = self.clock()
        if method == "chat.postMessage":
            channel = self._channel(args.get("channel"))
            key = (method, channel.id if channel else str(args.get("channel") or ""))
            rate, capacity = POST_PER_SECOND, float(self.post_burst)
        elif method in TIER_PER_MINUTE:
            key = (method, "")
            rate, capacity = TIER_PER_MINUTE[method] / 60.0, float(TIER_PER_MINUTE[method])
        else:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket(rate, capacity, now)
        return bucket.take(now)

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
                try:
                    args[key] = json.loads(args[key])
                except ValueError:
                    self.calls.append(Call(method, args, self.clock()))
                    return self._refuse(method, args, "invalid_arguments" if key == "view" else "invalid_blocks_format")
        self.calls.append(Call(method, args, self.clock()))
        answer = self.scripted(request)
        if answer is not None:
            return answer
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._refuse(method, args, "invalid_auth")
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            return self._refuse(method, args, "unknown_method")
        wait = self._limited(method, args)
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            response = self._refuse(method, args, "ratelimited", status=429,
                                    headers={"Retry-After": str(retry_after)})
            self.rate_limited.append(self.refusals[-1])
            return response
        result = handler(args)
        if isinstance(result, tuple):  # (error, messages)
            return self._refuse(method, args, result[0], result[1])
        return web.json_response({"ok": True, **result})

    # -- methods: each returns the answer's fields, or (error, messages) -----------------------------

    def m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": "https://socialdesk.slack.com/", "team": "SocialDesk", "user": "socialdesk",
                "team_id": self.team_id, "user_id": BOT_USER_ID, "bot_id": BOT_ID, "is_enterprise_install": False}

    def _channel(self, ref: Any) -> Channel | None:
        """The channel an id, a `#name` or a user id (their DM with the app) names."""
        ref = str(ref or "")
        if ref.startswith("#"):
            return next((c for c in self.channels.values() if c.name == ref[1:]), None)
        if ref in self.channels:
            return self.channels[ref]
        user = ref if ref.startswith(("U", "W")) else ("U" + ref[1:] if ref.startswith("D") else "")
        if user and user in self.users:  # the app's DM with a person
            dm = "D" + user[1:]
            return self.channels.setdefault(dm, Channel(dm, dm.lower(), True, False, True, {user}, True))
        return None

    def _postable(self, args: dict[str, Any]) -> Channel | tuple[str, list[str]]:
        channel = self._channel(args.get("channel"))
        if channel is None or (channel.private and not channel.bot):
            return "channel_not_found", []
        if channel.archived:
            return "is_archived", []
        if not channel.bot:
            return "not_in_channel", []
        return channel

    @staticmethod
    def _message_content(args: dict[str, Any]) -> tuple[str, list[str]] | None:
        text, blocks = args.get("text"), args.get("blocks")
        if blocks is not None:
            errors = check_blocks(blocks, "message")
            if errors:
                return "invalid_blocks", errors
        if not text:  # the notification fallback is required, blocks or not (reference/slack.md)
            return "no_text", []
        if len(text) > MSG_TEXT_MAX:
            return "msg_too_long", []
        return None

    def m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any] | tuple[str, list[str]]:
        channel = self._postable(args)
        if isinstance(channel, tuple):
            return channel
        refused = self._message_content(args)
        if refused:
            return refused
        ts = self._next_ts()
        thread_ts = args.get("thread_ts") or None
        self.messages[(channel.id, ts)] = Message(channel.id, ts, args["text"], list(args.get("blocks") or []),
                                                  thread_ts, BOT_ID, None)
        return {"channel": channel.id, "ts": ts,
                "message": {"text": args["text"], "ts": ts, "bot_id": BOT_ID, "thread_ts": thread_ts}}

    def m_chat_update(self, args: dict[str, Any]) -> dict[str, Any] | tuple[str, list[str]]:
        channel = self._channel(args.get("channel"))
        if channel is None or (channel.private and not channel.bot):
            return "channel_not_found", []
        message = self.messages.get((channel.id, str(args.get("ts") or "")))
        if message is None:
            return "message_not_found", []
        if message.bot_id != BOT_ID:
            return "cant_update_message", []
        refused = self._message_content(args)
        if refused:
            return refused
        message.text, message.blocks, message.edits = args["text"], list(args.get("blocks") or []), message.edits + 1
        return {"channel": channel.id, "ts": message.ts, "text": message.text}

    def m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any] | tuple[str, list[str]]:
        channel = self._postable(args)
        if isinstance(channel, tuple):
            return channel
        if str(args.get("user") or "") not in channel.members:
            return "user_not_in_channel", []
        refused = self._message_content(args)
        if refused:
            return refused
        return {"message_ts": f"{1700000000 + next(self._ts)}.000200"}

    def _trigger(self, args: dict[str, Any]) -> tuple[str, list[str]] | None:
        trigger = str(args.get("trigger_id") or "")
        if trigger in self._triggers:
            age = self.clock() - self._triggers[trigger]
        elif trigger in _UNBOUND:
            age = time.monotonic() - _UNBOUND[trigger]
        else:
            return "invalid_trigger_id", []
        if trigger in self._used_triggers:
            return "exchanged_trigger_id", []
        if age > TRIGGER_TTL:
            return "expired_trigger_id", []
        self._used_triggers.add(trigger)
        return None

    def _store_view(self, view: dict[str, Any], view_id: str | None = None) -> dict[str, Any]:
        view_id = view_id or f"V{next(self._views):08d}"
        stored = {**view, "id": view_id, "team_id": self.team_id, "app_id": "A0SOCIAL", "bot_id": BOT_ID,
                  "hash": f"{int(self.clock() * 1000)}.{secrets.token_hex(4)}",
                  "state": {"values": {}}, "private_metadata": view.get("private_metadata", ""),
                  "callback_id": view.get("callback_id", "")}
        self.views[view_id] = stored
        if stored.get("type") == "modal":
            self.last_modal_id = view_id
        return stored

    def _open(self, args: dict[str, Any]) -> dict[str, Any] | tuple[str, list[str]]:
        view = args.get("view")
        if isinstance(view, dict) and view.get("type") != "modal":
            return "invalid_arguments", ["[ERROR] failed to match all allowed schemas [json-pointer:/view/type]"]
        error, messages = check_view(view)
        if error:
            return error, messages
        refused = self._trigger(args)
        if refused:
            return refused
        assert isinstance(view, dict)  # check_view refused anything else
        return {"view": self._store_view(view)}

    m_views_open = m_views_push = _open

    def m_views_update(self, args: dict[str, Any]) -> dict[str, Any] | tuple[str, list[str]]:
        view_id = args.get("view_id")
        if not view_id and args.get("external_id"):
            view_id = next((v["id"] for v in self.views.values() if v.get("external_id") == args["external_id"]),
                           None)
        current = self.views.get(str(view_id or ""))
        if current is None:
            return "not_found", []
        if args.get("hash") and args["hash"] != current["hash"]:
            return "hash_conflict", []
        error, messages = check_view(args.get("view"))
        if error:
            return error, messages
        return {"view": self._store_view(args["view"], current["id"])}

    def m_views_publish(self, args: dict[str, Any]) -> dict[str, Any] | tuple[str, list[str]]:
        user = str(args.get("user_id") or "")
        if user not in self.users:
            return "user_not_found", []
        view = args.get("view")
        if isinstance(view, dict) and view.get("type") != "home":
            return "invalid_arguments", ["[ERROR] failed to match all allowed schemas [json-pointer:/view/type]"]
        error, messages = check_view(view)
        if error:
            return error, messages
        current = self.views.get(self.homes.get(user, ""))
        if args.get("hash") and current is not None and args["hash"] != current["hash"]:
            return "hash_conflict", []
        assert isinstance(view, dict)  # check_view refused anything else
        stored = self._store_view(view, current["id"] if current else None)
        self.homes[user] = stored["id"]
        return {"view": stored}

    def m_users_info(self, args: dict[str, Any]) -> dict[str, Any] | tuple[str, list[str]]:
        user = self.users.get(str(args.get("user") or ""))
        return {"user": user} if user else ("user_not_found", [])

    def m_usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any] | tuple[str, list[str]]:
        group = str(args.get("usergroup") or "")
        return {"users": self.groups[group]} if group in self.groups else ("no_such_subteam", [])

    def m_files_info(self, args: dict[str, Any]) -> dict[str, Any] | tuple[str, list[str]]:
        fid = str(args.get("file") or "")
        return {"file": self._file(fid)} if fid in self.files else ("file_not_found", [])

    # -- response_url, file downloads ----------------------------------------------------------------

    async def response(self, request: web.Request) -> web.Response:
        rec = await self.record(request)
        name = request.match_info["id"]
        try:
            payload = rec.json
        except ValueError:
            payload = {}
        method = "response_url"
        now = self.clock()
        issued = self._response_issued.get(name, now)
        uses = self._response_urls.setdefault(name, [])
        if len(uses) >= RESPONSE_URL_USES or now - issued > RESPONSE_URL_TTL:
            self.refusals.append(Refusal(method, "expired_url", 404, payload))
            return web.Response(status=404, text="expired_url")
        uses.append(now)
        refused = self._message_content(payload) if isinstance(payload, dict) else ("invalid_payload", [])
        if refused:
            self.refusals.append(Refusal(method, refused[0], 400, payload, refused[1]))
            return web.Response(status=400, text=refused[0])
        self.responses.append({"id": name, **payload})
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


def retry_headers(number: int, reason: str = "http_timeout") -> dict[str, str]:
    """What Slack adds when it delivers an event again (Events API retries)."""
    return {"X-Slack-Retry-Num": str(number), "X-Slack-Retry-Reason": reason}


def command_body(command: str, text: str, user_id: str, *, response_url: str, team_id: str = TEAM_ID,
                 channel_id: str = "C0GENERAL", api: SlackAPI | None = None) -> tuple[str, str]:
    form = {"token": "legacy", "team_id": team_id, "team_domain": "socialdesk", "channel_id": channel_id,
            "channel_name": "general", "user_id": user_id, "user_name": user_id.lower(), "command": command,
            "text": text, "api_app_id": "A0SOCIAL", "is_enterprise_install": "false",
            "response_url": response_url, "trigger_id": issue_trigger(api)}
    return urllib.parse.urlencode(form), "application/x-www-form-urlencoded"


def interaction_body(payload: dict[str, Any]) -> tuple[str, str]:
    return urllib.parse.urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded"


def block_actions(user_id: str, action: dict[str, Any], *, team_id: str = TEAM_ID, view: dict[str, Any] | None = None,
                  channel: str | None = None, message_ts: str | None = None, api: SlackAPI | None = None,
                  response_url: str | None = None) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "type": "block_actions", "team": {"id": team_id, "domain": "socialdesk"},
        "user": {"id": user_id, "team_id": team_id}, "api_app_id": "A0SOCIAL", "token": "legacy",
        "trigger_id": issue_trigger(api), "actions": [{"block_id": "b", "action_ts": str(time.time()), **action}]}
    if view is not None:
        payload["view"] = view
        payload["container"] = {"type": "view", "view_id": view.get("id")}
    elif channel:
        payload["channel"] = {"id": channel}
        payload["container"] = {"type": "message", "channel_id": channel, "message_ts": message_ts}
        payload["message"] = {"ts": message_ts}
        if response_url:
            payload["response_url"] = response_url
    else:
        payload["container"] = {"type": "view", "view_id": "VHOME"}
        payload["view"] = {"id": "VHOME", "type": "home", "callback_id": "home", "private_metadata": ""}
    return payload


def view_submission(user_id: str, view: dict[str, Any], values: dict[str, dict[str, Any]], *,
                    team_id: str = TEAM_ID, api: SlackAPI | None = None) -> dict[str, Any]:
    return {"type": "view_submission", "team": {"id": team_id, "domain": "socialdesk"},
            "user": {"id": user_id, "team_id": team_id}, "api_app_id": "A0SOCIAL", "token": "legacy",
            "trigger_id": issue_trigger(api), "view": {**view, "state": {"values": values}}}


def event_body(event: dict[str, Any], *, team_id: str = TEAM_ID, event_id: str | None = None) -> tuple[str, str]:
    return json.dumps({"token": "legacy", "team_id": team_id, "api_app_id": "A0SOCIAL", "type": "event_callback",
                       "event_id": event_id or f"Ev{time.time_ns()}", "event_time": int(time.time()),
                       "authorizations": [{"team_id": team_id, "user_id": BOT_USER_ID, "is_bot": True}],
                       "event": event}), "application/json"
