"""The service: one aiohttp process that owns the store (design.md, "One service process owns the store").

It serves the channel webhooks, the Slack app at /slack/events, /healthz, /metrics and a loopback
admin route for the CLI, and runs the background tasks: the outbox sender and the rules clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import os
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from aiohttp import web

from connectors import media, webhooks
from connectors import registry as connector_registry
from connectors.base import ConfigError
from connectors.outbox import OutboxSender
from socialdesk import workers
from socialdesk.config import Config
from socialdesk.metrics import Metrics
from socialdesk.operations import OPERATIONS
from warehouse import clock, open_store, owner, phones, queries, register_accounts
from warehouse import log as ingest_log
from warehouse import outbox as box
from warehouse.connect import serve_quack, stop_quack
from warehouse.desk import Desk
from warehouse.read_models import Ticket
from warehouse.rules import load_rules, run_automations, trigger_runner
from warehouse.store import Store
from warehouse.tickets import OperationError
from warehouse.views import sync_shared_views

log = logging.getLogger(__name__)
DESK = web.AppKey("desk", Desk)
STORE = web.AppKey("store", Store)
CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
SENDER = web.AppKey("sender", OutboxSender)
SESSION = web.AppKey("session", aiohttp.ClientSession)
MEDIA_SESSION = web.AppKey("media_session", aiohttp.ClientSession)  # guarded: URLs from webhooks
REGISTRY = web.AppKey("registry", dict)
LIVE = web.AppKey("live", dict)  # the Quack URI and token readers attach, while it is served
GIL_SWITCH_SECONDS = 0.001  # see serve()


async def healthz(request: web.Request) -> web.Response:
    store = request.app[STORE]
    # Health is the store answering, not the log being caught up: no waiting for it.
    await store.aread(queries.alive, fresh=False)
    return web.json_response({"ok": True})


async def metrics(request: web.Request) -> web.Response:
    store = request.app[STORE]
    depth = await store.aread(box.depth, fresh=False)
    log_status = await store.aread(ingest_log.status, fresh=False)
    body = request.app[METRICS].render(lambda: depth, store.path, log_status)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


def _through(request: web.Request, sock: Path) -> bool:
    """Whether the request came in on this Unix socket (only the service's user can connect to it)."""
    transport = request.transport
    return transport is not None and transport.get_extra_info("sockname") == str(sock)


async def admin(request: web.Request) -> web.Response:
    """Run a CLI operation on the service's own Desk: on the admin socket only, never from the network
    and never through a webhook worker (which reaches this process on another socket)."""
    if not _through(request, owner.admin_socket(request.app[STORE].path)):
        return web.json_response({"error": "not found"}, status=404)
    name = request.match_info["op"]
    if name == "live":  # where readers (notebooks, `socialdesk report`) attach the live store
        return web.json_response(request.app[LIVE] or {})
    op = OPERATIONS.get(name)
    if op is None:
        return web.json_response({"error": f"unknown operation {name!r}"}, status=404)
    try:
        kwargs = await request.json()
        return web.json_response(await op(request.app[DESK], **kwargs), dumps=lambda v: json.dumps(v, default=str))
    except (OperationError, ValueError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)


@web.middleware
async def _slack_latency(request: web.Request, handler: Any) -> web.StreamResponse:
    """Slack wants an answer within 3 seconds: how long ours take is a metric. Its body must arrive in
    time too: one sent a byte every few seconds would hold a connection for ever."""
    if request.path != "/slack/events":
        return await handler(request)
    started = time.perf_counter()
    try:
        try:
            async with asyncio.timeout(webhooks.BODY_SECONDS):
                await request.read()  # kept by aiohttp for Bolt's own read
        except TimeoutError:
            return web.Response(status=408, text="the request body took too long to arrive")
        return await handler(request)
    finally:
        request.app[METRICS].slack_ack_seconds.observe(time.perf_counter() - started)


def open_desk(cfg: Config, store: Store | None = None, registry: dict[str, Any] | None = None) -> Desk:
    """The store (opened, migrated, accounts recorded, shared views synced) behind a Desk with the rules."""
    registry = connector_registry.build(cfg.channels) if registry is None else registry
    phones.set_default_region(cfg.phones.default_region)
    rules = load_rules(cfg.rules_dir, cfg.assignment)
    if store is None:
        store = open_store(cfg.store.path, memory_limit=cfg.store.memory_limit, threads=cfg.store.threads,
                           views=rules.shared_views())
    else:
        store.write(lambda con: sync_shared_views(con, rules.shared_views()))
    register_accounts(store, connector_registry.accounts(registry))
    desk = Desk(store, triggers=trigger_runner(rules), rules=rules, templates=cfg.templates)
    # This desk turns the log into tickets, starting with what a previous run (a crash) left in it.
    desk.take_log()
    return desk


def build_app(cfg: Config, *, store: Store | None = None) -> web.Application:
    """The whole service as an aiohttp application (tests run it with pytest-aiohttp)."""
    registry = connector_registry.build(cfg.channels)
    for channel, connector in registry.items():
        # What the operator should know about their accounts (WeChat in plain mode, a second X app).
        for warning in getattr(connector, "warnings", list)():
            log.warning("%s: %s", channel, warning)
    app = web.Application(middlewares=[_slack_latency])
    app[CONFIG] = cfg
    app[REGISTRY] = registry
    app[METRICS] = Metrics()
    app[DESK] = open_desk(cfg, store, registry)
    app[STORE] = app[DESK].store
    app[STORE].log.observe_lag = app[METRICS].observe_lag
    app[STORE].log.observe_round = app[METRICS].observe_round
    app[LIVE] = {}
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/admin/ops/{op}", admin)
    app.router.add_post(workers.INGEST_PATH, workers.ingest_route(app[DESK], app[METRICS].observe_webhook))
    webhooks.add_routes(app, registry, app[DESK], cfg.server.max_body_bytes, app[METRICS].observe_webhook)
    media_secret = cfg.server.media_secret or secrets.token_urlsafe(32)
    app.router.add_get("/media/{comment}/{index}", media.handler(registry, app[STORE], media_secret,
                                                                 lambda: app[MEDIA_SESSION]))
    if cfg.slack.enabled:
        import bot
        bot.install(app, cfg.slack, app[DESK], on_open=functools.partial(_ticket_opened, app),
                    media_link=functools.partial(media.sign_link, media_secret, cfg.server.public_url))
    app.cleanup_ctx.append(_background)
    if store is None:
        app.on_cleanup.append(_close_store)
    return app


async def _ticket_opened(app: web.Application, ticket: Ticket) -> None:
    """An agent opened a ticket in Slack: its channel may act on it (LINE marks the messages read)."""
    opened = getattr(app[REGISTRY].get(ticket["channel"]), "ticket_opened", None)
    if opened is not None:
        await opened(app[SESSION], ticket)


async def _background(app: web.Application) -> AsyncIterator[None]:
    session = aiohttp.ClientSession()
    app[SESSION] = session
    app[MEDIA_SESSION] = media.guarded_session(media.configured_origins(app[CONFIG].channels))
    server = app[CONFIG].server
    sender = OutboxSender(app[STORE], app[REGISTRY], session, base_delay=server.retry_base_seconds,
                          max_delay=server.retry_max_seconds, max_attempts=server.retry_max_attempts,
                          on_attempt=app[METRICS].observe_attempt)
    app[SENDER] = sender
    store_cfg = app[CONFIG].store
    quack_uri = None
    if store_cfg.quack:
        # Notebooks and `socialdesk report` attach the live store over Quack: loopback, read-only.
        token = store_cfg.quack_token or secrets.token_urlsafe(24)
        quack_uri = serve_quack(app[STORE].connection, store_cfg.quack_host, store_cfg.quack_port or _free_port(),
                                token)
        app[LIVE] = {"uri": quack_uri, "token": token}
        log.info("notebooks can attach the live store at %s", quack_uri)
    tasks = [asyncio.create_task(sender.run(), name="outbox-sender"),
             asyncio.create_task(_automations(app[DESK], app[CONFIG].rules_interval), name="automations")]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await session.close()
    await app[MEDIA_SESSION].close()
    if quack_uri:
        stop_quack(app[STORE].connection, quack_uri)  # before the store closes, or Quack keeps serving it


async def _automations(desk: Desk, interval: float) -> None:
    """The rules clock: automations over time conditions, every `interval` seconds (5 minutes by default)."""
    while True:
        await asyncio.sleep(interval)
        try:
            fired = await desk.write(lambda con: run_automations(con, desk.rules, clock.now()))
            if fired:
                log.info("automations acted on %d ticket(s)", len(fired))
        except Exception:
            log.exception("automations round failed; trying again next round")


async def _close_store(app: web.Application) -> None:
    app[STORE].close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _claim_sockets(*paths: Path) -> None:
    """Remove sockets a service that died left behind (this process holds the store: none is alive)."""
    for path in paths:
        path.unlink(missing_ok=True)


def serve(cfg: Config) -> None:
    """`socialdesk serve`: run until SIGTERM/SIGINT, then stop cleanly (aiohttp drains and runs cleanups)."""
    # Everything this process creates (the store, its WAL, the sockets) is its user's alone.
    os.umask(0o077)
    _check_port(cfg.server.host, cfg.server.port)
    app = build_app(cfg)
    store_path = app[STORE].path
    sockets = [owner.admin_socket(store_path)]
    listen: dict[str, Any] = {"host": cfg.server.host, "port": cfg.server.port}
    if cfg.server.webhook_workers > 0:
        # The workers take the public port; they reach this process on a socket of their own.
        sockets.append(owner.workers_socket(store_path))
        listen = {}
        _run_workers(app, cfg, sockets[-1])
    if cfg.store.build_nice:
        app[STORE].build_behind_acknowledgements(cfg.store.build_nice)
    _claim_sockets(*sockets)

    async def remove_sockets(app: web.Application) -> None:
        _claim_sockets(*sockets)
    app.on_cleanup.append(remove_sockets)
    # A webhook allocates many short-lived objects; the default gen-0 threshold (700) makes the
    # collector run thousands of times a second under load. Start-up objects never need scanning.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    # The log's appends and the event loop take the GIL from ticket building as they need it: after 1 ms
    # rather than Python's 5 (about 4 % more acknowledgements a second at the peak, `python -m bench ingest`).
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    log.info("SocialDesk listening on %s:%d (store %s, config %s%s)", cfg.server.host, cfg.server.port,
             store_path, cfg.source, f", {cfg.server.webhook_workers} webhook workers"
             if cfg.server.webhook_workers else "")
    # uvloop's event loop roughly halves the per-request cost of the HTTP side.
    web.run_app(app, access_log=None, print=None, loop=uvloop.new_event_loop(), path=[str(p) for p in sockets],
                **listen)


def _check_port(host: str, port: int) -> None:
    """Stop at once, with a plain message, when anything holds the port: another program, or another
    SocialDesk whose webhook workers would share it with ours (SO_REUSEPORT) and take half the webhooks."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"[server] port {port} on {host} cannot be used: {exc.strerror}") from None


def _run_workers(app: web.Application, cfg: Config, sock: Path) -> None:
    config_path = cfg.source if Path(cfg.source).is_file() else None
    supervisor = workers.Supervisor(cfg.server.webhook_workers, sock, config_path)
    tasks: list[asyncio.Task[None]] = []

    async def start(app: web.Application) -> None:
        tasks.append(asyncio.create_task(supervisor.run(), name="webhook-workers"))

    async def stop(app: web.Application) -> None:
        # While the workers finish the webhooks they hold, this process still answers them.
        await supervisor.stop()
        for task in tasks:
            task.cancel()
    app.on_startup.append(start)
    app.on_shutdown.append(stop)


def admin_call(store_path: str, op: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run `op` inside the running service (the CLI's path while the service holds the store)."""
    status, answer = owner.call(store_path, f"/admin/ops/{op}", kwargs)
    if status != 200:
        raise OperationError((answer or {}).get("error", f"HTTP {status}"))
    return dict(answer)
