"""Reads: the notifier (R10-R16), views (R16, R18, R19), search (R25-R27), tickets and users.

All take a cursor and return JSON-ready dicts; those the desk hands on are typed in warehouse.read_models.
Social tickets are selected by their tags, through the view definitions (R9), never by a hidden flag.
"""

from __future__ import annotations

import json
from datetime import datetime
from importlib import resources
from typing import Any, cast

import duckdb

from warehouse import clock
from warehouse.conditions import Context, compile_conditions
from warehouse.phones import looks_like_phone, to_e164
from warehouse.read_models import (
    Assignee,
    Comment,
    Event,
    Identity,
    MergeSuggestion,
    NotifierTab,
    SearchResult,
    Ticket,
    TicketRow,
    User,
    UserSummary,
    ViewPage,
    Window,
)
from warehouse.rows import scalar, sql_list
from warehouse.tickets import OperationError, agent_id, window_state

PAGE_SIZE = 20
ASSIGNED_VIEW = "Your social messaging tickets"
UNASSIGNED_VIEW = "Unassigned social messaging tickets"
TABS = {"assigned": ASSIGNED_VIEW, "unassigned": UNASSIGNED_VIEW}
STARTED = "Started a new chat"
REPLIED = "Replied to the conversation"


def shipped_views() -> list[dict[str, Any]]:
    return json.loads(resources.files("warehouse.defaults").joinpath("views.json").read_text())["views"]


def find_view(cur: duckdb.DuckDBPyConnection, title: str, owner: int | None = None) -> dict[str, Any]:
    """A view by title (or id): the agent's own first, then shared ones."""
    rows = cur.execute(
        "SELECT id, title, owner_id, conditions, execution FROM views "
        "WHERE (lower(title) = lower(?) OR CAST(id AS VARCHAR) = ?) AND (owner_id IS NULL OR owner_id = ?) "
        "ORDER BY owner_id NULLS LAST LIMIT 1", [title, title, owner]).fetchall()
    if not rows:
        raise OperationError(f"no view named {title!r}")
    return _view(*rows[0])


def _view(vid: int, title: str, owner_id: int | None, conditions: str, execution: str) -> dict[str, Any]:
    return {"id": vid, "title": title, "owner_id": owner_id, "conditions": json.loads(conditions),
            "execution": json.loads(execution)}


def _shared_views(cur: duckdb.DuckDBPyConnection, titles: set[str]) -> dict[str, dict[str, Any]]:
    """Shared views by lowercased title, in one query (the notifier's tab and its red dot need two)."""
    found = {row[1].lower(): _view(*row) for row in cur.execute(
        f"SELECT id, title, owner_id, conditions, execution FROM views WHERE owner_id IS NULL AND lower(title) IN "
        f"{sql_list(t.lower() for t in titles)}").fetchall()}
    for title in titles:
        if title.lower() not in found:
            raise OperationError(f"no view named {title!r}")
    return found


def list_views(cur: duckdb.DuckDBPyConnection, owner: int | None = None) -> list[dict[str, Any]]:
    return [{"id": i, "title": t, "shared": o is None} for i, t, o in cur.execute(
        "SELECT id, title, owner_id FROM views WHERE owner_id IS NULL OR owner_id = ? ORDER BY owner_id NULLS FIRST, "
        "position, id", [owner]).fetchall()]


# The page is cut from tickets alone; requesters' names are then read by primary key for those rows
# only (joining users first would hash the whole users table for every page).
_ROW_SQL = """
SELECT t.id, t.status, t.channel, t.account, t.requester_id, t.subject, t.updated_at, t.assignee_id,
       t.channel_info->>'account_name' AS account_name, t.last_end_user_message_at, t.last_agent_update_at,
       t.last_end_user_text
FROM tickets t
WHERE {where}
ORDER BY t.updated_at DESC, t.id DESC
LIMIT {limit} OFFSET {offset}
"""
PREVIEW = 200  # characters of the customer's last message a row carries


