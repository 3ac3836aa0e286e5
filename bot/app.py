"""The Slack app: Bolt's AsyncApp over a paced `AsyncWebClient(token, base_url=api_url)`, its listeners,
and the shared state they use (`Bot`).

Bolt verifies each request's signature and refuses timestamps more than five minutes off; a global
middleware refuses requests from any other workspace than ours (`[slack] team_id`, else the
bot token's own team from auth.test), and another lets a person's command, click or submission reach
its listener only from an agent (`context["agent"]` is their store id). Every listener acks first and
works after the ack (Slack waits 3 seconds at most), except what must be decided before the ack (a
modal's field errors); `Bot.track` remembers that work so tests can wait for it (`Bot.idle`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError

from bot.access import REFUSAL, Access
from bot.blocks.common import escape, message, section
from bot.notify import Notifier
from bot.pacing import PacedClient, Pacer, RealClock
from bot.settings import SlackConfig
from warehouse import slack_state
from warehouse.desk import Desk
from warehouse.read_models import Ticket

log = logging.getLogger(__name__)
# Slack cannot show an ephemeral message there: a DM from the app says it instead.
NO_EPHEMERAL = {"user_not_in_channel", "channel_not_found", "not_in_channel", "is_archived"}


@dataclass
class Bot:
    app: AsyncApp
    desk: Desk
    cfg: SlackConfig
    client: PacedClient
    access: Access
    notifier: Notifier
    work: set[asyncio.Task[Any]] = field(default_factory=set)
    # Called with a ticket an agent opens (after the ack): the channel may want to know (LINE marks the
    # customer's messages read). Set by the service, which holds the channels.
    on_open: Callable[[Ticket], Awaitable[None]] | None = None

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

    async def tell(self, user_id: str, text: str, channel: str | None = None,
                   content: dict[str, Any] | None = None) -> None:
        """An ephemeral message in `channel`, or a direct message from the app when there is none or
        Slack cannot show it there (the person is not in that channel). `text` is plain words (escaped
        here); `content` a message built by bot.blocks, if richer."""
        payload = content or message([section(escape(text))], text)
        if channel and not channel.startswith("D"):
            try:
                await self.client.chat_postEphemeral(channel=channel, user=user_id, **payload)
                return
            except SlackApiError as exc:
                if exc.response.get("error") not in NO_EPHEMERAL:
                    log.warning("could not tell %s in %s: %s", user_id, channel, exc.response.get("error"))
                    return
        try:
            await self.client.chat_postMessage(channel=user_id, **payload)
        except SlackApiError as exc:
            log.warning("could not tell %s by DM: %s", user_id, exc.response.get("error"))

    def after_ack(self, work: Awaitable[None]) -> None:
        """Run `work` after Slack has its answer, awaitable by idle() like a listener's."""
        task = asyncio.ensure_future(work)  # kept in `work` until done: the loop holds tasks only weakly
        self.work.add(task)
        task.add_done_callback(self.work.discard)

    async def card_channel(self, ticket_id: int) -> str | None:
        return await self.desk.read(lambda con: slack_state.card_channel(con, ticket_id))


def build(cfg: SlackConfig, desk: Desk, *, notifier_options: dict[str, Any] | None = None,
          on_open: Callable[[Ticket], Awaitable[None]] | None = None) -> Bot:
    options = dict(notifier_options or {})
    clock = options.get("clock") or RealClock()
    options["clock"] = clock
    client = PacedClient(token=cfg.bot_token, base_url=cfg.api_url, pacer=Pacer(clock))
    app = AsyncApp(signing_secret=cfg.signing_secret, client=client, process_before_response=False,
                   request_verification_enabled=True, ignoring_self_events_enabled=True)
    access = Access(cfg, client, desk)
    notifier = Notifier(desk, client, cfg, access, **options)
    bot = Bot(app, desk, cfg, client, access, notifier, on_open=on_open)

    @app.middleware
    async def same_workspace(body: dict[str, Any], context: Any, next: Any) -> BoltResponse | None:
        if body.get("type") in ("url_verification", "ssl_check"):
            return await next()
        expected = cfg.team_id or (context.authorize_result.team_id if context.authorize_result else None)
        if not expected or context.team_id != expected:
            log.warning("refused a Slack request from workspace %s", context.team_id)
            return BoltResponse(status=403, body="This app answers its own workspace only.")
        return await next()

    @app.middleware
    async def agents_only(body: dict[str, Any], context: Any, respond: Any, next: Any) -> BoltResponse | None:
        """A person's request to the app (a command, a click, a modal submitted) reaches its listener from an
        agent only, who finds their store id in `context["agent"]`; anyone else is told why, here. Events
        keep their own check: most are not addressed to the app (any message in a channel it is in), so
        only their listener knows when a refusal is due."""
        user = _person(body)
        if user is None:
            return await next()
        if await access.is_agent(user):
            context["agent"] = await access.agent_id(user)
            return await next()
        bot.after_ack(_refuse(bot, body, user, respond))
        return BoltResponse(status=200, body="")

    from bot.listeners import actions, commands, events, views
    for module in (commands, actions, views, events):
        module.register(bot)
    return bot


# The requests a person makes of the app, and who made them (commands carry `user_id`, interactions `user`).
PERSON_REQUESTS = ("block_actions", "view_submission", "shortcut", "message_action")


def _person(body: dict[str, Any]) -> str | None:
    if "command" in body:
        return str(body.get("user_id") or "")
    if body.get("type") in PERSON_REQUESTS:
        return str((body.get("user") or {}).get("id") or "")
    return None


async def _refuse(bot: Bot, body: dict[str, Any], user: str, respond: Any) -> None:
    """Tell a non-agent why nothing happened: under the command they typed, in the channel they clicked in,
    or by direct message for a modal (it has no channel)."""
    if "command" in body:
        await respond(text=REFUSAL, response_type="ephemeral")
        return
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    await bot.tell(user, REFUSAL, channel)
