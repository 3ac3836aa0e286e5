"""Rule actions (`[{"field", "value"}]`, Zendesk's shape): validating, applying, and reasoning about them.

Actions apply through the ticket operations of `warehouse.tickets`, with the rule as the actor, so
every change is an event naming the rule (R3); the ticket's fields (group, priority, subject,
custom fields) through `set_fields`, the one operation Slack and the CLI use too. An action the
ticket refuses (reopening a closed ticket, a blank subject, ...) is recorded as `rule_action_failed`
and the others still apply: a rule must never make an incoming message fail to store.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from warehouse import clock, tickets
from warehouse.conditions import (
    CUSTOM_PREFIX,
    PRIORITIES,
    TIME_FIELDS,
    custom_field_key,
    custom_text,
    subject_phrases,
    subject_words,
)
from warehouse.model import STATUSES
from warehouse.rows import event, one, record_events
from warehouse.rules.placeholders import TicketFacts, facts_many, render, unknown_placeholders, values
from warehouse.tickets import Actor, OperationError

TEXT_ACTIONS = ("comment_value", "comment_value_html", "comment_value_internal")
ACTION_FIELDS = ("status", "assignee_id", "group_id", "priority", "current_tags", "remove_tags", "set_tags",
                 *TEXT_ACTIONS, "comment_mode_is_public", "notification_slack", "subject")
RULES_AGENT = "socialdesk-rules"  # the author of rule comments on tickets nobody is assigned to
ROUND_ROBIN = "round_robin"


def tags_of(value: Any) -> list[str]:
    """Zendesk writes tags as one space-separated string; a list is accepted too."""
    if value is None:
        return []
    items = value if isinstance(value, list) else str(value).split()
    return [str(t) for t in items if str(t)]


def comment_text(action: Mapping[str, Any]) -> str:
    """The text of a comment action; Zendesk sometimes exports `["channel:all", "text"]`."""
    value = action.get("value")
    if isinstance(value, list):
        value = value[-1] if value else ""
    text = str(value or "")
    if action.get("field") == "comment_value_html":
        text = re.sub(r"<br\s*/?>|</p>|</div>|</li>", "\n", text, flags=re.I)
        text = html.unescape(re.sub(r"<[^>]+>", "", text)).strip()
    return text


def comments_public(actions: Sequence[Mapping[str, Any]]) -> bool:
    """Zendesk's `comment_mode_is_public: false` turns the rule's comment into an internal note."""
    return all(str(a.get("value")).lower() != "false" for a in actions if a.get("field") == "comment_mode_is_public")


# -- validation ----------------------------------------------------------------------------------

def validate_action(action: Any, kind: str) -> list[tuple[str, str]]:
    """Problems with one action, as (field, message); empty when it is fine."""
    if not isinstance(action, Mapping) or "field" not in action:
        return [("actions", "an action is an object with field and value")]
    name = str(action.get("field"))
    if name.startswith(CUSTOM_PREFIX) and len(name) > len(CUSTOM_PREFIX):
        problem = _custom_field_problem(action)
    elif name not in ACTION_FIELDS:
        problem = "unsupported action field (supported: " + ", ".join(ACTION_FIELDS) + ", custom_fields_<id>)"
    else:
        check = _ACTION_CHECKS.get(name)
        problem = check(action, kind) if check else None
    return [(name, problem)] if problem else []


def _custom_field_problem(action: Mapping[str, Any]) -> str | None:
    if isinstance(action.get("value"), dict | list):
        return "a custom field takes a text, number or true/false value"
    return None


def _status_problem(action: Mapping[str, Any], kind: str) -> str | None:
    value = action.get("value")
    if value not in STATUSES:
        return f"status {value!r} is not one of {', '.join(STATUSES)}"
    return None


def _priority_problem(action: Mapping[str, Any], kind: str) -> str | None:
    value = action.get("value")
    if value not in (*PRIORITIES, "", None):
        return f"priority {value!r} is not one of {', '.join(PRIORITIES)}"
    return None


def _assignee_problem(action: Mapping[str, Any], kind: str) -> str | None:
    value = action.get("value")
    if value not in ("current_user", "", None, ROUND_ROBIN):
        try:
            int(value)
        except (TypeError, ValueError):
            return f"assignee_id is a user id, current_user, round_robin or empty, not {value!r}"
    if value == "current_user" and kind == "automation":
        return "automations run on a clock: there is no current user to assign"
    return None


def _tags_to_change_problem(action: Mapping[str, Any], kind: str) -> str | None:
    """current_tags and remove_tags: some tags, each one word."""
    if not tags_of(action.get("value")):
        return "needs at least one tag"
    return _tag_words_problem(action, kind)


def _tag_words_problem(action: Mapping[str, Any], kind: str) -> str | None:
    """A tag is one word: in a list, where a space is not a separator."""
    value = action.get("value")
    if any(any(c.isspace() for c in t) for t in tags_of(value) if isinstance(value, list)):
        return "a tag is one word"
    return None


def _comment_mode_problem(action: Mapping[str, Any], kind: str) -> str | None:
    if str(action.get("value")).lower() not in ("true", "false"):
        return "comment_mode_is_public is true or false"
    return None


def _comment_problem(action: Mapping[str, Any], kind: str) -> str | None:
    text = comment_text(action)
    if not text.strip():
        return "the comment has no text"
    return _placeholder_problem(text)


def _slack_notification_problem(action: Mapping[str, Any], kind: str) -> str | None:
    value = action.get("value")
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        return 'notification_slack takes ["#channel" | "triage" | "assignee", "text"]'
    if not value[0].strip() or not value[1].strip():
        return "notification_slack needs a target and a text"
    return _placeholder_problem(value[1])


def _subject_problem(action: Mapping[str, Any], kind: str) -> str | None:
    return _placeholder_problem(str(action.get("value") or ""))


def _placeholder_problem(text: str) -> str | None:
    unknown = unknown_placeholders(text)
    return f"unknown placeholder {{{{{unknown[0]}}}}}" if unknown else None


# The check of each action field (given the action and the kind of rule); group_id has none: any value goes.
_ACTION_CHECKS: dict[str, Callable[[Mapping[str, Any], str], str | None]] = {
    "status": _status_problem,
    "priority": _priority_problem,
    "assignee_id": _assignee_problem,
    "current_tags": _tags_to_change_problem,
    "remove_tags": _tags_to_change_problem,
    "set_tags": _tag_words_problem,
    "comment_mode_is_public": _comment_mode_problem,
    **dict.fromkeys(TEXT_ACTIONS, _comment_problem),
    "notification_slack": _slack_notification_problem,
    "subject": _subject_problem,
}


# -- automations: the condition their own actions make false -------------------------------------

def makes_false(cond: Mapping[str, Any], actions: Sequence[Mapping[str, Any]]) -> bool:
    """True when applying `actions` leaves `cond` false, so an automation cannot fire again forever."""
    name, op, value = cond.get("field"), cond.get("operator", "is"), cond.get("value")
    sets = {a.get("field"): a.get("value") for a in actions}
    if name == "status" and "status" in sets and value in STATUSES:
        after, rank, wanted = sets["status"], STATUSES.index(sets["status"]), STATUSES.index(value)
        holds = {"is": after == value, "is_not": after != value, "less_than": rank < wanted,
                 "greater_than": rank > wanted}.get(op)
        return holds is False
    if name in ("hours_since_open", "hours_since_pending", "hours_since_solved") and "status" in sets:
        return sets["status"] != name.removeprefix("hours_since_") and op != "not_present"
    if name == "current_tags":
        wanted_tags = set(tags_of(value))
        if "set_tags" in sets:
            after_has = bool(wanted_tags & set(tags_of(sets["set_tags"])))
            return not after_has if op in ("includes", "is") else after_has
        if op in ("includes", "is"):
            return wanted_tags <= set(tags_of(sets.get("remove_tags")))
        if op in ("not_includes", "is_not"):
            return bool(wanted_tags & set(tags_of(sets.get("current_tags"))))
        return False
    if name in ("assignee_id", "group_id", "priority") and name in sets:
        after = sets[name]
        if after in (ROUND_ROBIN, "current_user"):
            return op == "not_present"
        if op == "present":
            return after in ("", None)
        if op == "not_present":
            return after not in ("", None)
        if op == "is":
            return str(after or "") != str(value or "")
        if op == "is_not":
            return str(after or "") == str(value or "")
    if name == "subject_includes_word" and "subject" in sets:
        return _subject_made_false(op, value, sets["subject"])
    if custom_field_key(name) is not None and name in sets:
        return _custom_field_made_false(op, value, sets[name])
    return False


def _subject_made_false(op: str, value: Any, after: Any) -> bool:
    """Whether setting the subject to `after` leaves `subject_includes_word <op> <value>` false."""
    text = str(after or "")
    if "{{" in text or not _valid_subject(text):
        return False  # rendered per ticket (not known here), or refused (the subject stays as it is)
    words = subject_words(text)
    if op in ("includes", "not_includes"):
        found = any(p in words for p in subject_phrases(value))
        return not found if op == "includes" else found
    contains = str(value or "").lower() in text.lower()
    return {"is": not contains, "is_not": contains}.get(op, False)


def _custom_field_made_false(op: str, value: Any, after: Any) -> bool:
    """Whether setting a custom field to `after` leaves `custom_fields_<id> <op> <value>` false; the
    comparisons are the compiled condition's (text, an unset field counting as false)."""
    try:
        tickets.checked_fields({"custom_fields": {"field": after}})  # the value's check, whatever the key
    except OperationError:
        return False  # the action would be refused and the field keep its value
    now, wanted = custom_text(after), custom_text(value)
    if op == "present":
        return now is None
    if op == "not_present":
        return now is not None
    if op in ("includes", "not_includes"):
        found = bool(set((now or "").split()) & set((wanted or "").split()))
        return not found if op == "includes" else found
    same = (now or "false") == wanted if wanted == "false" else now == wanted
    return {"is": not same, "is_not": same}.get(op, False)


