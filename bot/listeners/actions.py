"""Block actions: home tabs, opening tickets and views (R16, R17), the card's buttons (claim, reassign,
unassign, reply, note, merge, status, fields, events), a macro picked in the reply modal, the merge
search (R5), and paging (views, the event log).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError

from bot import macros
from bot.app import Bot
from bot.blocks import ids
from bot.blocks.card import claim_refusal
from bot.blocks.common import read_meta
from bot.blocks.home import TAB_VIEWS, view_modal
from bot.blocks.modals import (
    events_modal,
    fields_modal,
    merge_confirm_modal,
    merge_modal,
    note_modal,
    reply_modal,
    ticket_modal,
)
from warehouse import slack_state
from warehouse.read_models import Ticket
from warehouse.tickets import Actor, AssignedElsewhere, OperationError

log = logging.getLogger(__name__)


def _action(body: dict[str, Any]) -> dict[str, Any]:
    return (body.get("actions") or [{}])[0]


def _in_modal(body: dict[str, Any]) -> bool:
    return (body.get("view") or {}).get("type") == "modal"


def _channel(body: dict[str, Any]) -> str | None:
    return (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")


async def show(bot: Bot, body: dict[str, Any], view: dict[str, Any], *, replace: bool = False) -> None:
    """Open `view`: on top of the current modal (push), in its place (replace), or as a new modal."""
    try:
        if _in_modal(body):
            if replace:
                await update(bot, body, view)
            else:
                await bot.client.views_push(trigger_id=body["trigger_id"], view=view)
        else:
            await bot.client.views_open(trigger_id=body["trigger_id"], view=view)
    except SlackApiError as exc:  # a trigger spent or stale: the person clicks again
        log.warning("could not show a view (%s)", exc.response.get("error"))


async def update(bot: Bot, body: dict[str, Any], view: dict[str, Any]) -> None:
    """Replace the modal the action came from; its hash makes Slack refuse a stale replacement."""
    current = body["view"]
    try:
        await bot.client.views_update(view_id=current["id"], hash=current.get("hash"), view=view)
    except SlackApiError as exc:
        if exc.response.get("error") != "hash_conflict":
            raise
        log.info("view %s changed meanwhile; not replaced", current["id"])


async def reply_view(bot: Bot, ticket_id: int, agent: int, *, prefill: dict[str, Any] | None = None,
                     version: int = 0, macro: str | None = None) -> dict[str, Any]:
    ticket = await bot.desk.ticket(ticket_id, history=False)
    requester = await bot.desk.user(ticket["requester"]["id"])
    return reply_modal(ticket, requester, macros=macros.macros(bot.desk), templates=macros.templates(bot.desk),
                       affecting=await macros.affecting(bot.desk, ticket_id, agent), prefill=prefill, version=version,
                       macro=macro)


async def ticket_view(bot: Bot, ticket_id: int) -> dict[str, Any]:
    ticket = await bot.desk.ticket(ticket_id)
    requester = await bot.desk.user(ticket["requester"]["id"])
    last = await bot.desk.read(lambda con: slack_state.last_reply(con, ticket_id))
    return ticket_modal(ticket, requester, last)


def register(bot: Bot) -> None:
    app = bot.app

    async def tell(body: dict[str, Any], text: str, content: dict[str, Any] | None = None) -> None:
        await bot.tell(body["user"]["id"], text, _channel(body), content)

    @app.action(ids.prefixed(ids.HOME_TAB))
    async def home_tab(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        tab = _action(body).get("value")
        await bot.notifier.publish_home(body["user"]["id"], tab if tab in TAB_VIEWS else "assigned")

    @app.action(ids.prefixed(ids.OPEN_TICKET))
    async def open_ticket(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        try:
            ticket_id = int(_action(body)["value"])
            view = await ticket_view(bot, ticket_id)
        except OperationError as exc:
            await tell(body, f"⚠️ {exc}")
            return
        await show(bot, body, view, replace=True)  # R17: the list closes, the ticket opens
        if bot.on_open is not None:  # after the modal: the trigger id lasts 3 seconds, the channel may not
            await bot.on_open(await bot.desk.ticket(ticket_id, history=False))

    @app.action(ids.LOAD_MORE)
    async def load_more(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        value = _action(body).get("value", "assigned")
        try:
            result = await bot.desk.view(TAB_VIEWS.get(value, value), body["user"]["id"])
        except OperationError as exc:
            await tell(body, f"⚠️ {exc}")
            return
        await show(bot, body, view_modal(result), replace=True)

    @app.action(ids.prefixed(ids.VIEW_PAGE))
    async def view_page(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        title = read_meta(body.get("view")).get("view", TAB_VIEWS["assigned"])
        result = await bot.desk.view(title, body["user"]["id"], max(1, int(_action(body)["value"])))
        await update(bot, body, view_modal(result))

    def ticket_action(body: dict[str, Any], context: Any) -> tuple[int, int] | None:
        """The ticket an action is about and the agent acting (the middleware let only agents through)."""
        agent = int(context["agent"])
        value = _action(body).get("value") or read_meta(body.get("view")).get("ticket")
        block_id = _action(body).get("block_id", "")
        if value is None and block_id.startswith("card-"):
            value = block_id.removeprefix("card-")
        return (int(value), agent) if value is not None else None

    async def refresh_ticket_modal(body: dict[str, Any], ticket_id: int) -> None:
        if _in_modal(body) and body["view"].get("callback_id") == ids.CB_TICKET:
            await update(bot, body, await ticket_view(bot, ticket_id))

    @app.action(ids.CLAIM)
    async def claim(ack: Any, body: dict[str, Any], context: Any) -> None:
        """A ticket someone else has is not taken silently: the clicker is told who has it (and may
        take it over on purpose); of two simultaneous clicks one wins and the other is told."""
        bot.track()
        await ack()
        found = ticket_action(body, context)
        if not found:
            return
        ticket_id, agent = found
        try:
            result = await bot.desk.claim(ticket_id, agent)
        except AssignedElsewhere as exc:
            await tell(body, str(exc), claim_refusal(ticket_id, exc.assignee))
            return
        except OperationError as exc:
            await tell(body, f"⚠️ {exc}")
            return
        if result["previous"] == agent:
            await tell(body, f"Ticket #{ticket_id} is already yours.")
        await refresh_ticket_modal(body, ticket_id)

    @app.action(ids.REASSIGN)
    async def reassign(ack: Any, body: dict[str, Any], context: Any) -> None:
        """Take over a ticket on purpose; the agent who had it hears it."""
        bot.track()
        await ack()
        found = ticket_action(body, context)
        if not found:
            return
        ticket_id, agent = found
        try:
            result = await bot.desk.claim(ticket_id, agent, take_over=True)
        except OperationError as exc:
            await tell(body, f"⚠️ {exc}")
            return
        previous = result["previous"]
        if previous == agent:
            await tell(body, f"Ticket #{ticket_id} is already yours.")
        elif previous is not None:
            before = await bot.desk.user(previous)
            if slack_user_id := before.get("slack_user_id"):
                await bot.tell(slack_user_id,
                               f"Ticket #{ticket_id} was reassigned from you to {await _name(bot, agent)}.")
        await refresh_ticket_modal(body, ticket_id)

    @app.action(ids.UNASSIGN)
    async def unassign(ack: Any, body: dict[str, Any], context: Any) -> None:
        bot.track()
        await ack()
        found = ticket_action(body, context)
        if not found:
            return
        ticket_id, agent = found
        try:
            await bot.desk.unassign(ticket_id, Actor.agent(agent))
        except OperationError as exc:
            await tell(body, f"⚠️ {exc}")
            return
        await refresh_ticket_modal(body, ticket_id)

    @app.action(ids.STATUS)
    async def status(ack: Any, body: dict[str, Any], context: Any) -> None:
        bot.track()
        await ack()
        found = ticket_action(body, context)
        chosen = (_action(body).get("selected_option") or {}).get("value")
        if not found or not chosen:
            return
        try:
            await bot.desk.set_status(found[0], chosen, Actor.agent(found[1]))
        except OperationError as exc:
            await tell(body, f"⚠️ {exc}")
            return
        await refresh_ticket_modal(body, found[0])

    @app.action(ids.REPLY)
    async def reply(ack: Any, body: dict[str, Any], context: Any) -> None:
        bot.track()
        await ack()
        found = ticket_action(body, context)
        if found:
            await show(bot, body, await reply_view(bot, *found))

    # The card's buttons whose modal is built from the ticket alone: (builder, with its history).
    ticket_modals: dict[str, tuple[Callable[[Ticket], dict[str, Any]], bool]] = {
        ids.NOTE: (note_modal, False), ids.FIELDS: (fields_modal, False), ids.EVENTS: (events_modal, True)}

    @app.action(re.compile("^(" + "|".join(map(re.escape, ticket_modals)) + ")$"))
    async def ticket_modal_button(ack: Any, body: dict[str, Any], context: Any) -> None:
        """Internal note, Edit fields, Events."""
        bot.track()
        await ack()
        found = ticket_action(body, context)
        if found:
            build, history = ticket_modals[_action(body)["action_id"]]
            await show(bot, body, build(await bot.desk.ticket(found[0], history=history)))

    @app.action(ids.prefixed(ids.EVENTS_PAGE))
    async def events_page(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        ticket_id = int(read_meta(body.get("view"))["ticket"])  # the button's value is the page
        await update(bot, body, events_modal(await bot.desk.ticket(ticket_id), int(_action(body)["value"])))

    @app.action(ids.MERGE)
    async def merge(ack: Any, body: dict[str, Any], context: Any) -> None:
        bot.track()
        await ack()
        found = ticket_action(body, context)
        if found:
            ticket = await bot.desk.ticket(found[0], history=False)
            source = await bot.desk.user(ticket["requester"]["id"])
            await show(bot, body, merge_modal(found[0], source))

    @app.action(ids.MERGE_SEARCH)
    async def merge_search(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        m = read_meta(body["view"])
        query = (_action(body).get("value") or "").strip()
        source = await bot.desk.user(int(m["source"]))
        results = (await bot.desk.search(query))["users"] if query else []
        await update(bot, body, merge_modal(int(m["ticket"]), source, results=results, query=query))

    @app.action(ids.MERGE_PICK)
    async def merge_pick(ack: Any, body: dict[str, Any]) -> None:
        bot.track()
        await ack()
        m = read_meta(body["view"])
        source = await bot.desk.user(int(m["source"]))
        target = await bot.desk.user(int(_action(body)["value"]))
        await update(bot, body, merge_confirm_modal(int(m["ticket"]), source, target))

    @app.action(ids.REPLY_MACRO)
    async def reply_macro(ack: Any, body: dict[str, Any], context: Any) -> None:
        """A macro fills the reply's text and status (R21); its other actions apply on submit."""
        bot.track()
        await ack()
        agent = int(context["agent"])
        m = read_meta(body["view"])
        picked = (_action(body).get("selected_option") or {}).get("value")
        macro_id = macros.macro_id(bot.desk, picked) if picked else None
        ticket_id = int(m["ticket"])
        prefill = await macros.preview(bot.desk, macro_id, ticket_id, agent) if macro_id else {}
        view = await reply_view(bot, ticket_id, agent, prefill=prefill, version=int(m.get("v", 0)) + 1,
                                macro=picked if macro_id else None)
        await update(bot, body, view)


async def _name(bot: Bot, agent: int) -> str:
    return str((await bot.desk.user(agent)).get("name") or "another agent")
