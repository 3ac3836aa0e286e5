"""Zendesk's condition language, compiled to SQL over the tickets table.

Views, the notifier, triggers and automations all select tickets with `{"all": [...], "any": [...]}`
of `{"field", "operator", "value"}`, so removing a tag really removes a ticket from them (R9).
Compiling to SQL keeps one evaluator for a view over a million tickets and a trigger on one.

Hours are elapsed time as a fraction (`greater_than 20` is "more than 20 hours ago"); `is N` on a
time field means "N whole hours", which Zendesk uses for conditions that are true only once.
Trigger-only conditions (update_type, comment_is_public, role, and the `changed` family of
operators) read the update from the `Context`; elsewhere they are refused.

The subject is matched by `subject_includes_word`: `includes` / `not_includes` at least one / none of
the value's words (whole words, any case), `is` / `is_not` contains / does not contain the value as a
string (in views and automations too: it reads the ticket, not the update); `subject` itself takes
only the `changed` family. Custom fields are Zendesk's `custom_fields_<id>`, the id being the field's
key in `tickets.custom_fields`: `is`, `is_not`, `present`, `not_present`, `includes` / `not_includes`
(one of the words of its value, as Zendesk's multi-select fields), and the `changed` family. Their
values compare as text (`true`, `5`, `A-1`); an unset field counts as `false`, as Zendesk's unchecked
checkbox does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from warehouse import channels
from warehouse.model import STATUSES
from warehouse.rows import sql_list

CHANGE_OPERATORS = ("changed", "not_changed", "value", "not_value", "value_previous", "not_value_previous")
OPERATORS = ("is", "is_not", "less_than", "greater_than", "includes", "not_includes", "present", "not_present",
             *CHANGE_OPERATORS)
TIME_FIELDS = ("hours_since_created", "hours_since_open", "hours_since_pending", "hours_since_solved",
               "hours_since_requester_update", "hours_since_assignee_update", "hours_since_last_end_user_message",
               "messaging_window_hours_left")
# Fields that describe the update being made, not the ticket: meaningful in triggers only.
UPDATE_FIELDS = ("update_type", "comment_is_public", "role")
FIELDS = ("status", "assignee_id", "requester_id", "group_id", "priority", "current_tags", "via", "via_id",
          "business_account", "requester_role", "last_message_from", "subject_includes_word", "subject",
          *UPDATE_FIELDS, *TIME_FIELDS)
SUBJECT_OPERATORS = ("includes", "not_includes", "is", "is_not")
CUSTOM_PREFIX = "custom_fields_"  # Zendesk's name for a custom field: custom_fields_<id>
CUSTOM_OPERATORS = ("is", "is_not", "present", "not_present", "includes", "not_includes", *CHANGE_OPERATORS)
# A custom field's key sits in a JSON path literal: word characters and hyphens only, so neither a
# quote nor `$` or `/` (which would make DuckDB read the key as a path) can reach it.
_CUSTOM_KEY = re.compile(r"[\w-]+")
PRIORITIES = ("low", "normal", "high", "urgent")
ROLES = ("end_user", "agent", "admin")
# The events that record a change of each field, for `changed` and friends: (event kind, data key).
CHANGE_EVENTS = {"status": ("status_changed", "status"), "assignee_id": ("assignee_changed", "assignee_id"),
                 "group_id": ("group_changed", "group_id"), "priority": ("priority_changed", "priority"),
                 "subject": ("subject_changed", "subject")}
# Every custom field's change is this one kind; the event's `field` names which one changed.
CUSTOM_FIELD_EVENT = ("custom_field_changed", "value")
# The subject as its words, lower case, one space apart: a word is matched whole, not inside another.
_SUBJECT_WORDS = r"(' ' || regexp_replace(lower(t.subject), '[^\pL\pN]+', ' ', 'g') || ' ')"
# Events after this id belong to the update being evaluated (the mark moves when triggers finish).
_MARK = "coalesce((SELECT m.event_id FROM trigger_marks m WHERE m.ticket_id = t.id), 0)"
# A person answered after the end user's last message: an agent's reply or a macro they applied.
# Triggers' and automations' own comments do not count, so an auto-reply does not hide a waiting customer.
_AGENT_REPLIED = ("EXISTS (SELECT 1 FROM events e WHERE e.ticket_id = t.id AND e.kind = 'sent_to_channel' "
                  "AND (e.actor_type = 'agent' OR (e.actor_type = 'rule' AND e.actor_id LIKE 'macro:%')) "
                  "AND e.created_at >= t.last_end_user_message_at)")


def _window_hours() -> str:
    """Each channel's messaging window in hours, as SQL over `t.channel` (NULL: no window)."""
    whens = " ".join(f"WHEN '{c.name}' THEN {c.window.hours}" for c in channels.every() if c.window)
    return f"CASE t.channel {whens} END" if whens else "NULL"


