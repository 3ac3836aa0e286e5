"""The DuckDB ticket store: one file, numbered migrations, one writer thread with group commit, and the log.

DuckDB lets one process write a file, and a commit costs about the same for one row as for a
thousand. So every write is a function queued to a single writer thread, which takes everything
queued since its last commit, runs it in one transaction and commits once (group commit). Jobs of
the same batch kind are merged into one set-based call. Reads use their own cursors and see only
committed data.

Webhooks are appended to the inbound log (warehouse.log) by a second thread with a connection of its
own, group-committed the same way: an append touches only the inbox, so DuckDB's optimistic
concurrency lets it commit beside the writer's transactions, and an acknowledgement never waits
behind a round of ticket building. The writer turns the log into tickets between its rounds of jobs.
Only the writer's thread ever touches the writer's connection.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from warehouse import clock
from warehouse.log import BURST_BACKLOG, Append, IngestLog

log = logging.getLogger(__name__)
T = TypeVar("T")
MIGRATION_FILE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")


class StoreBusy(RuntimeError):
    """Another process (the running service) holds the store."""


@dataclass
class _Job:
    fn: Callable[[duckdb.DuckDBPyConnection], Any] | None
    # Jobs with the same batch kind in one round are merged: batch_fn(con, [payload, ...]) -> [result, ...]
    batch_fn: Callable[[duckdb.DuckDBPyConnection, list[Any]], list[Any]] | None = None
    payload: Any = None
    future: Future[Any] | None = None  # a thread waits on this
    afuture: asyncio.Future[Any] | None = None  # or an event loop on this


_WAKE = object()  # queued to the writer: the log has entries to process


def _settle(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in items:
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every migration shipped, in order."""
    found = []
    for entry in resources.files("warehouse.migrations").iterdir():
        m = MIGRATION_FILE.match(entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text()))
    return sorted(found)


def migrate(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Apply the migrations this store has not seen; returns the versions applied."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)")
    done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    applied = []
    for version, name, sql in migrations():
        if version in done:
            continue
        con.execute("BEGIN")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [version, name, clock.now()])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        applied.append(version)
        log.info("store migrated to %03d_%s", version, name)
    return applied


class StoreDamaged(RuntimeError):
    """The store file is not a DuckDB database, or its blocks fail their checksums."""


# DuckDB's words for a file another process holds ("Could not set lock on file", "Conflicting lock").
_LOCKED = re.compile(r"could not set lock|conflicting lock", re.IGNORECASE)
_DAMAGED = re.compile(r"not a valid duckdb database|corrupt|checksum", re.IGNORECASE)


def private(path: str | Path) -> None:
    """Only the service's user may read the store: every customer's messages and phone number are in it."""
    for p in (Path(path), Path(f"{path}.wal")):
        with suppress(FileNotFoundError):
            if p.stat().st_mode & 0o077:
                p.chmod(0o600)


def open_connection(path: str | Path, *, read_only: bool = False, memory_limit: str = "1GB",
                    threads: int = 2) -> duckdb.DuckDBPyConnection:
    path = str(path)
    if path != ":memory:" and not read_only:
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        con = duckdb.connect(path, read_only=read_only, config={"memory_limit": memory_limit, "threads": threads})
    except duckdb.IOException as exc:
        if _LOCKED.search(str(exc)):
            raise StoreBusy(f"the store {path} is in use by another process (is `socialdesk serve` running?)") from None
        if _DAMAGED.search(str(exc)):
            raise StoreDamaged(
                f"the store {path} is damaged ({exc}). Stop the service, move the file and its .wal aside, and "
                f"restore the latest backup (or start an empty store and replay the webhooks the platforms "
                f"redeliver)") from None
        raise
    if path != ":memory:" and not read_only:
        private(path)
    return con


