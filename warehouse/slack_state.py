"""The Slack app's own state in the store, and the reads its notifier makes (bot/notify.py).

- `slack_messages`: where each ticket's card and thread messages are in Slack (channel, ts), keyed
  by what they show: the card, an end user's comment, a reply (its outbox row), a note, a rule's
  notification, a failure told to an agent. Posting is idempotent through it: a message recorded
  here is never posted again, even when the notifier re-reads events after a restart.
- `slack_cursor`: the last event the notifier is done with (everything up to it reached Slack).
- `slack_seen`: keys of deliveries from Slack already acted on (event ids, thread messages, view
  submissions), so a retry or a replay acts once.

Every function takes a cursor or the writer's connection; none knows Slack's API.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import duckdb

from warehouse import clock
from warehouse.rows import scalar, sql_list

Con = duckdb.DuckDBPyConnection
SEEN_FOR = timedelta(days=1)


# -- the cursor ------------------------------------------------------------------------------------

def cursor(con: Con, name: str) -> int | None:
    row = con.execute("SELECT last_event_id FROM slack_cursor WHERE name = ?", [name]).fetchone()
    return int(row[0]) if row else None


def save_cursor(con: Con, name: str, value: int) -> None:
    con.execute("INSERT INTO slack_cursor VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET last_event_id = "
                "excluded.last_event_id", [name, value])


def end_of_log(con: Con) -> int:
    return int(scalar(con, "SELECT coalesce(max(id), 0) FROM events"))


def events_after(con: Con, after: int, limit: int) -> list[tuple[int, int | None, str, str, dict[str, Any]]]:
    """(id, ticket id, kind, actor type, data) of the events after `after`, oldest first."""
    return [(i, t, k, a, json.loads(d)) for i, t, k, a, d in con.execute(
        "SELECT id, ticket_id, kind, actor_type, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
        [after, limit]).fetchall()]


def last_event(con: Con, ticket_id: int) -> int:
    """The newest event of a ticket: what a message rendered now reflects at least."""
    return int(scalar(con, "SELECT coalesce(max(id), 0) FROM events WHERE ticket_id = ?", [ticket_id]))


# -- messages in Slack -----------------------------------------------------------------------------

def message(con: Con, ticket_id: int, kind: str, ref: int = 0) -> tuple[str, str] | None:
    row = con.execute("SELECT channel, ts FROM slack_messages WHERE ticket_id = ? AND kind = ? AND ref = ?",
                      [ticket_id, kind, ref]).fetchone()
    return (row[0], row[1]) if row else None


def posted(con: Con, ticket_id: int, kind: str, refs: list[int]) -> set[int]:
    """Which of these refs are in Slack already."""
    if not refs:
        return set()
    return {int(r[0]) for r in con.execute(
        f"SELECT ref FROM slack_messages WHERE ticket_id = ? AND kind = ? AND ref IN {sql_list(refs)}",
        [ticket_id, kind]).fetchall()}


def remember(con: Con, ticket_id: int, kind: str, refs: list[int], channel: str, ts: str) -> None:
    """Record that these refs are shown by the Slack message (channel, ts)."""
    now = clock.now()
    for ref in refs:
        con.execute("INSERT INTO slack_messages VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    [ticket_id, kind, ref, channel, ts, now])


def card_ticket(con: Con, channel: str, ts: str) -> int | None:
    """The ticket whose card is the Slack message (channel, ts)."""
    # Literals let DuckDB use the index on ts.
    row = con.execute(f"SELECT ticket_id FROM slack_messages WHERE ts = {sql_list([ts])[1:-1]} "
                      f"AND channel = {sql_list([channel])[1:-1]} AND kind = 'card'").fetchone()
    return int(row[0]) if row else None


def card_channel(con: Con, ticket_id: int) -> str | None:
    found = message(con, ticket_id, "card")
    return found[0] if found else None


# -- what the notifier shows ---------------------------------------------------------------------

def comment(con: Con, comment_id: int) -> dict[str, Any] | None:
    """A comment with its author, and for a reply its outbox row (delivery state and reason)."""
    row = con.execute(
        "SELECT c.ticket_id, c.body, c.public, c.attachments, c.created_at, u.name, u.role, o.id, o.state, "
        "o.last_error, o.agent_id FROM comments c JOIN users u ON u.id = c.author_id "
        "LEFT JOIN outbox o ON o.comment_id = c.id WHERE c.id = ?", [comment_id]).fetchone()
    if row is None:
        return None
    tid, body, public, attachments, at, name, role, oid, state, error, agent = row
    return {"id": comment_id, "ticket_id": tid, "body": body, "public": public,
            "attachments": json.loads(attachments), "created_at": at, "author": name, "author_role": role,
            "outbox_id": oid, "state": state, "reason": error, "agent_id": agent}


def comments(con: Con, comment_ids: list[int]) -> list[dict[str, Any]]:
    return [c for c in (comment(con, cid) for cid in comment_ids) if c is not None]


def waiting_customer_messages(con: Con, ticket_id: int) -> list[dict[str, Any]]:
    """The end user's messages on the ticket that are in no Slack message yet, oldest first."""
    rows = con.execute(
        "SELECT c.id FROM comments c JOIN tickets t ON t.id = c.ticket_id WHERE c.ticket_id = ? AND c.public "
        "AND c.author_id = t.requester_id AND c.created_at >= t.created_at AND c.id NOT IN "
        "(SELECT ref FROM slack_messages WHERE ticket_id = ? AND kind = 'comment') ORDER BY c.created_at, c.id",
        [ticket_id, ticket_id]).fetchall()
    return comments(con, [int(r[0]) for r in rows])