def _literal(text: str) -> str:
    """A SQL string literal (a quote doubled; NUL, which no tag holds, dropped)."""
    return "'" + text.replace("\x00", "").replace("'", "''") + "'"


def _via_channel(value: Any, where: str) -> str | None:
    """The channel a Zendesk `via_id` value names (Zendesk's via types and ids, developer.zendesk.com "Via
    types reference", as each channel declares them); None for Zendesk's other channels (mail, web form...)."""
    text = str(value).strip().lower()
    for channel in channels.every():
        if text in (str(v) for v in channel.zendesk_via):
            return channel.name
    if text.isdigit() or re.fullmatch(r"[a-z_]+", text):
        return None  # a channel tickets here never come through
    raise ConditionError(f"{where}: via_id {value!r} is not a Zendesk via id or via type")


class ConditionError(ValueError):
    """A condition that cannot be compiled; the message names the field and why."""


@dataclass(slots=True)
class Context:
    """What a condition is evaluated against besides the ticket."""

    now: datetime
    current_user: int | None = None  # the agent a view is shown to, or who made the update
    update_type: str | None = None  # "Create" or "Change" (triggers only)
    comment_is_public: bool | None = None  # None: the update carries no comment
    current_role: str | None = None  # end_user, agent (rules count as agent) (triggers only)
    trigger: bool = False  # allow the trigger-only fields and operators


@dataclass(slots=True)
class Compiled:
    sql: str
    params: list[Any] = field(default_factory=list)


def _hours_since(column: str, status: str | None = None) -> str:
    expr = f"((epoch_us($now) - epoch_us({column})) / 3600e6)"
    return f"(CASE WHEN t.status = '{status}' THEN {expr} END)" if status else expr


_EXPR = {
    "assignee_id": "t.assignee_id", "requester_id": "t.requester_id", "group_id": "t.group_id",
    "priority": "t.priority", "via": "t.channel",
    "requester_role": "(SELECT replace(u.role, '-', '_') FROM users u WHERE u.id = t.requester_id)",
    "last_message_from": f"(CASE WHEN t.last_end_user_message_at IS NULL THEN NULL WHEN {_AGENT_REPLIED} "
                         f"THEN 'agent' ELSE 'end_user' END)",
    "hours_since_created": _hours_since("t.created_at"),
    "hours_since_open": _hours_since("t.status_changed_at", "open"),
    "hours_since_pending": _hours_since("t.status_changed_at", "pending"),
    "hours_since_solved": _hours_since("coalesce(t.solved_at, t.status_changed_at)", "solved"),
    "hours_since_requester_update": _hours_since("t.last_end_user_message_at"),
    "hours_since_assignee_update": _hours_since("t.last_agent_update_at"),
    "hours_since_last_end_user_message": _hours_since("t.last_end_user_message_at"),
}


def _expression(name: str) -> str:
    if name == "messaging_window_hours_left":  # the channels are known once registered, not at import
        return f"({_window_hours()} - {_hours_since('t.last_end_user_message_at')})"
    return _EXPR[name]


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return str(value).split()


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("true", "1", "public")


def custom_field_key(name: Any) -> str | None:
    """The key of a `custom_fields_<key>` condition or action field; None for any other field."""
    if isinstance(name, str) and name.startswith(CUSTOM_PREFIX) and len(name) > len(CUSTOM_PREFIX):
        return name.removeprefix(CUSTOM_PREFIX)
    return None


