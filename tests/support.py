"""Helpers of the tests that run the whole service: polling for what happens after an answer, reading the store."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from socialdesk.service import STORE


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """`check()`'s first true answer, polled every 50 ms; fails after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return result


def sql(client: Any, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of the running service's store (`client` is the aiohttp test client of `build_app`)."""
    return client.app[STORE].read(lambda c: c.execute(query, list(params)).fetchall())
