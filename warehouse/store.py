"""The DuckDB ticket store: one file, numbered migrations, one writer thread with group commit.

DuckDB lets one process write a file, and a commit costs about the same for one row as for a
thousand. So every write is a function queued to a single writer thread, which takes everything
queued since its last commit, runs it in one transaction and commits once (group commit). Jobs of
the same batch kind (ingestion) are merged into one set-based call. Reads use their own cursors and
see only committed data.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import duckdb

from warehouse import clock

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


class Store:
    """The open store. Writes go through `write`/`awrite`/`batch`, reads through `cursor()`."""

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
        # An item is one job, or several queued as one so that they land in the same round.
        self._queue: queue.SimpleQueue[_Job | list[_Job] | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._writer.start()
        self.commits = 0  # for metrics and tests of group commit

    # -- writing ---------------------------------------------------------------------------------

    def submit(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> Future[T]:
        job = _Job(fn, future=Future())
        self._queue.put(job)
        return job.future  # type: ignore[return-value]

    def submit_batch(self, batch_fn: Callable[[duckdb.DuckDBPyConnection, list[Any]], list[Any]],
                     payload: Any) -> Future[Any]:
        job = _Job(None, batch_fn, payload, future=Future())
        self._queue.put(job)
        return job.future  # type: ignore[return-value]

    def write(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run `fn` in the writer's transaction and wait for its commit."""
        return self.submit(fn).result()

    async def awrite(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        return await self._await(_Job(fn))

    async def abatch(self, batch_fn: Callable[[duckdb.DuckDBPyConnection, list[Any]], list[Any]],
                     payload: Any) -> Any:
        """`submit_batch` for the event loop: the writer wakes the loop once per commit, not per job."""
        return await self._await(_Job(None, batch_fn, payload))

    async def abatch_all(self, batch_fn: Callable[[duckdb.DuckDBPyConnection, list[Any]], list[Any]],
                         payloads: list[Any]) -> list[Any]:
        """`abatch` for many payloads at once: one result per payload, or the exception that payload
        raised (a failing payload fails alone, the others are committed)."""
        loop = asyncio.get_running_loop()
        jobs = [_Job(None, batch_fn, p, afuture=loop.create_future()) for p in payloads]
        if not jobs:
            return []
        self._queue.put(jobs)
        return await asyncio.gather(*(j.afuture for j in jobs), return_exceptions=True)  # type: ignore[misc]

    async def _await(self, job: _Job) -> Any:
        job.afuture = asyncio.get_running_loop().create_future()
        self._queue.put(job)
        return await job.afuture

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            jobs = item if isinstance(item, list) else [item]
            while True:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)  # finish this round, then stop
                    break
                if isinstance(nxt, list):
                    jobs.extend(nxt)
                else:
                    jobs.append(nxt)
            self._commit_round(jobs)

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
        con = self._con
        try:
            con.execute("BEGIN")
            results = self._execute(con, jobs)
            con.execute("COMMIT")
        except Exception as exc:
            with suppress(duckdb.Error):
                con.execute("ROLLBACK")
            if len(jobs) == 1:
                return [(jobs[0], False, exc)]
            # One job failed and took the round with it: rerun each alone so only it fails.
            return [outcome for job in jobs for outcome in self._attempt([job])]
        self.commits += 1
        return [(job, True, result) for job, result in zip(jobs, results, strict=True)]

    @staticmethod
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

    # -- reading ---------------------------------------------------------------------------------

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self._con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def read(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        with self.cursor() as cur:
            return fn(cur)

    async def aread(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        return await asyncio.to_thread(self.read, fn)

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The writer's connection, for things that must run beside it (Quack serving)."""
        return self._con

    def close(self) -> None:
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
