"""The modals: ticket, reply (R20-R24, B1), internal note, merge (R5, B5), events (R23), and the
answers of `/social` (search R25-R27, help).
"""

from __future__ import annotations

from typing import Any

from bot.blocks.card import DELIVERY_LABELS, account_label, attachment_lines, card_blocks, social_info_lines
from bot.blocks.common import (
    actions,
    button,
    channel_badge,
    context,
    divider,
    escape,
    header,
    input_block,
    message,
    meta,
    modal,
    option,
    section,
    static_select,
    status_badge,
    status_select,
    text_input,
    truncate,
    when,
    window_text,
)
from bot.blocks.home import ticket_row

RECENT_COMMENTS = 10


def conversation_blocks(ticket: dict[str, Any], limit: int = RECENT_COMMENTS) -> list[dict[str, Any]]:
    out = []
    for c in ticket["comments"][-limit:]:
        who = escape(c.get("author") or "")
        kind = "📝 note" if not c["public"] else ("↩️ reply" if c.get("author_role") == "agent" else "💬")
        state = ""
        if c.get("delivery"):
            state = f" — {DELIVERY_LABELS.get(c['delivery']['state'], c['delivery']['state'])}"
        lines = [f"{kind} *{who}* · {when(c['created_at'])}{state}", escape(c["body"]),
                 *attachment_lines(c.get("attachments", []))]
        out.append(section(truncate("\n".join(x for x in lines if x), 3000)))
    return out


def ticket_modal(ticket: dict[str, Any], requester: dict[str, Any]) -> dict[str, Any]:
    """R17: the ticket opened from the notifier, with its card's actions and the latest messages."""
    blocks = card_blocks(ticket, requester) + [divider(), context("Latest messages")] + conversation_blocks(ticket)
    return modal(f"Ticket #{ticket['id']}", blocks, callback_id="ticket", private_metadata=meta(ticket=ticket["id"]))


def rules_blocks(affecting: dict[str, list[Any]] | None) -> list[dict[str, Any]]:
    """R24: which triggers and automations will act on this ticket."""
    if affecting is None:
        return []
    names = [f"• Trigger: {escape(_title(r))}" for r in affecting.get("triggers", [])]
    names += [f"• Automation: {escape(_title(r))}" for r in affecting.get("automations", [])]
    text = "\n".join(names) if names else "No trigger or automation acts on this ticket now."
    return [context(truncate("*Business rules on this ticket*\n" + text, 3000))]


def _title(rule: Any) -> str:
    if isinstance(rule, dict):
        return str(rule.get("title") or rule.get("id") or rule)
    return str(getattr(rule, "title", rule))