def custom_text(value: Any) -> str | None:
    """A custom field's value as its condition compares it: the text DuckDB's `->>` gives for it
    (`true`, `5`, `1.5`, `A-1`); None for no value (unset, null or empty)."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value)


def subject_words(text: str) -> str:
    """A text as `_SUBJECT_WORDS` reads a subject: its words, lower case, between single spaces."""
    return " " + " ".join(re.findall(r"[^\W_]+", text.lower())) + " "


def subject_phrases(value: Any) -> list[str]:
    """The words of a `subject_includes_word` value, each as found in `subject_words` (" e mail " for
    e-mail: punctuation inside a word separates its parts, as it does in the subject)."""
    phrases = (subject_words(word) for word in str(value).split())
    return [p for p in phrases if p.strip()]


def _scalar(name: str, value: Any, where: str) -> None:
    # Zendesk's condition value is one string; a list or an object here is a mistake in the rule file.
    if isinstance(value, Mapping | list | tuple | set):
        raise ConditionError(f"{where}: {name} takes a text, number or true/false value, not "
                             f"{type(value).__name__} {value!r}")


def _update_condition(name: str, op: str, value: Any, ctx: Context, where: str) -> Compiled:
    if not ctx.trigger:
        raise ConditionError(f"{where}: {name} describes an update; only triggers can use it")
    if op not in ("is", "is_not"):
        raise ConditionError(f"{where}: {name} takes is or is_not")
    if name == "update_type":
        if value not in ("Create", "Change"):
            raise ConditionError(f"{where}: update_type is Create or Change, not {value!r}")
        match = ctx.update_type == value
    elif name == "role":
        role = str(value).replace("-", "_")
        if role not in ROLES:
            raise ConditionError(f"{where}: role is one of {', '.join(ROLES)}, not {value!r}")
        match = ctx.current_role == role
    else:
        text = str(value).lower()
        if text == "not_relevant":  # Zendesk: "present (public or private)"
            match = ctx.comment_is_public is not None
        elif text == "requester_can_see_comment":
            match = ctx.comment_is_public is True
        elif text in ("true", "false", "1", "0", "public", "private"):
            match = ctx.comment_is_public is not None and ctx.comment_is_public == _truthy(value)
        else:
            raise ConditionError(f"{where}: comment_is_public is true, false, not_relevant or "
                                 f"requester_can_see_comment, not {value!r}")
    return Compiled("TRUE" if match == (op == "is") else "FALSE")


def _change_condition(name: str, op: str, value: Any, ctx: Context, where: str) -> Compiled:
    if not ctx.trigger:
        raise ConditionError(f"{where}: {op!r} looks at the update being made; only triggers can use it")
    custom = custom_field_key(name)
    if name not in CHANGE_EVENTS and custom is None:
        raise ConditionError(f"{where}: {name} does not take {op!r}")
    kind, key = CHANGE_EVENTS[name] if custom is None else CUSTOM_FIELD_EVENT
    if name == "assignee_id" and value == "current_user":
        value = ctx.current_user
    base = f"FROM events e WHERE e.ticket_id = t.id AND e.kind = '{kind}' AND e.id > {_MARK}"
    params: list[Any] = []
    if custom is not None:
        base += " AND json_extract_string(e.data, '$.field') = ?"
        params.append(custom)
    if op in ("changed", "not_changed"):
        test = f"EXISTS (SELECT 1 {base})"
        return Compiled(test if op == "changed" else f"NOT {test}", params)
    column = f"json_extract_string(e.data, '$.{key if op in ('value', 'not_value') else 'previous'}')"
    if custom is not None:
        match, more = _custom_equals(f"nullif({column}, '')", custom_text(value))
    else:
        wanted = None if value in (None, "") else str(value)
        match, more = (f"{column} IS NULL", []) if wanted is None else (f"{column} = ?", [wanted])
    params += more
    if op in ("value", "value_previous"):  # changed to / changed from
        return Compiled(f"EXISTS (SELECT 1 {base} AND {match})", params)
    return Compiled(f"EXISTS (SELECT 1 {base} AND NOT coalesce({match}, FALSE))", params)


def _tags_condition(op: str, value: Any, where: str) -> Compiled:
    tags = _values(value)
    # On `tag_text` (" a b c "): over a million tickets a string column reads 3-4 times faster than the
    # list column `tags`, which stays the record. Literals, not parameters: DuckDB folds them into the
    # scan's filter (a third faster here).
    any_tag = ("(" + " OR ".join(f"contains(t.tag_text, {_literal(f' {tag} ')})" for tag in tags) + ")"
               if tags else "FALSE")
    if op in ("includes", "is"):
        return Compiled(any_tag)
    if op in ("not_includes", "is_not"):
        return Compiled(f"NOT {any_tag}")
    if op == "present":
        return Compiled("t.tag_text <> '  '")
    if op == "not_present":
        return Compiled("t.tag_text = '  '")
    raise ConditionError(f"{where}: current_tags does not take {op!r}")


def _status_condition(op: str, value: Any, where: str) -> Compiled:
    if value not in STATUSES and op not in ("present", "not_present"):
        raise ConditionError(f"{where}: status {value!r} is not one of {', '.join(STATUSES)}")
    rank = STATUSES.index(value) if value in STATUSES else 0
    if op == "is":
        return Compiled("t.status = ?", [value])
    if op == "is_not":
        return Compiled("t.status <> ?", [value])
    if op in ("less_than", "greater_than"):
        # As a list of statuses, not a rank computed per row: DuckDB filters the list during its scan
        # (a tab over a million tickets in a third of the time).
        chosen = STATUSES[:rank] if op == "less_than" else STATUSES[rank + 1:]
        return Compiled(f"t.status IN {sql_list(chosen)}" if chosen else "false")
    raise ConditionError(f"{where}: status does not take {op!r}")


def _subject_condition(op: str, value: Any, where: str) -> Compiled:
    if op not in SUBJECT_OPERATORS:
        hint = " (a change of the subject is the field subject)" if op in CHANGE_OPERATORS else ""
        raise ConditionError(f"{where}: subject_includes_word takes {', '.join(SUBJECT_OPERATORS)}, "
                             f"not {op!r}{hint}")
    _scalar("subject_includes_word", value, where)
    if op in ("is", "is_not"):  # Zendesk: "contains the following string" / "does not contain ..."
        text = "" if value is None else str(value).lower()
        if not text.strip():
            raise ConditionError(f"{where}: subject_includes_word {op} needs a text to look for")
        test = f"contains(lower(t.subject), {_literal(text)})"
    else:  # Zendesk: "contains at least one of the words" / "contains none of the words"
        phrases = subject_phrases("" if value is None else value)
        if not phrases:
            raise ConditionError(f"{where}: subject_includes_word {op} needs at least one word, not {value!r}")
        test = "(" + " OR ".join(f"contains({_SUBJECT_WORDS}, {_literal(p)})" for p in phrases) + ")"
    return Compiled(test if op in ("is", "includes") else f"NOT {test}")


def _custom_equals(expr: str, wanted: str | None) -> tuple[str, list[Any]]:
    """SQL for "`expr` (a custom field's text, NULL when it has none) is `wanted`", and its parameters."""
    if wanted is None:
        return f"{expr} IS NULL", []
    if wanted == "false":  # an unchecked checkbox: Zendesk stores nothing until it is first checked
        return f"coalesce({expr}, 'false') = 'false'", []
    return f"{expr} = ?", [wanted]


def _custom_condition(key: str, op: str, value: Any, ctx: Context, where: str) -> Compiled:
    name = CUSTOM_PREFIX + key
    if not _CUSTOM_KEY.fullmatch(key):
        raise ConditionError(f"{where}: {name}: a custom field's id is letters, digits, _ and - only")
    if op not in CUSTOM_OPERATORS:
        raise ConditionError(f"{where}: {name} takes {', '.join(CUSTOM_OPERATORS[:6])} (and in triggers "
                             f"{', '.join(CHANGE_OPERATORS)}), not {op!r}")
    _scalar(name, value, where)
    if op in CHANGE_OPERATORS:
        return _change_condition(name, op, value, ctx, where)
    # Empty text is no value: Slack's and the CLI's cleared field holds "".
    expr = f"nullif(t.custom_fields->>{_literal(key)}, '')"
    if op in ("present", "not_present"):
        return Compiled(f"{expr} IS {'NOT ' if op == 'present' else ''}NULL")
    wanted = custom_text(value)
    if op in ("includes", "not_includes"):  # a multi-select's value: its options, a space apart
        words = (wanted or "").split()
        if not words:
            raise ConditionError(f"{where}: {name} {op} needs at least one word")
        spaced = f"(' ' || regexp_replace({expr}, '\\s+', ' ', 'g') || ' ')"
        test = "coalesce(" + " OR ".join(f"contains({spaced}, {_literal(f' {w} ')})" for w in words) + ", FALSE)"
        return Compiled(test if op == "includes" else f"NOT {test}")
    test, params = _custom_equals(expr, wanted)
    return Compiled(test if op == "is" else f"NOT coalesce({test}, FALSE)", params)


def _checked_value(name: str, op: str, value: Any, where: str) -> Any:
    """The value of an `is` / `is_not` condition on a field with a closed set of values, refused (with
    what it may be) when it is none of them; Zendesk's `end-user` spelled as ours."""
    if op not in ("is", "is_not"):
        return value
    if name == "via" and value is not None and value not in channels.names():
        raise ConditionError(f"{where}: via {value!r} is not one of {', '.join(channels.names())}")
    if name == "priority" and value not in (*PRIORITIES, "", None):
        raise ConditionError(f"{where}: priority {value!r} is not one of {', '.join(PRIORITIES)}")
    if name == "requester_role":
        value = str(value).replace("-", "_")
        if value not in ROLES:
            raise ConditionError(f"{where}: requester_role is one of {', '.join(ROLES)}, not {value!r}")
    if name == "last_message_from" and value not in ("end_user", "agent"):
        raise ConditionError(f"{where}: last_message_from is end_user or agent, not {value!r}")
    return value