class _Lane:
    """One DuckDB connection and the thread that owns it: it takes every job queued since its last commit,
    runs them in one transaction and commits once (group commit), then answers each.

    `idle` runs on the thread after a round when it was woken (`wake`), outside any transaction;
    `on_commit`/`on_rollback` after each of the lane's commits and rollbacks; `on_stop` before it stops.
    `autocommit`: the lane's jobs share one batch function that runs one statement, which DuckDB commits
    by itself. The log's lane: its BEGIN and COMMIT statements cost more CPU than its append (1.5 against
    0.9 ms a round of a few webhooks, which is what a round is below a thousand webhooks a second), and
    acknowledgements at 1,000/s came twice as fast without them.
    """

    def __init__(self, name: str, con: duckdb.DuckDBPyConnection, *,
                 idle: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
                 on_commit: Callable[[], None] | None = None, on_rollback: Callable[[], None] | None = None,
                 on_stop: Callable[[duckdb.DuckDBPyConnection], None] | None = None,
                 autocommit: bool = False) -> None:
        self.con = con
        self.autocommit = autocommit
        self.idle, self.on_commit, self.on_rollback, self.on_stop = idle, on_commit, on_rollback, on_stop
        # An item is one job, or several queued as one so that they land in the same round.
        self.queue: queue.SimpleQueue[_Job | list[_Job] | object | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.commits = 0

    def start(self) -> None:
        self.thread.start()

    def put(self, item: _Job | list[_Job]) -> None:
        self.queue.put(item)

    def wake(self) -> None:
        self.queue.put(_WAKE)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self.queue.get()
            jobs: list[_Job] = []
            woken = False
            while True:
                if item is None:
                    stop = True  # finish this round, then stop
                    break
                if item is _WAKE:
                    woken = True
                elif isinstance(item, list):
                    jobs.extend(item)
                else:
                    jobs.append(item)  # type: ignore[arg-type]
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
            if jobs:
                self._commit_round(jobs)
            if woken and self.idle is not None:
                try:
                    self.idle(self.con)
                except Exception:  # the idle work reports its own failures; the lane must live on
                    log.exception("%s: background work failed", self.thread.name)
        if self.on_stop is not None:
            self.on_stop(self.con)

    def _commit_round(self, jobs: list[_Job]) -> None:
        outcomes = self._attempt(jobs)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job, ok, value in outcomes:
            if job.afuture is not None:
                by_loop.setdefault(job.afuture.get_loop(), []).append((job.afuture, ok, value))
            elif job.future is not None:
                job.future.set_result(value) if ok else job.future.set_exception(value)
        for loop, items in by_loop.items():
            with suppress(RuntimeError):  # that loop has closed: nobody is waiting any more
                loop.call_soon_threadsafe(_settle, items)

    def _attempt(self, jobs: list[_Job]) -> list[tuple[_Job, bool, Any]]:
        con = self.con
        try:
            if self.autocommit:
                results = _execute(con, jobs)
            else:
                con.execute("BEGIN")
                results = _execute(con, jobs)
                con.execute("COMMIT")
        except Exception as exc:
            if not self.autocommit:
                with suppress(duckdb.Error):
                    con.execute("ROLLBACK")
            if self.on_rollback is not None:
                self.on_rollback()
            if len(jobs) == 1:
                return [(jobs[0], False, exc)]
            # One job failed and took the round with it: rerun each alone so only it fails.
            return [outcome for job in jobs for outcome in self._attempt([job])]
        self.commits += 1
        if self.on_commit is not None:
            self.on_commit()
        return [(job, True, result) for job, result in zip(jobs, results, strict=True)]

    # -- queueing ------------------------------------------------------------------------------------

    def submit(self, job: _Job) -> Future[Any]:
        job.future = Future()
        self.queue.put(job)
        return job.future

    async def run_async(self, job: _Job) -> Any:
        job.afuture = asyncio.get_running_loop().create_future()
        self.queue.put(job)
        return await job.afuture

    async def run_all(self, batch_fn: Callable[[duckdb.DuckDBPyConnection, list[Any]], list[Any]],
                      payloads: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        jobs = [_Job(None, batch_fn, p, afuture=loop.create_future()) for p in payloads]
        if not jobs:
            return []
        self.queue.put(jobs)
        return await asyncio.gather(*(j.afuture for j in jobs if j.afuture is not None), return_exceptions=True)


def _execute(con: duckdb.DuckDBPyConnection, jobs: list[_Job]) -> list[Any]:
    results: list[Any] = [None] * len(jobs)
    batches: dict[Any, list[int]] = {}
    for i, job in enumerate(jobs):
        if job.batch_fn is not None:
            batches.setdefault(job.batch_fn, []).append(i)
    for batch_fn, idx in batches.items():
        for i, result in zip(idx, batch_fn(con, [jobs[i].payload for i in idx]), strict=True):
            results[i] = result
    for i, job in enumerate(jobs):
        if job.fn is not None:
            results[i] = job.fn(con)
    return results


class Store:
    """The open store. Writes go through `write`/`awrite`/`batch`, webhooks through `append` (the log),
    reads through `cursor()`."""

    def __init__(self, path: str | Path = "data/socialdesk.duckdb", *, memory_limit: str = "1GB",
                 threads: int = 2) -> None:
        self.path = str(path)
        self._con = open_connection(path, memory_limit=memory_limit, threads=threads)
        self._con.execute("SET enable_progress_bar = false")  # a service and its CLI print no bars
        # DuckDB checkpoints when the WAL passes this size, inside a commit, and the big primary-key
        # index makes that a pause of hundreds of milliseconds: at the 16 MB default that came every
        # few seconds under load. A larger WAL costs only a longer replay after a crash.
        self._con.execute("SET checkpoint_threshold = '256MB'")
        migrate(self._con)
        self._burst_builder: ThreadPoolExecutor | None = None  # see build_behind_acknowledgements
        self._writer = _Lane("store-writer", self._con, idle=self._process_log, on_stop=self._drain_log)
        self.log = IngestLog(self._con, wake=self._writer.wake, retry_later=self._retry_log)
        # The log has a connection and a thread of its own: an append touches only the inbox, so it
        # never conflicts with the writer's transactions (DuckDB's optimistic concurrency) and never
        # waits behind a round of ticket building.
        self._appender = _Lane("store-log", self._con.cursor(), on_commit=self.log.committed,
                               on_rollback=self.log.rolled_back, autocommit=True)
        self.log.lanes = {self._writer.thread, self._appender.thread}
        # Other threads never touch the writer's connection: a statement run on it from another thread
        # would run inside the writer's transaction and replace the result it is reading. Readers'
        # cursors and Quack serving come from a connection of their own.
        self._side = self._con.cursor()
        self._writer.start()
        self._appender.start()
        self.drain_seconds = 30.0  # at close, how long the log may take to catch up

    def build_behind_acknowledgements(self, nice: int) -> None:
        """While a burst is worked off, build tickets at a lower CPU priority than the rest of the process.

        For a service whose webhook workers can take the whole machine in a burst: acknowledging is the
        promise to the platforms (Meta, LINE and X retry and then disable webhooks that time out), and the
        log holds whatever the builder has not reached yet. While more than BURST_BACKLOG entries wait, the
        writer hands each round of building to a thread of its own at `nice` and waits for it (the
        connection is still used by one thread at a time); below that it builds at the process's priority.
        Measured (`python -m bench ingest`): with two workers the peak rose by a fifth, and a builder niced
        for good made tickets visible later at a steady 1,000 webhooks/s (it lost the CPU to anything else
        runnable), which building at the normal priority outside bursts avoids. An unprivileged process
        cannot raise a thread's priority back, hence a second thread rather than renicing the writer. In one
        process it only slows building: a setting (`[store] build_nice`), off by default. Linux only.
        """
        if sys.platform != "linux":
            return

        def lower() -> None:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
            self.log.lanes.add(threading.current_thread())  # it builds for the writer: never waits for the log
        self._burst_builder = ThreadPoolExecutor(1, "store-burst-builder", initializer=lower)
        self._burst_builder.submit(lambda: None).result()  # started and niced now, not in the first burst

    @property
    def commits(self) -> int:
        """Commit rounds of the writer's jobs (for metrics and tests of group commit)."""
        return self._writer.commits

    # -- writing ---------------------------------------------------------------------------------

    def submit(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> Future[T]:
        return self._writer.submit(_Job(fn))

    def submit_batch(self, batch_fn: Callable[[duckdb.DuckDBPyConnection, list[Any]], list[Any]],
                     payload: Any) -> Future[Any]:
        return self._writer.submit(_Job(None, batch_fn, payload))

    def write(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `fn` in the writer's transaction and wait for its commit. Like a read, it first waits
        until the webhooks acknowledged so far are tickets: a change made after an acknowledgement
        (an agent's reply to the message just answered) finds what it carried."""
        self.log.wait_processed()
        return self.submit(fn).result()

    async def awrite(self, fn: Callable[[duckdb.DuckDBPyConnection], T], *, fresh: bool = True) -> T:
        if fresh and self.log.behind():
            await self.log.caught_up()
        return await self._writer.run_async(_Job(fn))

    async def abatch(self, batch_fn: Callable[[duckdb.DuckDBPyConnection, list[Any]], list[Any]],
                     payload: Any) -> Any:
        """`submit_batch` for the event loop: the writer wakes the loop once per commit, not per job."""
        return await self._writer.run_async(_Job(None, batch_fn, payload))

    async def abatch_all(self, batch_fn: Callable[[duckdb.DuckDBPyConnection, list[Any]], list[Any]],
                         payloads: list[Any]) -> list[Any]:
        """`abatch` for many payloads at once: one result per payload, or the exception that payload
        raised (a failing payload fails alone, the others are committed)."""
        return await self._writer.run_all(batch_fn, payloads)

    # -- the log ---------------------------------------------------------------------------------

    def append(self, payload: Append) -> int:
        """Append one entry to the log: its id, once it is durable."""
        ids: list[int] = self._appender.submit(_Job(None, self.log.append, [payload])).result()
        return ids[0]

    async def aappend(self, payload: Append) -> int:
        ids: list[int] = await self._appender.run_async(_Job(None, self.log.append, [payload]))
        return ids[0]

    async def aappend_all(self, payloads: list[Append]) -> list[int | BaseException]:
        """Many entries (a webhook worker's batch) as one job: their ids in order, or for each the error that
        kept the batch out of the log. One job and one future for the batch, not one per entry: under load
        the event loop spent a few percent of the store process's time on those."""
        if not payloads:
            return []
        try:
            ids: list[int | BaseException] = await self._appender.run_async(
                _Job(None, self.log.append, payloads))
        except Exception as exc:  # noqa: BLE001 (each entry gets the error: its webhook is answered 503)
            return [exc] * len(payloads)
        return ids

    def _process_log(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._burst_builder is not None and self.log.backlog > BURST_BACKLOG:
            self._burst_builder.submit(self.log.run, con).result()
        else:
            self.log.run(con)

    def _drain_log(self, con: duckdb.DuckDBPyConnection) -> None:
        self.log.drain(con, self.drain_seconds)

    def _retry_log(self, seconds: float) -> None:
        timer = threading.Timer(seconds, self.log.wake)
        timer.daemon = True
        timer.start()

    # -- reading ---------------------------------------------------------------------------------

    @contextmanager
    def cursor(self, *, fresh: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        """A reading cursor. `fresh`: first wait until the webhooks acknowledged so far are tickets (while
        the desk keeps up; see warehouse.log), so a read after an acknowledgement sees what it carried."""
        if fresh:
            self.log.wait_processed()
        cur = self._side.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def read(self, fn: Callable[[duckdb.DuckDBPyConnection], T], *, fresh: bool = True) -> T:
        with self.cursor(fresh=fresh) as cur:
            return fn(cur)

    async def aread(self, fn: Callable[[duckdb.DuckDBPyConnection], T], *, fresh: bool = True) -> T:
        if fresh and self.log.behind():
            await self.log.caught_up()  # on the loop, not in the thread the read then runs in
        return await asyncio.to_thread(self.read, fn, fresh=False)

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """A connection to the store beside the writer's, for things that run beside it (Quack serving,
        cursors). Never the writer's own: see `__init__`."""
        return self._side

    def close(self) -> None:
        """Stop appending, let the writer finish its round and catch up with the log (for at most
        `drain_seconds`; the rest is processed at the next start), then close."""
        self._appender.stop()
        self._writer.stop()
        if self._burst_builder is not None:
            self._burst_builder.shutdown()
        self._appender.con.close()
        self._side.close()
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