def ticket_rows(cur: duckdb.DuckDBPyConnection, where: str, params: list[Any], limit: int,
                offset: int = 0) -> list[TicketRow]:
    rows = cur.execute(_ROW_SQL.format(where=where, limit=int(limit), offset=int(offset)), params).fetchall()
    if not rows:
        return []
    names = dict(cur.execute(f"SELECT id, name FROM users WHERE id IN {sql_list({r[4] for r in rows})}").fetchall())
    # Tickets older than the column carry no preview on them: theirs is read from the comments.
    previews = {r[0]: r[11] for r in rows if r[11]}
    previews |= last_messages(cur, [(r[0], r[4], r[9]) for r in rows if not r[11]])
    now = clock.now()
    return [ticket_row((*r[:5], names.get(r[4]), *r[5:9]), previews.get(r[0]), r[9], r[10], now) for r in rows]


def last_messages(cur: duckdb.DuckDBPyConnection, tickets: list[tuple[int, int, datetime | None]]) -> dict[int, str]:
    """The start of each ticket's last end-user message. A comment keeps the time the customer sent it,
    which is the ticket's last_end_user_message_at: one equality on that time per ticket lets DuckDB
    skip every row group that cannot hold it (comments are appended in time order; one IN list over
    all the times would be read as their whole range)."""
    parts = [f"SELECT ticket_id, id, left(body, {PREVIEW}) AS body FROM comments WHERE created_at = "
             f"TIMESTAMP '{at.isoformat(sep=' ')}' AND ticket_id = {int(t)} AND author_id = {int(r)} AND public"
             for t, r, at in tickets if at is not None]
    if not parts:
        return {}
    found = cur.execute(f"SELECT ticket_id, arg_max(body, id) FROM ({' UNION ALL '.join(parts)}) GROUP BY 1")
    return {int(t): body for t, body in found.fetchall() if body}


def _window(ticket: dict[str, Any], now: datetime | None = None) -> Window:
    """`window_state`, as the read models type it. The cast: window_state (warehouse.tickets, which the
    writes share) returns a plain dict; read_models.Window spells out the keys it builds."""
    return cast(Window, window_state(ticket, now))


def ticket_row(r: tuple[Any, ...], preview: str | None = None, last_customer: datetime | None = None,
               last_agent: datetime | None = None, now: datetime | None = None) -> TicketRow:
    tid, status, channel, account, rid, name, subject, updated_at, assignee, account_name = r
    waiting = None
    if last_customer is not None and (last_agent is None or last_agent < last_customer) and status in ("new", "open"):
        waiting = max(0, int(((now or clock.now()) - last_customer).total_seconds()))
    return {"id": tid, "status": status, "channel": channel, "account": account, "account_name": account_name,
            "requester": {"id": rid, "name": name}, "subject": subject, "assignee_id": assignee,
            "updated_at": updated_at.isoformat() if isinstance(updated_at, datetime) else updated_at,
            # R13: a new ticket "Started a new chat"; every other one "Replied to the conversation".
            "conversation_status": STARTED if status == "new" else REPLIED,
            # What the ticket is about, how long the customer has waited for an agent (New or Open, no
            # agent action since their last message), and the window's time left (B1).
            "preview": preview, "waiting_seconds": waiting,
            "window": _window({"channel": channel, "last_end_user_message_at": last_customer}, now)}


def run_view(cur: duckdb.DuckDBPyConnection, view: dict[str, Any], agent: int | None, page: int = 1,
             per_page: int = PAGE_SIZE, now: datetime | None = None) -> ViewPage:
    """One page of a view, in its fixed order (R14), and whether more follow (R16)."""
    if page < 1:
        raise OperationError("pages start at 1")
    compiled = compile_conditions(view["conditions"], Context(now=now or clock.now(), current_user=agent),
                                  f"view {view['title']!r}")
    rows = ticket_rows(cur, compiled.sql, compiled.params, per_page + 1, (page - 1) * per_page)
    return {"view": view["title"], "page": page, "has_more": len(rows) > per_page, "tickets": rows[:per_page]}


