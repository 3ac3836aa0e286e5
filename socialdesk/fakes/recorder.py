"""The base of every fake platform API: an aiohttp server on loopback that records each request
and can be scripted to answer the next requests with the platform's own errors; and the base of the
simulations, how the sandbox drives a channel through its fake and where the platform's webhook bodies
name the business account, so the conformance corpus (tests/conformance.py) can readdress recorded ones
(each channel's description names its simulation, so a new channel brings its own).
"""

from __future__ import annotations

import asyncio
import json
import re
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from aiohttp import web


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    form: dict[str, Any] = field(default_factory=dict)  # multipart / urlencoded fields (files as bytes)
    raw_path: str = ""  # as sent, percent-escapes kept

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Scripted:
    status: int
    body: Any
    headers: dict[str, str]
    path_contains: str


class FakeAPI(ABC):
    """Subclasses add routes in `routes()`; handlers call `await self.record(request)` first and
    return `self.scripted(request)` if it is not None."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self._script: deque[Scripted] = deque()
        self._hangs: deque[tuple[float, str]] = deque()
        self._runner: web.AppRunner | None = None
        self.url = ""
        # (business account, end user) -> when the end user last wrote. A platform knows this from the
        # messages it delivered; the fake learns it from whoever builds those webhooks (the sandbox),
        # so it can refuse replies outside the messaging window as the platform does.
        self.customers: dict[tuple[str, str], datetime] = {}

    def customer_wrote(self, account: str, user: str, at: datetime) -> None:
        key = (account, user)
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        if key not in self.customers or self.customers[key] < at:
            self.customers[key] = at

    @abstractmethod
    def routes(self) -> list[web.RouteDef]:
        """The platform's routes this fake serves."""

    def fail_next(self, count: int, status: int, body: Any = None, headers: dict[str, str] | None = None,
                  path_contains: str = "") -> None:
        """Answer the next `count` requests (whose path contains `path_contains`) with this."""
        for _ in range(count):
            self._script.append(Scripted(status, body, headers or {}, path_contains))

    def hang_next(self, count: int, seconds: float, path_contains: str = "") -> None:
        """Keep the next `count` matching requests waiting `seconds` before they are answered."""
        for _ in range(count):
            self._hangs.append((seconds, path_contains))

    async def record(self, request: web.Request) -> Recorded:
        form: dict[str, Any] = {}
        body = b""
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith(("multipart/", "application/x-www-form-urlencoded")):
            for key, value in (await request.post()).items():
                form[key] = value.file.read() if isinstance(value, web.FileField) else value
        else:
            body = await request.read()
        rec = Recorded(request.method, request.path, dict(request.query), dict(request.headers), body, form,
                       request.raw_path.split("?", 1)[0])
        self.requests.append(rec)
        for i, (seconds, path_contains) in enumerate(self._hangs):
            if path_contains in request.path:
                del self._hangs[i]
                await asyncio.sleep(seconds)
                break
        return rec

    def scripted(self, request: web.Request) -> web.Response | None:
        for i, item in enumerate(self._script):
            if item.path_contains in request.path:
                del self._script[i]
                if isinstance(item.body, (dict, list)):
                    return web.json_response(item.body, status=item.status, headers=item.headers)
                return web.Response(status=item.status, text=item.body or "", headers=item.headers)
        return None

    def sent(self, path_contains: str = "") -> list[Recorded]:
        return [r for r in self.requests if path_contains in r.path and r.method == "POST"]

    async def start(self, port: int = 0) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        sock = site._server.sockets[0]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self.url

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()


@dataclass(frozen=True, slots=True)
class DemoConversation:
    """A customer's message in the demo (`socialdesk demo`), and the agent's answer if the demo gives one."""

    account: int  # which of the simulation's accounts it goes to
    user: str
    name: str
    minutes_ago: int
    text: str
    claim: bool = False  # the agent claims the ticket before answering any
    reply: str | None = None  # the agent answers the ticket with this (once per ticket: on its last message)
    status: str | None = None  # and submits it as
    # The same key on two channels' conversations: one person, whose second account the demo merges (R5).
    person: str = ""


