"""The ticket card posted in the triage channel, and the messages of its thread (R20, R21, B1, B3).

The card shows what the customer wrote before it went out (often several messages), the status, the
channel and the business account replies leave from (R20), the requester with their social messaging
info (R6), the tags (R7, R9), the time left in the messaging window (B1), a failed last reply (R22),
the priority, and the actions: Claim (or, once someone has it, Reassign to me and Unassign), Reply
with social messaging, Internal note, Merge user, Status, Edit fields (priority and subject), Events.
The thread carries the rest of the conversation: end-user messages (several waiting ones in one
post), replies with their delivery state, notes.

Long texts are split across sections and, past a message's 50 blocks, across posts: nothing is cut.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.blocks import ids
from bot.blocks.common import (
    actions,
    button,
    channel_badge,
    context,
    escape,
    first_words,
    message,
    posts,
    priority_label,
    section,
    status_badge,
    status_select,
    text_sections,
    truncate,
    when,
    window_text,
)
from warehouse.read_models import Assignee, Ticket, TicketRow, User

DELIVERY_LABELS = {"queued": "📤 Sent to channel", "sent": "✅ Sent to channel", "delivered": "✅✅ Delivered",
                   "read": "👀 Read", "failed": "❌ Not delivered", "retry": "🔁 Channel unreachable, retrying"}
# The card keeps this much room for the customer's messages; what does not fit goes to the thread whole.
CARD_MESSAGE_BLOCKS = 30
GENERIC_SUBJECT = " conversation with "  # the subject ingestion gives every new ticket


def account_label(ticket: Ticket) -> str:
    """The business account as agents know it: its name and number where the channel has one (R20)."""
    info = ticket.get("fields", {}).get("social_messaging_channel_info") or {}
    name = info.get("account_name") or info.get("name")
    number = info.get("display_phone_number") or info.get("phone_number")
    parts = [p for p in (name, number) if p]
    return " · ".join(parts) if parts else ticket.get("account", "")


def social_info_lines(user: User) -> list[str]:
    """R6: the requester's phone and what each channel sent about them, one line per identity."""
    lines = []
    if phone := user.get("phone"):
        lines.append(f"📞 {escape(phone)}")
    for ident in user.get("identities", []):
        profile = ident.get("profile") or {}
        shown = ", ".join(f"{k}: {v}" for k, v in profile.items() if v and not isinstance(v, (dict, list)))
        lines.append(f"{channel_badge(ident['channel'])} ({escape(ident['account'])}): "
                     f"`{escape(ident['platform_user_id'])}`" + (f" — {escape(shown)}" if shown else ""))
    return lines


def headline(ticket: Ticket | TicketRow, preview: str | None = None) -> str:
    """What a ticket is about in one line: its subject, unless that is the generic one ingestion gives,
    then the customer's words."""
    subject = ticket.get("subject") or ""
    if preview and (not subject or GENERIC_SUBJECT in subject):
        return first_words(preview)
    return subject


def who_has_it(assignee: Assignee | None) -> str:
    if not assignee:
        return "_Unassigned_"
    if slack_user_id := assignee.get("slack_user_id"):
        return f"<@{escape(slack_user_id)}>"
    return escape(assignee.get("name") or f"agent {assignee.get('id')}")


def comment_blocks(name: str, comment: Mapping[str, Any], links: list[str | None] | None = None,
                   icon: str = "💬") -> list[dict[str, Any]]:
    """One end-user message: who and when, then the whole text in as many sections as it takes."""
    head = f"{icon} *{escape(name)}* · {when(comment.get('created_at'))}\n"
    blocks = text_sections(comment.get("body") or "", head) if comment.get("body") else [section(head + "_(no text)_")]
    lines = attachment_lines(comment.get("attachments", []), links)
    if lines:
        blocks.append(section("\n".join(lines)))
    return blocks