def compile_condition(cond: Mapping[str, Any], ctx: Context, where: str = "condition") -> Compiled:
    if not isinstance(cond, Mapping):
        raise ConditionError(f"{where}: a condition is an object with field, operator and value")
    name, op, value = cond.get("field"), cond.get("operator", "is"), cond.get("value")
    custom = custom_field_key(name)
    if custom is not None:  # any key may name one: it has operators of its own
        return _custom_condition(custom, op, value, ctx, where)
    if name not in FIELDS:
        raise ConditionError(f"{where}: unsupported field {name!r}")
    if op not in OPERATORS:
        raise ConditionError(f"{where}: unsupported operator {op!r} for {name}")
    if name == "subject_includes_word":
        return _subject_condition(op, value, where)
    if name == "subject":  # its text is subject_includes_word's; `subject` is for its changes
        if op not in CHANGE_OPERATORS:
            raise ConditionError(f"{where}: subject takes only {', '.join(CHANGE_OPERATORS)} (triggers); "
                                 f"to match its words use subject_includes_word")
        _scalar(name, value, where)
    if name == "via_id":  # Zendesk's numbers and via types, as its exports write them
        if op not in ("is", "is_not"):
            raise ConditionError(f"{where}: via_id takes is or is_not, not {op!r}")
        channel = _via_channel(value, where)
        if channel is None:
            return Compiled("FALSE" if op == "is" else "TRUE")
        return compile_condition({"field": "via", "operator": op, "value": channel}, ctx, where)
    if name in UPDATE_FIELDS:
        return _update_condition(name, op, value, ctx, where)
    if op in CHANGE_OPERATORS:
        return _change_condition(name, op, value, ctx, where)
    params: list[Any] = []

    def param(v: Any) -> str:
        params.append(v)
        return "?"

    if name == "current_tags":
        return _tags_condition(op, value, where)
    if name == "status":
        return _status_condition(op, value, where)
    value = _checked_value(name, op, value, where)
    if name == "business_account":
        expr = "t.account"
        if op in ("is", "is_not"):
            test = f"(t.account = {param(str(value))} OR (t.channel_info->>'account_name') = {param(str(value))})"
            return Compiled(test if op == "is" else f"NOT {test}", params)
    else:
        expr = _expression(name)
    # Zendesk writes "no assignee" as an empty value; "current_user" with nobody current matches nothing.
    unset = value in (None, "") and op in ("is", "is_not")
    if name in ("assignee_id", "requester_id") and value == "current_user":
        value = ctx.current_user
        if value is None:
            return Compiled("FALSE" if op == "is" else "TRUE")
    if name in ("assignee_id", "requester_id") and not unset and op in ("is", "is_not"):
        try:
            value = int(str(value))
        except ValueError:
            raise ConditionError(f"{where}: {name} needs a user id or current_user, not {value!r}") from None
    if name in TIME_FIELDS and op not in ("present", "not_present"):
        try:
            value = float(str(value))
        except ValueError:
            raise ConditionError(f"{where}: {name} needs a number of hours, not {value!r}") from None
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
    if unset:
        return Compiled(f"{expr} IS NULL" if op == "is" else f"{expr} IS NOT NULL", params)
    if name in TIME_FIELDS:  # "is 24": during the 24th hour, true once (Zendesk's one-shot condition)
        expr = f"floor({expr})"
    if op == "is":
        # A bare comparison (NULL counts as false wherever conditions are used) lets DuckDB push it into
        # the scan; `coalesce` around it would not.
        return Compiled(f"{expr} = {param(value)}", params)
    return Compiled(f"coalesce({expr} <> {param(value)}, TRUE)", params)


def compile_conditions(conditions: Mapping[str, Any] | None, ctx: Context, where: str = "conditions") -> Compiled:
    """`{"all": [...], "any": [...]}` as one SQL predicate over `tickets t`."""
    conditions = conditions or {}
    if not isinstance(conditions, Mapping):
        raise ConditionError(f"{where}: conditions are an object with all and any lists")
    unknown = set(conditions) - {"all", "any"}
    if unknown:
        raise ConditionError(f"{where}: unknown key {sorted(unknown)[0]!r} (expected all, any)")
    parts: list[str] = []
    params: list[Any] = []
    for key in ("all", "any"):
        if not isinstance(conditions.get(key) or [], list):
            raise ConditionError(f"{where}.{key}: expected a list of conditions")
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
    if "FALSE" in parts:  # a context condition already decided it (update_type, role, ...): no query needed
        return Compiled("FALSE")
    return Compiled(" AND ".join(f"({p})" for p in parts) or "TRUE", params)
