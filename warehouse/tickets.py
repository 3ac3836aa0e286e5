"""Ticket and user operations, each recorded as an event with its actor (R3, R5, R9, R20-R23).

Every function runs inside the writer's transaction (`store.write(lambda con: claim(con, ...))`) and
returns a JSON-ready dict. Errors a person can cause raise `OperationError` with a plain message.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import duckdb

from warehouse import channels, clock
from warehouse.conditions import PRIORITIES
from warehouse.model import STATUSES, dumps
from warehouse.rows import event, insert, next_ids, record_events, sql_list, tag_text

# The ticket's own fields besides status, assignee and tags, and the event each change records.
FIELD_EVENTS = {"priority": "priority_changed", "group_id": "group_changed", "subject": "subject_changed"}
SUBJECT_MAX = 255  # one line in Slack's lists and cards; the subjects ingestion gives are far shorter


class OperationError(ValueError):
    """An operation refused: unknown ticket or user, merging an agent, a bad status, ..."""


class AssignedElsewhere(OperationError):
    """A claim on a ticket another agent has: taking it over is a deliberate act (a reassign)."""

    def __init__(self, ticket_id: int, assignee: dict[str, Any]) -> None:
        who = assignee.get("name") or f"agent {assignee['id']}"
        super().__init__(f"ticket {ticket_id} is already assigned to {who}")
        self.ticket_id = ticket_id
        self.assignee = assignee  # id, name, slack_user_id


@dataclass(frozen=True, slots=True)
class Actor:
    type: str  # agent, end-user, rule, system
    id: Any = None

    @classmethod
    def agent(cls, user_id: int) -> Actor:
        return cls("agent", user_id)


SYSTEM = Actor("system")


def load_ticket(con: duckdb.DuckDBPyConnection, ticket_id: int) -> dict[str, Any]:
    """The ticket's row as a dict; OperationError when there is none."""
    cur = con.execute("SELECT * FROM tickets WHERE id = ?", [ticket_id])
    row = cur.fetchone()
    if row is None:
        raise OperationError(f"ticket {ticket_id} not found")
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def _user(con: duckdb.DuckDBPyConnection, user_id: int) -> dict[str, Any]:
    cur = con.execute("SELECT * FROM users WHERE id = ?", [user_id])
    row = cur.fetchone()
    if row is None:
        raise OperationError(f"user {user_id} not found")
    return dict(zip([d[0] for d in cur.description], row, strict=True))


def ensure_agent(con: duckdb.DuckDBPyConnection, slack_user_id: str, name: str | None = None) -> int:
    """The agent's user id, created on first sight of their Slack user id."""
    row = con.execute("SELECT id FROM users WHERE role = 'agent' AND slack_user_id = ?", [slack_user_id]).fetchone()
    if row:
        if name:
            con.execute("UPDATE users SET name = ? WHERE id = ? AND name IS DISTINCT FROM ?", [name, row[0], name])
        return int(row[0])
    (uid,) = next_ids(con, "user_ids", 1)
    now = clock.now()
    insert(con, "users", [{"id": uid, "role": "agent", "name": name or slack_user_id, "slack_user_id": slack_user_id,
                           "social_messaging_info": "{}", "created_at": now, "updated_at": now}])
    return uid


def agent_id(con: duckdb.DuckDBPyConnection, slack_user_id: str) -> int | None:
    # A literal (not a parameter) lets DuckDB use the index on slack_user_id.
    row = con.execute(f"SELECT id FROM users WHERE slack_user_id = {sql_list([slack_user_id])[1:-1]} "
                      "AND role = 'agent'").fetchone()
    return int(row[0]) if row else None


def _touch(con: duckdb.DuckDBPyConnection, ticket_id: int, actor: Actor, now: Any) -> None:
    con.execute("UPDATE tickets SET updated_at = ?, last_agent_update_at = CASE WHEN ? = 'agent' THEN ? "
                "ELSE last_agent_update_at END WHERE id = ?", [now, actor.type, now, ticket_id])


