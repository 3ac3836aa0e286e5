"""The Slack app (design.md, "Slack"): Bolt's AsyncApp at /slack/events on the service's aiohttp
server, and the notifier task that mirrors the warehouse's events into Slack.

`install(web_app, cfg, desk)` is all the service calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bot.settings import SlackConfig
from warehouse.desk import Desk

PATH = "/slack/events"
BOT: web.AppKey[Any] = web.AppKey("slack_bot", object)  # the installed `bot.app.Bot`, for tests and metrics


def install(web_app: web.Application, cfg: SlackConfig, desk: Desk, **notifier_options: Any) -> Any:
    """Mount the Slack app on `web_app` and run its notifier while the app runs; returns the `Bot`."""
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request

    from bot.app import build

    bot = build(cfg, desk, notifier_options=notifier_options)

    async def slack_events(request: web.Request) -> web.StreamResponse:
        # Bolt reads the raw body and verifies the signature and timestamp itself.
        return await to_aiohttp_response(await bot.app.async_dispatch(await to_bolt_request(request)))

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
