"""Shared fixtures: a real DuckDB store in a temp dir, a Desk over it, and message builders."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

import connectors.registry  # noqa: F401  (registers the channels the warehouse reads, as the service does)
from warehouse import clock, open_store, register_accounts
from warehouse.desk import Desk
from warehouse.ingest import Delivery, IngestResult
from warehouse.model import InboundMessage
from warehouse.store import Store

_ids = itertools.count(1)
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Any) -> Iterator[Store]:
    s = open_store(tmp_path / "desk.duckdb")
    register_accounts(s, [
        {"channel": "whatsapp", "account": "PN1", "name": "Paris support",
         "info": {"channel": "whatsapp", "account_name": "Paris support", "phone_number_id": "PN1",
                  "display_phone_number": "+33 1 23 45 67 89"}},
        {"channel": "whatsapp", "account": "PN2", "name": "Lyon support",
         "info": {"channel": "whatsapp", "account_name": "Lyon support", "phone_number_id": "PN2",
                  "display_phone_number": "+33 4 00 00 00 00"}},
    ])
    yield s
    s.close()


@pytest.fixture
def desk(store: Store) -> Desk:
    return Desk(store)


@pytest.fixture
def frozen_clock() -> Iterator[list[datetime]]:
    """The store's clock, movable: `frozen_clock[0] += timedelta(hours=25)`."""
    now = [datetime(2026, 11, 24, 10, 0)]
    clock.set_clock(lambda: now[0])
    yield now
    clock.set_clock(None)


@pytest.fixture
def frozen(frozen_clock: list[datetime]) -> list[datetime]:
    """`frozen_clock`, as the Slack tests call it (their NOW is its start)."""
    return frozen_clock


def msg(channel: str = "whatsapp", account: str = "PN1", user: str = "33612345678", text: str = "Hello",
        *, at: datetime | None = None, message_id: str | None = None, **profile: Any) -> InboundMessage:
    profile = profile or {"name": "Amélie Dupont", "phone": "+" + user if user.isdigit() else None}
    return InboundMessage(channel, account, user, message_id or f"m{next(_ids)}", at or T0, text, (),
                          {k: v for k, v in profile.items() if v is not None})


def ingest(store: Store, *messages: InboundMessage) -> IngestResult:
    return Desk(store).ingest_sync(Delivery(list(messages)))


def later(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session for calls to the fakes (each channel's sends and media downloads)."""
    async with aiohttp.ClientSession() as s:
        yield s