def set_status(con: duckdb.DuckDBPyConnection, ticket_id: int, status: str, actor: Actor) -> dict[str, Any]:
    if status not in STATUSES:
        raise OperationError(f"unknown status {status!r} (one of {', '.join(STATUSES)})")
    t = load_ticket(con, ticket_id)
    if t["status"] == "closed" and status != "closed":
        raise OperationError(f"ticket {ticket_id} is closed and cannot be reopened")
    if status == "new" and t["status"] != "new":
        raise OperationError(f"ticket {ticket_id} cannot go back to new")
    now = clock.now()
    if t["status"] != status:
        con.execute("UPDATE tickets SET status = ?, status_changed_at = ?, "
                    "solved_at = CASE WHEN ? = 'solved' THEN ? ELSE solved_at END WHERE id = ?",
                    [status, now, status, now, ticket_id])
        record_events(con, [event(ticket_id, "status_changed", actor.type, actor.id, at=now, previous=t["status"],
                                  status=status)])
    _touch(con, ticket_id, actor, now)
    return {"ticket_id": ticket_id, "status": status, "previous": t["status"]}


def assign(con: duckdb.DuckDBPyConnection, ticket_id: int, assignee_id: int | None, actor: Actor) -> dict[str, Any]:
    """Assign (or unassign, with None). Zendesk opens a New ticket once someone has it."""
    t = load_ticket(con, ticket_id)
    if assignee_id is not None and _user(con, assignee_id)["role"] != "agent":
        raise OperationError(f"user {assignee_id} is not an agent")
    if t["status"] == "closed":
        raise OperationError(f"ticket {ticket_id} is closed")
    now = clock.now()
    if t["assignee_id"] != assignee_id:
        con.execute("UPDATE tickets SET assignee_id = ? WHERE id = ?", [assignee_id, ticket_id])
        record_events(con, [event(ticket_id, "assignee_changed", actor.type, actor.id, at=now,
                                  previous=t["assignee_id"], assignee_id=assignee_id)])
    if assignee_id is not None and t["status"] == "new":
        set_status(con, ticket_id, "open", actor)
    _touch(con, ticket_id, actor, now)
    return {"ticket_id": ticket_id, "assignee_id": assignee_id, "previous": t["assignee_id"]}


def claim(con: duckdb.DuckDBPyConnection, ticket_id: int, agent: int, *, take_over: bool = False) -> dict[str, Any]:
    """The agent takes the ticket. One that another agent has is taken only with `take_over`: two agents
    claiming at once get one owner, and the second is told who (AssignedElsewhere)."""
    t = load_ticket(con, ticket_id)
    if t["assignee_id"] is not None and t["assignee_id"] != agent and not take_over:
        owner = _user(con, t["assignee_id"])
        raise AssignedElsewhere(ticket_id, {"id": owner["id"], "name": owner["name"],
                                            "slack_user_id": owner["slack_user_id"]})
    return assign(con, ticket_id, agent, Actor.agent(agent))


def change_tags(con: duckdb.DuckDBPyConnection, ticket_id: int, add: list[str], remove: list[str],
                actor: Actor) -> dict[str, Any]:
    """Tags can be removed like any tag, social ones too (R9): views and reports follow the tags."""
    t = load_ticket(con, ticket_id)
    bad = [tag for tag in add if not tag or any(c.isspace() for c in tag)]
    if bad:
        raise OperationError(f"a tag is one word: {bad[0]!r}")
    before = list(t["tags"])
    after = [tag for tag in before if tag not in remove] + [tag for tag in dict.fromkeys(add) if tag not in before]
    now = clock.now()
    if after != before:
        con.execute("UPDATE tickets SET tags = ?::VARCHAR[], tag_text = ? WHERE id = ?",
                    [after, tag_text(after), ticket_id])
        record_events(con, [event(ticket_id, "tags_changed", actor.type, actor.id, at=now,
                                  added=[x for x in after if x not in before],
                                  removed=[x for x in before if x not in after])])
        _touch(con, ticket_id, actor, now)
    return {"ticket_id": ticket_id, "tags": after}