def view(cur: duckdb.DuckDBPyConnection, title: str, slack_user_id: str | None = None,
         page: int = 1) -> ViewPage:
    agent = agent_id(cur, slack_user_id) if slack_user_id else None
    return run_view(cur, find_view(cur, title, agent), agent, page)


def red_dot(cur: duckdb.DuckDBPyConnection, unassigned: dict[str, Any] | None = None) -> bool:
    """R15: new, unassigned social tickets wait. `unassigned`: the Unassigned view, if read already."""
    v = unassigned or find_view(cur, UNASSIGNED_VIEW)
    compiled = compile_conditions(v["conditions"], Context(now=clock.now()))
    return bool(scalar(cur, f"SELECT EXISTS (SELECT 1 FROM tickets t WHERE t.status = 'new' AND {compiled.sql})",
                       compiled.params))


def notifier(cur: duckdb.DuckDBPyConnection, slack_user_id: str, tab: str = "assigned",
             page: int = 1) -> NotifierTab:
    """R10-R16: one tab of the notifier, 20 rows, fixed order, `has_more` for "Load more tickets"."""
    if tab not in TABS:
        raise OperationError(f"unknown tab {tab!r} (assigned or unassigned)")
    agent = agent_id(cur, slack_user_id)
    shared = _shared_views(cur, set(TABS.values()))
    result = run_view(cur, shared[TABS[tab].lower()], agent, page)
    dot = red_dot(cur, shared[UNASSIGNED_VIEW.lower()])
    return {"tab": tab, "view": result["view"], "red_dot": dot, "has_more": result["has_more"],
            "page": page, "tickets": result["tickets"]}


# -- search (R25-R27) ------------------------------------------------------------------------------

def _user_summaries(cur: duckdb.DuckDBPyConnection, where: str, params: list[Any]) -> list[UserSummary]:
    users = cur.execute(f"SELECT id, name, phone FROM users u WHERE role = 'end-user' AND merged_into IS NULL "
                        f"AND ({where}) ORDER BY id LIMIT 50", params).fetchall()
    if not users:
        return []
    tickets: dict[int, list[int]] = {}
    for rid, tid in cur.execute(f"SELECT requester_id, id FROM tickets WHERE requester_id IN "
                                f"{sql_list(u[0] for u in users)} ORDER BY id").fetchall():
        tickets.setdefault(rid, []).append(tid)
    return [{"id": i, "name": n, "phone": p, "ticket_ids": tickets.get(i, [])} for i, n, p in users]


def search(cur: duckdb.DuckDBPyConnection, query: str) -> SearchResult:
    """End users by phone (any common format, R25) or by their social messaging info (R26); tickets by
    their channel info (R27)."""
    q = query.strip()
    if not q:
        raise OperationError("search needs a query")
    phone = to_e164(q) if looks_like_phone(q) else None
    # Case-insensitive substring search, the text taken literally (no LIKE wildcards): contains() on
    # lower() reads a million tickets' channel info in about a millisecond, ILIKE in ten.
    text = q.lower()
    if phone:
        users = _user_summaries(cur, "u.phone = ?", [phone])
    else:
        users = _user_summaries(cur, "contains(lower(u.name), ?) OR "
                                     "contains(lower(CAST(u.social_messaging_info AS VARCHAR)), ?)", [text, text])
    number = q.lstrip("#")
    by_id = f" OR t.id = {int(number)}" if number.isdigit() and len(number) < 19 else ""
    tickets = ticket_rows(cur, f"contains(lower(CAST(t.channel_info AS VARCHAR)), ?){by_id}", [text], 50)
    return {"query": q, "phone": phone, "users": users, "tickets": tickets}


