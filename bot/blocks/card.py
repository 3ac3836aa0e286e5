"""The ticket card posted in the triage channel, and the messages of its thread (R20, R21, B1, B3).

The card shows the status, the channel and the business account replies leave from (R20), the
requester with their social messaging info (R6), the tags (R7, R9), the time left in the messaging
window (B1), and the actions: Claim, Reply with social messaging, Internal note, Merge user, Status,
Events. The thread carries the conversation: end-user messages, replies with their delivery state.
"""

from __future__ import annotations

from typing import Any

from bot.blocks.common import (
    actions,
    button,
    channel_badge,
    context,
    escape,
    message,
    section,
    status_badge,
    status_select,
    truncate,
    window_text,
)

DELIVERY_LABELS = {"queued": "📤 Sent to channel", "sent": "✅ Sent to channel", "delivered": "✅✅ Delivered",
                   "read": "👀 Read", "failed": "❌ Not delivered", "retry": "🔁 Channel unreachable, retrying"}


def account_label(ticket: dict[str, Any]) -> str:
    """The business account as agents know it: its name and number where the channel has one (R20)."""
    info = ticket.get("fields", {}).get("social_messaging_channel_info") or {}
    name = info.get("account_name") or info.get("name")
    number = info.get("display_phone_number") or info.get("phone_number")
    parts = [p for p in (name, number) if p]
    return " · ".join(parts) if parts else ticket.get("account", "")


def social_info_lines(user: dict[str, Any]) -> list[str]:
    """R6: the requester's phone and what each channel sent about them, one line per identity."""
    lines = []
    if user.get("phone"):
        lines.append(f"📞 {user['phone']}")
    for ident in user.get("identities", []):
        profile = ident.get("profile") or {}
        shown = ", ".join(f"{k}: {v}" for k, v in profile.items() if v and not isinstance(v, (dict, list)))
        lines.append(f"{channel_badge(ident['channel'])} ({escape(ident['account'])}): "
                     f"`{escape(ident['platform_user_id'])}`" + (f" — {escape(shown)}" if shown else ""))
    return lines


def card_blocks(ticket: dict[str, Any], requester: dict[str, Any]) -> list[dict[str, Any]]:
    tid = str(ticket["id"])
    assignee = ticket.get("assignee")
    who = (f"<@{assignee['slack_user_id']}>" if assignee and assignee.get("slack_user_id")
           else escape(assignee["name"]) if assignee else "_Unassigned_")
    tags = " ".join(f"`{escape(t)}`" for t in ticket["tags"]) or "_no tags_"
    blocks = [
        section(f"*#{tid} · {escape(ticket['subject'])}*", block_id="card-title"),
        section("", fields=[f"*Status*\n{status_badge(ticket['status'])}",
                            f"*Channel*\n{channel_badge(ticket['channel'])}",
                            f"*Business account*\n{escape(account_label(ticket))}",
                            f"*Assignee*\n{who}",
                            f"*Requester*\n{escape(requester.get('name') or '')}",
                            f"*Messaging window*\n{window_text(ticket['window'])}"]),
    ]
    info = social_info_lines(requester)
    if info:
        blocks.append(context(*[truncate("\n".join(info), 3000)]))
    if requester.get("merge_suggestions"):
        blocks.append(context(f"🔗 {len(requester['merge_suggestions'])} other account(s) share this phone number: "
                              "merge before replying (Merge user)."))
    blocks.append(context(f"🏷️ {tags}"))
    blocks.append(actions(
        button("Claim", "claim", tid, None if assignee else "primary"),
        button("Reply with social messaging", "reply", tid, "primary" if assignee else None),
        button("Internal note", "note", tid),
        button("Merge user", "merge", tid),
        status_select("status", ticket["status"] if ticket["status"] != "closed" else None),
        button("Events", "events", tid),
        block_id=f"card-{tid}"))
    return blocks


def card_message(ticket: dict[str, Any], requester: dict[str, Any]) -> dict[str, Any]:
    text = (f"{status_badge(ticket['status'])} #{ticket['id']} {channel_badge(ticket['channel'])}: "
            f"{requester.get('name') or ''}")
    return message(card_blocks(ticket, requester), text)


def attachment_lines(attachments: list[dict[str, Any]], links: list[str | None] | None = None) -> list[str]:
    """One line per attachment; with `links`, each label opens the file (fetched from the channel)."""
    out = []
    for i, a in enumerate(attachments):
        label = escape(str(a.get("filename") or a.get("caption") or a.get("title") or a.get("type", "file")))
        link = links[i] if links and i < len(links) else None
        out.append(f"📎 {escape(a.get('type', 'file'))}: " + (f"<{link}|{label}>" if link else label))
    return out


def end_user_message(name: str, comment: dict[str, Any], links: list[str | None] | None = None) -> dict[str, Any]:
    """B3: an end-user message, in the card's thread; `links` open its attachments."""
    body = escape(comment["body"]) or "_(no text)_"
    lines = [f"💬 *{escape(name)}*: {body}", *attachment_lines(comment.get("attachments", []), links)]
    return message([section("\n".join(lines))], f"{name}: {comment['body']}")


def reply_message(comment: dict[str, Any], state: str, reason: str | None = None) -> dict[str, Any]:
    """A reply as sent to the channel, with its delivery state (R23, B2); updated as receipts come."""
    label = DELIVERY_LABELS.get(state, state)
    lines = [f"↩️ *{escape(comment.get('author') or 'Agent')}* replied: {escape(comment['body'])}",
             *attachment_lines(comment.get("attachments", []))]
    blocks = [section("\n".join(lines)), context(label + (f": {escape(reason)}" if reason else ""))]
    return message(blocks, f"Reply: {comment['body']} ({label})")


def note_message(comment: dict[str, Any]) -> dict[str, Any]:
    text = f"📝 Internal note by *{escape(comment.get('author') or 'Agent')}*: {escape(comment['body'])}"
    return message([section(text)], f"Internal note: {comment['body']}")


def notification_message(text: str, ticket: dict[str, Any] | None) -> dict[str, Any]:
    head = f"*#{ticket['id']}* {status_badge(ticket['status'])} {channel_badge(ticket['channel'])}\n" if ticket else ""
    return message([section(head + escape(text))], text)
