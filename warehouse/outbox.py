"""The outbox's state machine in the store: which replies are due, and what each attempt came to (B4).

queued -> sent -> delivered -> read, or failed with a plain reason; a transient failure stays queued
with a later `next_attempt_at`. Every attempt's outcome is an event on the ticket, so the agent sees it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from warehouse import clock
from warehouse.ingest import apply_early_receipts
from warehouse.rows import event, record_events, scalar, sql_list


@dataclass(frozen=True, slots=True)
class DueReply:
    id: int
    ticket_id: int
    channel: str
    account: str
    recipient: str
    body: str
    file_name: str | None
    file_mime: str | None
    file_data: bytes | None
    template: dict[str, Any] | None
    retry_key: str
    attempts: int
    customer_wrote_at: datetime | None = None  # the end user's last message on the ticket: windows and tags


def due(con: duckdb.DuckDBPyConnection, now: datetime, limit: int = 50) -> list[DueReply]:
    rows = con.execute(
        "SELECT o.id, o.ticket_id, o.channel, o.account, o.recipient, o.body, o.file_name, o.file_mime, o.file_data, "
        "o.template, o.retry_key, o.attempts, t.last_end_user_message_at FROM outbox o "
        "JOIN tickets t ON t.id = o.ticket_id "
        "WHERE o.state = 'queued' AND o.next_attempt_at <= ? ORDER BY o.id LIMIT ?", [now, limit]).fetchall()
    return [DueReply(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9]) if r[9] else None, r[10],
                     r[11], r[12]) for r in rows]


def depth(con: duckdb.DuckDBPyConnection) -> int:
    return int(scalar(con, "SELECT count(*) FROM outbox WHERE state = 'queued'"))


@dataclass(frozen=True, slots=True)
class Outcome:
    outbox_id: int
    ticket_id: int
    state: str  # sent, retry, failed
    platform_message_id: str | None = None
    reason: str = ""
    window_closed: bool = False
    retry_in: float | None = None  # seconds, for retry


def record(con: duckdb.DuckDBPyConnection, outcomes: list[Outcome]) -> None:
    """Write what a round of send attempts came to, one event per attempt (R23, B4)."""
    now = clock.now()
    events = []
    for o in outcomes:
        if o.state == "sent":
            sent = con.execute("UPDATE outbox SET state = 'sent', attempts = attempts + 1, platform_message_id = ?, "
                               "sent_at = ?, updated_at = ?, next_attempt_at = NULL WHERE id = ? AND state = 'queued' "
                               "RETURNING channel, account", [o.platform_message_id, now, now, o.outbox_id]).fetchall()
            record_events(con, [event(o.ticket_id, "reply_sent", "system", at=now, outbox_id=o.outbox_id,
                                      platform_message_id=o.platform_message_id)])
            for channel, account in sent:
                if o.platform_message_id:
                    apply_early_receipts(con, channel, account, o.platform_message_id, now)
        elif o.state == "retry":
            at = now + timedelta(seconds=o.retry_in or 0)
            con.execute("UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, "
                        "updated_at = ? WHERE id = ? AND state = 'queued'", [at, o.reason, now, o.outbox_id])
            events.append(event(o.ticket_id, "reply_retry", "system", at=now, outbox_id=o.outbox_id,
                                reason=o.reason, next_attempt_at=at.isoformat()))
        else:
            con.execute("UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?, "
                        "window_closed = ?, updated_at = ?, next_attempt_at = NULL WHERE id = ? AND state = 'queued'",
                        [o.reason, o.window_closed, now, o.outbox_id])
            events.append(event(o.ticket_id, "reply_failed", "system", at=now, outbox_id=o.outbox_id,
                                reason=o.reason, window_closed=o.window_closed))
    record_events(con, events)


def finished(con: duckdb.DuckDBPyConnection, outbox_ids: list[int]) -> list[dict[str, Any]]:
    """The replies among these the outbox is done with (no longer queued): where they went, and the
    platform's id for those it took."""
    if not outbox_ids:
        return []
    rows = con.execute(f"SELECT id, channel, account, recipient, state, platform_message_id FROM outbox "
                       f"WHERE id IN {sql_list(outbox_ids)} AND state <> 'queued' ORDER BY id").fetchall()
    keys = ("id", "channel", "account", "recipient", "state", "platform_message_id")
    return [dict(zip(keys, row, strict=True)) for row in rows]
