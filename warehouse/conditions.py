"""Zendesk's condition language, compiled to SQL over the tickets table.

Views, the notifier, triggers and automations all select tickets with `{"all": [...], "any": [...]}`
of `{"field", "operator", "value"}`, so removing a tag really removes a ticket from them (R9).
Compiling to SQL keeps one evaluator for a view over a million tickets and a trigger on one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from warehouse.model import CHANNELS, MESSAGING_WINDOWS, STATUSES

OPERATORS = ("is", "is_not", "less_than", "greater_than", "includes", "not_includes", "present", "not_present")
TIME_FIELDS = ("hours_since_created", "hours_since_open", "hours_since_pending", "hours_since_solved",
               "hours_since_requester_update", "hours_since_assignee_update", "hours_since_last_end_user_message",
               "messaging_window_hours_left")
FIELDS = ("status", "assignee_id", "requester_id", "group_id", "priority", "current_tags", "via",
          "business_account", "update_type", "comment_is_public", "requester_role", *TIME_FIELDS)
_STATUS_RANK = "CASE t.status " + " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(STATUSES)) + " END"
_WINDOW_HOURS = "CASE t.channel " + " ".join(
    f"WHEN '{c}' THEN {int(w.total_seconds() // 3600)}" for c, w in MESSAGING_WINDOWS.items() if w) + " END"


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message names the field and why."""


@dataclass(slots=True)
class Context:
    """What a condition is evaluated against besides the ticket."""

    now: datetime
    current_user: int | None = None  # the agent a view is shown to, or who made the update
    update_type: str | None = None  # "Create" or "Change" (triggers only)
    comment_is_public: bool | None = None


@dataclass(slots=True)
class Compiled:
    sql: str
    params: list[Any] = field(default_factory=list)


def _hours_since(column: str, status: str | None = None) -> str:
    expr = f"date_diff('hour', {column}, $now)"
    return f"(CASE WHEN t.status = '{status}' THEN {expr} END)" if status else expr


_EXPR = {
    "assignee_id": "t.assignee_id", "requester_id": "t.requester_id", "group_id": "t.group_id",
    "priority": "t.priority", "via": "t.channel",
    "requester_role": "(SELECT u.role FROM users u WHERE u.id = t.requester_id)",
    "hours_since_created": _hours_since("t.created_at"),
    "hours_since_open": _hours_since("t.status_changed_at", "open"),
    "hours_since_pending": _hours_since("t.status_changed_at", "pending"),
    "hours_since_solved": _hours_since("coalesce(t.solved_at, t.status_changed_at)", "solved"),
    "hours_since_requester_update": _hours_since("t.last_end_user_message_at"),
    "hours_since_assignee_update": _hours_since("t.last_agent_update_at"),
    "hours_since_last_end_user_message": _hours_since("t.last_end_user_message_at"),
    "messaging_window_hours_left": f"({_WINDOW_HOURS} - date_diff('hour', t.last_end_user_message_at, $now))",
}


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value).split()


