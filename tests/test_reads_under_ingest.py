"""Issue 16: agents stay fast while the channels are busy. A read that must see what was acknowledged
(an agent's request) waits for the log without holding a thread, so the reads that need not wait (the
notifier following its events, App Home) never queue behind it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.conftest import msg
from warehouse.desk import Desk
from warehouse.ingest import Delivery
from warehouse.store import Store

# More than the threads asyncio lends to blocking calls (at most 32), so that reads waiting in threads
# would take every one of them.
WAITING_READS = 40


def tickets(con: Any) -> int:
    return int(con.execute("SELECT count(*) FROM tickets").fetchone()[0])


async def test_a_read_that_follows_the_events_does_not_queue_behind_reads_waiting_for_the_log(store: Store) -> None:
    desk = Desk(store)
    gate = threading.Event()
    held = store.submit(lambda con: gate.wait(30))  # the writer is busy: what is acknowledged is not yet tickets
    try:
        for i in range(3):
            await desk.receive(Delivery([msg(user=f"u{i}", message_id=f"m{i}")], "whatsapp", b"{}"))
        finished: list[str] = []

        async def read(name: str, fresh: bool) -> int:
            count = await store.aread(tickets, fresh=fresh)
            finished.append(name)
            return count

        waiting = [asyncio.create_task(read("agent", fresh=True)) for _ in range(WAITING_READS)]
        await asyncio.sleep(0.2)  # they have started waiting
        assert await asyncio.wait_for(read("notifier", fresh=False), 20) == 0  # the store as it is now
        assert finished == ["notifier"]  # no agent's read went first: none was served stale
    finally:
        gate.set()
        held.result(30)
    # Each agent's read saw the three acknowledged messages as tickets.
    assert await asyncio.gather(*waiting) == [3] * WAITING_READS
