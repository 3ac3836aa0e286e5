"""Zendesk placeholders (`{{ticket.id}}`, ...) in the texts of rule actions: which exist, and rendering.

An unknown placeholder is reported when the rule loads: Zendesk would print nothing in its place,
and a customer reading "Hello ," is worse than an admin reading an error.
"""

from __future__ import annotations

import re
from typing import Any

import duckdb

from warehouse import channels

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")
PLACEHOLDERS = ("ticket.id", "ticket.title", "ticket.status", "ticket.channel", "ticket.account",
                "ticket.requester.name", "ticket.requester.first_name", "ticket.assignee.name",
                "ticket.assignee.first_name", "current_user.name", "current_user.first_name")


def unknown_placeholders(text: str) -> list[str]:
    return [m for m in PLACEHOLDER.findall(text) if m not in PLACEHOLDERS]


def _first(name: str | None) -> str:
    return (name or "").split(" ")[0]


_VALUES_SQL = (
    "SELECT t.id, t.subject, t.status, t.channel, coalesce(t.channel_info->>'account_name', a.name, t.account), "
    "r.name, s.name, (SELECT name FROM users WHERE id = ?) "
    "FROM tickets t JOIN users r ON r.id = t.requester_id LEFT JOIN users s ON s.id = t.assignee_id "
    "LEFT JOIN accounts a ON a.channel = t.channel AND a.account = t.account WHERE t.id IN {ids}")


def values_many(con: duckdb.DuckDBPyConnection, ticket_ids: list[int],
                current_user: int | None) -> dict[int, dict[str, str]]:
    """What each placeholder stands for on each ticket, for this current user: one query for them all."""
    from warehouse.rows import sql_list
    out = {}
    for tid, subject, status, channel, account, requester, assignee, current in con.execute(
            _VALUES_SQL.format(ids=sql_list(ticket_ids)), [current_user]).fetchall():
        out[tid] = {"ticket.id": str(tid), "ticket.title": subject or "", "ticket.status": status,
                    "ticket.channel": channels.label(channel), "ticket.account": account or "",
                    "ticket.requester.name": requester or "", "ticket.requester.first_name": _first(requester),
                    "ticket.assignee.name": assignee or "", "ticket.assignee.first_name": _first(assignee),
                    "current_user.name": current or "SocialDesk",
                    "current_user.first_name": _first(current or "SocialDesk")}
    return out


def values(con: duckdb.DuckDBPyConnection, ticket_id: int, current_user: int | None) -> dict[str, str]:
    """What each placeholder stands for on this ticket, for this current user."""
    return values_many(con, [ticket_id], current_user).get(ticket_id, {})


def render(text: str, known: dict[str, Any]) -> str:
    return PLACEHOLDER.sub(lambda m: str(known.get(m.group(1), "")), text)