def attachment(cur: duckdb.DuckDBPyConnection, comment_id: int, index: int) -> tuple[dict[str, Any], str, str] | None:
    """A comment's attachment by its position, with the channel and account of its ticket (the media
    route fetches it from there); None when there is no such attachment."""
    row = cur.execute("SELECT c.attachments, t.channel, t.account FROM comments c JOIN tickets t ON t.id = c.ticket_id "
                      "WHERE c.id = ?", [comment_id]).fetchone()
    if row is None:
        return None
    attachments = json.loads(row[0])
    return (attachments[index], row[1], row[2]) if 0 <= index < len(attachments) else None


def alive(cur: duckdb.DuckDBPyConnection) -> bool:
    """The store answers (health checks)."""
    return cur.execute("SELECT 1").fetchone() is not None


# -- one ticket, one user --------------------------------------------------------------------------

def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def ticket(cur: duckdb.DuckDBPyConnection, ticket_id: int, history: bool = True) -> Ticket:
    """The ticket; with `history`, its comments (with delivery states) and events too."""
    c = cur.execute("SELECT * FROM tickets WHERE id = ?", [ticket_id])
    row = c.fetchone()
    if row is None:
        raise OperationError(f"ticket {ticket_id} not found")
    t = dict(zip([d[0] for d in c.description], row, strict=True))
    people = {i: (n, p, s) for i, n, p, s in cur.execute(
        f"SELECT id, name, phone, slack_user_id FROM users WHERE id IN "
        f"{sql_list({t['requester_id'], t['assignee_id'] or t['requester_id']})}").fetchall()}
    requester = (t["requester_id"], *people[t["requester_id"]][:2])
    assignee: Assignee | None = None
    if t["assignee_id"] is not None:
        a = people.get(t["assignee_id"], (None, None, None))
        assignee = {"id": t["assignee_id"], "name": a[0], "slack_user_id": a[2]}
    comments, events = (_history(cur, ticket_id, t["created_at"]) if history else ([], []))
    return {
        "id": t["id"], "subject": t["subject"], "status": t["status"], "channel": t["channel"],
        "account": t["account"], "recipient": t["recipient"], "tags": list(t["tags"]),
        "requester": {"id": requester[0], "name": requester[1], "phone": requester[2]},
        "assignee": assignee, "priority": t["priority"], "group_id": t["group_id"],
        "fields": {"social_messaging_channel_info": json.loads(t["channel_info"]),
                   **json.loads(t["custom_fields"])},
        "window": _window(t), "created_at": _iso(t["created_at"]), "updated_at": _iso(t["updated_at"]),
        "last_end_user_message_at": _iso(t["last_end_user_message_at"]),
        "comments": comments, "events": events,
    }


def _history(cur: duckdb.DuckDBPyConnection, ticket_id: int, since: datetime) -> tuple[list[Comment], list[Event]]:
    """Comments and events of one ticket. Nothing of a ticket predates it, and both tables are appended
    in time order, so `>= since` lets DuckDB skip the older row groups by their min/max."""
    rows = cur.execute(
        "SELECT id, author_id, public, body, attachments, platform_message_id, created_at, withdrawn_at, origin "
        "FROM comments WHERE ticket_id = ? AND created_at >= ? ORDER BY created_at, id", [ticket_id, since]).fetchall()
    authors = {i: (n, r) for i, n, r in cur.execute(
        f"SELECT id, name, role FROM users WHERE id IN {sql_list({r[1] for r in rows})}").fetchall()} if rows else {}
    delivery = {cid: (oid, st, err) for cid, oid, st, err in cur.execute(
        "SELECT comment_id, id, state, last_error FROM outbox WHERE ticket_id = ? AND created_at >= ?",
        [ticket_id, since]).fetchall()}
    events: list[Event] = [
        {"id": i, "kind": k, "actor": {"type": at, "id": aid}, "data": json.loads(d), "created_at": _iso(ts)}
        for i, k, at, aid, d, ts in cur.execute(
            "SELECT id, kind, actor_type, actor_id, data, created_at FROM events WHERE ticket_id = ? "
            "AND created_at >= ? ORDER BY id", [ticket_id, since]).fetchall()]
    # The customer's edits, in order: the comment keeps its original text, the agent sees both.
    edits: dict[int, list[str]] = {}
    for e in events:
        if e["kind"] == "comment_edited":
            edits.setdefault(int(e["data"]["comment_id"]), []).append(str(e["data"].get("text") or ""))
    comments: list[Comment] = []
    for i, a, p, b, att, pm, at, withdrawn, origin in rows:
        name, role = authors.get(a, (None, None))
        d = delivery.get(i)
        comments.append({"id": i, "author_id": a, "author": name, "author_role": role, "public": p, "body": b,
                         "attachments": json.loads(att), "platform_message_id": pm, "created_at": _iso(at),
                         "delivery": {"state": d[1], "reason": d[2], "outbox_id": d[0]} if d else None,
                         "withdrawn_at": _iso(withdrawn), "origin": origin, "edits": edits.get(i, [])})
    return comments, events