def shown_in(con: Con, ticket_id: int, kind: str, channel: str, ts: str) -> list[int]:
    """The refs of this kind that the Slack message (channel, ts) shows."""
    return [int(r[0]) for r in con.execute(
        "SELECT ref FROM slack_messages WHERE ticket_id = ? AND kind = ? AND channel = ? AND ts = ? ORDER BY ref",
        [ticket_id, kind, channel, ts]).fetchall()]


def reply(con: Con, outbox_id: int) -> dict[str, Any] | None:
    """A reply by its outbox row: the comment, its state ("retry" while a failed attempt waits)."""
    row = con.execute("SELECT comment_id, state, last_error FROM outbox WHERE id = ?", [outbox_id]).fetchone()
    if row is None or row[0] is None:
        return None
    found = comment(con, int(row[0]))
    if found is None:
        return None
    state = "retry" if row[1] == "queued" and row[2] else row[1]
    return {**found, "state": state, "reason": row[2]}


def last_reply(con: Con, ticket_id: int) -> dict[str, Any] | None:
    """The ticket's latest reply's state, for its card."""
    row = con.execute("SELECT id, state, last_error FROM outbox WHERE ticket_id = ? ORDER BY id DESC LIMIT 1",
                      [ticket_id]).fetchone()
    return {"outbox_id": row[0], "state": row[1], "reason": row[2]} if row else None


def slack_user(con: Con, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    row = con.execute("SELECT slack_user_id FROM users WHERE id = ?", [user_id]).fetchone()
    return row[0] if row else None


def assignees(con: Con, ticket_ids: list[int]) -> list[tuple[int, int | None, str | None]]:
    """(ticket, assignee id, assignee's Slack user id) of these tickets."""
    if not ticket_ids:
        return []
    return con.execute("SELECT t.id, t.assignee_id, u.slack_user_id FROM tickets t LEFT JOIN users u "
                       f"ON u.id = t.assignee_id WHERE t.id IN {sql_list(ticket_ids)}").fetchall()


def slack_users(con: Con, user_ids: set[int]) -> set[str]:
    if not user_ids:
        return set()
    return {r[0] for r in con.execute(f"SELECT slack_user_id FROM users WHERE id IN {sql_list(user_ids)} "
                                      "AND slack_user_id IS NOT NULL").fetchall()}


# -- deliveries acted on once ------------------------------------------------------------------------

def first_time(con: Con, key: str) -> bool:
    """Record `key`; True the first time (inside the caller's transaction, so the act and the key
    commit together)."""
    return bool(con.execute("INSERT INTO slack_seen VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING key",
                            [key, clock.now()]).fetchall())


def seen(con: Con, key: str) -> bool:
    return con.execute("SELECT 1 FROM slack_seen WHERE key = ?", [key]).fetchone() is not None


def forget_seen(con: Con, before: datetime | None = None) -> int:
    """Drop keys older than a day: Slack retries for five minutes at most."""
    cutoff = before or clock.now() - SEEN_FOR
    return len(con.execute("DELETE FROM slack_seen WHERE seen_at < ? RETURNING key", [cutoff]).fetchall())
