"""The outbox sender: delivers queued replies through the channels' send APIs (R2, R20, B4).

One loop looks for due replies and starts a send for each that is not already on its way, so a
reply is never in flight twice and a slow or hanging channel API holds up only its own replies.
Each send records its outcome as soon as it has one. Transient failures back off exponentially
with jitter (honouring Retry-After) from the same row; permanent ones stop with a plain reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import aiohttp

from connectors.base import Connector, DeliveryResult, OutboundFile, OutboundReply, Template
from warehouse import clock
from warehouse import outbox as box
from warehouse.store import Store

log = logging.getLogger(__name__)
BATCH = 50  # due replies looked at a time
MAX_IN_FLIGHT = 200


class OutboxSender:
    def __init__(self, store: Store, registry: dict[str, Connector], session: aiohttp.ClientSession, *,
                 base_delay: float = 2.0, max_delay: float = 600.0, max_attempts: int = 15,
                 on_attempt: Callable[[str, str], None] | None = None) -> None:
        self.store = store
        self.registry = registry
        self.session = session
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.max_attempts = max_attempts
        self.on_attempt = on_attempt or (lambda channel, state: None)
        self._in_flight: set[int] = set()
        self._finished: set[int] = set()  # outcomes recorded while a look for due replies was running
        self._tasks: set[asyncio.Task[None]] = set()

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        delay = min(self.max_delay, self.base_delay * 2 ** attempts) * (0.5 + random.random() / 2)
        return max(delay, retry_after or 0.0)

    async def _attempt(self, row: box.DueReply) -> box.Outcome:
        connector = self.registry.get(row.channel)
        if connector is None or row.account not in connector.account_ids():
            return box.Outcome(row.id, row.ticket_id, "failed",
                               reason=f"the {row.channel} business account {row.account} is not configured")
        reply = OutboundReply(
            outbox_id=row.id, channel=row.channel, account=row.account, to=row.recipient, text=row.body,
            file=OutboundFile(row.file_name, row.file_mime or "application/octet-stream", row.file_data)
            if row.file_data is not None and row.file_name else None,
            template=Template(row.template["name"], row.template.get("language", "en_US"),
                              tuple(row.template.get("parameters") or ())) if row.template else None,
            retry_key=row.retry_key, customer_wrote_at=row.customer_wrote_at)
        try:
            result = await connector.send(self.session, reply)
        except Exception:  # a connector bug must not kill the sender; the row is retried
            log.exception("%s send raised", row.channel)
            result = DeliveryResult.retry("unexpected error while sending")
        self.on_attempt(row.channel, result.state)
        if result.state == "sent":
            return box.Outcome(row.id, row.ticket_id, "sent", platform_message_id=result.platform_message_id)
        if result.state == "retry" and row.attempts + 1 < self.max_attempts:
            return box.Outcome(row.id, row.ticket_id, "retry", reason=result.reason,
                               retry_in=self.backoff(row.attempts, result.retry_after))
        reason = result.reason if result.state == "failed" else (
            f"gave up after {row.attempts + 1} attempts: {result.reason}")
        return box.Outcome(row.id, row.ticket_id, "failed", reason=reason, window_closed=result.window_closed)

    async def _send_and_record(self, row: box.DueReply) -> None:
        try:
            outcome = await self._attempt(row)
            await self.store.awrite(lambda con: box.record(con, [outcome]))
        except Exception:
            log.exception("outbox: reply %d could not be sent or recorded; trying again", row.id)
        finally:
            self._in_flight.discard(row.id)
            self._finished.add(row.id)

    async def start_due(self) -> int:
        """Start a send for every due reply not already on its way; returns how many were started."""
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            return 0
        self._finished.clear()
        rows = await self.store.aread(lambda con: box.due(con, clock.now(), limit=BATCH + len(self._in_flight)))
        # A send recorded while we read may still look due in what we read: it is not started again.
        fresh = [r for r in rows if r.id not in self._in_flight and r.id not in self._finished]
        started = fresh[:MAX_IN_FLIGHT - len(self._in_flight)]
        for row in started:
            self._in_flight.add(row.id)
            task = asyncio.create_task(self._send_and_record(row), name=f"outbox-{row.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(started)

    async def settle(self) -> None:
        """Wait for the sends on their way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def run(self, idle: float = 0.25) -> None:
        try:
            while True:
                started = 0
                try:
                    started = await self.start_due()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("outbox round failed; trying again")
                await asyncio.sleep(0 if started else idle)
        finally:
            for task in list(self._tasks):
                task.cancel()
