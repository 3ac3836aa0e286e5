"""Block Kit pieces shared by the home tab, cards and modals, and the checker of Slack's limits.

Everything here is pure: dicts in, dicts out. Builders write compact dicts; `message`, `modal` and
`home` pass every block through slack_sdk's models (`Block.parse(...).to_dict()`, `View.to_dict()`),
whose validators enforce Slack's limits (text lengths, element counts), and count blocks per surface
(channels.md section 6), so an oversized block fails in tests, not in Slack.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

MAX_BLOCKS = {"message": 50, "modal": 100, "home": 100}
SECTION_TEXT = 3000
BUTTON_TEXT = 75
OPTION_TEXT = 75
TITLE = 24

STATUS_ICONS = {"new": "🟡", "open": "🔴", "pending": "🔵", "hold": "⚫", "solved": "🟢", "closed": "⚪"}
STATUS_LABELS = {"new": "New", "open": "Open", "pending": "Pending", "hold": "On-hold", "solved": "Solved",
                 "closed": "Closed"}
# The statuses a reply is submitted with (R21).
SUBMIT_STATUSES = ("new", "open", "pending", "hold", "solved")
CHANNEL_ICONS = {"whatsapp": "🟩", "messenger": "🟦", "line": "💚", "wechat": "🟢", "x": "⬛"}
CHANNEL_LABELS = {"whatsapp": "WhatsApp", "messenger": "Messenger", "line": "LINE", "wechat": "WeChat", "x": "X"}


class BlockLimitError(ValueError):
    """A surface over one of Slack's limits."""


def truncate(text: str, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(text: str) -> str:
    """mrkdwn's three control characters (Slack's formatting reference)."""
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def status_badge(status: str) -> str:
    return f"{STATUS_ICONS.get(status, '❔')} {STATUS_LABELS.get(status, status)}"


def channel_badge(channel: str) -> str:
    return f"{CHANNEL_ICONS.get(channel, '💬')} {CHANNEL_LABELS.get(channel, channel)}"


def duration(seconds: int | None) -> str:
    if seconds is None:
        return ""
    hours, rest = divmod(max(0, int(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min"


def window_text(window: dict[str, Any]) -> str:
    """B1: the time left to answer freely, in words."""
    if not window.get("has_window"):
        return "No messaging window on this channel: replies are always delivered."
    if window.get("open"):
        return f"⏳ {duration(window.get('seconds_left'))} left in the {window.get('window_hours', 24)}-hour window."
    hours = window.get("window_hours", 24)
    return f"⛔ The {hours}-hour messaging window is closed."


def when(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    return value.strftime("%Y-%m-%d %H:%M UTC") if isinstance(value, datetime) else str(value or "")


# -- builders --------------------------------------------------------------------------------------

def text_obj(text: str, kind: str = "mrkdwn") -> dict[str, Any]:
    if kind == "plain_text":
        return {"type": "plain_text", "text": text, "emoji": True}
    return {"type": "mrkdwn", "text": text}


def plain(text: str, limit: int = BUTTON_TEXT) -> dict[str, Any]:
    return text_obj(truncate(text, limit), "plain_text")


def header(text: str) -> dict[str, Any]:
    return {"type": "header", "text": plain(text, 150)}


def section(text: str, accessory: dict[str, Any] | None = None, block_id: str | None = None,
            fields: list[str] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "section"}
    if text:
        block["text"] = text_obj(truncate(text, SECTION_TEXT))
    if fields:
        block["fields"] = [text_obj(truncate(f, 2000)) for f in fields[:10]]
    if accessory:
        block["accessory"] = accessory
    if block_id:
        block["block_id"] = block_id
    return block


def context(*texts: str) -> dict[str, Any]:
    return {"type": "context", "elements": [text_obj(truncate(t, SECTION_TEXT)) for t in texts if t][:10]}


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


def option(text: str, value: str) -> dict[str, Any]:
    return {"text": plain(text, OPTION_TEXT), "value": truncate(value, 75)}


def static_select(action_id: str, placeholder: str, options: list[dict[str, Any]],
                  initial: str | None = None) -> dict[str, Any]:
    el: dict[str, Any] = {"type": "static_select", "action_id": action_id, "placeholder": plain(placeholder, 150),
                          "options": options[:100]}
    chosen = [o for o in options if o["value"] == initial]
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
    el: dict[str, Any] = {"type": "plain_text_input", "action_id": action_id, "multiline": multiline}
    if initial:
        el["initial_value"] = initial
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
        return json.loads((view or {}).get("private_metadata") or "{}")
    except ValueError:
        return {}


# -- the checker -----------------------------------------------------------------------------------

def checked(blocks: list[dict[str, Any]], surface: str) -> list[dict[str, Any]]:
    """The blocks as slack_sdk validates them; raises if any block or the count is over Slack's limits."""
    if len(blocks) > MAX_BLOCKS[surface]:
        raise BlockLimitError(f"{len(blocks)} blocks in a {surface} (Slack allows {MAX_BLOCKS[surface]})")
    return [Block.parse(b).to_dict() for b in blocks]


def message(blocks: list[dict[str, Any]], text: str) -> dict[str, Any]:
    """chat.postMessage / chat.update arguments: checked blocks and the notification fallback text."""
    return {"blocks": checked(blocks, "message"), "text": truncate(text, 3000)}


def modal(title: str, blocks: list[dict[str, Any]], *, callback_id: str, submit: str | None = None,
          close: str = "Close", private_metadata: str = "", notify_on_close: bool = False) -> dict[str, Any]:
    view = View(type="modal", title=truncate(title, TITLE), blocks=checked(blocks, "modal"), callback_id=callback_id,
                submit=truncate(submit, TITLE) if submit else None, close=truncate(close, TITLE),
                private_metadata=private_metadata or None, notify_on_close=notify_on_close or None)
    return view.to_dict()


def home(blocks: list[dict[str, Any]], private_metadata: str = "") -> dict[str, Any]:
    return View(type="home", blocks=checked(blocks, "home"), callback_id="home",
                private_metadata=private_metadata or None).to_dict()
