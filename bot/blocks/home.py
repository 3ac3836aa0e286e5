"""The notifier in the App Home tab (R10-R17) and the view pages it opens, as Block Kit.

Rows keep the order the notifier query gives (R14: no sorting). Each row: the status icon on the
left, the requester's name with the conversation status under it (R13), what the ticket is about
(its subject, or the customer's first words), how long the customer has waited and the time left
in the messaging window (B1); on the right a button with the channel icon and the ticket number
that opens the ticket (R13, R17).
"""

from __future__ import annotations

from typing import Any

from bot.blocks import ids
from bot.blocks.card import headline
from bot.blocks.common import (
    RED_DOT,
    STATUS_ICONS,
    actions,
    button,
    channel_badge,
    context,
    divider,
    duration,
    escape,
    header,
    home,
    meta,
    modal,
    section,
    window_short,
)
from warehouse.read_models import NotifierTab, TicketRow, ViewPage

TAB_LABELS = {"assigned": "Assigned to you", "unassigned": "Unassigned"}
TAB_VIEWS = {"assigned": "Your social messaging tickets", "unassigned": "Unassigned social messaging tickets"}


def row_details(t: TicketRow) -> str:
    """What the ticket is about, how long the customer has waited, the window's time left."""
    parts = []
    about = headline(t, t.get("preview"))
    if about:
        parts.append(f"“{escape(about)}”")
    if t.get("waiting_seconds") is not None:
        parts.append(f"waiting {duration(t['waiting_seconds'])}")
    if t.get("window"):
        parts.append(window_short(t["window"]))
    return " · ".join(parts)


def ticket_row(t: TicketRow, action_id: str = ids.OPEN_TICKET) -> dict[str, Any]:
    icon = STATUS_ICONS.get(t["status"], "❔")
    name = escape(t["requester"]["name"] or f"User {t['requester']['id']}")
    details = row_details(t)
    return section(f"{icon}  *{name}*\n{t['conversation_status']}" + (f"\n{details}" if details else ""),
                   accessory=button(f"{channel_badge(t['channel'])}  #{t['id']}", action_id, str(t["id"])),
                   block_id=f"row-{t['id']}")


def tab_buttons(tab: str, red_dot: bool) -> dict[str, Any]:
    unassigned = TAB_LABELS["unassigned"] + (f" {RED_DOT}" if red_dot else "")
    return actions(
        button(TAB_LABELS["assigned"], f"{ids.HOME_TAB}_assigned", "assigned",
               "primary" if tab == "assigned" else None),
        button(unassigned, f"{ids.HOME_TAB}_unassigned", "unassigned", "primary" if tab == "unassigned" else None),
        block_id="tabs")


def home_blocks(result: NotifierTab) -> list[dict[str, Any]]:
    """One tab of the notifier from `queries.notifier(...)`: header (red dot, R15), tabs, 20 rows, load more."""
    tab = result["tab"]
    title = "Social messaging" + (f"  {RED_DOT}" if result["red_dot"] else "")
    blocks = [header(title)]
    if result["red_dot"]:
        blocks.append(context(f"{RED_DOT} New unassigned social tickets need attention."))
    blocks += [tab_buttons(tab, result["red_dot"]), divider()]
    if not result["tickets"]:
        blocks.append(section("_No tickets here._" if tab == "unassigned" else
                              "_No New or Open social tickets are assigned to you._"))
    blocks += [ticket_row(t) for t in result["tickets"]]
    if result["has_more"]:  # R16: only when there are more than 20
        blocks += [divider(), actions(button("Load more tickets", ids.LOAD_MORE, tab), block_id="more")]
    return blocks


def home_view(result: NotifierTab) -> dict[str, Any]:
    return home(home_blocks(result), meta(tab=result["tab"]))


def refused_home(reason: str) -> dict[str, Any]:
    return home([header("Social messaging"), section(escape(reason))])


def view_modal(result: ViewPage) -> dict[str, Any]:
    """A page of a view (R16, R18, R19) in a modal, with paging; rows open the ticket in place (R17)."""
    blocks = [header(result["view"]), context(f"Page {result['page']}")]
    if not result["tickets"]:
        blocks.append(section("_No tickets in this view._"))
    blocks += [ticket_row(t) for t in result["tickets"]]
    paging = []
    if result["page"] > 1:
        paging.append(button("Previous page", f"{ids.VIEW_PAGE}_previous", str(result["page"] - 1)))
    if result["has_more"]:
        paging.append(button("Next page", f"{ids.VIEW_PAGE}_next", str(result["page"] + 1)))
    if paging:
        blocks.append(actions(*paging, block_id="paging"))
    return modal("Social tickets", blocks, callback_id=ids.CB_VIEW,
                 private_metadata=meta(view=result["view"], page=result["page"]))
