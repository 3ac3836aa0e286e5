"""`/social` (name from `[slack] command`): the notifier's tabs, a ticket, search (R25-R27), a view, help.

Answers are ephemeral (through the command's response_url). A wrong argument gets a one-line usage.
"""

from __future__ import annotations

from typing import Any

from bot.app import Bot
from bot.blocks.home import TAB_VIEWS
from bot.blocks.modals import help_answer, list_answer, search_answer, ticket_answer
from warehouse.tickets import OperationError


def usage(command: str) -> str:
    return f"Usage: `{command} [unassigned | ticket N | search QUERY | view NAME | help]`"


def parse(text: str) -> tuple[str, str] | None:
    """(subcommand, argument), or None when the words make no command."""
    words = (text or "").strip().split(maxsplit=1)
    sub = words[0].lower() if words else ""
    arg = words[1].strip() if len(words) > 1 else ""
    if sub in ("", "unassigned", "help") and not arg:
        return sub or "assigned", ""
    if sub == "ticket" and arg.lstrip("#").isdigit():
        return sub, arg.lstrip("#")
    if sub in ("search", "view") and arg:
        return sub, arg
    return None


async def answer(bot: Bot, user: str, sub: str, arg: str) -> dict[str, Any]:
    desk = bot.desk
    if sub in ("assigned", "unassigned"):
        result = await desk.notifier(user, sub)
        title = {"assigned": "Assigned to you", "unassigned": "Unassigned"}[sub]
        return list_answer(f"{title}: {TAB_VIEWS[sub]}", result, result["tab"])
    if sub == "ticket":
        ticket = await desk.ticket(int(arg))
        return ticket_answer(ticket, await desk.user(ticket["requester"]["id"]))
    if sub == "search":
        return search_answer(await desk.search(arg))
    if sub == "view":
        page = await desk.view(arg, user)
        return list_answer(arg, page, page["view"])
    return help_answer(bot.cfg.command)


def register(bot: Bot) -> None:
    command = bot.cfg.command if bot.cfg.command.startswith("/") else "/" + bot.cfg.command

    @bot.app.command(command)
    async def social(ack: Any, body: dict[str, Any], respond: Any) -> None:
        bot.track()
        await ack()
        user = body.get("user_id", "")
        parsed = parse(body.get("text", ""))
        if parsed is None:
            await respond(text=usage(command), response_type="ephemeral")
            return
        try:
            content = await answer(bot, user, *parsed)
        except OperationError as exc:
            await respond(text=str(exc), response_type="ephemeral")
            return
        await respond(response_type="ephemeral", **content)