def set_fields(con: duckdb.DuckDBPyConnection, ticket_id: int, changes: Mapping[str, Any],
               actor: Actor) -> dict[str, Any]:
    """Set the ticket's fields: `priority`, `group_id`, `subject` and `custom_fields` (a mapping of
    key to value). Rules, Slack and the CLI all change them here, so each change is the same event
    (`priority_changed`, ...) with `previous` whoever makes it; an unchanged value records nothing.

    An empty priority or group clears it. Everything is checked before anything is written.
    """
    columns, custom = checked_fields(changes)
    t = load_ticket(con, ticket_id)
    now = clock.now()
    events = []
    for column, value in columns.items():
        if t[column] != value:
            # The column name comes from FIELD_EVENTS, never from the caller.
            con.execute(f"UPDATE tickets SET {column} = ? WHERE id = ?", [value, ticket_id])
            events.append(event(ticket_id, FIELD_EVENTS[column], actor.type, actor.id, at=now, previous=t[column],
                                **{column: value}))
    fields = json.loads(t["custom_fields"] or "{}")
    changed = {key: value for key, value in custom.items() if fields.get(key) != value}
    for key, value in changed.items():
        events.append(event(ticket_id, "custom_field_changed", actor.type, actor.id, at=now, field=key,
                            previous=fields.get(key), value=value))
    if changed:
        fields |= changed
        con.execute("UPDATE tickets SET custom_fields = ?::JSON WHERE id = ?", [dumps(fields), ticket_id])
    if events:
        record_events(con, events)
        _touch(con, ticket_id, actor, now)
    after = {column: t[column] for column in FIELD_EVENTS} | columns
    return {"ticket_id": ticket_id, **after, "custom_fields": fields,
            "changed": [c for c in columns if t[c] != columns[c]] + [f"custom_fields.{k}" for k in changed]}