def has_time_condition(conditions: Mapping[str, Any]) -> bool:
    return any(c.get("field") in TIME_FIELDS for key in ("all", "any") for c in conditions.get(key) or []
               if isinstance(c, Mapping))


def once_only(conditions: Mapping[str, Any]) -> bool:
    """An `is` on a time field is true during one hour: Zendesk accepts it as a one-shot condition."""
    return any(c.get("field") in TIME_FIELDS and c.get("operator") == "is" for c in conditions.get("all") or []
               if isinstance(c, Mapping))


# -- what a rule would change --------------------------------------------------------------------

def would_change(ticket: Mapping[str, Any], actions: Sequence[Mapping[str, Any]],
                 current_user: int | None = None, con: duckdb.DuckDBPyConnection | None = None) -> bool:
    """Whether the ticket-changing actions would change this ticket now (comments and notices aside).
    With `con`, a subject with placeholders is rendered as the action would; without, it counts as a change."""
    tags = list(ticket["tags"])
    for a in actions:
        name, value = str(a.get("field")), a.get("value")
        if name == "status" and value != ticket["status"]:
            return True
        if name == "assignee_id":
            target = current_user if value == "current_user" else value
            if value == ROUND_ROBIN:
                if ticket["assignee_id"] is None:
                    return True
            elif (None if target in ("", None) else int(target)) != ticket["assignee_id"]:
                return True
        if name in ("group_id", "priority") and (value or None) != (ticket[name] or None):
            return True
        if name == "subject" and _subject_changes(ticket, value, current_user, con):
            return True
        if name == "current_tags" and any(t not in tags for t in tags_of(value)):
            return True
        if name == "remove_tags" and any(t in tags for t in tags_of(value)):
            return True
        if name == "set_tags" and set(tags_of(value)) != set(tags):
            return True
        if name.startswith(CUSTOM_PREFIX):
            current = json.loads(ticket["custom_fields"] or "{}").get(name.removeprefix(CUSTOM_PREFIX))
            if current != value:
                return True
    return False