def card_blocks(ticket: Ticket, requester: User, *, messages: Sequence[dict[str, Any]] = (),
                links: Mapping[int, list[str | None] | None] | None = None, last_reply: dict[str, Any] | None = None
                ) -> list[dict[str, Any]]:
    """The card; `messages` are the customer's messages it shows (those waiting when it was posted)."""
    tid = str(ticket["id"])
    assignee = ticket.get("assignee")
    tags = " ".join(f"`{escape(t)}`" for t in ticket["tags"]) or "_no tags_"
    about = headline(ticket, messages[0].get("body") if messages else None)
    blocks = [section(f"*#{tid} · {escape(about)}*")]
    for m in messages:
        blocks += comment_blocks(requester.get("name") or "", m, (links or {}).get(m.get("id", 0)))
    blocks.append(section("", fields=[f"*Status*\n{status_badge(ticket['status'])}",
                                      f"*Channel*\n{channel_badge(ticket['channel'])}",
                                      f"*Business account*\n{escape(account_label(ticket))}",
                                      f"*Assignee*\n{who_has_it(assignee)}",
                                      f"*Requester*\n{escape(requester.get('name') or '')}",
                                      f"*Messaging window*\n{window_text(ticket['window'])}",
                                      f"*Priority*\n{escape(priority_label(ticket.get('priority')))}"]))
    info = social_info_lines(requester)
    if info:
        blocks.append(context(truncate("\n".join(info), 3000)))
    suggestions = requester.get("merge_suggestions") or []
    if suggestions:
        blocks.append(context(f"🔗 {len(suggestions)} other account(s) share this phone number: "
                              "merge before replying (Merge user)."))
    blocks.append(context(f"🏷️ {tags}"))
    if last_reply and last_reply.get("state") == "failed":  # R22: at a glance, on the card too
        blocks.append(context(f"❌ Last reply not delivered: {escape(last_reply.get('reason') or 'refused')}"))
    owner_buttons = ([button("Reassign to me", ids.REASSIGN, tid), button("Unassign", ids.UNASSIGN, tid)]
                     if assignee else [button("Claim", ids.CLAIM, tid, "primary")])
    blocks.append(actions(
        *owner_buttons,
        button("Reply with social messaging", ids.REPLY, tid, "primary" if assignee else None),
        button("Internal note", ids.NOTE, tid),
        button("Merge user", ids.MERGE, tid),
        status_select(ids.STATUS, ticket["status"] if ticket["status"] != "closed" else None),
        button("Edit fields", ids.FIELDS, tid),
        button("Events", ids.EVENTS, tid),
        block_id=f"card-{tid}"))
    return blocks