def reply_modal(ticket: dict[str, Any], requester: dict[str, Any], *, macros: list[tuple[str, str]] = (),
                templates: list[dict[str, Any]] = (), affecting: dict[str, list[Any]] | None = None,
                prefill: dict[str, Any] | None = None, version: int = 0, macro: str | None = None,
                origin: str = "") -> dict[str, Any]:
    """R20-R24, B1: the reply form. Outside the window it says a free-text reply will not be delivered and
    offers the channel's alternative (WhatsApp templates) instead; macros only inside the window (R22)."""
    prefill = prefill or {}
    window = ticket["window"]
    tid = ticket["id"]
    blocks: list[dict[str, Any]] = [
        section(f"*#{tid} · {escape(requester.get('name') or '')}*\nReplying from "
                f"{channel_badge(ticket['channel'])} *{escape(account_label(ticket))}*"),
        context(window_text(window)),
    ]
    if requester.get("merge_suggestions"):  # R21, B5: merge first
        names = ", ".join(f"{escape(s['name'] or '')} (#{s['id']}, {s['tickets']} tickets)"
                          for s in requester["merge_suggestions"][:5])
        blocks.append(section(f"🔗 Same phone number as {names}. Merge before replying?",
                              accessory=button("Merge user", "merge", str(tid))))
    status = prefill.get("status") or ("open" if ticket["status"] == "new" else ticket["status"])
    if window["open"]:
        mode = "text"
        if macros:
            blocks.append(actions(static_select("reply_macro", "Apply a macro",
                                                [option(title, mid) for mid, title in macros], macro),
                                  block_id="macro"))
        if macro and prefill.get("summary"):
            blocks.append(context(truncate(f"Macro: {escape(prefill['summary'])}", 3000)))
        blocks.append(input_block(f"text-{version}", "Reply", text_input(
            "reply_text", multiline=True, initial=prefill.get("comment"), max_length=4096), optional=True))
        blocks.append(input_block("file", "Photo or file", {"type": "file_input", "action_id": "reply_file",
                                                            "max_files": 1}, optional=True))
    else:
        hours = window.get("window_hours", 24)
        blocks.append(section(f"⛔ *The customer's last message is more than {hours} hours old: a free-text reply "
                              f"will not be delivered.*"))
        if ticket["channel"] == "whatsapp" and templates:
            mode = "template"
            blocks.append(input_block("template", "Send an approved WhatsApp template instead", static_select(
                "reply_template", "Choose a template",
                [option(f"{t['name']} ({t.get('language', '')})", str(i)) for i, t in enumerate(templates)])))
            blocks.append(input_block("params", "Template parameters, one per line", text_input(
                "reply_params", multiline=True), optional=True))
        else:
            mode = "none"
            blocks.append(context("No approved template configured." if ticket["channel"] == "whatsapp" else
                                  "This channel allows no message until the customer writes again."))
    blocks.append(input_block(f"status-{version}", "Submit as", status_select("reply_status", status)))
    blocks += rules_blocks(affecting)
    return modal("Reply", blocks, callback_id="reply_submit", submit="Send" if mode != "none" else "Save status",
                 private_metadata=meta(ticket=tid, mode=mode, macro=macro, v=version, origin=origin))


def note_modal(ticket: dict[str, Any]) -> dict[str, Any]:
    blocks = [section(f"*#{ticket['id']}* · internal note: agents only, never sent to the customer."),
              input_block("note", "Note", text_input("note_text", multiline=True, max_length=4000))]
    return modal("Internal note", blocks, callback_id="note_submit", submit="Add note",
                 private_metadata=meta(ticket=ticket["id"]))


def _user_line(u: dict[str, Any]) -> str:
    count = u.get("tickets") if isinstance(u.get("tickets"), int) else len(u.get("ticket_ids", []))
    return f"*{escape(u.get('name') or '')}* (#{u['id']}) · {escape(u.get('phone') or 'no phone')} · {count} ticket(s)"


def merge_modal(ticket_id: int, source: dict[str, Any], *, results: list[dict[str, Any]] | None = None,
                query: str = "") -> dict[str, Any]:
    """R5, B5: find the account to merge into (name or phone); suggestions first."""
    blocks: list[dict[str, Any]] = [
        section(f"Merge *{escape(source.get('name') or '')}* (#{source['id']}) into another account: its "
                "identities, tickets and messages move there."),
        input_block("merge_query", "Search by name or phone", text_input(
            "merge_search", initial=query or None, placeholder="+33 6 12 34 56 78"), dispatch=True),
    ]
    suggestions = source.get("merge_suggestions") or []
    if suggestions:
        blocks.append(context("🔗 Suggested: same phone number"))
        blocks += [section(_user_line(s), accessory=button("Pick", "merge_pick", str(s["id"])))
                   for s in suggestions[:10]]
    if results is not None:
        found = [u for u in results if u["id"] != source["id"]]
        blocks.append(context(f"{len(found)} account(s) found for “{escape(query)}”"))
        blocks += [section(_user_line(u), accessory=button("Pick", "merge_pick", str(u["id"]))) for u in found[:30]]
    return modal("Merge user", blocks, callback_id="merge_search", submit="Search",
                 private_metadata=meta(ticket=ticket_id, source=source["id"]))


def profile_blocks(title: str, user: dict[str, Any]) -> list[dict[str, Any]]:
    lines = social_info_lines(user)
    return [section(f"*{title}*\n{_user_line({**user, 'tickets': len(user.get('ticket_ids', []))})}"),
            *([context(truncate("\n".join(lines), 3000))] if lines else [])]


