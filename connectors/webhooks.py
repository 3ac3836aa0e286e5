"""The one webhook handler every channel route goes through.

GET -> the platform's handshake. POST -> size limit -> signature -> parse -> durable in the log -> 200.
The answer waits for the verified body and its parsed deliveries to be committed to the store's log
(warehouse.log), not for the tickets, which are built right behind it: a delivery that cannot become
a ticket is dead-lettered there, never answered 503 for ever. A client can cause 400, 401/403, 404 or
413, never a 5xx; 503 only when the log itself cannot be written, so the platform retries later and
nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from aiohttp import web

from connectors import registry as channel_registry
from connectors.base import Connector, Incoming, Skipped, WebhookError
from warehouse.model import Delivery

log = logging.getLogger(__name__)
Observer = Callable[[str, int, float, int], None]  # (channel, HTTP status, seconds, entries skipped) for metrics


class StoreUnavailable(RuntimeError):
    """The delivery was not stored (the store process is down or busy): answered 503, retried later."""


class Ingestor(Protocol):
    """Where verified deliveries go: the Desk in the store process, or a webhook worker's link to it.
    `receive` returns once the delivery is durable in the log."""

    async def receive(self, delivery: Delivery) -> int: ...


def _ignore(channel: str, status: int, seconds: float, skipped: int) -> None:
    return None


BODY_SECONDS = 10.0  # a body that takes longer to arrive (one byte every few seconds) is cut off


async def _read_limited(request: web.Request, limit: int) -> bytes | None:
    if request.content_length is not None:
        if request.content_length > limit:
            return None
        # What platforms send: the length is known, so one read takes it all (a body that ends early
        # raises IncompleteReadError: the payload could not be read). Mostly the whole body came with the
        # headers, and there is nothing to wait for: no timer (arming one cost 4 % of a worker's time).
        if request.content.is_eof():
            return await request.content.readexactly(request.content_length)
        async with asyncio.timeout(BODY_SECONDS):
            return await request.content.readexactly(request.content_length)
    # One read(n) may return less than is there; read to the end or just past the limit.
    chunks, size = [], 0
    async with asyncio.timeout(BODY_SECONDS):
        while size <= limit:
            chunk = await request.content.read(limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    return None if size > limit else b"".join(chunks)


def handler(connector: Connector, desk: Ingestor, max_body_bytes: int,
            observe: Observer = _ignore) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    channel = connector.channel

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        skipped: list[Skipped] = []
        response = await _handle(request, skipped)
        observe(channel, response.status, time.perf_counter() - started, len(skipped))
        return response

    async def _handle(request: web.Request, skipped: list[Skipped]) -> web.StreamResponse:
        name = request.match_info.get("name")
        try:
            if request.method == "GET":
                incoming = Incoming(request.headers, request.query, b"", name)
                answer = connector.handshake(incoming)
                if answer is None:
                    return web.Response(status=400, text="not a verification request")
                return answer
            try:
                body = await _read_limited(request, max_body_bytes)
            except TimeoutError:
                log.warning("%s webhook refused: the body took over %.0f s to arrive", channel, BODY_SECONDS)
                return web.Response(status=408, text="the request body took too long to arrive")
            if body is None:
                log.warning("%s webhook refused: body over %d bytes", channel, max_body_bytes)
                return web.Response(status=413, text=f"body larger than {max_body_bytes} bytes")
            incoming = Incoming(request.headers, request.query, body, name)
            connector.verify(incoming)
            items = []
            for item in connector.parse(incoming):
                if isinstance(item, Skipped):
                    skipped.append(item)
                else:
                    items.append(item)
        except WebhookError as exc:
            log.warning("%s webhook refused (%d): %s", channel, exc.status, exc)
            return web.Response(status=exc.status, text=str(exc))
        except Exception:  # a connector bug must not become a 5xx that platforms count against us
            log.exception("%s webhook could not be read", channel)
            return web.Response(status=400, text="the payload could not be read")
        try:
            await desk.receive(Delivery(items, channel, body, len(skipped)))
        except StoreUnavailable as exc:
            log.warning("%s webhook not stored, the platform will retry: %s", channel, exc)
            return web.Response(status=503, text="temporarily unable to store the message")
        except Exception:
            log.exception("%s webhook could not be stored; the platform will retry", channel)
            return web.Response(status=503, text="temporarily unable to store the message")
        for item in skipped:
            log.warning("%s webhook: skipped one entry we do not understand (%s); the rest is stored",
                        channel, item.what)
        return connector.acknowledge(incoming)

    return handle


def add_routes(app: web.Application, registry: dict[str, Connector], desk: Ingestor, max_body_bytes: int,
               observe: Observer = _ignore, *, in_worker: bool = False) -> None:
    """Each configured channel's route, as its description says: /webhooks/<channel> when the payload names
    the account, /webhooks/<channel>/{name} when each account has its URL. `in_worker`: a webhook worker's
    routes, without the channels whose webhooks only the store process may verify (they are passed on)."""
    for channel, connector in registry.items():
        found = channel_registry.description(channel)
        if in_worker and found.store_process_only:
            continue
        path = found.path()
        handle = handler(connector, desk, max_body_bytes, observe)
        app.router.add_route("GET", path, handle)
        app.router.add_route("POST", path, handle)