def card_room(requester: User, waiting: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The waiting messages a new card shows whole, oldest first, within its room; the rest go to the
    thread (a message too long for the card goes there whole)."""
    shown, used = [], 0
    for m in waiting:
        used += len(comment_blocks(requester.get("name") or "", m))
        if used > CARD_MESSAGE_BLOCKS:
            break
        shown.append(m)
    return shown


def card_message(ticket: Ticket, requester: User, *, messages: Sequence[dict[str, Any]] = (),
                 links: Mapping[int, list[str | None] | None] | None = None, last_reply: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    words = first_words(messages[-1].get("body") or "", 120) if messages else ""
    text = (f"{status_badge(ticket['status'])} #{ticket['id']} {channel_badge(ticket['channel'])}: "
            f"{requester.get('name') or ''}" + (f": {words}" if words else ""))
    return message(card_blocks(ticket, requester, messages=messages, links=links, last_reply=last_reply), text)


def attachment_lines(attachments: list[dict[str, Any]], links: list[str | None] | None = None) -> list[str]:
    """One line per attachment; with `links`, each label opens the file (fetched from the channel)."""
    out = []
    for i, a in enumerate(attachments):
        label = escape(str(a.get("filename") or a.get("caption") or a.get("title") or a.get("type", "file")))
        link = links[i] if links and i < len(links) else None
        out.append(f"📎 {escape(a.get('type', 'file'))}: " + (f"<{link}|{label}>" if link else label))
    return out


def end_user_posts(name: str, comments: list[dict[str, Any]],
                   links: Mapping[int, list[str | None] | None] | None = None) -> list[dict[str, Any]]:
    """B3: end-user messages waiting for the card's thread, as few posts as Slack allows (one, mostly)."""
    blocks = [b for c in comments for b in comment_blocks(name, c, (links or {}).get(c.get("id", 0)))]
    return posts(blocks, f"{name}: {comments[-1].get('body') or ''}")


def end_user_message(name: str, comment: dict[str, Any], links: list[str | None] | None = None) -> dict[str, Any]:
    """One end-user message as one post (a message that needs more posts: `end_user_posts`)."""
    return end_user_posts(name, [comment], {comment.get("id", 0): links} if links else None)[0]


def business_posts(comment: dict[str, Any], origin: str) -> list[dict[str, Any]]:
    """A message the business sent outside SocialDesk (the WhatsApp Business app, the Page inbox): the
    conversation as the customer saw it."""
    name = f"{comment.get('author') or 'The business'} (sent from {origin})"
    return end_user_posts(name, [{**comment, "id": comment.get("id", 0)}])


def edit_posts(name: str, original: dict[str, Any], text: str) -> list[dict[str, Any]]:
    """The customer edited a message: the new text, under a quote of what it replaces (kept as it was)."""
    quoted = quote(original.get("body") or "")
    blocks = text_sections(text or "_(no text)_", f"✏️ *{escape(name)}* edited a message{quoted}:\n")
    return posts(blocks, f"{name} edited a message: {text}")


def withdrawn_posts(name: str, original: dict[str, Any]) -> list[dict[str, Any]]:
    """The customer unsent a message: say so; the message stays on the ticket for the record."""
    quoted = quote(original.get("body") or "")
    return posts([section(f"↩️ *{escape(name)}* unsent a message{quoted} (kept on the ticket for the record)")],
                 f"{name} unsent a message")


def quote(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return f" “{escape(text if len(text) <= limit else text[:limit - 1] + '…')}”" if text else ""


def reply_posts(comment: dict[str, Any], state: str, reason: str | None = None) -> list[dict[str, Any]]:
    """A reply as sent to the channel with its delivery state first (R23, B2), so that the first post,
    the one updated as receipts come, always carries it."""
    label = DELIVERY_LABELS.get(state, state)
    blocks = [context(label + (f": {escape(reason)}" if reason else "")),
              *text_sections(comment.get("body") or "", f"↩️ *{escape(comment.get('author') or 'Agent')}* replied: "),
              *([section("\n".join(attachment_lines(comment.get("attachments", []))))]
                if comment.get("attachments") else [])]
    return posts(blocks, f"Reply ({label}): {comment.get('body') or ''}")


def note_posts(comment: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = text_sections(comment.get("body") or "",
                           f"📝 Internal note by *{escape(comment.get('author') or 'Agent')}*: ")
    return posts(blocks, f"Internal note: {comment.get('body') or ''}")


def notification_message(text: str, ticket: Ticket | None) -> dict[str, Any]:
    head = f"*#{ticket['id']}* {status_badge(ticket['status'])} {channel_badge(ticket['channel'])}\n" if ticket else ""
    return posts(text_sections(text, head), text)[0]


def failure_dm(ticket: Ticket, reply: dict[str, Any], card: tuple[str, str] | None) -> dict[str, Any]:
    """R22: a reply the channel refused after the modal closed, told to the agent who wrote it (an
    update of the thread line notifies no one)."""
    where = f" on ticket #{ticket['id']} ({channel_badge(ticket['channel'])})"
    blocks = [section(f"❌ *Your reply{where} was not delivered.*\n{escape(reply.get('reason') or '')}"),
              *text_sections(reply.get("body") or "", "> ")[:3]]
    if card:
        blocks.append(actions(button("Open the ticket", ids.OPEN_TICKET, str(ticket["id"])), block_id="open"))
    return message(blocks, f"Your reply on ticket #{ticket['id']} was not delivered: {reply.get('reason') or ''}")


def claim_refusal(ticket_id: int, assignee: dict[str, Any]) -> dict[str, Any]:
    """A claim on a ticket someone else has: who has it, and a deliberate way to take it over.
    `assignee` is `tickets.AssignedElsewhere.assignee`: a ticket's assignee, untyped there."""
    who = who_has_it(Assignee(id=assignee["id"], name=assignee.get("name"),
                              slack_user_id=assignee.get("slack_user_id")))
    text = (f"⚠️ Ticket #{ticket_id} is already assigned to {who}. "
            "Take it over only if you agreed on it.")
    return message([section(text), actions(button("Reassign to me", ids.REASSIGN, str(ticket_id)),
                                           block_id=f"take-{ticket_id}")],
                   f"Ticket #{ticket_id} is already assigned to {assignee.get('name') or 'another agent'}.")

