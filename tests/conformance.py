"""The conformance corpus: real webhook bodies from the platforms' docs, their SDKs' test suites and
other open-source desks (`../shared/conformance/`, with its SOURCES.md), read in place and posted
through the real webhook routes of a running service, signed (and for WeChat's safe mode encrypted)
as the platform does.

Many sources reuse ids, so each file gets a business account of its own: only the routing id
(WhatsApp `phone_number_id`, Messenger `entry[].id`, LINE `destination`, WeChat `ToUserName`, X
`for_user_id` or the X Activity API's `filter.user_id`) is replaced, wherever it occurs as a whole
string, so the business's own echoes stay echoes. WeChat's files are posted twice over, on a
plain-mode account and, encrypted, on a safe-mode one.

`tests/test_conformance_<channel>.py` say what a faithful desk does with each file, e.g.:

    world = corpus_fixture("line")

    @in_corpus
    @pytest.mark.parametrize("case", cases("line"), ids=lambda c: c.name)
    async def test_every_file_is_answered_200_twice_and_stored_once(world: Corpus, case: Case) -> None:
        first, second = await world.post_twice(case)
        assert (first.status, second.status) == (200, 200), first.text
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from connectors import registry as connector_registry
from socialdesk.config import Config
from socialdesk.sandbox import Sandbox
from socialdesk.service import DESK, STORE, build_app
from warehouse import queries

CHANNELS = ("whatsapp", "messenger", "line", "wechat", "x")
# The tables a webhook can change (`inbox` keeps a raw body once, when it brought something).
TABLES = ("tickets", "comments", "events", "users", "identities", "outbox", "inbound_keys", "inbox")


def _corpus() -> Path | None:
    here = Path(__file__).resolve().parents[1]
    for candidate in (os.environ.get("SOCIALDESK_CONFORMANCE"), here.parent / "shared" / "conformance",
                      Path("/work/shared/conformance")):
        if candidate and (Path(candidate) / "payloads").is_dir():
            return Path(candidate)
    return None


CORPUS = _corpus()
needs_corpus = pytest.mark.skipif(CORPUS is None, reason="the conformance corpus (../shared/conformance) is not "
                                                        "here; set SOCIALDESK_CONFORMANCE to its folder")


@dataclass(frozen=True)
class Case:
    channel: str
    path: Path
    safe: bool = False  # WeChat: posted encrypted to a safe-mode account

    @property
    def name(self) -> str:
        return self.path.stem + ("_safe" if self.safe else "")

    def body(self) -> bytes:
        return self.path.read_bytes()

    def json(self) -> Any:
        return json.loads(self.body())


def cases(channel: str) -> list[Case]:
    """Every file of the channel, in name order (WeChat's official safe-mode sample once, as it is)."""
    if CORPUS is None:
        return []
    found = []
    for path in sorted((CORPUS / "payloads" / channel).iterdir()):
        if path.suffix not in (".json", ".xml"):
            continue
        found.append(Case(channel, path))
        if channel == "wechat" and not path.stem.startswith("wc_official"):
            found.append(Case(channel, path, safe=True))
    return found


def case_ids(channel: str) -> list[str]:
    return [c.name for c in cases(channel)]


# -- one business account per file ----------------------------------------------------------------------

ID_KEY = {"whatsapp": "phone_number_id", "messenger": "page_id", "line": "bot_user_id", "wechat": "original_id",
          "x": "user_id"}


def routing_ids(channel: str, body: bytes) -> set[str]:
    """The business account ids the platform routes this body by."""
    if channel == "wechat":
        return {m.decode() for m in re.findall(rb"<ToUserName><!\[CDATA\[(.*?)\]\]></ToUserName>", body)}
    data = json.loads(body)
    if channel == "whatsapp":
        return {str(ch.get("value", {}).get("metadata", {}).get("phone_number_id"))
                for e in data.get("entry") or [] for ch in e.get("changes") or []
                if ch.get("value", {}).get("metadata", {}).get("phone_number_id")}
    if channel == "messenger":
        return {str(e["id"]) for e in data.get("entry") or [] if e.get("id")}
    if channel == "line":
        return {str(data["destination"])} if data.get("destination") else set()
    if channel == "x":
        found = {str(data["for_user_id"])} if data.get("for_user_id") else set()
        user = ((data.get("data") or {}).get("filter") or {}).get("user_id")
        return found | ({str(user)} if user else set())
    raise ValueError(channel)


def account_id(channel: str, index: int) -> str:
    """A routing id of the platform's shape, unique to one case."""
    return {"whatsapp": f"9{index:014d}", "messenger": f"8{index:014d}", "line": f"U{index:032x}",
            "wechat": f"gh_{index:012x}", "x": f"7{index:017d}"}[channel]


def readdress(channel: str, body: bytes, old: set[str], new: str) -> bytes:
    """`body` with every whole-string occurrence of the old routing ids replaced by `new`."""
    for value in old:
        if channel == "wechat":
            body = body.replace(f"<![CDATA[{value}]]>".encode(), f"<![CDATA[{new}]]>".encode())
        else:
            body = body.replace(json.dumps(value).encode(), json.dumps(new).encode())
            # Ids written as JSON numbers (Messenger's entry id in some SDK fixtures).
            body = re.sub(rb"(?<=[:\[,\s])" + re.escape(value.encode()) + rb"(?=[,\]\}\s])", new.encode(), body)
    return body


@dataclass
class Posted:
    case: Case
    account: str  # the business account id it was addressed to
    status: int
    text: str


class Corpus:
    """A running service with one account per case of a channel, and the fakes of every platform."""

    def __init__(self, sandbox: Sandbox, client: TestClient, channel: str, tables: list[dict[str, Any]],
                 accounts: dict[str, str]) -> None:
        self.sandbox = sandbox
        self.client = client
        self.channel = channel
        self.accounts = accounts  # case name -> account id
        self.connector = connector_registry.build({channel: tables})[channel]

    @property
    def desk(self) -> Any:
        return self.client.app[DESK]

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.client.app[STORE].read(lambda c: c.execute(query, list(params)).fetchall())

    def snapshot(self) -> dict[str, list[str]]:
        return {t: sorted(map(repr, self.sql(f"SELECT * FROM {t}"))) for t in TABLES}

    async def post(self, case: Case) -> Posted:
        account = self.accounts[case.name]
        body = readdress(self.channel, case.body(), routing_ids(self.channel, case.body()), account)
        headers, query, signed = self.connector.simulate(account, body)  # type: ignore[attr-defined]
        path = f"/webhooks/{self.channel}"
        if self.channel in ("line", "wechat"):
            path += "/" + self.connector.account_info(account)["account_name"]
        resp = await self.client.post(path, data=signed, headers=headers, params=query)
        return Posted(case, account, resp.status, await resp.text())

    async def post_twice(self, case: Case) -> tuple[Posted, Posted]:
        """Post the case, then the same body again: the second must change nothing."""
        first = await self.post(case)
        before = self.snapshot()
        second = await self.post(case)
        assert self.snapshot() == before, f"{case.name}: the same body twice changed the store"
        return first, second

    # -- what a case left in the store, by its account ---------------------------------------------------

    def tickets(self, case: Case) -> list[dict[str, Any]]:
        """The case's tickets with their comments and events, as agents see them."""
        return [self.client.app[STORE].read(lambda c, t=t: queries.ticket(c, t))
                for (t,) in self.sql("SELECT id FROM tickets WHERE account = ? ORDER BY id", self.accounts[case.name])]

    def comments(self, case: Case) -> list[dict[str, Any]]:
        return [c for t in self.tickets(case) for c in t["comments"]]


def _tables(sandbox: Sandbox, channel: str, all_cases: list[Case]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    template = sandbox.channels[channel][0]
    tables, accounts = [], {}
    for index, case in enumerate(all_cases, start=1):
        table = copy.deepcopy(template)
        table["name"] = f"corpus-{index}"
        table[ID_KEY[channel]] = account_id(channel, index)
        if channel == "wechat" and not case.safe:
            table.pop("encoding_aes_key", None)
        tables.append(table)
        accounts[case.name] = table[ID_KEY[channel]]
    return tables, accounts


async def corpus(channel: str, tmp_path: Path) -> AsyncIterator[Corpus]:
    """One service for all of a channel's cases (each on its own account): the body of a module-scoped
    fixture, e.g. `@pytest_asyncio.fixture(scope="module", loop_scope="module")`."""
    sandbox = await Sandbox().start()
    tables, accounts = _tables(sandbox, channel, cases(channel))
    cfg = sandbox.configure(Config())
    cfg.channels = {**cfg.channels, channel: tables}
    cfg.store.path = str(tmp_path / f"corpus-{channel}.duckdb")
    cfg.server.media_secret = "corpus-media-secret"
    client = TestClient(TestServer(build_app(cfg)))
    await client.start_server()
    try:
        yield Corpus(sandbox, client, channel, tables, accounts)
    finally:
        await client.close()
        await sandbox.stop()


def corpus_fixture(channel: str) -> Any:
    """A module-scoped fixture: `world = corpus_fixture("line")`; its tests carry `in_corpus`."""

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Corpus]:
        async for running in corpus(channel, tmp_path_factory.mktemp(f"corpus-{channel}")):
            yield running

    return world


# Every test of a conformance module runs on the module's event loop, where its one service lives.
in_corpus = pytest.mark.asyncio(loop_scope="module")
