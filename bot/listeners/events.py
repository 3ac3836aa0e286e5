"""Events API: App Home opened (R10), reactions on cards (:eyes: claims, :white_check_mark: solves),
and messages in a card's thread, which become internal notes, never sent to the customer (B3).

The triage channel may be public (`message.channels`) or private (`message.groups`): both arrive as
`message` events. Slack delivers an event again when it thinks we missed it (`X-Slack-Retry-Num`, the
same `event_id`): a thread message becomes one note whatever the retries (keyed by its channel and
ts, committed with the note), a reaction acts once (keyed by the event id).
"""

from __future__ import annotations

from typing import Any

from bot.access import REFUSAL
from bot.app import Bot
from bot.blocks.card import claim_refusal
from bot.blocks.home import refused_home
from warehouse import slack_state
from warehouse.tickets import Actor, AssignedElsewhere, OperationError

REACTIONS = {"eyes": "claim", "white_check_mark": "solved"}


def register(bot: Bot) -> None:
    app = bot.app

    async def card_ticket(channel: str, ts: str) -> int | None:
        return await bot.desk.read(lambda con: slack_state.card_ticket(con, channel, ts))

    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any]) -> None:
        bot.track()
        if event.get("tab", "home") != "home":
            return
        user = event["user"]
        if not await bot.access.is_agent(user):
            await bot.client.views_publish(user_id=user, view=refused_home(REFUSAL))
            return
        await bot.access.agent_id(user)
        await bot.notifier.publish_home(user)

    @app.event("reaction_added")
    async def reaction(event: dict[str, Any], body: dict[str, Any]) -> None:
        bot.track()
        item = event.get("item") or {}
        what = REACTIONS.get(event.get("reaction", ""))
        if what is None or item.get("type") != "message":
            return
        channel = item.get("channel", "")
        ticket_id = await card_ticket(channel, item.get("ts", ""))
        if ticket_id is None:
            return
        agent = await bot.agent(event["user"], channel)
        if agent is None:
            return
        key = f"event:{body.get('event_id') or ''}"
        if body.get("event_id") and not await bot.desk.write(lambda con: slack_state.first_time(con, key)):
            return  # Slack delivered it again
        try:
            if what == "claim":
                await bot.desk.claim(ticket_id, agent)
            else:
                await bot.desk.set_status(ticket_id, what, Actor.agent(agent))
        except AssignedElsewhere as exc:
            await bot.tell(event["user"], str(exc), channel, claim_refusal(ticket_id, exc.assignee))
        except OperationError as exc:
            await bot.tell(event["user"], f"⚠️ {exc}", channel)

    @app.event("message")
    async def thread_message(event: dict[str, Any]) -> None:
        bot.track()
        thread = event.get("thread_ts")
        if (not thread or thread == event.get("ts") or event.get("bot_id")
                or event.get("subtype") not in (None, "file_share", "thread_broadcast")):
            return
        channel = event.get("channel", "")
        ticket_id = await card_ticket(channel, thread)
        text = (event.get("text") or "").strip()
        if ticket_id is None or not text:
            return
        agent = await bot.agent(event.get("user", ""), channel)
        if agent is None:
            return
        ts = str(event["ts"])

        def shown_in_thread(con: Any, result: dict[str, Any]) -> None:
            # Committed with the note: the notifier sees it is in the thread already and posts nothing.
            slack_state.remember(con, ticket_id, "agent_note", [result["comment_id"]], channel, ts)
        try:
            await bot.desk.note(ticket_id, agent, text, once=f"message:{channel}:{ts}", then=shown_in_thread)
        except OperationError as exc:
            await bot.tell(event["user"], f"⚠️ {exc}", channel)
