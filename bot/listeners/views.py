"""View submissions: the reply (R20-R23, B1), the internal note, and the merge (R5).

Each acks at once (closing the modal, or showing field errors found without I/O) and works after.
A reply that fails (window closed, R22) is told to the agent at once, ephemerally, and is in the
ticket's events already (R23).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp

from bot import macros
from bot.app import Bot
from bot.blocks.common import read_meta
from bot.blocks.modals import merge_modal
from warehouse.tickets import Actor, OperationError

log = logging.getLogger(__name__)
MAX_FILE = 100 * 1024 * 1024


def values(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """block_id -> action_id -> the element's state, flattened a level for convenience."""
    return (view.get("state") or {}).get("values") or {}


def value_of(view: dict[str, Any], block_prefix: str, action_id: str) -> dict[str, Any]:
    for block_id, actions in values(view).items():
        if (block_id == block_prefix or block_id.startswith(block_prefix + "-")) and action_id in actions:
            return actions[action_id] or {}
    return {}


def submitted_files(view: dict[str, Any]) -> list[Any]:
    """The file_input's files: a list of ids or file objects (the exact shape is not documented)."""
    state = value_of(view, "file", "reply_file")
    return list(state.get("files") or state.get("file_ids") or [])


async def download(bot: Bot, file: Any) -> tuple[str, str, bytes]:
    """files.info, then the private download URL with the bot token."""
    file_id = file if isinstance(file, str) else file.get("id")
    info = (await bot.client.files_info(file=file_id))["file"]
    url = info.get("url_private_download") or info["url_private"]
    headers = {"Authorization": f"Bearer {bot.cfg.bot_token}"}
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers, allow_redirects=False) as resp:
        if resp.status != 200:
            raise OperationError(f"could not download the file {info.get('name')} from Slack (HTTP {resp.status})")
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(1 << 16):  # one read() may return only part of it
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_FILE:
                break
        data = b"".join(chunks)
    if len(data) > MAX_FILE:
        raise OperationError("the file is larger than 100 MB")
    return info.get("name") or file_id, info.get("mimetype") or "application/octet-stream", data


def register(bot: Bot) -> None:
    app = bot.app

    @app.view("reply_submit")
    async def reply_submit(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        bot.track()
        m = read_meta(view)
        text = (value_of(view, "text", "reply_text").get("value") or "").strip()
        files = submitted_files(view)
        if m.get("mode") == "text" and not text and not files:
            await ack(response_action="errors", errors={f"text-{m.get('v', 0)}": "Write a reply or attach a file."})
            return
        await ack()
        user = body["user"]["id"]
        agent = await bot.agent(user)
        if agent is None:
            return
        ticket_id = int(m["ticket"])
        status = (value_of(view, "status", "reply_status").get("selected_option") or {}).get("value")
        channel = await bot.card_channel(ticket_id)
        try:
            if m.get("mode") == "none":
                if status:
                    await bot.desk.set_status(ticket_id, status, Actor.agent(agent))
                return
            template = None
            if m.get("mode") == "template":
                index = int((value_of(view, "template", "reply_template").get("selected_option") or {})["value"])
                chosen = macros.templates(bot.desk)[index]
                params = (value_of(view, "params", "reply_params").get("value") or "").splitlines()
                template = {"name": chosen["name"], "language": chosen.get("language", "en"),
                            "parameters": [p.strip() for p in params if p.strip()] or list(chosen.get("parameters")
                                                                                          or [])}
                text = ""
            file = await download(bot, files[0]) if files and template is None else None
            before = macros.applier(bot.desk, m.get("macro"), ticket_id, agent) if template is None else None
            result = await bot.desk.reply(ticket_id, agent, text, status=status, file=file, template=template,
                                          before=before)
        except OperationError as exc:
            await bot.tell(user, f"⚠️ Reply not sent on ticket #{ticket_id}: {exc}", channel)
            return
        if result.get("state") == "failed":  # R22: at once, and the event is in the log already
            await bot.tell(user, f"❌ Reply on ticket #{ticket_id} not delivered: {result.get('reason')}", channel)

    @app.view("note_submit")
    async def note_submit(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        bot.track()
        text = (value_of(view, "note", "note_text").get("value") or "").strip()
        if not text:
            await ack(response_action="errors", errors={"note": "Write the note."})
            return
        await ack()
        agent = await bot.agent(body["user"]["id"])
        if agent is None:
            return
        ticket_id = int(read_meta(view)["ticket"])
        try:
            await bot.desk.note(ticket_id, agent, text)
        except OperationError as exc:
            await bot.tell(body["user"]["id"], f"⚠️ {exc}", await bot.card_channel(ticket_id))

    @app.view("merge_search")
    async def merge_search(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Submitting the search step searches (the same as pressing Enter in the field)."""
        bot.track()
        if not await bot.access.is_agent(body["user"]["id"]):
            await ack()
            await bot.agent(body["user"]["id"])
            return
        m = read_meta(view)
        query = (value_of(view, "merge_query", "merge_search").get("value") or "").strip()
        source = await bot.desk.user(int(m["source"]))
        results = (await bot.desk.search(query))["users"] if query else []
        await ack(response_action="update", view=merge_modal(int(m["ticket"]), source, results=results, query=query))

    @app.view("merge_submit")
    async def merge_submit(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        bot.track()
        await ack()
        user = body["user"]["id"]
        agent = await bot.agent(user)
        if agent is None:
            return
        m = read_meta(view)
        ticket_id = int(m["ticket"])
        channel = await bot.card_channel(ticket_id)
        try:
            result = await bot.desk.merge(int(m["source"]), int(m["target"]), Actor.agent(agent))
        except OperationError as exc:
            await bot.tell(user, f"⚠️ Merge refused: {exc}", channel)
            return
        await bot.tell(user, f"🔗 Merged user #{result['merged']} into #{result['into']}: "
                             f"{len(result['tickets_moved'])} ticket(s) moved.", channel)
