"""Block Kit pieces shared by the home tab, cards and modals.

Everything here is pure: dicts in, dicts out, within Slack's limits by construction (reference/
slack.md): long texts are split across sections rather than cut (`text_sections`), a message's
blocks across posts (`posts`), every user-supplied text is escaped for mrkdwn, the notification
fallback `text` included (`message`). `message`, `modal` and `home` count blocks per surface and
pass every block through slack_sdk's models as a first check; the strict fake of Slack's Web API
(socialdesk/fakes/slack_api.py) is the real one.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from warehouse import channels
from warehouse.read_models import Window

MAX_BLOCKS = {"message": 50, "modal": 100, "home": 100}
SECTION_TEXT = 3000
FIELD_TEXT = 2000
BUTTON_TEXT = 75
OPTION_TEXT = 75
OPTION_VALUE = 150
TITLE = 24
TEXT_INPUT_MAX = 3000  # plain_text_input's max_length: 1..3000
FALLBACK = 300  # the notification text: the first words, the blocks carry the rest
VIEW_BUDGET = 150_000  # bytes of JSON a view may take; Slack refuses around 250 kB

# Status icons are coloured circles; channel icons (each channel's own, warehouse.channels) are monochrome
# squared letters. They never share a symbol or a colour, and red is only R15's marker (new unassigned
# tickets wait).
STATUS_ICONS = {"new": "🟡", "open": "🟠", "pending": "🔵", "hold": "🟣", "solved": "⚪", "closed": "⚫"}
STATUS_COLOURS = {"new": "yellow", "open": "orange", "pending": "blue", "hold": "purple", "solved": "white",
                  "closed": "black"}
STATUS_LABELS = {"new": "New", "open": "Open", "pending": "Pending", "hold": "On-hold", "solved": "Solved",
                 "closed": "Closed"}
# The statuses a reply is submitted with (R21): a ticket never goes back to New.
SUBMIT_STATUSES = ("open", "pending", "hold", "solved")
RED_DOT = "🔴"


class BlockLimitError(ValueError):
    """A surface over one of Slack's limits: a bug in a builder."""