@dataclass(frozen=True, slots=True)
class SentReply:
    """A message the fake platform took from us: from which business account, to whom, saying what."""

    account: str
    recipient: str
    text: str


@dataclass(frozen=True, slots=True)
class AccountVariant:
    """One way to configure a business account that a recorded webhook body is posted on. Most platforms
    have one; WeChat has two (plain and safe mode), and a body is worth checking on each, each posted to an
    account of its own."""

    name: str = ""  # added to the case's name (`<file>_<name>`) where a file is posted on several
    without: tuple[str, ...] = ()  # configuration keys left out of the account's table

    def table(self, table: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in table.items() if key not in self.without}


AS_CONFIGURED = AccountVariant()  # the account as the simulation's `accounts()` configures it


class Simulation(ABC):
    """How the sandbox, the demo and the shared tests drive one channel through its fake.

    `api` is the fake's class: one instance serves every simulation that names it (WhatsApp and Messenger
    share Meta's Graph API). Everything a simulation builds is what the platform would send or has taken.
    """

    channel: ClassVar[str]
    api: ClassVar[type[FakeAPI]]
    account_ids: ClassVar[tuple[str, ...]]  # the demo's business accounts, in order
    customer: ClassVar[str]  # a customer's platform id, for the shared tests
    demo: ClassVar[tuple[DemoConversation, ...]] = ()
    templates: ClassVar[tuple[dict[str, Any], ...]] = ()  # approved message templates, where the channel has them
    # The platform signs the body: one changed after signing is refused. False where the platform proves
    # itself with a shared secret in a header instead, which a forger without the secret lacks just the same.
    signs_body: ClassVar[bool] = True
    # The key of an account's configuration table that holds its routing id: the id the platform knows
    # the business account by, and writes into the webhook bodies of the channels routed by payload.
    id_key: ClassVar[str]

    @abstractmethod
    def accounts(self, api: Any, secret: Callable[[], str]) -> list[dict[str, Any]]:
        """The configuration tables of `account_ids`, pointing at `api`, which learns their credentials."""

    @abstractmethod
    def message(self, account: str, user: str, text: str, message_id: str, sent_at: datetime,
                name: str) -> bytes:
        """A text message from `user` to `account`, as the platform's webhook body."""

    def receipt(self, account: str, user: str, platform_message_id: str, status: str) -> bytes | None:
        """The webhook body saying our message was `status` (delivered, read); None where the platform sends
        no receipts."""
        return None

    @abstractmethod
    def replies(self, api: Any) -> list[SentReply]:
        """Every message the fake took from us, in order."""

    # Recorded bodies (the conformance corpus) reuse the same few ids: to give each its own business
    # account, the platform's routing id is found in it and replaced.

    @abstractmethod
    def routing_ids(self, body: bytes) -> set[str]:
        """The business account ids the platform routes this webhook body by, wherever it writes them in the
        body; none where the body does not name the account (its webhook URL does)."""

    @abstractmethod
    def fresh_routing_id(self, index: int) -> str:
        """A routing id of the platform's shape, a different one for every `index`."""

    def readdress(self, body: bytes, routing_id: str) -> bytes:
        """`body` addressed to `routing_id`: each of its `routing_ids` replaced wherever it occurs as a whole
        JSON string or number, and nowhere else, so the business's own echoes stay echoes. Platforms that do
        not post JSON override this."""
        for old in self.routing_ids(body):
            body = body.replace(json.dumps(old).encode(), json.dumps(routing_id).encode())
            # Ids also come written as JSON numbers (Messenger's entry id in some SDK fixtures).
            body = re.sub(rb"(?<=[:\[,\s])" + re.escape(old.encode()) + rb"(?=[,\]\}\s])", routing_id.encode(), body)
        return body

    def with_routing_id(self, table: dict[str, Any], routing_id: str) -> dict[str, Any]:
        """A copy of one of `accounts()`'s tables made into another business account, known by `routing_id`
        (its name must change too: names are unique)."""
        return {**table, self.id_key: routing_id}

    def variants(self, body: bytes) -> tuple[AccountVariant, ...]:
        """The account configurations a recorded webhook body is posted on, each to an account of its own."""
        return (AS_CONFIGURED,)
