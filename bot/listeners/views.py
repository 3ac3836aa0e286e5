"""View submissions: the reply (R20-R23, B1), the internal note, the fields (priority, subject), and
the merge (R5).

What the desk would refuse is decided before the ack, within Slack's 3 seconds, and answered with
`response_action: errors` on the field concerned, so the modal stays open with the agent's text
(R22: no text or file, a closed window, a status the ticket cannot take, a closed ticket; a field
value `tickets.set_fields` would refuse, checked by the same function it uses). Then each
acks (closing the modal) and works after. A submission Slack delivers twice (a retry, a replay) is
acted on once: its view, hash and values make a key the reply, note, fields or merge commits with.
A reply the channel refuses after the modal closed reaches the agent by DM from the notifier (R22).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import aiohttp

from bot import macros
from bot.app import Bot
from bot.blocks import ids
from bot.blocks.common import STATUS_LABELS, SUBMIT_STATUSES, read_meta
from bot.blocks.modals import digest, merge_modal
from warehouse.read_models import Ticket
from warehouse.tickets import Actor, OperationError, checked_fields

log = logging.getLogger(__name__)
MAX_FILE = 100 * 1024 * 1024


def values(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """block_id -> action_id -> the element's state."""
    return (view.get("state") or {}).get("values") or {}


def value_of(view: dict[str, Any], block_prefix: str, action_id: str) -> dict[str, Any]:
    for block_id, actions in values(view).items():
        if (block_id == block_prefix or block_id.startswith(block_prefix + "-")) and action_id in actions:
            return actions[action_id] or {}
    return {}


