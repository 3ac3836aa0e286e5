"""The bot's view of the business rules (R21, R24): macros to pick, their preview, their application
with a reply, and which triggers and automations act on a ticket.

`desk.rules` is a `warehouse.rules` RuleSet, or None when rules are off: then there are no macros
and no rule information, and the reply modal says nothing about them.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable
from typing import Any

from warehouse import clock
from warehouse.desk import Desk

log = logging.getLogger(__name__)


def _api(name: str) -> Callable[..., Any] | None:
    try:
        module = importlib.import_module("warehouse.rules")
    except ImportError:
        return None
    return getattr(module, name, None)


def ruleset(desk: Desk) -> Any:
    return getattr(desk, "rules", None)


def templates(desk: Desk) -> list[dict[str, Any]]:
    """The approved WhatsApp templates offered outside the window (B1), from configuration."""
    return list(getattr(desk, "templates", None) or [])


def key(macro_id: str) -> str:
    """A macro's value in the picker: short and unique whatever its id or title (option values are
    at most 150 characters, and titles cut to fit would collide)."""
    return "m-" + hashlib.sha256(macro_id.encode()).hexdigest()[:20]


def macros(desk: Desk) -> list[tuple[str, str]]:
    """(key, title) of every active macro, in the rule files' order (a select holds 100)."""
    rules = ruleset(desk)
    if rules is None:
        return []
    return [(key(m.id), m.title) for m in rules.macros if m.active][:100]


def macro_id(desk: Desk, picked: str) -> str | None:
    """The id of the macro whose key was picked (None if rules changed since the modal opened)."""
    rules = ruleset(desk)
    if rules is None:
        return None
    return next((m.id for m in rules.macros if m.active and key(m.id) == picked), None)


def _macro(desk: Desk, macro_id: str) -> Any:
    return ruleset(desk).find(macro_id, "macro")


async def preview(desk: Desk, macro_id: str, ticket_id: int, agent: int) -> dict[str, Any]:
    """What applying the macro would set: {comment, status, tags, summary}."""
    rules, fn = ruleset(desk), _api("preview_macro")
    if rules is None or fn is None:
        return {}
    macro = _macro(desk, macro_id)
    result = await desk.read(lambda con: fn(con, rules, macro, ticket_id, agent))
    summary = []
    if result.get("status"):
        summary.append(f"status {result['status']}")
    for key, label in (("tags_added", "add tags"), ("tags_removed", "remove tags")):
        if result.get(key):
            summary.append(f"{label} {' '.join(result[key])}")
    if result.get("comment_blocked"):
        summary.append(result["comment_blocked"])
    return {**result, "summary": f"{macro.title}" + (f" ({'; '.join(summary)})" if summary else "")}


def applier(desk: Desk, macro_id: str | None, ticket_id: int, agent: int) -> Callable[[Any], Any] | None:
    """The macro's actions, to run in the reply's own transaction (desk.reply(before=...))."""
    rules, fn = ruleset(desk), _api("apply_macro")
    if not macro_id or rules is None or fn is None:
        return None
    macro = _macro(desk, macro_id)
    # The modal sends the (edited) text and the chosen status itself: the macro does the rest.
    return lambda con: fn(con, rules, macro, ticket_id, agent, comment=False, skip_fields=("status",))


async def affecting(desk: Desk, ticket_id: int, agent: int | None = None) -> dict[str, list[Any]] | None:
    """R24: triggers and automations that will act on the ticket, or None without rules."""
    rules, fn = ruleset(desk), _api("rules_affecting")
    if rules is None or fn is None:
        return None
    try:
        return await desk.read(lambda con: fn(con, rules, ticket_id, clock.now(), agent))
    except Exception:  # rule info is advice: never let it stop a reply
        log.exception("rules_affecting failed for ticket %s", ticket_id)
        return None
