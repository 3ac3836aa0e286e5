"""Events API: App Home opened (R10), reactions on cards (:eyes: claims, :white_check_mark: solves),
and messages in a card's thread, which become internal notes, never sent to the customer (B3).
"""

from __future__ import annotations

from typing import Any

from bot.access import REFUSAL
from bot.app import Bot
from bot.blocks.home import refused_home
from warehouse import clock
from warehouse.tickets import Actor, OperationError

REACTIONS = {"eyes": "claim", "white_check_mark": "solved"}


def register(bot: Bot) -> None:
    app = bot.app

    async def card_ticket(channel: str, ts: str) -> int | None:
        row = await bot.desk.read(lambda con: con.execute(
            "SELECT ticket_id FROM slack_messages WHERE kind = 'card' AND channel = ? AND ts = ?",
            [channel, ts]).fetchone())
        return row[0] if row else None

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
    async def reaction(event: dict[str, Any]) -> None:
        bot.track()
        item = event.get("item") or {}
        what = REACTIONS.get(event.get("reaction", ""))
        if what is None or item.get("type") != "message":
            return
        ticket_id = await card_ticket(item.get("channel", ""), item.get("ts", ""))
        if ticket_id is None:
            return
        agent = await bot.agent(event["user"], item.get("channel"))
        if agent is None:
            return
        try:
            if what == "claim":
                await bot.desk.claim(ticket_id, agent)
            else:
                await bot.desk.set_status(ticket_id, what, Actor.agent(agent))
        except OperationError as exc:
            await bot.tell(event["user"], f"⚠️ {exc}", item.get("channel"))

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
        notifier = bot.notifier
        try:
            async with notifier.lock:  # the notifier must know this note is from the thread before it sees it
                result = await bot.desk.note(ticket_id, agent, text)
                notifier.from_thread.add(result["comment_id"])
        except OperationError as exc:
            await bot.tell(event["user"], f"⚠️ {exc}", channel)
            return
        await bot.desk.write(lambda con: con.execute(
            "INSERT INTO slack_messages VALUES (?, 'agent_note', ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [ticket_id, result["comment_id"], channel, event["ts"], clock.now()]))