def checked_fields(changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The columns and custom fields `set_fields` would store; OperationError naming the first bad one.
    It needs no store, so Slack checks a modal's fields with it before answering (3 seconds at most)."""
    unknown = [name for name in changes if name not in (*FIELD_EVENTS, "custom_fields")]
    if unknown:
        raise OperationError(f"unknown ticket field {unknown[0]!r} (one of {', '.join(FIELD_EVENTS)}, "
                             "custom_fields)")
    columns: dict[str, Any] = {}
    if "priority" in changes:
        priority = changes["priority"]
        if priority not in (*PRIORITIES, "", None):
            raise OperationError(f"priority {priority!r} is not one of {', '.join(PRIORITIES)} (or empty)")
        columns["priority"] = priority or None
    if "group_id" in changes:
        columns["group_id"] = _group(changes["group_id"])
    if "subject" in changes:
        columns["subject"] = _subject(changes["subject"])
    custom = changes.get("custom_fields") or {}
    if not isinstance(custom, Mapping):
        raise OperationError("custom_fields is a mapping of field key to value")
    for key, value in custom.items():
        if not isinstance(key, str) or not key.strip():
            raise OperationError("a custom field needs a key")
        if not (value is None or isinstance(value, str | int | bool)
                or (isinstance(value, float) and math.isfinite(value))):
            raise OperationError(f"custom field {key!r} takes a text, number or true/false value")
    return columns, dict(custom)


def _group(value: Any) -> str | None:
    # No groups table exists: a group is whatever id or name the rules (or Zendesk's exports) give it.
    if value in ("", None):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise OperationError(f"group_id is a group's id or name, not {value!r}")
    return str(value)


def _subject(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise OperationError("a subject needs text")
    if len(value) > SUBJECT_MAX:
        raise OperationError(f"a subject is at most {SUBJECT_MAX} characters (this one has {len(value)})")
    return value


def internal_note(con: duckdb.DuckDBPyConnection, ticket_id: int, author_id: int, text: str,
                  actor: Actor | None = None) -> dict[str, Any]:
    if not text.strip():
        raise OperationError("an internal note needs text")
    load_ticket(con, ticket_id)
    actor = actor or Actor.agent(author_id)
    now = clock.now()
    (cid,) = next_ids(con, "comment_ids", 1)
    insert(con, "comments", [{"id": cid, "ticket_id": ticket_id, "author_id": author_id, "public": False,
                              "body": text, "attachments": "[]", "created_at": now}])
    record_events(con, [event(ticket_id, "comment_added", actor.type, actor.id, at=now, comment_id=cid,
                              public=False)])
    _touch(con, ticket_id, actor, now)
    return {"ticket_id": ticket_id, "comment_id": cid}


def window_state(ticket: dict[str, Any], now: Any = None) -> dict[str, Any]:
    """The channel's messaging window for this ticket (R22, B1): open?, time left, the tag it takes, and
    whether approved templates still go out when it is closed."""
    channel = channels.find(ticket["channel"])
    window = channel.window if channel else None
    if window is None:
        return {"has_window": False, "open": True, "seconds_left": None, "templates": False}
    last = ticket["last_end_user_message_at"]
    if last is None:
        return {"has_window": True, "open": False, "seconds_left": 0, "templates": window.templates}
    now = now or clock.now()
    left = (last + timedelta(hours=window.hours) - now).total_seconds()
    if left <= 0 and window.tag and _channel_info(ticket).get(window.flag) is True:
        # The account may still answer with the channel's tag (Meta's HUMAN_AGENT, for 7 days).
        tagged = (last + timedelta(hours=window.tagged_hours) - now).total_seconds()
        # `channel`: Slack says whose rules these are (its label, its untagged hours, what its accounts are).
        return {"has_window": True, "open": tagged > 0, "seconds_left": max(0, int(tagged)),
                "window_hours": window.tagged_hours, "tag": window.tag, "templates": window.templates,
                "channel": ticket["channel"]}
    return {"has_window": True, "open": left > 0, "seconds_left": max(0, int(left)), "window_hours": window.hours,
            "templates": window.templates}


def templates_allowed(channel: str) -> bool:
    """Whether the channel delivers approved message templates outside its window (WhatsApp's)."""
    found = channels.find(channel)
    return bool(found and found.window and found.window.templates)


def _template_channels() -> str:
    return ", ".join(c.label for c in channels.every() if c.window and c.window.templates) or "no channel"


def _channel_info(ticket: dict[str, Any]) -> dict[str, Any]:
    info = ticket.get("channel_info")
    return json.loads(info) if isinstance(info, str) else dict(info or {})


def reply(con: duckdb.DuckDBPyConnection, ticket_id: int, agent: int, text: str, *, status: str | None = None,
          file: tuple[str, str, bytes] | None = None, template: dict[str, Any] | None = None,
          actor: Actor | None = None) -> dict[str, Any]:
    """A public reply: a comment, an outbox row for the channel, and the "sent to channel" event (R20, R23).

    It leaves from the ticket's business account. Outside the channel's messaging window a free-form
    reply fails at once with a plain reason (R22, B1); a WhatsApp template is allowed there.
    `file` is (filename, mime type, bytes).
    """
    t = load_ticket(con, ticket_id)
    actor = actor or Actor.agent(agent)
    _check_reply(t, ticket_id, text, file, template)
    now = clock.now()
    window = window_state(t, now)
    refused = _window_refusal(t, window) if not window["open"] and template is None else None
    cid, oid = _write_reply(con, t, ticket_id, agent, text, file, template, refused, now)
    _record_reply(con, t, ticket_id, cid, oid, template, refused, actor, now)
    _after_reply(con, t, ticket_id, agent, status, refused, actor, now)
    return {"ticket_id": ticket_id, "comment_id": cid, "outbox_id": oid, "state": "failed" if refused else "queued",
            "reason": refused, "window": window}


def _check_reply(t: dict[str, Any], ticket_id: int, text: str, file: tuple[str, str, bytes] | None,
                 template: dict[str, Any] | None) -> None:
    """Refuse a reply with nothing in it, a template where the channel has none, a reply on a closed ticket."""
    if not text.strip() and file is None and template is None:
        raise OperationError("a reply needs text, a file or a template")
    if template is not None and not templates_allowed(t["channel"]):
        raise OperationError(f"message templates exist on {_template_channels()} only")
    if t["status"] == "closed":
        raise OperationError(f"ticket {ticket_id} is closed; the customer's next message opens a new ticket")


def _window_refusal(t: dict[str, Any], window: dict[str, Any]) -> str:
    """The plain reason a free-form reply fails when the messaging window is closed (R22, B1)."""
    hours = window.get("window_hours")
    return (f"The {hours}-hour messaging window closed: the customer's last message is older than {hours} "
            f"hours, so the channel will not deliver a free-form reply."
            + (f" Send an approved {channels.label(t['channel'])} template instead."
               if templates_allowed(t["channel"]) else ""))


def _write_reply(con: duckdb.DuckDBPyConnection, t: dict[str, Any], ticket_id: int, agent: int, text: str,
                 file: tuple[str, str, bytes] | None, template: dict[str, Any] | None, refused: str | None,
                 now: datetime) -> tuple[int, int]:
    """The reply's public comment and its outbox row (failed at once when refused); returns their ids."""
    attachments = [{"type": "image" if file[1].startswith("image/") else "file", "filename": file[0],
                    "mime_type": file[1], "size": len(file[2])}] if file else []
    body = text or (f"[template {template['name']}]" if template else "")
    (cid,) = next_ids(con, "comment_ids", 1)
    insert(con, "comments", [{"id": cid, "ticket_id": ticket_id, "author_id": agent, "public": True, "body": body,
                              "attachments": dumps(attachments), "created_at": now}])
    (oid,) = next_ids(con, "outbox_ids", 1)
    insert(con, "outbox", [{
        "id": oid, "ticket_id": ticket_id, "comment_id": cid, "agent_id": agent, "channel": t["channel"],
        "account": t["account"], "recipient": t["recipient"], "body": text,
        "file_name": file[0] if file else None, "file_mime": file[1] if file else None,
        "file_data": file[2] if file else None, "template": dumps(template) if template else None,
        "state": "failed" if refused else "queued", "attempts": 0, "next_attempt_at": None if refused else now,
        "last_error": refused, "window_closed": refused is not None, "retry_key": str(uuid.uuid4()),
        "created_at": now, "updated_at": now}])
    return cid, oid


def _record_reply(con: duckdb.DuckDBPyConnection, t: dict[str, Any], ticket_id: int, cid: int, oid: int,
                  template: dict[str, Any] | None, refused: str | None, actor: Actor, now: datetime) -> None:
    """The reply's events: comment added, sent to the channel, and failed when the window refused it."""
    events = [event(ticket_id, "comment_added", actor.type, actor.id, at=now, comment_id=cid, public=True),
              event(ticket_id, "sent_to_channel", actor.type, actor.id, at=now, outbox_id=oid, channel=t["channel"],
                    account=t["account"], template=template["name"] if template else None)]
    if refused:
        events.append(event(ticket_id, "reply_failed", "system", at=now, outbox_id=oid, reason=refused,
                            window_closed=True))
    record_events(con, events)


def _after_reply(con: duckdb.DuckDBPyConnection, t: dict[str, Any], ticket_id: int, agent: int, status: str | None,
                 refused: str | None, actor: Actor, now: datetime) -> None:
    """What a reply does to its ticket (`t` as it was before): the first reply time, an assignee if it had none,
    the status."""
    if not refused:  # a reply the window refused never reached the customer: it is no first reply
        con.execute("UPDATE tickets SET first_reply_at = coalesce(first_reply_at, ?) WHERE id = ?", [now, ticket_id])
    if t["assignee_id"] is None and actor.type == "agent":
        assign(con, ticket_id, agent, actor)
    new_status = status or ("open" if t["status"] == "new" else None)
    if new_status and new_status != load_ticket(con, ticket_id)["status"]:
        set_status(con, ticket_id, new_status, actor)
    _touch(con, ticket_id, actor, now)


# -- end users: merging (R5) ------------------------------------------------------------------------

def merge_users(con: duckdb.DuckDBPyConnection, source_id: int, target_id: int, actor: Actor) -> dict[str, Any]:
    """Merge `source` into `target`: identities, tickets and comments move; source stays as a tombstone.

    Requester changes made by a merge do not fire triggers (as in Zendesk).
    """
    if source_id == target_id:
        raise OperationError("cannot merge a user into itself")
    source, target = _user(con, source_id), _user(con, target_id)
    for u in (source, target):
        if u["role"] != "end-user":
            raise OperationError(f"user {u['id']} is an agent; only end users can be merged")
        if u["merged_into"] is not None:
            raise OperationError(f"user {u['id']} was already merged into user {u['merged_into']}")
    now = clock.now()
    identities = [list(r) for r in con.execute(
        "SELECT channel, account, platform_user_id FROM identities WHERE user_id = ?", [source_id]).fetchall()]
    tickets = [r[0] for r in con.execute("SELECT id FROM tickets WHERE requester_id = ?", [source_id]).fetchall()]
    comments = [r[0] for r in con.execute("SELECT id FROM comments WHERE author_id = ?", [source_id]).fetchall()]
    con.execute("UPDATE identities SET user_id = ? WHERE user_id = ?", [target_id, source_id])
    con.execute("UPDATE tickets SET requester_id = ? WHERE requester_id = ?", [target_id, source_id])
    con.execute("UPDATE comments SET author_id = ? WHERE author_id = ?", [target_id, source_id])
    con.execute("UPDATE users SET social_messaging_info = json_merge_patch(?::JSON, social_messaging_info), "
                "phone = coalesce(phone, ?), updated_at = ? WHERE id = ?",
                [source["social_messaging_info"], source["phone"], now, target_id])
    con.execute("UPDATE users SET merged_into = ?, updated_at = ? WHERE id = ?", [target_id, now, source_id])
    data = {"source_id": source_id, "target_id": target_id, "identities": identities, "tickets": tickets,
            "comments": comments, "target_before": {"phone": target["phone"],
                                                    "social_messaging_info": target["social_messaging_info"]}}
    (eid,) = record_events(con, [event(None, "user_merged", actor.type, actor.id, user_id=source_id, at=now, **data)])
    record_events(con, [event(t, "requester_merged", actor.type, actor.id, at=now, source_id=source_id,
                              target_id=target_id, merge_event_id=eid) for t in tickets])
    return {"merged": source_id, "into": target_id, "event_id": eid, "tickets_moved": tickets,
            "identities_moved": len(identities)}


def unmerge_user(con: duckdb.DuckDBPyConnection, source_id: int, actor: Actor) -> dict[str, Any]:
    """Undo the merge of `source` from its event: what moved moves back."""
    source = _user(con, source_id)
    if source["merged_into"] is None:
        raise OperationError(f"user {source_id} is not merged")
    row = con.execute("SELECT id, data FROM events WHERE kind = 'user_merged' AND user_id = ? "
                      "ORDER BY id DESC LIMIT 1", [source_id]).fetchone()
    if row is None:
        raise OperationError(f"no merge event for user {source_id}")
    eid, data = row[0], json.loads(row[1])
    target_id = data["target_id"]
    if _user(con, target_id)["merged_into"] is not None:
        raise OperationError(f"user {target_id} was merged since; undo that merge first")
    now = clock.now()
    for channel, account, platform_user_id in data["identities"]:
        con.execute("UPDATE identities SET user_id = ? WHERE channel = ? AND account = ? AND platform_user_id = ?",
                    [source_id, channel, account, platform_user_id])
    if data["tickets"]:
        con.execute("UPDATE tickets SET requester_id = ? WHERE list_contains(?::BIGINT[], id)",
                    [source_id, data["tickets"]])
    if data["comments"]:
        con.execute("UPDATE comments SET author_id = ? WHERE list_contains(?::BIGINT[], id)",
                    [source_id, data["comments"]])
    before = data["target_before"]
    con.execute("UPDATE users SET phone = ?, social_messaging_info = ?::JSON, updated_at = ? WHERE id = ?",
                [before["phone"], before["social_messaging_info"], now, target_id])
    con.execute("UPDATE users SET merged_into = NULL, updated_at = ? WHERE id = ?", [now, source_id])
    record_events(con, [event(None, "user_unmerged", actor.type, actor.id, user_id=source_id, at=now,
                              target_id=target_id, merge_event_id=eid)])
    return {"unmerged": source_id, "from": target_id, "tickets_restored": data["tickets"]}
