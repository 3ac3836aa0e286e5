"""The outbox sender: delivers queued replies through the channels' send APIs (R2, R20, B4).

One task, so a reply is never in flight twice: it takes the due rows, sends them concurrently, and
records every outcome in one write before it looks again. Transient failures back off exponentially
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
            retry_key=row.retry_key)
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

    async def run_once(self) -> int:
        """Attempt every due reply once; returns how many were attempted."""
        rows = await self.store.aread(lambda con: box.due(con, clock.now()))
        if not rows:
            return 0
        outcomes = await asyncio.gather(*(self._attempt(r) for r in rows))
        await self.store.awrite(lambda con: box.record(con, list(outcomes)))
        return len(rows)

    async def run(self, idle: float = 0.25) -> None:
        while True:
            try:
                if await self.run_once():
                    continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox round failed; trying again")
            await asyncio.sleep(idle)