def submission_key(view: dict[str, Any]) -> str:
    """The same submission delivered again has the same view, hash and values."""
    state = json.dumps(values(view), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{view.get('id')}|{view.get('hash')}|{state}".encode()).hexdigest()
    return f"view:{digest[:40]}"


def submitted_files(view: dict[str, Any]) -> list[Any]:
    """The file_input's files: a list of ids or file objects (the exact shape is not documented)."""
    state = value_of(view, ids.REPLY_FILE, "reply_file")
    return list(state.get("files") or state.get("file_ids") or [])


def changed_fields(view: dict[str, Any]) -> dict[str, Any]:
    """The fields the agent changed in the fields modal, as `tickets.set_fields` takes them: what the
    modal showed (its metadata) and left alone is not written back."""
    shown = read_meta(view)
    priority = (value_of(view, ids.FIELDS_PRIORITY, ids.PRIORITY_SELECT).get("selected_option") or {}).get("value")
    subject = value_of(view, ids.FIELDS_SUBJECT, ids.SUBJECT_INPUT).get("value")
    changes: dict[str, Any] = {}
    if priority is not None and priority != shown.get("priority"):
        changes["priority"] = "" if priority == ids.NO_PRIORITY else priority
    if subject is not None and digest(subject) != shown.get("subject"):
        changes["subject"] = subject.strip()
    return changes


def field_errors(changes: dict[str, Any]) -> dict[str, str]:
    """Each refused field's reason, on its input block."""
    errors = {}
    for name, block in (("priority", ids.FIELDS_PRIORITY), ("subject", ids.FIELDS_SUBJECT)):
        if name in changes:
            try:
                checked_fields({name: changes[name]})
            except OperationError as exc:
                reason = str(exc)
                errors[block] = reason[:1].upper() + reason[1:]
    return errors


def window_refusal(ticket: Ticket) -> str:
    hours = ticket["window"].get("window_hours", 24)
    extra = " Close this and press Reply again to send an approved template." if ticket["window"].get("templates") \
        else " The channel allows no message until the customer writes again."
    return f"The {hours}-hour messaging window has closed: this reply would not be delivered.{extra}"


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

    @app.view(ids.CB_REPLY)
    async def reply_submit(ack: Any, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
        bot.track()
        m = read_meta(view)
        version = m.get("v", 0)
        text_block, status_block = f"{ids.REPLY_TEXT}-{version}", f"{ids.REPLY_STATUS}-{version}"
        mode = m.get("mode")
        text = (value_of(view, ids.REPLY_TEXT, "reply_text").get("value") or "").strip()
        files = submitted_files(view)
        status = (value_of(view, ids.REPLY_STATUS, "reply_status").get("selected_option") or {}).get("value")
        ticket_id = int(m["ticket"])
        errors: dict[str, str] = {}
        window_closed = None
        try:
            ticket = await bot.desk.ticket(ticket_id, history=False)
        except OperationError as exc:
            await ack(response_action="errors", errors={status_block: str(exc)})
            return
        if mode == "text" and not text and not files:
            errors[text_block] = "Write a reply or attach a file."
        elif mode == "text" and not ticket["window"]["open"]:
            errors[text_block] = window_closed = window_refusal(ticket)
        if ticket["status"] == "closed":
            errors[status_block] = "This ticket is closed: the customer's next message opens a new ticket."
        elif status is not None and status not in SUBMIT_STATUSES:
            errors[status_block] = f"Submit as {', '.join(STATUS_LABELS[s] for s in SUBMIT_STATUSES)}."
        if errors:
            await ack(response_action="errors", errors=errors)
            if window_closed:  # R22, R23: in the ticket's events too
                await bot.desk.refused_reply(ticket_id, int(context["agent"]), window_closed, window_closed=True)
            return
        await ack()
        user = body["user"]["id"]
        agent = int(context["agent"])
        channel = await bot.card_channel(ticket_id)
        key = submission_key(view)
        try:
            if mode == "none":
                if status:
                    await bot.desk.set_status(ticket_id, status, Actor.agent(agent))
                return
            template = None
            if mode == "template":
                picked = value_of(view, ids.REPLY_TEMPLATE, "reply_template").get("selected_option") or {}
                index = int(picked["value"])
                chosen = macros.templates(bot.desk)[index]
                params = (value_of(view, ids.REPLY_PARAMS, "reply_params").get("value") or "").splitlines()
                template = {"name": chosen["name"], "language": chosen.get("language", "en"),
                            "parameters": [p.strip() for p in params if p.strip()] or list(chosen.get("parameters")
                                                                                          or [])}
                text = ""
            file = await download(bot, files[0]) if files and template is None else None
            macro = macros.macro_id(bot.desk, m["macro"]) if m.get("macro") and template is None else None
            before = macros.applier(bot.desk, macro, ticket_id, agent)
            await bot.desk.reply(ticket_id, agent, text, status=status, file=file, template=template,
                                 before=before, once=key)
        except OperationError as exc:
            await bot.tell(user, f"⚠️ Reply not sent on ticket #{ticket_id}: {exc}", channel)
        # A reply the channel refuses (now or later) is a reply_failed event: the notifier DMs the
        # agent and marks the card and the thread.

    @app.view(ids.CB_NOTE)
    async def note_submit(ack: Any, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
        bot.track()
        text = (value_of(view, ids.NOTE_TEXT, "note_text").get("value") or "").strip()
        if not text:
            await ack(response_action="errors", errors={ids.NOTE_TEXT: "Write the note."})
            return
        await ack()
        agent = int(context["agent"])
        ticket_id = int(read_meta(view)["ticket"])
        try:
            await bot.desk.note(ticket_id, agent, text, once=submission_key(view))
        except OperationError as exc:
            await bot.tell(body["user"]["id"], f"⚠️ {exc}", await bot.card_channel(ticket_id))

    @app.view(ids.CB_FIELDS)
    async def fields_submit(ack: Any, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
        """Priority and subject, through the desk's one operation for ticket fields (triggers follow)."""
        bot.track()
        user = body["user"]["id"]
        changes = changed_fields(view)
        errors = field_errors(changes)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        agent = int(context["agent"])
        if not changes:
            return
        ticket_id = int(read_meta(view)["ticket"])
        try:
            await bot.desk.set_fields(ticket_id, changes, Actor.agent(agent), once=submission_key(view))
        except OperationError as exc:
            await bot.tell(user, f"⚠️ Fields not saved on ticket #{ticket_id}: {exc}",
                           await bot.card_channel(ticket_id))

    @app.view(ids.CB_MERGE_SEARCH)
    async def merge_search(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Submitting the search step searches (the same as pressing Enter in the field)."""
        bot.track()
        m = read_meta(view)
        query = (value_of(view, "merge_query", ids.MERGE_SEARCH).get("value") or "").strip()
        source = await bot.desk.user(int(m["source"]))
        results = (await bot.desk.search(query))["users"] if query else []
        await ack(response_action="update", view=merge_modal(int(m["ticket"]), source, results=results, query=query))

    @app.view(ids.CB_MERGE)
    async def merge_submit(ack: Any, body: dict[str, Any], view: dict[str, Any], context: Any) -> None:
        bot.track()
        await ack()
        user = body["user"]["id"]
        agent = int(context["agent"])
        m = read_meta(view)
        ticket_id = int(m["ticket"])
        channel = await bot.card_channel(ticket_id)
        try:
            result = await bot.desk.merge(int(m["source"]), int(m["target"]), Actor.agent(agent),
                                          once=submission_key(view))
        except OperationError as exc:
            await bot.tell(user, f"⚠️ Merge refused: {exc}", channel)
            return
        if result is None:
            return  # the same submission again
        await bot.tell(user, f"🔗 Merged user #{result['merged']} into #{result['into']}: "
                             f"{len(result['tickets_moved'])} ticket(s) moved.", channel)