def truncate(text: str, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(text: str) -> str:
    """mrkdwn's three control characters (Slack's formatting reference)."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def chunks(text: str, limit: int = SECTION_TEXT) -> list[str]:
    """`text` in pieces of at most `limit` characters, cut at a line break or a space where one is near
    the end, never inside an escape (`&amp;`, `&lt;`, `&gt;`)."""
    out: list[str] = []
    while len(text) > limit:
        space = max(text.rfind("\n", 0, limit + 1), text.rfind(" ", 0, limit + 1))
        if space >= limit // 2:
            out.append(text[:space])
            text = text[space + 1:]  # the break itself goes
            continue
        cut = limit
        amp = text.rfind("&", cut - 4, cut)
        if amp > 0 and ";" not in text[amp:cut]:
            cut = amp
        out.append(text[:cut])
        text = text[cut:]
    if text or not out:
        out.append(text)
    return out


def status_badge(status: str) -> str:
    return f"{STATUS_ICONS.get(status, '❔')} {STATUS_LABELS.get(status, status)}"


def priority_label(priority: str | None) -> str:
    """Zendesk's words for a priority (Low, Normal, High, Urgent); a ticket may have none."""
    return priority.capitalize() if priority else "None"


def channel_badge(channel: str) -> str:
    found = channels.find(channel)
    return f"{found.icon} {found.label}" if found else f"💬 {channel}"


def duration(seconds: int | float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min"


def window_text(window: Window) -> str:
    """B1: the time left to answer freely, in words."""
    if not window.get("has_window"):
        return "No messaging window on this channel: replies are always delivered."
    tag = window.get("tag")
    found = channels.find(window.get("channel") or "") if tag else None
    if tag and found and found.window:  # past the free-form window, answering as a person with the tag
        if window.get("open"):
            return (f"⏳ {found.label}'s {_span(found.window.hours)} are over: {duration(window.get('seconds_left'))} "
                    f"left to answer as a person, sent with the {tag} tag (human answers only, no automated "
                    f"messages).")
        return (f"⛔ {found.label}'s {_span(found.window.tagged_hours)} for human agents are over: the "
                f"{found.account_noun} can no longer answer this customer.")
    if window.get("open"):
        return f"⏳ {duration(window.get('seconds_left'))} left in the {window.get('window_hours', 24)}-hour window."
    hours = window.get("window_hours", 24)
    return f"⛔ The {hours}-hour messaging window is closed."


def _span(hours: int) -> str:
    """A window's length as people say it: "24 hours", "7 days"."""
    return f"{hours // 24} days" if hours > 24 and hours % 24 == 0 else f"{hours} hours"


def window_short(window: Window) -> str:
    """B1 in a row: the window's time left in a few characters."""
    if not window.get("has_window"):
        return "no window"
    if window.get("open"):
        return f"⏳ {duration(window.get('seconds_left'))} left"
    return "⛔ window closed"


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value  # the store keeps naive UTC


def when(value: Any) -> str:
    """A time each agent reads in their own time zone: Slack's `<!date^...>` (mrkdwn only), with a
    UTC fallback for clients that cannot format it."""
    at = _datetime(value)
    if at is None:
        return escape(str(value or ""))
    fallback = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def when_plain(value: Any) -> str:
    """A time where Slack formats nothing (plain_text, the fallback text): UTC."""
    at = _datetime(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else str(value or "")


def first_words(text: str, limit: int = 80) -> str:
    """The start of a message on one line."""
    return truncate(" ".join((text or "").split()), limit)


# -- builders --------------------------------------------------------------------------------------

def text_obj(text: str, kind: str = "mrkdwn") -> dict[str, Any]:
    if kind == "plain_text":
        return {"type": "plain_text", "text": text or " ", "emoji": True}
    return {"type": "mrkdwn", "text": text or " "}


def plain(text: str, limit: int = BUTTON_TEXT) -> dict[str, Any]:
    return text_obj(truncate(text, limit), "plain_text")


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": plain(text, 150)}


def section(text: str, accessory: dict[str, Any] | None = None, block_id: str | None = None,
            fields: list[str] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section"}
    if text or not fields:
        block["text"] = text_obj(truncate(text, SECTION_TEXT))
    if fields:
        block["fields"] = [text_obj(truncate(f, FIELD_TEXT)) for f in fields[:10]]
    if accessory:
        block["accessory"] = accessory
    if block_id:
        block["block_id"] = block_id[:255]
    return block


def text_sections(text: str, first_prefix: str = "") -> list[dict[str, Any]]:
    """Escaped `text` in as many sections as it takes (3,000 characters each), `first_prefix` (mrkdwn,
    already escaped) opening the first: a long message is split, never cut."""
    body = escape(text)
    pieces = chunks(first_prefix + body)
    return [section(p) for p in pieces]


def context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [text_obj(truncate(t, SECTION_TEXT)) for t in texts if t][:10]
            or [text_obj(" ")]}


def divider() -> dict[str, Any]:
    return {"type": "divider"}


def button(text: str, action_id: str, value: str = "", style: str | None = None) -> dict[str, Any]:
    b: dict[str, Any] = {"type": "button", "text": plain(text), "action_id": action_id}
    if value:
        b["value"] = truncate(value, 2000)
    if style:
        b["style"] = style
    return b


def actions(*elements: dict[str, Any], block_id: str | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "actions", "elements": list(elements)[:25]}
    if block_id:
        block["block_id"] = block_id
    return block


def middle_cut(text: str, limit: int) -> str:
    """`text` within `limit`, its start and its end kept: long titles that begin alike stay apart."""
    if len(text) <= limit:
        return text
    tail = (limit - 1) * 2 // 5
    return text[: limit - 1 - tail].rstrip() + "…" + text[-tail:].lstrip()


def option(text: str, value: str) -> dict[str, Any]:
    if len(value) > OPTION_VALUE:
        raise BlockLimitError(f"option value over {OPTION_VALUE} characters: key it by an id")
    return {"text": text_obj(middle_cut(text, OPTION_TEXT), "plain_text"), "value": value}


def static_select(action_id: str, placeholder: str, options: list[dict[str, Any]],
                  initial: str | None = None) -> dict[str, Any]:
    el: dict[str, Any] = {"type": "static_select", "action_id": action_id, "placeholder": plain(placeholder, 150),
                          "options": options[:100]}
    chosen = [o for o in options[:100] if o["value"] == initial]
    if chosen:
        el["initial_option"] = chosen[0]
    return el


def status_select(action_id: str, initial: str | None = None, statuses: tuple[str, ...] = SUBMIT_STATUSES
                  ) -> dict[str, Any]:
    return static_select(action_id, "Status", [option(status_badge(s), s) for s in statuses], initial)


def input_block(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False,
                hint: str | None = None, dispatch: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "label": plain(label, 2000), "element": element,
                             "optional": optional}
    if hint:
        block["hint"] = plain(hint, 2000)
    if dispatch:
        block["dispatch_action"] = True
    return block


def text_input(action_id: str, *, multiline: bool = False, initial: str | None = None,
               placeholder: str | None = None, max_length: int | None = None) -> dict[str, Any]:
    if max_length is not None and not 1 <= max_length <= TEXT_INPUT_MAX:
        raise BlockLimitError(f"plain_text_input max_length {max_length} is outside 1..{TEXT_INPUT_MAX}")
    el: dict[str, Any] = {"type": "plain_text_input", "action_id": action_id, "multiline": multiline}
    if initial:
        el["initial_value"] = truncate(initial, max_length or TEXT_INPUT_MAX)
    if placeholder:
        el["placeholder"] = plain(placeholder, 150)
    if max_length:
        el["max_length"] = max_length
    return el


def meta(**values: Any) -> str:
    """A view's private_metadata (at most 3000 characters)."""
    text = json.dumps(values, separators=(",", ":"))
    if len(text) > 3000:
        raise BlockLimitError("private_metadata over 3000 characters")
    return text


def read_meta(view: dict[str, Any] | None) -> dict[str, Any]:
    try:
        found = json.loads((view or {}).get("private_metadata") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


# -- surfaces --------------------------------------------------------------------------------------

def checked(blocks: list[dict[str, Any]], surface: str) -> list[dict[str, Any]]:
    """The blocks as slack_sdk validates them; raises if any block or the count is over Slack's limits."""
    if len(blocks) > MAX_BLOCKS[surface]:
        raise BlockLimitError(f"{len(blocks)} blocks in a {surface} (Slack allows {MAX_BLOCKS[surface]})")
    return [Block.parse(b).to_dict() for b in blocks]  # type: ignore[union-attr]


def fallback(text: str) -> str:
    """The notification `text` of a message: escaped like the blocks, the first words only."""
    return escape(first_words(text, FALLBACK)) or " "


def message(blocks: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """chat.postMessage / chat.update arguments: checked blocks and the escaped notification text."""
    return {"blocks": checked(blocks, "message"), "text": fallback(text)}


def posts(blocks: list[dict[str, Any]], text: str, per_post: int = MAX_BLOCKS["message"]) -> list[dict[str, Any]]:
    """Blocks too many for one message, as several messages (a long conversation in a thread)."""
    groups = [blocks[i:i + per_post] for i in range(0, len(blocks), per_post)] or [[section(" ")]]
    return [message(group, text if n == 0 else f"{text} (continued)") for n, group in enumerate(groups)]


def _sized(view: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(view, ensure_ascii=False).encode())
    if size > VIEW_BUDGET:
        raise BlockLimitError(f"a view of {size} bytes (keep under {VIEW_BUDGET}; Slack refuses about 250 kB)")
    return view


def modal(title: str, blocks: list[dict[str, Any]], *, callback_id: str, submit: str | None = None,
          close: str = "Close", private_metadata: str = "", notify_on_close: bool = False) -> dict[str, Any]:
    view = View(type="modal", title=truncate(title, TITLE), blocks=checked(blocks, "modal"), callback_id=callback_id,
                submit=truncate(submit, TITLE) if submit else None, close=truncate(close, TITLE),
                private_metadata=private_metadata or None, notify_on_close=notify_on_close or None)
    return _sized(view.to_dict())


def home(blocks: list[dict[str, Any]], private_metadata: str = "") -> dict[str, Any]:
    return _sized(View(type="home", blocks=checked(blocks, "home"), callback_id="home",
                       private_metadata=private_metadata or None).to_dict())


def fit(blocks: list[dict[str, Any]], budget_blocks: int, budget_chars: int) -> list[dict[str, Any]]:
    """The first blocks that fit both budgets (a modal's room for a conversation)."""
    out: list[dict[str, Any]] = []
    size = 0
    for b in blocks:
        n = len(json.dumps(b, ensure_ascii=False))
        if len(out) >= budget_blocks or size + n > budget_chars:
            break
        out.append(b)
        size += n
    return out