def _subject_changes(ticket: Mapping[str, Any], value: Any, current_user: int | None,
                     con: duckdb.DuckDBPyConnection | None) -> bool:
    # The template is not the subject it renders ("{{ticket.id}} refund" is never "42 refund"): compared
    # unrendered, a trigger that renamed a ticket would look undone by the next one and be "stopped".
    text = str(value or "")
    if con is not None and "{{" in text:
        text = render(text, values(con, ticket["id"], current_user))
    return _valid_subject(text) and text != ticket["subject"]  # a refused subject leaves the ticket's


def _valid_subject(text: str) -> bool:
    """Whether `set_fields` takes this subject (not blank, not too long)."""
    try:
        tickets.checked_fields({"subject": text})
    except OperationError:
        return False
    return True


# -- applying ------------------------------------------------------------------------------------

@dataclass(slots=True)
class Applying:
    """One rule acting on one ticket."""

    con: duckdb.DuckDBPyConnection
    ticket_id: int
    actor: Actor
    rule_title: str
    current_user: int | None = None  # whom current_user means: the updater, or the agent applying a macro
    author: int | None = None  # who writes the rule's comments (macros: the agent); None: assignee or system
    assignment: Mapping[str, Any] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)


# One loader for a ticket's row, wherever it is needed.
ticket_row = tickets.load_ticket


