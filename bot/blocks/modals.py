"""The modals: ticket, reply (R20-R24, B1), internal note, fields (priority and subject), merge (R5,
B5), events (R23), and the answers of `/social` (search R25-R27, help).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from bot.blocks import ids
from bot.blocks.card import (
    DELIVERY_LABELS,
    account_label,
    card_blocks,
    comment_blocks,
    headline,
    social_info_lines,
)
from bot.blocks.common import (
    SUBMIT_STATUSES,
    TEXT_INPUT_MAX,
    actions,
    button,
    channel_badge,
    context,
    divider,
    escape,
    fit,
    header,
    input_block,
    message,
    meta,
    modal,
    option,
    priority_label,
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
from warehouse import channels
from warehouse.conditions import PRIORITIES
from warehouse.read_models import (
    Comment,
    Event,
    MergeSuggestion,
    NotifierTab,
    SearchResult,
    Ticket,
    User,
    UserSummary,
    ViewPage,
)
from warehouse.tickets import SUBJECT_MAX

# Room a modal keeps for the conversation: Slack allows 100 blocks and about 250 kB a view.
MODAL_CONVERSATION_BLOCKS = 60
MODAL_CONVERSATION_CHARS = 90_000
ANSWER_CONVERSATION_BLOCKS = 25  # a /social answer is a message: 50 blocks
EVENTS_PER_SECTION = 2900
EVENT_SECTIONS_PER_PAGE = 30


def conversation_blocks(ticket: Ticket, budget_blocks: int = MODAL_CONVERSATION_BLOCKS,
                        budget_chars: int = MODAL_CONVERSATION_CHARS) -> list[dict[str, Any]]:
    """The latest messages, newest kept first within the budget, shown oldest first; each whole (split
    across sections), or its start with a word that the rest is in the card's thread."""
    shown: list[list[dict[str, Any]]] = []
    used_blocks, used_chars = 0, 0
    for c in reversed(ticket["comments"]):
        kind = "📝" if not c["public"] else ("↩️" if c.get("author_role") == "agent" else "💬")
        blocks = comment_blocks(c.get("author") or "", c, icon=kind)
        if c.get("delivery"):
            state = c["delivery"]["state"]
            blocks.append(context(DELIVERY_LABELS.get(state, state)
                                  + (f": {escape(c['delivery']['reason'])}" if c["delivery"].get("reason") else "")))
        blocks += [context(line) for line in conversation_notes(c)]
        room_blocks, room_chars = budget_blocks - used_blocks, budget_chars - used_chars
        kept = fit(blocks, room_blocks, room_chars)
        if len(kept) < len(blocks):
            if len(kept) < 2 or shown:
                break
            kept = [*kept[:-1], context("… the whole message is in the ticket's Slack thread.")]
        shown.append(kept)
        used_blocks += len(kept)
        used_chars += sum(len(str(b)) for b in kept)
    return [b for group in reversed(shown) for b in group]


def conversation_notes(comment: Comment) -> list[str]:
    """What happened to a message after it came: sent from elsewhere, edited, unsent."""
    notes = [f"Sent by the business from {escape(origin)}"] if (origin := comment.get("origin")) else []
    notes += [truncate(f"✏️ Edited to: {escape(text)}", 2000) for text in comment.get("edits") or []]
    if comment.get("withdrawn_at"):
        notes.append("↩️ Unsent by the customer (kept for the record)")
    return notes


def ticket_modal(ticket: Ticket, requester: User,
                 last_reply: dict[str, Any] | None = None) -> dict[str, Any]:
    """R17: the ticket opened from the notifier, with its card's actions and the latest messages."""
    blocks = (card_blocks(ticket, requester, last_reply=last_reply) + [divider(), context("Latest messages")]
              + conversation_blocks(ticket))
    return modal(f"Ticket #{ticket['id']}", blocks, callback_id=ids.CB_TICKET,
                 private_metadata=meta(ticket=ticket["id"]))


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


