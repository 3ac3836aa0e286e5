"""Macros: actions an agent applies from the reply modal (R21).

`preview_macro` says what a macro would do (the modal fills its fields from it, and shows at once
when the channel's messaging window forbids its comment); `apply_macro` does it. The macro's public
comment is a reply from the agent and obeys the channel's window like any reply (R22, B1).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import duckdb

from warehouse import channels
from warehouse.rows import event, record_events
from warehouse.rules.actions import (
    CUSTOM_PREFIX,
    Applying,
    apply_actions,
    comment_text,
    comments_public,
    tags_of,
    ticket_row,
)
from warehouse.rules.loader import Rule, RuleSet
from warehouse.rules.placeholders import render, values
from warehouse.tickets import OperationError, window_state


def _macro(rules: RuleSet, macro: Rule | str | int) -> Rule:
    if isinstance(macro, Rule):
        return macro
    try:
        rule = rules.find(macro, "macro")
    except KeyError:
        raise OperationError(f"no macro named {macro!r}") from None
    if not rule.active:
        raise OperationError(f"the macro {rule.title!r} is inactive")
    return rule


def preview_macro(con: duckdb.DuckDBPyConnection, rules: RuleSet, macro: Rule | str | int, ticket_id: int,
                  agent_id: int) -> dict[str, Any]:
    """What applying `macro` to the ticket would do, rendered for this agent; nothing is written."""
    rule = _macro(rules, macro)
    t = ticket_row(con, ticket_id)
    known = values(con, ticket_id, agent_id)
    public = comments_public(rule.actions)
    comments: list[str] = []
    notes: list[str] = []
    tags = list(t["tags"])
    out: dict[str, Any] = {"macro": rule.title, "ticket_id": ticket_id, "status": None, "assignee_id": None,
                           "priority": None, "group_id": None, "subject": None, "custom_fields": {},
                           "notifications": []}
    for a in rule.actions:
        name, value = str(a.get("field")), a.get("value")
        if name in ("comment_value", "comment_value_html"):
            (comments if public else notes).append(render(comment_text(a), known))
        elif name == "comment_value_internal":
            notes.append(render(comment_text(a), known))
        elif name == "current_tags":
            tags += [x for x in tags_of(value) if x not in tags]
        elif name == "remove_tags":
            tags = [x for x in tags if x not in tags_of(value)]
        elif name == "set_tags":
            tags = tags_of(value)
        elif name == "assignee_id":
            out["assignee_id"] = agent_id if value == "current_user" else value
        elif name == "notification_slack":
            target, text = (list(value) + ["", ""])[:2] if isinstance(value, list) else ("", "")
            out["notifications"].append({"target": target, "text": render(str(text), known)})
        elif name == "subject":
            out["subject"] = render(str(value or ""), known)
        elif name in ("status", "priority", "group_id"):
            out[name] = value
        elif name.startswith(CUSTOM_PREFIX):
            out["custom_fields"][name.removeprefix(CUSTOM_PREFIX)] = value
    window = window_state(t)
    comment = "\n\n".join(comments) or None
    blocked = None
    if comment and not window["open"]:
        hours = window.get("window_hours")
        blocked = (f"The {hours}-hour messaging window is closed: this macro's reply would not be delivered"
                   + (f" (send an approved {channels.label(t['channel'])} template instead)."
                      if window["templates"] else "."))
    added, removed = [x for x in tags if x not in t["tags"]], [x for x in t["tags"] if x not in tags]
    return {**out, "comment": comment, "internal_note": "\n\n".join(notes) or None, "tags": tags,
            "tags_added": added, "tags_removed": removed, "add_tags": added, "remove_tags": removed,
            "window": window, "comment_blocked": blocked,
            "current_custom_fields": json.loads(t["custom_fields"] or "{}")}


def apply_macro(con: duckdb.DuckDBPyConnection, rules: RuleSet, macro: Rule | str | int, ticket_id: int,
                agent_id: int, *, comment: bool = True, skip_fields: Collection[str] = ()) -> dict[str, Any]:
    """Apply `macro` to the ticket for `agent_id`, in the caller's transaction.

    `comment=False` leaves out the macro's public comment, for when the reply modal sends the (edited)
    text itself (`desk.reply(..., before=...)`); `skip_fields` leaves out any other actions, e.g. "status".
    """
    rule = _macro(rules, macro)
    if not comment and comments_public(rule.actions):
        skip_fields = (*skip_fields, "comment_value", "comment_value_html")
    ticket_row(con, ticket_id)
    record_events(con, [event(ticket_id, "macro_applied", "agent", agent_id, macro=rule.title, source=rule.source)])
    run = Applying(con, ticket_id, rule.actor, rule.title, current_user=agent_id, author=agent_id,
                   assignment=rules.assignment)
    results = apply_actions(run, rule.actions, skip_fields)
    reply = next((r["result"] for r in results if r["ok"] and isinstance(r["result"], dict)
                  and "outbox_id" in r["result"]), None)
    return {"macro": rule.title, "ticket_id": ticket_id, "results": results, "reply": reply,
            "failed": [r for r in results if not r["ok"]]}