def user(cur: duckdb.DuckDBPyConnection, user_id: int) -> User:
    row = cur.execute("SELECT id, role, name, phone, social_messaging_info, slack_user_id, merged_into, created_at "
                      "FROM users WHERE id = ?", [user_id]).fetchone()
    if row is None:
        raise OperationError(f"user {user_id} not found")
    uid, role, name, phone, info, slack, merged_into, created = row
    identities: list[Identity] = [{"channel": c, "account": a, "platform_user_id": p, "profile": json.loads(pr)}
                                  for c, a, p, pr in cur.execute(
        "SELECT channel, account, platform_user_id, profile FROM identities WHERE user_id = ? "
        "ORDER BY created_at, channel", [user_id]).fetchall()]
    ticket_ids = [r[0] for r in cur.execute("SELECT id FROM tickets WHERE requester_id = ? ORDER BY id",
                                            [user_id]).fetchall()]
    return {"id": uid, "role": role, "name": name, "phone": phone, "social_messaging_info": json.loads(info),
            "slack_user_id": slack, "merged_into": merged_into, "identities": identities,
            "ticket_ids": ticket_ids, "created_at": _iso(created),
            "merge_suggestions": merge_suggestions(cur, uid, phone)
            if role == "end-user" and merged_into is None else []}


def merge_suggestions(cur: duckdb.DuckDBPyConnection, user_id: int, phone: str | None) -> list[MergeSuggestion]:
    """B5: other live accounts that share this user's phone number."""
    if not phone:
        return []
    others = cur.execute("SELECT id, name, phone FROM users WHERE phone = ? AND id <> ? AND role = 'end-user' "
                         "AND merged_into IS NULL ORDER BY id", [phone, user_id]).fetchall()
    if not others:
        return []
    counts = dict(cur.execute(f"SELECT requester_id, count(*) FROM tickets WHERE requester_id IN "
                              f"{sql_list(o[0] for o in others)} GROUP BY 1").fetchall())
    return [{"id": i, "name": n, "phone": p, "tickets": counts.get(i, 0), "reason": "same phone number"}
            for i, n, p in others]


def latest_ticket(cur: duckdb.DuckDBPyConnection, channel: str, account: str, platform_user_id: str) -> int | None:
    """The newest ticket of the end user with this platform id on this business account."""
    row = cur.execute("SELECT max(id) FROM tickets WHERE channel = ? AND account = ? AND recipient = ?",
                      [channel, account, platform_user_id]).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def user_of_identity(cur: duckdb.DuckDBPyConnection, channel: str, account: str, platform_user_id: str) -> int:
    """The user an identity (channel, business account, platform user id) belongs to (R4)."""
    row = cur.execute("SELECT user_id FROM identities WHERE channel = ? AND account = ? AND platform_user_id = ?",
                      [channel, account, platform_user_id]).fetchone()
    if row is None:
        raise OperationError(f"no {channel} end user {platform_user_id} on account {account}")
    return int(row[0])
