"""Block actions: home tabs, opening tickets and views (R16, R17), the card's buttons (claim, reply,
note, merge, status, events), a macro picked in the reply modal, and the merge search (R5).
"""

from __future__ import annotations

from typing import Any

from bot import macros
from bot.app import Bot
from bot.blocks.common import read_meta
from bot.blocks.home import TAB_VIEWS, view_modal
from bot.blocks.modals import events_modal, merge_confirm_modal, merge_modal, note_modal, reply_modal, ticket_modal
from warehouse.tickets import Actor, OperationError


def _action(body: dict[str, Any]) -> dict[str, Any]:
    return (body.get("actions") or [{}])[0]


def _in_modal(body: dict[str, Any]) -> bool:
    return (body.get("view") or {}).get("type") == "modal"


def _channel(body: dict[str, Any]) -> str | None:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")


async def show(bot: Bot, body: dict[str, Any], view: dict[str, Any], *, replace: bool = False) -> None:
    """Open `view`: on top of the current modal (push), in its place (replace), or as a new modal."""
    if _in_modal(body):
        if replace:
            await bot.client.views_update(view_id=body["view"]["id"], view=view)
        else:
            await bot.client.views_push(trigger_id=body["trigger_id"], view=view)
    else:
        await bot.client.views_open(trigger_id=body["trigger_id"], view=view)


async def reply_view(bot: Bot, ticket_id: int, agent: int, *, prefill: dict[str, Any] | None = None,
                     version: int = 0, macro: str | None = None) -> dict[str, Any]:
    ticket = await bot.desk.ticket(ticket_id)
    requester = await bot.desk.user(ticket["requester"]["id"])
    return reply_modal(ticket, requester, macros=macros.macros(bot.desk), templates=macros.templates(bot.desk),
                       affecting=await macros.affecting(bot.desk, ticket_id, agent), prefill=prefill, version=version,
                       macro=macro)


def register(bot: Bot) -> None:
    app = bot.app

    async def agent_or_none(body: dict[str, Any]) -> int | None:
        return await bot.agent(body["user"]["id"], _channel(body))

    @app.action("home_tab")
    async def home_tab(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        if await agent_or_none(body) is None:
            return
        await bot.notifier.publish_home(body["user"]["id"], _action(body).get("value", "assigned"))

    @app.action("open_ticket")
    async def open_ticket(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        if await agent_or_none(body) is None:
            return
        ticket = await bot.desk.ticket(int(_action(body)["value"]))
        view = ticket_modal(ticket, await bot.desk.user(ticket["requester"]["id"]))
        await show(bot, body, view, replace=True)  # R17: the list closes, the ticket opens

    @app.action("load_more")
    async def load_more(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        if await agent_or_none(body) is None:
            return
        value = _action(body).get("value", "assigned")
        result = await bot.desk.view(TAB_VIEWS.get(value, value), body["user"]["id"])
        await show(bot, body, view_modal(result), replace=True)

    @app.action("view_page")
    async def view_page(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        if await agent_or_none(body) is None:
            return
        title = read_meta(body.get("view")).get("view", TAB_VIEWS["assigned"])
        result = await bot.desk.view(title, body["user"]["id"], int(_action(body)["value"]))
        await bot.client.views_update(view_id=body["view"]["id"], view=view_modal(result))

    async def ticket_action(body: dict[str, Any]) -> tuple[int, int] | None:
        agent = await agent_or_none(body)
        if agent is None:
            return None
        value = _action(body).get("value") or read_meta(body.get("view")).get("ticket")
        block_id = _action(body).get("block_id", "")
        if value is None and block_id.startswith("card-"):
            value = block_id.removeprefix("card-")
        return (int(value), agent) if value is not None else None

    async def refresh_ticket_modal(body: dict[str, Any], ticket_id: int) -> None:
        if _in_modal(body) and body["view"].get("callback_id") == "ticket":
            ticket = await bot.desk.ticket(ticket_id)
            view = ticket_modal(ticket, await bot.desk.user(ticket["requester"]["id"]))
            await bot.client.views_update(view_id=body["view"]["id"], view=view)

    async def attempt(body: dict[str, Any], op: Any) -> bool:
        try:
            await op
            return True
        except OperationError as exc:
            await bot.tell(body["user"]["id"], f"⚠️ {exc}", _channel(body))
            return False

    @app.action("claim")
    async def claim(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        found = await ticket_action(body)
        if found and await attempt(body, bot.desk.claim(*found)):
            await refresh_ticket_modal(body, found[0])

    @app.action("status")
    async def status(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        found = await ticket_action(body)
        chosen = (_action(body).get("selected_option") or {}).get("value")
        if found and chosen and await attempt(body, bot.desk.set_status(found[0], chosen, Actor.agent(found[1]))):
            await refresh_ticket_modal(body, found[0])

    @app.action("reply")
    async def reply(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        found = await ticket_action(body)
        if found:
            await show(bot, body, await reply_view(bot, *found))

    @app.action("note")
    async def note(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        found = await ticket_action(body)
        if found:
            await show(bot, body, note_modal(await bot.desk.ticket(found[0])))

    @app.action("events")
    async def events(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        found = await ticket_action(body)
        if found:
            await show(bot, body, events_modal(await bot.desk.ticket(found[0])))

    @app.action("merge")
    async def merge(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        found = await ticket_action(body)
        if found:
            ticket = await bot.desk.ticket(found[0])
            source = await bot.desk.user(ticket["requester"]["id"])
            await show(bot, body, merge_modal(found[0], source))

    @app.action("merge_search")
    async def merge_search(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        if await agent_or_none(body) is None:
            return
        m = read_meta(body["view"])
        query = (_action(body).get("value") or "").strip()
        source = await bot.desk.user(int(m["source"]))
        results = (await bot.desk.search(query))["users"] if query else []
        await bot.client.views_update(view_id=body["view"]["id"],
                                      view=merge_modal(int(m["ticket"]), source, results=results, query=query))

    @app.action("merge_pick")
    async def merge_pick(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        if await agent_or_none(body) is None:
            return
        m = read_meta(body["view"])
        source = await bot.desk.user(int(m["source"]))
        target = await bot.desk.user(int(_action(body)["value"]))
        await bot.client.views_update(view_id=body["view"]["id"],
                                      view=merge_confirm_modal(int(m["ticket"]), source, target))

    @app.action("reply_macro")
    async def reply_macro(ack: Any, body: dict[str, Any]) -> None:
        """A macro fills the reply's text and status (R21); its other actions apply on submit."""
        bot.track()
        await ack()
        agent = await agent_or_none(body)
        if agent is None:
            return
        m = read_meta(body["view"])
        chosen = (_action(body).get("selected_option") or {}).get("value")
        ticket_id = int(m["ticket"])
        prefill = await macros.preview(bot.desk, chosen, ticket_id, agent) if chosen else {}
        view = await reply_view(bot, ticket_id, agent, prefill=prefill, version=int(m.get("v", 0)) + 1, macro=chosen)
        await bot.client.views_update(view_id=body["view"]["id"], view=view)
