"""The Slack app: Bolt's AsyncApp over `AsyncWebClient(token, base_url=api_url)`, its listeners, and
the shared state they use (`Bot`).

Bolt verifies each request's signature and refuses timestamps more than five minutes off; a global
middleware refuses requests from any other workspace than ours (`[slack] team_id`, else the
bot token's own team from auth.test). Every listener acks first and works after the ack (Slack
waits 3 seconds at most); `Bot.track` remembers that work so tests can wait for it (`Bot.idle`).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.access import REFUSAL, Access
from bot.notify import Notifier
from bot.settings import SlackConfig
from warehouse.desk import Desk

log = logging.getLogger(__name__)


@dataclass
class Bot:
    app: AsyncApp
    desk: Desk
    cfg: SlackConfig
    client: AsyncWebClient
    access: Access
    notifier: Notifier
    work: set[asyncio.Task[Any]] = field(default_factory=set)

    def track(self) -> None:
        """Call first thing in a listener: its task (which runs on after the ack) becomes awaitable by idle()."""
        task = asyncio.current_task()
        if task is not None:
            self.work.add(task)
            task.add_done_callback(self.work.discard)

    async def idle(self, timeout: float = 10.0) -> None:
        """Wait until every listener's after-ack work is done (tests)."""
        async with asyncio.timeout(timeout):
            while True:
                await asyncio.sleep(0.02)
                pending = [t for t in self.work if not t.done()]
                if not pending:
                    return
                await asyncio.gather(*pending, return_exceptions=True)

    async def agent(self, user_id: str, channel: str | None = None) -> int | None:
        """The store id of this Slack user if they are an agent; otherwise tell them so and return None."""
        if await self.access.is_agent(user_id):
            return await self.access.agent_id(user_id)
        await self.tell(user_id, REFUSAL, channel)
        return None

    async def tell(self, user_id: str, text: str, channel: str | None = None) -> None:
        """An ephemeral message in `channel`, or a direct message from the app when there is none."""
        try:
            if channel and not channel.startswith("D"):
                await self.client.chat_postEphemeral(channel=channel, user=user_id, text=text)
            else:
                await self.client.chat_postMessage(channel=user_id, text=text)
        except SlackApiError as exc:
            log.warning("could not tell %s %r: %s", user_id, text, exc.response.get("error"))

    async def card_channel(self, ticket_id: int) -> str | None:
        row = await self.desk.read(lambda con: con.execute(
            "SELECT channel FROM slack_messages WHERE ticket_id = ? AND kind = 'card'", [ticket_id]).fetchone())
        return row[0] if row else None


def build(cfg: SlackConfig, desk: Desk, *, notifier_options: dict[str, Any] | None = None) -> Bot:
    client = AsyncWebClient(token=cfg.bot_token, base_url=cfg.api_url)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=2))  # Slack's 429 + Retry-After
    app = AsyncApp(signing_secret=cfg.signing_secret, client=client, process_before_response=False,
                   request_verification_enabled=True, ignoring_self_events_enabled=True)
    access = Access(cfg, client, desk)
    notifier = Notifier(desk, client, cfg, access, **(notifier_options or {}))
    bot = Bot(app, desk, cfg, client, access, notifier)

    @app.middleware
    async def same_workspace(body: dict[str, Any], context: Any, next: Any) -> BoltResponse | None:
        if body.get("type") in ("url_verification", "ssl_check"):
            return await next()
        expected = cfg.team_id or (context.authorize_result.team_id if context.authorize_result else None)
        if not expected or context.team_id != expected:
            log.warning("refused a Slack request from workspace %s", context.team_id)
            return BoltResponse(status=403, body="This app answers its own workspace only.")
        return await next()

    from bot.listeners import actions, commands, events, views
    for module in (commands, actions, views, events):
        module.register(bot)
    return bot