def _set_column(run: Applying, column: str, value: Any) -> dict[str, Any]:
    result = tickets.set_fields(run.con, run.ticket_id, {column: value}, run.actor)
    return {column: result[column]}


def _set_custom_field(run: Applying, key: str, value: Any) -> dict[str, Any]:
    tickets.set_fields(run.con, run.ticket_id, {"custom_fields": {key: value}}, run.actor)
    return {"custom_field": key, "value": value}


def round_robin(con: duckdb.DuckDBPyConnection, ticket: Mapping[str, Any],
                assignment: Mapping[str, Any]) -> int | None:
    """The next online agent for the ticket's channel or business account, and the cursor moved on."""
    agents = [str(a) for a in assignment.get("agents") or []]
    online = assignment.get("online")
    candidates = [a for a in agents if online is None or a in online]
    if not candidates:
        return None
    key = (f"account:{ticket['channel']}:{ticket['account']}" if assignment.get("by") == "account"
           else f"channel:{ticket['channel']}")
    row = con.execute("SELECT last_agent FROM assignment_cursors WHERE key = ?", [key]).fetchone()
    start = agents.index(row[0]) + 1 if row and row[0] in agents else 0
    chosen = next(a for a in agents[start:] + agents[:start] if a in candidates)
    con.execute("INSERT INTO assignment_cursors VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET "
                "last_agent = excluded.last_agent, updated_at = excluded.updated_at", [key, chosen, clock.now()])
    return tickets.ensure_agent(con, chosen)


def _assign(run: Applying, value: Any) -> dict[str, Any]:
    if value == "current_user":
        if run.current_user is None:
            raise OperationError("nobody is the current user of this update")
        target: int | None = run.current_user
    elif value == ROUND_ROBIN:
        t = ticket_row(run.con, run.ticket_id)
        if t["assignee_id"] is not None:
            return {"assignee_id": t["assignee_id"], "unchanged": True}
        target = round_robin(run.con, t, run.assignment)
        if target is None:
            raise OperationError("round-robin assignment has no online agent")
    else:
        target = None if value in ("", None) else int(value)
    if ticket_row(run.con, run.ticket_id)["assignee_id"] == target:
        return {"assignee_id": target, "unchanged": True}
    return tickets.assign(run.con, run.ticket_id, target, run.actor)


def _comment(run: Applying, text: str, public: bool) -> dict[str, Any]:
    t = ticket_row(run.con, run.ticket_id)
    author = run.author or t["assignee_id"] or tickets.ensure_agent(run.con, RULES_AGENT, "SocialDesk")
    body = render(text, values(run.con, run.ticket_id, run.current_user))
    if not public:
        return tickets.internal_note(run.con, run.ticket_id, author, body, run.actor)
    # A rule's public comment keeps the status (a New ticket stays New); the window is enforced by reply (R22).
    status = None if run.author is not None else t["status"]
    return tickets.reply(run.con, run.ticket_id, author, body, status=status, actor=run.actor)


