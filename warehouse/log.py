"""The inbound log: a webhook is acknowledged once what it carried is in it; tickets follow right behind (issue 15).

The promise to a platform is "nothing acknowledged is lost", and keeping it needs only the verified
raw body and the deliveries parsed from it on disk, not the tickets they become. So a webhook's
answer waits for one set-based append to the log (the `inbox` table: raw body, parsed items,
skipped entries), group-committed by a thread and a DuckDB connection of its own that touch no
other table, and never waits behind the writer building tickets. Right behind, on the store's
writer thread, the log is turned into tickets in order, in batches as large as the backlog allows
(up to MAX_ROUND entries a transaction): R1-R8, B4, triggers, the events the Slack notifier tails.
A cursor (`ingest_cursor`) records how far that went, in the same transaction as the tickets, so
after a crash whatever was logged and not processed is processed at start-up, exactly once.

A batch that fails is split in halves until the entry that fails is found; that entry is then
processed item by item, and an item that still fails goes to `dead_letters` with its error and its
input (the item as JSON, the raw body stays in the inbox). Everything else carries on: the poison
item's sibling in the same webhook is stored, and nothing behind it waits. Errors of the store
itself (I/O, memory, a transaction conflict) are not the item's fault: those rounds are retried
later instead. `socialdesk dead-letters retry` runs dead letters through ingestion again after a fix.

The inbox keeps a raw body once, when it brought something (a new message, a receipt that changed a
reply, entries we could not read, a dead letter): a replayed body (a platform's retry, a captured
body resent a hundred times) is logged, found to bring nothing, and its row deleted in the same
transaction. Deliveries without a raw body (`socialdesk ingest`) leave nothing in the inbox either.

Reads wait for the log (`wait_processed`, and `caught_up` on the event loop, which holds no thread
while it waits): a read that starts after a webhook was acknowledged sees its ticket, as long as the
desk keeps up; behind a large backlog, reads do not wait.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from warehouse import clock
from warehouse.entries import KINDS, Entry, decode_items, item_from_json, item_json
from warehouse.ingest import IngestResult
from warehouse.model import Delivery, Item
from warehouse.rows import scalar

log = logging.getLogger(__name__)
Con = duckdb.DuckDBPyConnection
ProcessFn = Callable[[Con, list[Delivery]], list[IngestResult]]

MAX_ROUND = 2000  # entries processed in one transaction at most: writes agents make wait at most one round
READ_WAIT_SECONDS = 5.0  # a read waits at most this long for acknowledged webhooks to become tickets
# More entries than this waiting is a burst: reads do not wait for it (agents are not held), and with
# `[store] build_nice` it is built at the lower priority (`Store.build_behind_acknowledgements`).
BURST_BACKLOG = 1000
RETRY_STORE_SECONDS = 1.0  # after the store itself failed a round
# Errors of the store, not of the data: the round is tried again later, nothing is dead-lettered.
STORE_ERRORS: tuple[type[BaseException], ...] = (duckdb.IOException, duckdb.OutOfMemoryException,
                                                 duckdb.TransactionException, duckdb.FatalException,
                                                 duckdb.InternalException, MemoryError)


# -- the log ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Append:
    """An append job's payload: the entry, who processes it (None: the store's desk), who waits for that."""

    entry: Entry
    process: ProcessFn | None = None
    waiter: Future[IngestResult] | None = None


@dataclass(slots=True)
class _Pending:
    id: int
    channel: str
    items: bytes | None
    skipped: int
    has_raw: bool
    received_at: datetime
    process: ProcessFn
    delivery: Delivery | None = None
    error: BaseException | None = None  # the items could not be decoded


@dataclass(slots=True)
class DeadLetter:
    index: int | None  # the item's place in its webhook; None: the whole entry
    item: Item | None
    error: BaseException


class IngestLog:
    """The log's state in the store process: appends (on the log's own thread and connection), processing
    (on the writer thread), and who waits for what. Created by the Store on its writer connection."""

    def __init__(self, con: Con, wake: Callable[[], None],
                 retry_later: Callable[[float], None]) -> None:
        last_id, cursor = con.execute(
            "SELECT (SELECT coalesce(max(id), 0) FROM inbox), (SELECT last_id FROM ingest_cursor "
            "WHERE name = 'tickets')").fetchone()  # type: ignore[misc]
        # Ids are given here, not by a sequence: the append is one statement. Rows the processor
        # deleted may have had the highest ids, so never start below the cursor.
        self._next_id = max(last_id, cursor) + 1
        self.logged = max(last_id, cursor)  # the highest id committed to the log
        self.processed = cursor  # the highest id turned into tickets (or dead letters)
        self._cond = threading.Condition()
        self._wake = wake
        self._retry_later = retry_later
        self._wake_queued = False
        self._default: ProcessFn | None = None
        self._others: dict[int, ProcessFn] = {}  # entries another desk appended, processed by it
        self._waiters: dict[int, Future[IngestResult]] = {}
        # Readers on event loops waiting for the log to reach an id: (id, their loop, what wakes them).
        self._readers: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._uncommitted: list[int] = []
        self.lanes: set[threading.Thread] = set()  # threads that must never wait for the log
        self.processed_total = 0
        self.dead_lettered_total = 0
        self.rounds = 0
        self.observe_lag: Callable[[list[float]], None] = lambda lags: None  # seconds from log to tickets
        self.observe_round: Callable[[int, float], None] = lambda entries, seconds: None
        self._listeners: list[Callable[[], None]] = []

    # -- the processor ------------------------------------------------------------------------------

    def adopt(self, process: ProcessFn) -> None:
        """The first desk on the store processes its log, including what earlier runs left unprocessed."""
        with self._cond:
            if self._default is not None:
                return
            self._default = process
        self.wake()

    def subscribe(self, listener: Callable[[], None]) -> None:
        """`listener()` runs on the writer thread after each batch of the log became tickets, e.g. to wake
        the Slack notifier at once instead of at its next poll (it must only hand the news on)."""
        self._listeners.append(listener)

    @property
    def backlog(self) -> int:
        """Entries (roughly: ids) logged and not yet processed."""
        return max(0, self.logged - self.processed)

    # -- appending: the log's thread ---------------------------------------------------------------

    def append(self, con: Con, groups: list[list[Append]]) -> list[list[int]]:
        """The log lane's batch function: every entry the lane's jobs carry (a job is one webhook's entry, or
        a webhook worker's batch) in one set-based statement, which the lane commits by itself. Each
        group's ids, in its order."""
        now = clock.now()
        payloads = [p for group in groups for p in group]
        entries = [p.entry for p in payloads]
        first = self._next_id
        self._next_id += len(entries)
        ids = list(range(first, first + len(entries)))
        # Registered first: the statement commits, and the processor may see these rows the moment it has
        # (the lane's rollback callback takes them back if it fails).
        with self._cond:
            for i, p in zip(ids, payloads, strict=True):
                if p.waiter is not None:
                    self._waiters[i] = p.waiter
                if p.process is not None and p.process != self._default:
                    self._others[i] = p.process
            self._uncommitted.extend(ids)
        con.execute("INSERT INTO inbox (id, channel, received_at, body, items, skipped) SELECT unnest($1::BIGINT[]), "
                    "unnest($2::VARCHAR[]), $3::TIMESTAMP, unnest($4::BLOB[]), unnest($5::BLOB[]), "
                    "unnest($6::INTEGER[])",
                    [ids, [e.channel for e in entries], now, [e.raw for e in entries], [e.items for e in entries],
                     [e.skipped for e in entries]])
        by_group = iter(ids)
        return [[next(by_group) for _ in group] for group in groups]

    def committed(self) -> None:
        """The log lane committed: those entries are durable (acknowledged), and the processor is woken."""
        with self._cond:
            if self._uncommitted:
                self.logged = max(self.logged, *self._uncommitted)
            self._uncommitted.clear()
        self.wake()

    def rolled_back(self) -> None:
        with self._cond:
            for i in self._uncommitted:
                self._waiters.pop(i, None)
                self._others.pop(i, None)
            self._uncommitted.clear()

    def wake(self) -> None:
        with self._cond:
            if self._wake_queued or self._default is None:
                return
            self._wake_queued = True
        self._wake()

    # -- reading ------------------------------------------------------------------------------------

    def behind(self) -> bool:
        """Whether something acknowledged is not yet tickets (cheap: no waiting, no thread)."""
        return self.processed < self.logged

    def wait_processed(self, timeout: float = READ_WAIT_SECONDS) -> None:
        """Wait until what was acknowledged so far is tickets, unless a burst is being worked off."""
        if threading.current_thread() in self.lanes:
            return  # the writer waiting for itself would wait for ever
        with self._cond:
            if self._default is None:
                return
            target = self.logged
            self._cond.wait_for(lambda: self._done_waiting(target), timeout)

    async def caught_up(self, timeout: float | None = None) -> None:
        """`wait_processed` for the event loop. It waits without a thread: the threads blocking calls run
        on are few and shared, and reads waiting in them would hold up the reads that need not wait
        (under a burst the notifier's passes and the App Home queued seconds behind agents' requests)."""
        with self._cond:
            target = self.logged
            if self._done_waiting(target):
                return
            loop = asyncio.get_running_loop()
            woken: asyncio.Future[None] = loop.create_future()
            self._readers.append((target, loop, woken))
        try:
            await asyncio.wait_for(woken, READ_WAIT_SECONDS if timeout is None else timeout)
        except TimeoutError:
            with self._cond:
                self._readers = [r for r in self._readers if r[2] is not woken]

    def _done_waiting(self, target: int) -> bool:
        """Whether a reader waiting for `target` may go (call holding `_cond`)."""
        return self._default is None or self.processed >= target or target - self.processed > BURST_BACKLOG

    def _wake_readers(self) -> None:
        """Wake the readers on event loops that may go now (call holding `_cond`)."""
        waiting = []
        for target, loop, woken in self._readers:
            if not self._done_waiting(target):
                waiting.append((target, loop, woken))
                continue
            with suppress(RuntimeError):  # its loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(_wake, woken)
        self._readers = waiting

    # -- processing: the writer thread -------------------------------------------------------------

    def run(self, con: Con) -> None:
        """One processing round: the oldest unprocessed entries, up to MAX_ROUND, in log order."""
        with self._cond:
            self._wake_queued = False
            default = self._default
        if default is None:
            return
        started = time.perf_counter()
        rows = con.execute("SELECT id, channel, items, skipped, body IS NOT NULL, received_at FROM inbox "
                           "WHERE id > ? ORDER BY id LIMIT ?", [self.processed, MAX_ROUND]).fetchall()
        if not rows:
            return
        with self._cond:
            pending = [_Pending(i, c, items, s or 0, raw, at, self._others.get(i, default))
                       for i, c, items, s, raw, at in rows]
        for p in pending:
            try:
                p.delivery = Delivery(decode_items(p.items) if p.items is not None else [], p.channel, None,
                                      p.skipped)
            except Exception as exc:  # noqa: BLE001 (whatever a malformed entry raises, it fails alone)
                p.error = exc
        try:
            start = 0
            for n in range(1, len(pending) + 1):  # runs of entries with the same processor, in order
                if n == len(pending) or pending[n].process != pending[start].process:
                    self._process(con, pending[start:n])
                    start = n
        except Exception:  # the store's own errors, or recording a dead letter failed: nothing is lost
            log.exception("the store failed while turning the log into tickets; trying again in %.0f s",
                          RETRY_STORE_SECONDS)
            self._retry_later(RETRY_STORE_SECONDS)
            return
        self.rounds += 1
        self.observe_round(len(rows), time.perf_counter() - started)
        if len(rows) == MAX_ROUND:
            self.wake()  # more is waiting: after the writes queued meanwhile

    def _process(self, con: Con, group: list[_Pending]) -> None:
        try:
            if any(p.error is not None for p in group):
                raise next(p.error for p in group if p.error is not None)
            con.execute("BEGIN")
            results = group[0].process(con, [p.delivery for p in group])  # type: ignore[misc]
            self._finish(con, group, results, {})
            con.execute("COMMIT")
        except Exception as exc:
            _rollback(con)
            if isinstance(exc, STORE_ERRORS):
                raise
            if len(group) > 1:  # find the entry that fails: halves, each tried on its own
                half = len(group) // 2
                self._process(con, group[:half])
                self._process(con, group[half:])
            else:
                self._process_alone(con, group[0], exc)
            return
        self._settle(group, results)

    def _process_alone(self, con: Con, p: _Pending, error: BaseException) -> None:
        """An entry that fails: each of its items on its own, the ones that still fail dead-lettered."""
        total = IngestResult()
        dead: list[DeadLetter] = []
        if p.delivery is None:
            dead.append(DeadLetter(None, None, p.error or error))
        else:
            for index, item in enumerate(p.delivery.items):
                try:
                    con.execute("BEGIN")
                    [result] = p.process(con, [Delivery([item], p.channel, None, 0)])
                    con.execute("COMMIT")
                except Exception as exc:
                    _rollback(con)
                    if isinstance(exc, STORE_ERRORS):
                        raise
                    dead.append(DeadLetter(index, item, exc))
                    continue
                _merge(total, result)
            if not dead and not p.delivery.items:
                dead.append(DeadLetter(None, None, error))
        for d in dead:
            log.error("%s webhook (inbox %d): item %s could not be processed and was dead-lettered: %s",
                      p.channel, p.id, "(all)" if d.index is None else d.index, error_text(d.error))
        total.dead_letters = len(dead)
        try:
            con.execute("BEGIN")
            self._finish(con, [p], [total], {p.id: dead})
            con.execute("COMMIT")
        except Exception:
            _rollback(con)
            raise
        self._settle([p], [total])

    def _finish(self, con: Con, group: list[_Pending], results: list[IngestResult],
                dead: dict[int, list[DeadLetter]]) -> None:
        """In the processing transaction: dead letters, the inbox rows that brought nothing, the cursor."""
        now = clock.now()
        letters = [(p, d, None if d.item is None else item_json(d.item)) for p in group for d in dead.get(p.id, [])]
        # The same poison item again (a body replayed): it waits in dead letters already, once is enough.
        known = {item for (item,) in con.execute(
            "SELECT item FROM dead_letters WHERE resolved_at IS NULL AND item IN (SELECT unnest(?::VARCHAR[]))",
            [[j for _, _, j in letters if j is not None]]).fetchall()} if letters else set()
        letters = [(p, d, j) for p, d, j in letters if j is None or j not in known]
        new_dead = {p.id for p, _, _ in letters}
        if letters:
            ids = [r[0] for r in con.execute(f"SELECT nextval('dead_letter_ids') FROM range({len(letters)})"
                                             ).fetchall()]
            _dead_rows = pa.table({  # noqa: F841
                "id": ids, "inbox_id": [p.id for p, _, _ in letters], "item_index": [d.index for _, d, _ in letters],
                "channel": [p.channel for p, _, _ in letters],
                "kind": [None if d.item is None else KINDS[type(d.item)] for _, d, _ in letters],
                "item": [j for _, _, j in letters], "error": [error_text(d.error) for _, d, _ in letters],
                "failed_at": [now] * len(letters), "attempts": [1] * len(letters)})
            con.execute("INSERT INTO dead_letters BY NAME SELECT * FROM _dead_rows")
        # A replayed body brought nothing: it is not kept a second time (nor are imports, which have none).
        # A body with entries we could not read is kept for them, once: its replays find it kept.
        drop = [p.id for p, r in zip(group, results, strict=True)
                if not (p.has_raw and (r.stored or r.receipts or p.skipped or p.id in new_dead))]
        only_skipped = [p.id for p, r in zip(group, results, strict=True)
                        if p.has_raw and p.skipped and not (r.stored or r.receipts or p.id in new_dead)]
        if only_skipped:
            drop += [i for (i,) in con.execute(
                "SELECT n.id FROM inbox n WHERE n.id IN (SELECT unnest(?::BIGINT[])) AND EXISTS (SELECT 1 FROM "
                "inbox o WHERE o.skipped > 0 AND o.id < n.id AND o.channel = n.channel AND o.body = n.body)",
                [only_skipped]).fetchall()]
        if drop:
            con.execute("DELETE FROM inbox WHERE id IN (SELECT unnest(?::BIGINT[]))", [drop])
        con.execute("UPDATE ingest_cursor SET last_id = ? WHERE name = 'tickets'", [group[-1].id])

    def _settle(self, group: list[_Pending], results: list[IngestResult]) -> None:
        now = clock.now()
        with self._cond:
            self.processed = max(self.processed, group[-1].id)
            self.processed_total += len(group)
            self.dead_lettered_total += sum(r.dead_letters for r in results)
            waiters = [(self._waiters.pop(p.id, None), r) for p, r in zip(group, results, strict=True)]
            for p in group:
                self._others.pop(p.id, None)
            self._cond.notify_all()
            self._wake_readers()
        self.observe_lag([(now - p.received_at).total_seconds() for p in group])
        for listener in self._listeners:
            try:
                listener()
            except Exception:  # a listener's failure is its own: the log goes on
                log.exception("a listener of the ingest log failed")
        for waiter, result in waiters:
            if waiter is not None and not waiter.done():
                waiter.set_result(result)

    def drain(self, con: Con, seconds: float) -> None:
        """At close: process what is logged, for at most `seconds` (the rest waits for the next start)."""
        deadline = time.monotonic() + seconds
        while self._default is not None and self.processed < self.logged and time.monotonic() < deadline:
            before = self.processed
            self.run(con)
            if self.processed == before:
                break
        with self._cond:
            self._default = None  # nobody processes any more: readers stop waiting
            self._cond.notify_all()
            self._wake_readers()


def _wake(woken: asyncio.Future[None]) -> None:
    if not woken.done():  # a reader that stopped waiting (timed out) cancelled it
        woken.set_result(None)


def _merge(total: IngestResult, r: IngestResult) -> None:
    total.stored += r.stored
    total.duplicates += r.duplicates
    total.receipts += r.receipts
    total.created_tickets += r.created_tickets
    total.updated_tickets += [t for t in r.updated_tickets if t not in total.updated_tickets]


def _rollback(con: Con) -> None:
    with suppress(duckdb.Error):  # no transaction was open (BEGIN itself failed)
        con.execute("ROLLBACK")


def error_text(error: BaseException) -> str:
    """An error as text a UTF-8 column takes (its message may quote the very character that failed)."""
    return f"{type(error).__name__}: {error}".encode("utf-8", "backslashreplace").decode("utf-8")


# -- dead letters ------------------------------------------------------------------------------------

def dead_letters(con: Con, *, resolved: bool = False, limit: int = 100) -> list[dict[str, Any]]:
    """Dead letters, oldest first: unresolved ones (with `resolved`, all), with their error, item and raw body."""
    rows = con.execute(
        "SELECT d.id, d.inbox_id, d.item_index, d.channel, d.kind, d.item, d.error, d.failed_at, d.attempts, "
        "d.retried_at, d.resolved_at, i.body FROM dead_letters d LEFT JOIN inbox i ON i.id = d.inbox_id "
        f"{'' if resolved else 'WHERE d.resolved_at IS NULL '}ORDER BY d.id LIMIT ?", [limit]).fetchall()
    return [{"id": r[0], "inbox_id": r[1], "item_index": r[2], "channel": r[3], "kind": r[4],
             "item": json.loads(r[5]) if r[5] else None, "error": r[6], "failed_at": r[7], "attempts": r[8],
             "retried_at": r[9], "resolved_at": r[10],
             "raw": None if r[11] is None else bytes(r[11]).decode("utf-8", "backslashreplace")} for r in rows]


def dead_letter_count(con: Con) -> int:
    return int(scalar(con, "SELECT count(*) FROM dead_letters WHERE resolved_at IS NULL"))


def unresolved_ids(con: Con) -> list[int]:
    return [i for (i,) in con.execute("SELECT id FROM dead_letters WHERE resolved_at IS NULL ORDER BY id").fetchall()]


def retry(con: Con, process: ProcessFn, letter_id: int) -> IngestResult:
    """Process a dead letter's input again (in the caller's transaction) and mark it resolved.

    Raises LookupError when there is no such unresolved dead letter, or what processing raises.
    """
    row = con.execute("SELECT d.channel, d.item, i.items FROM dead_letters d LEFT JOIN inbox i ON i.id = d.inbox_id "
                      "WHERE d.id = ? AND d.resolved_at IS NULL", [letter_id]).fetchone()
    if row is None:
        raise LookupError(f"no unresolved dead letter {letter_id}")
    channel, item, blob = row
    items = [item_from_json(item)] if item is not None else decode_items(blob) if blob is not None else []
    [result] = process(con, [Delivery(items, channel, None, 0)])
    con.execute("UPDATE dead_letters SET resolved_at = ?, retried_at = ?, attempts = attempts + 1 WHERE id = ?",
                [clock.now(), clock.now(), letter_id])
    return result


def retry_failed(con: Con, letter_id: int, error: BaseException) -> None:
    con.execute("UPDATE dead_letters SET error = ?, retried_at = ?, attempts = attempts + 1 WHERE id = ?",
                [error_text(error), clock.now(), letter_id])


def status(con: Con) -> dict[str, Any]:
    """How far the log is processed: entries waiting, the oldest one's age, dead letters."""
    waiting, oldest = con.execute(
        "SELECT count(*), min(received_at) FROM inbox WHERE id > (SELECT last_id FROM ingest_cursor "
        "WHERE name = 'tickets')").fetchone()  # type: ignore[misc]
    lag = (clock.now() - oldest).total_seconds() if oldest is not None else 0.0
    return {"waiting": int(waiting), "oldest_seconds": max(0.0, lag), "dead_letters": dead_letter_count(con)}