def reply_modal(ticket: Ticket, requester: User, *, macros: Sequence[tuple[str, str]] = (),
                templates: Sequence[dict[str, Any]] = (), affecting: dict[str, list[Any]] | None = None,
                prefill: dict[str, Any] | None = None, version: int = 0, macro: str | None = None,
                origin: str = "") -> dict[str, Any]:
    """R20-R24, B1: the reply form. Outside the window it says a free-text reply will not be delivered and
    offers the channel's alternative (WhatsApp templates) instead; macros only inside the window (R22).
    `macros` are (key, title): the key, not the title, is the option's value (titles may be long)."""
    prefill = prefill or {}
    window = ticket["window"]
    tid = ticket["id"]
    blocks: list[dict[str, Any]] = [
        section(f"*#{tid} · {escape(requester.get('name') or '')}*\nReplying from "
                f"{channel_badge(ticket['channel'])} *{escape(account_label(ticket))}*"),
        context(window_text(window)),
    ]
    suggestions = requester.get("merge_suggestions") or []
    if suggestions:  # R21, B5: merge first
        names = ", ".join(f"{escape(s['name'] or '')} (#{s['id']}, {s['tickets']} tickets)" for s in suggestions[:5])
        blocks.append(section(f"🔗 Same phone number as {names}. Merge before replying?",
                              accessory=button("Merge user", ids.MERGE, str(tid))))
    status = prefill.get("status") or ("open" if ticket["status"] == "new" else ticket["status"])
    if status not in SUBMIT_STATUSES:
        status = None
    if window["open"]:
        mode = "text"
        if macros:
            blocks.append(actions(static_select(ids.REPLY_MACRO, "Apply a macro",
                                                [option(title, key) for key, title in macros], macro),
                                  block_id="macro"))
        if macro and prefill.get("summary"):
            blocks.append(context(truncate(f"Macro: {escape(prefill['summary'])}", 3000)))
        blocks.append(input_block(f"{ids.REPLY_TEXT}-{version}", "Reply", text_input(
            "reply_text", multiline=True, initial=prefill.get("comment"), max_length=TEXT_INPUT_MAX), optional=True,
            hint=f"Up to {TEXT_INPUT_MAX:,} characters (Slack's limit for a text field)."))
        blocks.append(input_block(ids.REPLY_FILE, "Photo or file", {
            "type": "file_input", "action_id": "reply_file", "max_files": 1}, optional=True))
    else:
        hours = window.get("window_hours", 24)
        blocks.append(section(f"⛔ *The customer's last message is more than {hours} hours old: a free-text reply "
                              f"will not be delivered.*"))
        if window.get("templates") and templates:
            mode = "template"
            blocks.append(input_block(ids.REPLY_TEMPLATE, f"Send an approved {channels.label(ticket['channel'])} "
                                      "template instead", static_select(
                "reply_template", "Choose a template",
                [option(f"{t['name']} ({t.get('language', '')})", str(i)) for i, t in enumerate(templates)])))
            blocks.append(input_block(ids.REPLY_PARAMS, "Template parameters, one per line", text_input(
                "reply_params", multiline=True, max_length=TEXT_INPUT_MAX), optional=True))
        else:
            mode = "none"
            blocks.append(context("No approved template configured." if window.get("templates") else
                                  "This channel allows no message until the customer writes again."))
    blocks.append(input_block(f"{ids.REPLY_STATUS}-{version}", "Submit as", status_select("reply_status", status)))
    blocks += rules_blocks(affecting)
    return modal("Reply", blocks, callback_id=ids.CB_REPLY, submit="Send" if mode != "none" else "Save status",
                 private_metadata=meta(ticket=tid, mode=mode, macro=macro, v=version, origin=origin))


def note_modal(ticket: Ticket) -> dict[str, Any]:
    blocks = [section(f"*#{ticket['id']}* · internal note: agents only, never sent to the customer."),
              input_block(ids.NOTE_TEXT, "Note", text_input("note_text", multiline=True, max_length=TEXT_INPUT_MAX))]
    return modal("Internal note", blocks, callback_id=ids.CB_NOTE, submit="Add note",
                 private_metadata=meta(ticket=ticket["id"]))