def _notify(run: Applying, value: list[str]) -> dict[str, Any]:
    target, text = value
    row = one(run.con, "SELECT t.assignee_id, u.slack_user_id FROM tickets t LEFT JOIN users u "
                       "ON u.id = t.assignee_id WHERE t.id = ?", [run.ticket_id])
    data = {"target": target, "text": render(text, values(run.con, run.ticket_id, run.current_user)),
            "rule": run.rule_title, "assignee_id": row[0], "assignee_slack_id": row[1]}
    record_events(run.con, [event(run.ticket_id, "slack_notification", run.actor.type, run.actor.id, **data)])
    return data


def notify_many(con: duckdb.DuckDBPyConnection, ticket_ids: list[int], actor: Actor, rule_title: str,
                value: list[str], current_user: int | None) -> list[dict[str, Any]]:
    """`notification_slack` on many tickets at once: the announcement of a whole ingest batch is one
    query and one insert, not a round trip per ticket."""
    target, text = value
    facts = facts_many(con, ticket_ids, current_user)
    out: list[dict[str, Any]] = []
    for tid in ticket_ids:
        f = facts.get(tid) or TicketFacts({}, None, None)
        out.append({"target": target, "text": render(text, f.values), "rule": rule_title,
                    "assignee_id": f.assignee_id, "assignee_slack_id": f.assignee_slack_id})
    record_events(con, [event(tid, "slack_notification", actor.type, actor.id, **data)
                        for tid, data in zip(ticket_ids, out, strict=True)])
    return out


def apply_one(run: Applying, action: Mapping[str, Any], public_comments: bool) -> dict[str, Any]:
    name, value = str(action.get("field")), action.get("value")
    con, tid, actor = run.con, run.ticket_id, run.actor
    if name == "status":
        if ticket_row(con, tid)["status"] == value:
            return {"status": value, "unchanged": True}
        return tickets.set_status(con, tid, str(value), actor)
    if name == "assignee_id":
        return _assign(run, value)
    if name in ("group_id", "priority", "subject"):
        text = render(str(value or ""), values(con, tid, run.current_user)) if name == "subject" else value
        return _set_column(run, name, text)
    if name == "current_tags":
        return tickets.change_tags(con, tid, tags_of(value), [], actor)
    if name == "remove_tags":
        return tickets.change_tags(con, tid, [], tags_of(value), actor)
    if name == "set_tags":
        current, wanted = list(ticket_row(con, tid)["tags"]), tags_of(value)
        return tickets.change_tags(con, tid, [t for t in wanted if t not in current],
                                   [t for t in current if t not in wanted], actor)
    if name in ("comment_value", "comment_value_html"):
        return _comment(run, comment_text(action), public_comments)
    if name == "comment_value_internal":
        return _comment(run, comment_text(action), False)
    if name == "notification_slack":
        return _notify(run, [str(v) for v in value or ()])
    if name == "comment_mode_is_public":
        return {}
    if name.startswith(CUSTOM_PREFIX):
        return _set_custom_field(run, name.removeprefix(CUSTOM_PREFIX), value)
    raise OperationError(f"unsupported action field {name!r}")  # the loader refuses these first


def apply_actions(run: Applying, actions: Sequence[Mapping[str, Any]],
                  skip: Collection[str] = ()) -> list[dict[str, Any]]:
    """Apply the actions in order; each refused one becomes a `rule_action_failed` event."""
    public = comments_public(actions)
    for action in actions:
        name = str(action.get("field"))
        if name in skip:
            continue
        try:
            result = apply_one(run, action, public)
            run.results.append({"field": name, "ok": True, "result": result})
        except OperationError as exc:
            record_events(run.con, [event(run.ticket_id, "rule_action_failed", run.actor.type, run.actor.id,
                                          rule=run.rule_title, field=name, reason=str(exc))])
            run.results.append({"field": name, "ok": False, "reason": str(exc)})
    return run.results
