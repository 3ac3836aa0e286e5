"""Webhook workers: extra processes that take the webhook traffic off the store process.

One process owns the DuckDB store, and in it the event loop and the store's writer share one GIL:
under heavy webhook load, HTTP parsing, signature checks and payload parsing slow the writer down.
With `[server] webhook_workers = N`, `socialdesk serve` starts N worker processes that listen on the
public port together (SO_REUSEPORT) while the store process listens only on Unix sockets beside the
store, which only the service's user can connect to. A worker answers `/webhooks/...` itself: size
limit, signature, parsing, then each delivery is encoded as the store's log keeps it
(`warehouse.entries.Entry`: the raw body and the parsed items as msgpack, never pickle) and the entries go
to the store process in batches (one request carries every delivery that arrived while the previous
one was being logged), which appends them to its log as they are; each webhook is answered once its
entry is committed to the log, as in one process, and the store process builds the tickets behind.
The other public routes (Slack, /healthz, /metrics, /media) are passed on to the store process,
matched and forwarded on their normalized path; nothing else is. The store process answers its
admin routes on another socket, so what comes through a worker never reaches them.

Owns: the worker process (`python -m socialdesk.workers`), its link to the store process, the
store process's `/internal/ingest` route, and the supervisor that starts and restarts workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import posixpath
import re
import signal
import sys
import urllib.parse
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
import uvloop
from aiohttp import web
from multidict import CIMultiDict

from connectors import registry as connector_registry
from connectors import webhooks
from connectors.webhooks import StoreUnavailable
from socialdesk import logs
from socialdesk.config import Config, load
from warehouse.entries import Entry, entry_of
from warehouse.model import Delivery

if TYPE_CHECKING:  # a webhook worker never opens the store: DuckDB stays out of its memory
    from warehouse.desk import Desk

log = logging.getLogger(__name__)
SOCKET_ENV = "SOCIALDESK_STORE_SOCKET"
INGEST_PATH = "/internal/ingest"
# What a worker passes on to the store process: the public routes other than webhooks (and the webhooks of
# channels only the store process verifies), matched on the normalized path (dot segments resolved,
# percent-escapes decoded) and passed on as that path.
PUBLIC_ROUTES = re.compile("^/(" + "|".join([r"slack/events", "healthz", "metrics", r"media/\d+/\d+", *(
    re.escape(d.path().lstrip("/")).replace(re.escape("{name}"), "[^/]+")
    for d in connector_registry.DESCRIPTIONS.values() if d.store_process_only)]) + ")$")
# Headers that describe one hop, not the message: the proxy sets its own.
HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                         "proxy-authorization", "proxy-authenticate", "host", "content-length"})
Observation = tuple[str, int, float, int]  # channel, HTTP status, seconds, entries skipped
STORE = "http://store"  # the host part of URLs on the workers' socket (any name: the socket decides)
# One request to the store carries at most this much; the rest waits for the next one.
MAX_BATCH_DELIVERIES = 1024
MAX_BATCH_BYTES = 8 * 1024 * 1024
MIN_FOLLOWING_BATCH = 64  # fewer waiting than this, and they wait for the batch in flight to return


# -- what crosses the workers' socket ------------------------------------------------------------------
# msgpack decoded into these types only (msgspec): unlike pickle, a body cannot make the store process
# run code, whoever wrote it. The parsed items travel already encoded as the log keeps them: the store
# process appends them without decoding, and decodes them (into fixed types) when it builds tickets.

@dataclass(slots=True)
class Batch:
    entries: list[Entry]
    observations: list[Observation]


_encode = msgspec.msgpack.Encoder().encode
_decode_batch = msgspec.msgpack.Decoder(Batch).decode
_decode_answer = msgspec.msgpack.Decoder(list[int | None]).decode


# -- the store process's side ------------------------------------------------------------------------

def ingest_route(desk: Desk, observe: Callable[[str, int, float, int], None]) -> Callable[[web.Request], Any]:
    """`POST /internal/ingest`: a batch of entries from a worker, appended to the log in one round; the
    answer is each entry's log id (None: not logged). It answers on the workers' socket only, which
    only the service's user can connect to."""

    async def handle(request: web.Request) -> web.Response:
        transport = request.transport
        sock = transport.get_extra_info("sockname") if transport is not None else None
        if not (isinstance(sock, str) and sock.endswith(".workers.sock")):
            return web.Response(status=404, text="not found")
        try:
            batch = _decode_batch(await request.content.read())  # a batch may exceed client_max_size
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return web.Response(status=400, text=f"not a batch of deliveries: {exc}")
        for channel, status, seconds, skipped in batch.observations:
            observe(channel, status, seconds, skipped)
        results = await desk.receive_entries(batch.entries)
        for result in results:
            if isinstance(result, BaseException):
                log.error("a delivery from a webhook worker could not be logged", exc_info=result)
        answer = [None if isinstance(r, BaseException) else r for r in results]
        return web.Response(body=_encode(answer), content_type="application/msgpack")

    return handle