def digest(text: str) -> str:
    """A short fingerprint of a field's text, for the metadata (the text itself may not fit there)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fields_modal(ticket: Ticket) -> dict[str, Any]:
    """The ticket's priority and subject, as they are now. The metadata keeps what the modal showed, so
    that saving writes only what the agent changed, not over a rule's change made meanwhile."""
    priority = ticket.get("priority") or ids.NO_PRIORITY
    priorities = [option(priority_label(None), ids.NO_PRIORITY), *(option(priority_label(p), p) for p in PRIORITIES)]
    subject = text_input(ids.SUBJECT_INPUT, initial=ticket.get("subject"), max_length=SUBJECT_MAX)
    blocks = [section(f"*#{ticket['id']} · {escape(headline(ticket))}*"),
              input_block(ids.FIELDS_PRIORITY, "Priority", static_select(
                  ids.PRIORITY_SELECT, "Priority", priorities, priority)),
              input_block(ids.FIELDS_SUBJECT, "Subject", subject)]
    return modal(f"Fields of #{ticket['id']}", blocks, callback_id=ids.CB_FIELDS, submit="Save",
                 private_metadata=meta(ticket=ticket["id"], priority=priority,
                                       subject=digest(subject.get("initial_value") or "")))


def _user_line(u: User | UserSummary | MergeSuggestion, count: int) -> str:
    """An account in one line; `count`: its tickets."""
    return f"*{escape(u.get('name') or '')}* (#{u['id']}) · {escape(u.get('phone') or 'no phone')} · {count} ticket(s)"


def merge_modal(ticket_id: int, source: User, *, results: list[UserSummary] | None = None,
                query: str = "") -> dict[str, Any]:
    """R5, B5: find the account to merge into (name or phone); suggestions first, each account once."""
    blocks: list[dict[str, Any]] = [
        section(f"Merge *{escape(source.get('name') or '')}* (#{source['id']}) into another account: its "
                "identities, tickets and messages move there."),
        input_block("merge_query", "Search by name or phone", text_input(
            ids.MERGE_SEARCH, initial=query or None, placeholder="+33 6 12 34 56 78"), dispatch=True),
    ]
    listed = {source["id"]}
    suggestions = []
    for s in source.get("merge_suggestions") or []:
        if s["id"] not in listed:
            listed.add(s["id"])
            suggestions.append(s)
    if suggestions:
        blocks.append(context("🔗 Suggested: same phone number"))
        blocks += [section(_user_line(s, s["tickets"]), accessory=button("Pick", ids.MERGE_PICK, str(s["id"])))
                   for s in suggestions[:10]]
    if results is not None:
        found = []
        for u in results:
            if u["id"] not in listed:
                listed.add(u["id"])
                found.append(u)
        blocks.append(context(f"{len(found)} other account(s) found for “{escape(query)}”"))
        blocks += [section(_user_line(u, len(u.get("ticket_ids", []))),
                           accessory=button("Pick", ids.MERGE_PICK, str(u["id"]))) for u in found[:30]]
    return modal("Merge user", blocks, callback_id=ids.CB_MERGE_SEARCH, submit="Search",
                 private_metadata=meta(ticket=ticket_id, source=source["id"]))


def profile_blocks(title: str, user: User) -> list[dict[str, Any]]:
    lines = social_info_lines(user)
    return [section(f"*{title}*\n{_user_line(user, len(user.get('ticket_ids', [])))}"),
            *([context(truncate("\n".join(lines), 3000))] if lines else [])]


def merge_confirm_modal(ticket_id: int, source: User, target: User) -> dict[str, Any]:
    blocks = [*profile_blocks("Merge this account", source), divider(),
              *profile_blocks("into this one (it stays)", target),
              context(f"After the merge {len(source.get('ticket_ids', [])) + len(target.get('ticket_ids', []))} "
                      "ticket(s) belong to the surviving account.")]
    return modal("Confirm merge", blocks, callback_id=ids.CB_MERGE, submit="Merge",
                 private_metadata=meta(ticket=ticket_id, source=source["id"], target=target["id"]))


EVENT_LABELS = {"sent_to_channel": "Sent to the social messaging channel", "reply_failed": "Delivery failed",
                "reply_delivered": "Delivered", "reply_read": "Read", "reply_sent": "Accepted by the channel",
                "reply_retry": "Channel unreachable, will retry", "reply_refused": "Reply refused before sending"}


def event_line(e: Event) -> str:
    who = e["actor"]["type"] + (f" {e['actor']['id']}" if e["actor"].get("id") else "")
    data = e.get("data") or {}
    detail = ", ".join(f"{k}={v}" for k, v in data.items() if v not in (None, "", [], {}) and k != "comment_id")
    label = EVENT_LABELS.get(e["kind"], e["kind"].replace("_", " "))
    return truncate(f"{when(e['created_at'])} *{escape(label)}* ({escape(who)})"
                    + (f": {escape(detail)}" if detail else ""), 1000)