def merge_confirm_modal(ticket_id: int, source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    blocks = [*profile_blocks("Merge this account", source), divider(),
              *profile_blocks("into this one (it stays)", target),
              context(f"After the merge {len(source.get('ticket_ids', [])) + len(target.get('ticket_ids', []))} "
                      "ticket(s) belong to the surviving account.")]
    return modal("Confirm merge", blocks, callback_id="merge_submit", submit="Merge",
                 private_metadata=meta(ticket=ticket_id, source=source["id"], target=target["id"]))


EVENT_LABELS = {"sent_to_channel": "Sent to the social messaging channel", "reply_failed": "Delivery failed",
                "reply_delivered": "Delivered", "reply_read": "Read", "reply_sent": "Accepted by the channel",
                "reply_retry": "Channel unreachable, will retry"}


def event_line(e: dict[str, Any]) -> str:
    who = e["actor"]["type"] + (f" {e['actor']['id']}" if e["actor"].get("id") else "")
    data = e.get("data") or {}
    detail = ", ".join(f"{k}={v}" for k, v in data.items() if v not in (None, "", [], {}) and k != "comment_id")
    label = EVENT_LABELS.get(e["kind"], e["kind"].replace("_", " "))
    return f"`{when(e['created_at'])}` *{escape(label)}* ({escape(who)}){': ' + escape(detail) if detail else ''}"


def events_modal(ticket: dict[str, Any]) -> dict[str, Any]:
    """R23, B2: the ticket's event log, newest last, packed into sections."""
    lines = [event_line(e) for e in ticket["events"]]
    chunks, current = [], ""
    for line in lines:
        line = truncate(line, 1000)
        if len(current) + len(line) + 1 > 2900:
            chunks.append(current)
            current = ""
        current += line + "\n"
    if current:
        chunks.append(current)
    blocks = [header(f"Events of ticket #{ticket['id']}")] + [section(c) for c in chunks[-95:]]
    if not lines:
        blocks.append(section("_No events._"))
    return modal(f"Events #{ticket['id']}", blocks, callback_id="events")


# -- /social answers --------------------------------------------------------------------------------

def ticket_answer(ticket: dict[str, Any], requester: dict[str, Any]) -> dict[str, Any]:
    blocks = card_blocks(ticket, requester) + [divider()] + conversation_blocks(ticket, 5)
    return message(blocks, f"Ticket #{ticket['id']}")


def list_answer(title: str, result: dict[str, Any]) -> dict[str, Any]:
    blocks = [header(title)]
    if not result["tickets"]:
        blocks.append(section("_No tickets._"))
    blocks += [ticket_row(t) for t in result["tickets"]]
    if result.get("has_more"):
        blocks.append(actions(button("Load more tickets", "load_more", result.get("tab") or result.get("view", "")),
                              block_id="more"))
    return message(blocks[:50], title)


def search_answer(result: dict[str, Any]) -> dict[str, Any]:
    """R25-R27: end users (with all their tickets) and tickets found by channel info."""
    blocks = [header(f"Search: {truncate(result['query'], 100)}")]
    if result.get("phone"):
        blocks.append(context(f"Phone number {escape(result['phone'])}"))
    for u in result["users"][:10]:
        ids = ", ".join(f"#{i}" for i in u["ticket_ids"]) or "no tickets"
        blocks.append(section(f"👤 *{escape(u['name'] or '')}* (user #{u['id']}) · {escape(u['phone'] or '')}\n"
                              f"Tickets: {ids}"))
    if result["tickets"]:
        blocks.append(divider())
        blocks += [ticket_row(t) for t in result["tickets"][:30]]
    if not result["users"] and not result["tickets"]:
        blocks.append(section("_Nothing found._"))
    return message(blocks[:50], f"Search: {result['query']}")


def help_answer(command: str) -> dict[str, Any]:
    lines = [f"`{command}` — social tickets assigned to you (New or Open)",
             f"`{command} unassigned` — social tickets nobody has",
             f"`{command} ticket N` — open ticket N",
             f"`{command} search QUERY` — end users by phone or social info, tickets by channel info",
             f"`{command} view NAME` — a view, e.g. “Unassigned social messaging tickets”",
             f"`{command} help` — this help"]
    return message([section("\n".join(lines))], "Help")


def status_line(status: str) -> str:
    return status_badge(status)
