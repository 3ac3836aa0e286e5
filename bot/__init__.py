"""The Slack app (design.md, "Slack"): Bolt's AsyncApp at /slack/events on the service's aiohttp
server, and the notifier task that mirrors the warehouse's events into Slack.

`install(web_app, cfg, desk)` is all the service calls.

`/slack/events` checks what Slack guarantees before Bolt sees anything: a UTF-8 body (a body that
will not decompress or decode is a 400), a timestamp of digits within five minutes and Slack's `v0`
signature of exactly these bytes (else 401). Only then does Bolt parse the body: junk never reaches
a parser, so it gets a 4xx, never a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot.settings import SlackConfig
from warehouse.read_models import Ticket

if TYPE_CHECKING:  # the config (and so a webhook worker) imports bot.settings: no store behind it
    from warehouse.desk import Desk

log = logging.getLogger(__name__)
PATH = "/slack/events"
BOT: web.AppKey[Any] = web.AppKey("slack_bot", object)  # the installed `bot.app.Bot`, for tests and metrics
MAX_BODY = 4 * 1024 * 1024  # Slack's largest payloads (a submitted modal's state) are far smaller
MAX_SKEW = 300  # seconds: Slack's own rule for the request timestamp


# The shape Bolt relies on for each kind of request (it answers 500 when a signed body lacks it).
_SHAPES: dict[str, dict[str, type]] = {
    "event_callback": {"event": dict},
    "block_actions": {"user": dict, "actions": list},
    "view_submission": {"user": dict, "view": dict},
    "view_closed": {"user": dict, "view": dict},
}


def well_formed(body: object) -> bool:
    """A payload Bolt can route: an object, with the parts its kind needs (events, actions, views)."""
    if not isinstance(body, dict):
        return False
    for key, kind in _SHAPES.get(str(body.get("type")), {}).items():
        if not isinstance(body.get(key), kind):
            return False
    return body.get("type") != "block_actions" or all(isinstance(a, dict) for a in body["actions"])


def install(web_app: web.Application, cfg: SlackConfig, desk: Desk, *,
            on_open: Callable[[Ticket], Awaitable[None]] | None = None, **notifier_options: Any) -> Any:
    """Mount the Slack app on `web_app` and run its notifier while the app runs; returns the `Bot`.
    `on_open` is called with each ticket an agent opens."""
    from slack_bolt.adapter.aiohttp import to_aiohttp_response
    from slack_bolt.request.async_request import AsyncBoltRequest
    from slack_sdk.signature import SignatureVerifier

    from bot.app import build

    bot = build(cfg, desk, notifier_options=notifier_options, on_open=on_open)
    verifier = SignatureVerifier(cfg.signing_secret)

    async def slack_events(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.Response(status=413, text="too large")
        try:
            raw = await request.read()
        except web.HTTPException:
            raise
        except Exception:  # a body that will not decompress (a bad Content-Encoding), or a broken stream
            return web.Response(status=400, text="unreadable body")
        if len(raw) > MAX_BODY:
            return web.Response(status=413, text="too large")
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return web.Response(status=400, text="not UTF-8")
        stamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12) or abs(time.time() - int(stamp)) > MAX_SKEW:
            return web.Response(status=401, text="stale or missing timestamp")
        if not verifier.is_valid(body, stamp, signature):
            log.warning("refused a Slack request with a bad signature")
            return web.Response(status=401, text="bad signature")
        try:
            bolt_request = AsyncBoltRequest(body=body, query=request.query_string,
                                            headers=request.headers)  # type: ignore[arg-type]
        except (ValueError, TypeError, AttributeError):
            return web.Response(status=400, text="unreadable payload")
        if not well_formed(bolt_request.body):
            return web.Response(status=400, text="unreadable payload")
        return await to_aiohttp_response(await bot.app.async_dispatch(bolt_request))

    async def notifier(app: web.Application) -> AsyncIterator[None]:
        await bot.notifier.start()
        task = asyncio.create_task(bot.notifier.run(), name="slack-notifier")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    web_app.router.add_post(PATH, slack_events)
    web_app.cleanup_ctx.append(notifier)
    web_app[BOT] = bot
    return bot