def event_pages(events: list[Event]) -> list[list[str]]:
    """The log packed into sections, and the sections into pages; page 0 holds the newest events."""
    sections: list[str] = []
    current = ""
    for line in (event_line(e) for e in events):
        if current and len(current) + len(line) + 1 > EVENTS_PER_SECTION:
            sections.append(current)
            current = ""
        current += ("\n" if current else "") + line
    if current:
        sections.append(current)
    pages = [sections[max(0, end - EVENT_SECTIONS_PER_PAGE):end]
             for end in range(len(sections), 0, -EVENT_SECTIONS_PER_PAGE)]
    return pages or [[]]


def events_modal(ticket: Ticket, page: int = 1) -> dict[str, Any]:
    """R23, B2: the ticket's event log, oldest first on each page; page 1 is the newest, older pages
    follow (a long-lived ticket's log is far over one view's size)."""
    pages = event_pages(ticket["events"])
    page = min(max(1, page), len(pages))
    blocks = [header(f"Events of ticket #{ticket['id']}")]
    if len(pages) > 1:
        blocks.append(context(f"Page {page} of {len(pages)} ({len(ticket['events']):,} events, newest page first)"))
    blocks += [section(text) for text in pages[page - 1]] or [section("_No events._")]
    paging = []
    if page < len(pages):
        paging.append(button("Older events", f"{ids.EVENTS_PAGE}_older", str(page + 1)))
    if page > 1:
        paging.append(button("Newer events", f"{ids.EVENTS_PAGE}_newer", str(page - 1)))
    if paging:
        blocks.append(actions(*paging, block_id="events-paging"))
    return modal(f"Events #{ticket['id']}", blocks, callback_id=ids.CB_EVENTS,
                 private_metadata=meta(ticket=ticket["id"], page=page))


# -- /social answers --------------------------------------------------------------------------------

def ticket_answer(ticket: Ticket, requester: User) -> dict[str, Any]:
    blocks = card_blocks(ticket, requester) + [divider()]
    blocks += conversation_blocks(ticket, min(ANSWER_CONVERSATION_BLOCKS, 50 - len(blocks)), 60_000)
    return message(blocks, f"Ticket #{ticket['id']}")


def list_answer(title: str, result: NotifierTab | ViewPage, more: str) -> dict[str, Any]:
    """A notifier tab or a view's page; `more`: what "Load more tickets" opens (the tab, or the view's title)."""
    blocks = [header(title)]
    if not result["tickets"]:
        blocks.append(section("_No tickets._"))
    blocks += [ticket_row(t) for t in result["tickets"]]
    if result.get("has_more"):
        blocks.append(actions(button("Load more tickets", ids.LOAD_MORE, more), block_id="more"))
    return message(blocks[:50], title)


def ticket_buttons(ticket_ids: list[int]) -> dict[str, Any]:
    """A person's tickets (the latest 25) as buttons that open them; ids unique within the block."""
    return actions(*[button(f"#{t}", f"{ids.OPEN_TICKET}-{t}", str(t)) for t in ticket_ids[-25:]])


def search_answer(result: SearchResult) -> dict[str, Any]:
    """R25-R27: end users (with all their tickets, each a button that opens it) and tickets found by
    channel info (rows that open them)."""
    blocks = [header(f"Search: {truncate(result['query'], 100)}")]
    if phone := result.get("phone"):
        blocks.append(context(f"Phone number {escape(phone)}"))
    for u in result["users"][:10]:
        count = len(u["ticket_ids"])
        blocks.append(section(f"👤 *{escape(u['name'] or '')}* (user #{u['id']}) · {escape(u['phone'] or '')}\n"
                              f"{count} ticket(s)" + (", the latest 25:" if count > 25 else ":" if count else "")))
        if count:
            blocks.append(ticket_buttons(u["ticket_ids"]))
    if result["tickets"]:
        shown = min(20, 50 - len(blocks) - 2)
        blocks.append(divider())
        blocks += [ticket_row(t) for t in result["tickets"][:shown]]
        if len(result["tickets"]) > shown:
            blocks.append(context(f"{len(result['tickets']) - shown} more ticket(s): narrow the search."))
    if not result["users"] and not result["tickets"]:
        blocks.append(section("_Nothing found._"))
    return message(blocks, f"Search: {result['query']}")


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