class Supervisor:
    """Starts the workers, starts again one that dies, and stops them with the service."""

    def __init__(self, count: int, sock: Path, config_path: str | None) -> None:
        self.count = count
        self.env = {**os.environ, SOCKET_ENV: str(sock)}
        if config_path:
            self.env["SOCIALDESK_CONFIG"] = config_path
        self.processes: list[asyncio.subprocess.Process] = []
        self._stopping = False

    async def run(self) -> None:
        await asyncio.gather(*(self._keep(i) for i in range(self.count)))

    async def _keep(self, index: int) -> None:
        while not self._stopping:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "socialdesk.workers", env=self.env)
            self.processes.append(proc)
            code = await proc.wait()
            self.processes.remove(proc)
            if not self._stopping:
                log.warning("webhook worker %d exited with %s; starting it again", index, code)
                await asyncio.sleep(1)

    async def stop(self, timeout: float = 10) -> None:
        self._stopping = True
        for proc in self.processes:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in list(self.processes):
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                proc.kill()


# -- the worker's side -------------------------------------------------------------------------------

class StoreLink:
    """A worker's deliveries to the store process's log: while a batch is being logged the next one fills."""

    def __init__(self, max_in_flight: int = 2) -> None:
        self.url = STORE + INGEST_PATH
        self.headers = {"Content-Type": "application/msgpack"}
        self.max_in_flight = max_in_flight
        self.session: aiohttp.ClientSession | None = None
        self._pending: list[tuple[Entry, asyncio.Future[int]]] = []
        self._observations: list[Observation] = []
        self._in_flight = 0
        self._sending: set[asyncio.Task[None]] = set()  # held so that they are not garbage-collected

    async def receive(self, delivery: Delivery) -> int:
        """Once the delivery is durable in the store process's log: its id there."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((entry_of(delivery), future))
        self._send_more()
        return await future

    def observe(self, channel: str, status: int, seconds: float, skipped: int) -> None:
        """Webhook metrics are kept by the store process (it serves /metrics): they go with the next batch."""
        self._observations.append((channel, status, seconds, skipped))

    def flush_observations(self) -> None:
        if self._observations:
            self._send_more(force=True)

    def _send_more(self, force: bool = False) -> None:
        # Under load two batches are on their way, one being logged while the next waits its turn,
        # so the log never waits for this process. A second batch of a few messages would cost a
        # whole commit round and delay the messages behind it, so it waits to be worth one.
        if self._in_flight and len(self._pending) < MIN_FOLLOWING_BATCH and not force:
            return
        if self._in_flight < self.max_in_flight and (self._pending or force):
            self._in_flight += 1
            batch, self._pending = _split(self._pending)
            observations, self._observations = self._observations, []
            task = asyncio.create_task(self._send(batch, observations))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def close(self, timeout: float = 10) -> None:
        """Send what is left (deliveries, metrics), wait for the answers, then close the session."""
        self.flush_observations()
        while self._sending:
            done, _ = await asyncio.wait(list(self._sending), timeout=timeout)
            if not done:
                break
        if self.session is not None:
            await self.session.close()

    async def _send(self, batch: list[tuple[Entry, asyncio.Future[int]]],
                    observations: list[Observation]) -> None:
        outcome: list[int | None] | StoreUnavailable
        try:
            assert self.session is not None, "the worker's session is not open"
            body = _encode(Batch([e for e, _ in batch], observations))
            async with self.session.post(self.url, data=body, headers=self.headers) as resp:
                answer = await resp.read()
                if resp.status != 200:
                    raise StoreUnavailable(f"the store process answered {resp.status}")
            outcome = _decode_answer(answer)
        except Exception as exc:
            outcome = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(
                f"the store process could not be reached: {type(exc).__name__}")
        # The next batch leaves before this one's webhooks are answered, so the store's log, which
        # has just committed this one, waits as little as possible.
        self._in_flight -= 1
        self._send_more()
        for i, (_, future) in enumerate(batch):
            result = outcome if isinstance(outcome, StoreUnavailable) else outcome[i]
            if future.done():
                continue
            if isinstance(result, int):
                future.set_result(result)
            else:
                future.set_exception(result or StoreUnavailable("the store process could not log this delivery"))


def _split(pending: list[tuple[Entry, Any]]) -> tuple[list[tuple[Entry, Any]], list[tuple[Entry, Any]]]:
    """The next batch (within MAX_BATCH_DELIVERIES and MAX_BATCH_BYTES, at least one) and what stays."""
    size = 0
    for n, (entry, _) in enumerate(pending[:MAX_BATCH_DELIVERIES]):
        size += len(entry.raw or b"") + len(entry.items)
        if size > MAX_BATCH_BYTES and n > 0:
            return pending[:n], pending[n:]
    return pending[:MAX_BATCH_DELIVERIES], pending[MAX_BATCH_DELIVERIES:]


def public_path(request: web.Request) -> str | None:
    """The path to pass on to the store process, or None when the request is not for a public route.

    Decided on the path as the store process would see it after normalization (`/x/../admin`,
    `/%2e/admin` and absolute-form targets all become what they point at), and that normalized path is
    what is passed on, so what was checked is what is served.
    """
    raw = request.raw_path.split("?", 1)[0]
    if not raw.startswith("/"):  # absolute-form or asterisk-form targets
        return None
    path = posixpath.normpath(urllib.parse.unquote(raw))
    return path if PUBLIC_ROUTES.match(path) else None


def _proxy(session: Callable[[], aiohttp.ClientSession]) -> Callable[[web.Request], Any]:

    async def handle(request: web.Request) -> web.StreamResponse:
        path = public_path(request)
        if path is None:
            return web.Response(status=404, text="not found")
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in HOP_HEADERS)
        headers["X-Forwarded-For"] = request.remote or ""
        target = STORE + path + (f"?{request.query_string}" if request.query_string else "")
        try:
            async with asyncio.timeout(webhooks.BODY_SECONDS):
                body = await request.read()
        except TimeoutError:
            return web.Response(status=408, text="the request body took too long to arrive")
        try:
            async with session().request(request.method, target, headers=headers, data=body,
                                         allow_redirects=False) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=CIMultiDict(
                    (k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS))
                if upstream.content_length is not None:
                    response.content_length = upstream.content_length
                await response.prepare(request)
                async for chunk in upstream.content.iter_chunked(64 * 1024):
                    await response.write(chunk)
                await response.write_eof()
                return response
        except (aiohttp.ClientError, TimeoutError):
            log.warning("the store process did not answer %s %s", request.method, path)
            return web.Response(status=503, text="the service is not answering; try again shortly")

    return handle


def worker_app(cfg: Config, sock: str, parent_pid: int | None = None) -> web.Application:
    """One webhook worker: the channels' webhook routes, and the other public routes passed to the store
    process over its workers' socket."""
    link = StoreLink()
    app = web.Application(client_max_size=max(cfg.server.max_body_bytes, 1024 * 1024) + 1)
    registry = connector_registry.build(cfg.channels)
    # A channel that must be verified in the store process (WeChat remembers every nonce it saw) is passed
    # on like the other routes a worker does not answer.
    webhooks.add_routes(app, registry, link, cfg.server.max_body_bytes, link.observe, in_worker=True)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        # The proxy must hand bodies on as they are (compressed or not).
        link.session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=sock), auto_decompress=False,
                                             timeout=aiohttp.ClientTimeout(total=60))
        watch = asyncio.create_task(_watch(link, parent_pid))
        yield
        watch.cancel()
        await link.close()

    app.cleanup_ctx.append(lifetime)
    app.router.add_route("*", "/{tail:.*}", _proxy(lambda: link.session))  # type: ignore[arg-type,return-value]
    return app


async def _watch(link: StoreLink, parent_pid: int | None) -> None:
    """Every second: send the metrics gathered meanwhile, and stop if the store process is gone."""
    while True:
        await asyncio.sleep(1)
        link.flush_observations()
        if parent_pid is not None and os.getppid() != parent_pid:
            log.warning("the store process is gone; this webhook worker stops")
            os.kill(os.getpid(), signal.SIGTERM)  # run_app's graceful shutdown
            return


def main() -> None:
    cfg = load()
    logs.configure(cfg.server.json_logs)
    app = worker_app(cfg, os.environ[SOCKET_ENV], parent_pid=os.getppid())
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)  # as in the service: a webhook makes many short-lived objects
    web.run_app(app, host=cfg.server.host, port=cfg.server.port, reuse_port=True, access_log=None, print=None,
                loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
