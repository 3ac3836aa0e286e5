"""The conformance corpus: real webhook bodies from the platforms' docs, their SDKs' test suites and
other open-source desks (`../shared/conformance/`, with its SOURCES.md), read in place and posted
through the real webhook routes of a running service, signed (and for WeChat's safe mode encrypted)
as the platform does.

The corpus channels are the registry's channels with a folder under `payloads/`; nothing here knows one
from another. Many sources reuse ids, so each file gets a business account of its own: only the routing
id (WhatsApp `phone_number_id`, Messenger `entry[].id`, LINE `destination`, WeChat `ToUserName`, X
`for_user_id` or the X Activity API's `filter.user_id`) is replaced, wherever it occurs as a whole
string, so the business's own echoes stay echoes. Each channel's simulation (`socialdesk/fakes/`) knows
where its platform writes that id (`routing_ids`), how to replace it (`readdress`), what one looks like
(`fresh_routing_id`) and which configuration key holds it (`id_key`, `with_routing_id`), and on which
account configurations a file is posted (`variants`): WeChat's files twice over, on a plain-mode account
and, encrypted, on a safe-mode one. Whether the webhook URL names the account is the channel's
description's `route`.

`tests/test_conformance_<channel>.py` say what a faithful desk does with each file, e.g.:

    CHANNEL = ...  # the channel's name in the registry
    world = corpus_fixture(CHANNEL)

    @in_corpus
    @pytest.mark.parametrize("case", cases(CHANNEL), ids=lambda c: c.name)
    async def test_every_file_is_answered_200_twice_and_stored_once(world: Corpus, case: Case) -> None:
        first, second = await world.post_twice(case)
        assert (first.status, second.status) == (200, 200), first.text
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from connectors import registry as connector_registry
from socialdesk.config import Config
from socialdesk.fakes.recorder import AS_CONFIGURED, AccountVariant
from socialdesk.sandbox import SIMULATIONS, Sandbox
from socialdesk.service import DESK, STORE, build_app
from warehouse import queries

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
# The channels the corpus has files for, in the registry's order.
CHANNELS = tuple(name for name in connector_registry.names()
                 if CORPUS is not None and (CORPUS / "payloads" / name).is_dir())
needs_corpus = pytest.mark.skipif(CORPUS is None, reason="the conformance corpus (../shared/conformance) is not "
                                                        "here; set SOCIALDESK_CONFORMANCE to its folder")


@dataclass(frozen=True)
class Case:
    channel: str
    path: Path
    variant: AccountVariant = AS_CONFIGURED  # the configuration of the account it is posted to

    @property
    def name(self) -> str:
        return self.path.stem + (f"_{self.variant.name}" if self.variant.name else "")

    def body(self) -> bytes:
        return self.path.read_bytes()

    def json(self) -> Any:
        return json.loads(self.body())


def cases(channel: str) -> list[Case]:
    """Every file of the channel, in name order, once for each account configuration its simulation posts
    it on (`Simulation.variants`: WeChat's official safe-mode sample once, as it is, its other files twice)."""
    if CORPUS is None:
        return []
    simulation = SIMULATIONS[channel]
    return [Case(channel, path, variant)
            for path in sorted((CORPUS / "payloads" / channel).iterdir()) if path.suffix in (".json", ".xml")
            for variant in simulation.variants(path.read_bytes())]


def case_ids(channel: str) -> list[str]:
    return [c.name for c in cases(channel)]


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
        self.simulation = SIMULATIONS[channel]
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
        headers, query, signed = self.connector.simulate(account, self.simulation.readdress(case.body(), account))
        path = f"/webhooks/{self.channel}"
        if connector_registry.description(self.channel).route == "account":
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
    """An account table per case, each a copy of the sandbox's first for the channel under a routing id of
    its own and in the case's configuration; and case name -> routing id."""
    simulation = SIMULATIONS[channel]
    template = sandbox.channels[channel][0]
    tables, accounts = [], {}
    for index, case in enumerate(all_cases, start=1):
        routing_id = simulation.fresh_routing_id(index)
        table = simulation.with_routing_id({**copy.deepcopy(template), "name": f"corpus-{index}"}, routing_id)
        tables.append(case.variant.table(table))
        accounts[case.name] = routing_id
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
    """A module-scoped fixture: `world = corpus_fixture(<channel name>)`; its tests carry `in_corpus`."""

    @pytest_asyncio.fixture(scope="module", loop_scope="module")
    async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Corpus]:
        async for running in corpus(channel, tmp_path_factory.mktemp(f"corpus-{channel}")):
            yield running

    return world


# Every test of a conformance module runs on the module's event loop, where its one service lives.
in_corpus = pytest.mark.asyncio(loop_scope="module")