def compile_condition(cond: Mapping[str, Any], ctx: Context, where: str = "condition") -> Compiled:
    name, op, value = cond.get("field"), cond.get("operator", "is"), cond.get("value")
    if name not in FIELDS:
        raise ConditionError(f"{where}: unsupported field {name!r}")
    if op not in OPERATORS:
        raise ConditionError(f"{where}: unsupported operator {op!r} for {name}")
    params: list[Any] = []

    def param(v: Any) -> str:
        params.append(v)
        return "?"

    if name == "current_tags":
        tags = _values(value)
        if op in ("includes", "is"):
            return Compiled(f"list_has_any(t.tags, {param(tags)}::VARCHAR[])", params)
        if op in ("not_includes", "is_not"):
            return Compiled(f"NOT list_has_any(t.tags, {param(tags)}::VARCHAR[])", params)
        if op == "present":
            return Compiled("len(t.tags) > 0")
        if op == "not_present":
            return Compiled("len(t.tags) = 0")
        raise ConditionError(f"{where}: current_tags does not take {op!r}")
    if name in ("update_type", "comment_is_public"):
        actual = ctx.update_type if name == "update_type" else ctx.comment_is_public
        wanted: Any = str(value) if name == "update_type" else str(value).lower() in ("true", "1", "public")
        if op == "is":
            return Compiled("TRUE" if actual == wanted else "FALSE")
        if op == "is_not":
            return Compiled("TRUE" if actual != wanted else "FALSE")
        raise ConditionError(f"{where}: {name} takes is or is_not")
    if name == "status":
        if value not in STATUSES and op not in ("present", "not_present"):
            raise ConditionError(f"{where}: status {value!r} is not one of {', '.join(STATUSES)}")
        rank = STATUSES.index(value) if value in STATUSES else 0
        if op == "is":
            return Compiled("t.status = ?", [value])
        if op == "is_not":
            return Compiled("t.status <> ?", [value])
        if op in ("less_than", "greater_than"):
            return Compiled(f"{_STATUS_RANK} {'<' if op == 'less_than' else '>'} {rank}")
        raise ConditionError(f"{where}: status does not take {op!r}")
    if name == "via" and value is not None and op in ("is", "is_not") and value not in CHANNELS:
        raise ConditionError(f"{where}: via {value!r} is not one of {', '.join(CHANNELS)}")
    if name == "business_account":
        expr = "t.account"
        if op in ("is", "is_not"):
            test = f"(t.account = {param(str(value))} OR t.channel_info->>'account_name' = {param(str(value))})"
            return Compiled(test if op == "is" else f"NOT {test}", params)
    else:
        expr = _EXPR[name]
    if name in ("assignee_id", "requester_id") and value == "current_user":
        value = ctx.current_user
    if name in TIME_FIELDS or name in ("assignee_id", "requester_id"):
        try:
            value = None if value in (None, "") else int(value)
        except (TypeError, ValueError):
            raise ConditionError(f"{where}: {name} needs a whole number, not {value!r}") from None
    if "$now" in expr:
        expr = expr.replace("$now", param(ctx.now) + "::TIMESTAMP")
    if op == "present":
        return Compiled(f"{expr} IS NOT NULL", params)
    if op == "not_present":
        return Compiled(f"{expr} IS NULL", params)
    if op in ("less_than", "greater_than"):
        if name not in TIME_FIELDS:
            raise ConditionError(f"{where}: {name} does not take {op!r}")
        return Compiled(f"coalesce({expr} {'<' if op == 'less_than' else '>'} {param(value)}, FALSE)", params)
    if op in ("includes", "not_includes"):
        raise ConditionError(f"{where}: {name} does not take {op!r}")
    if value is None:  # "assignee is current_user" with nobody current matches nothing
        return Compiled("FALSE" if op == "is" else f"{expr} IS NOT NULL", params)
    if op == "is":
        return Compiled(f"{expr} = {param(value)}", params)
    return Compiled(f"coalesce({expr} <> {param(value)}, TRUE)", params)


def compile_conditions(conditions: Mapping[str, Any] | None, ctx: Context, where: str = "conditions") -> Compiled:
    """`{"all": [...], "any": [...]}` as one SQL predicate over `tickets t`."""
    conditions = conditions or {}
    unknown = set(conditions) - {"all", "any"}
    if unknown:
        raise ConditionError(f"{where}: unknown key {sorted(unknown)[0]!r} (expected all, any)")
    parts: list[str] = []
    params: list[Any] = []
    for i, c in enumerate(conditions.get("all") or []):
        compiled = compile_condition(c, ctx, f"{where}.all[{i}]")
        parts.append(compiled.sql)
        params += compiled.params
    any_parts = []
    for i, c in enumerate(conditions.get("any") or []):
        compiled = compile_condition(c, ctx, f"{where}.any[{i}]")
        any_parts.append(compiled.sql)
        params += compiled.params
    if any_parts:
        parts.append("(" + " OR ".join(any_parts) + ")")
    return Compiled(" AND ".join(f"({p})" for p in parts) or "TRUE", params)
