"""What the benchmarks read of a store beside the product's own queries: an agent and a phone number to
query with, the messages stored so far, and the tables as pandas frames for the pandas-only baseline
of the reports. SQL lives in `warehouse/` only, the benchmarks' too."""

from __future__ import annotations

import duckdb
import pandas as pd

from warehouse.rows import scalar

Con = duckdb.DuckDBPyConnection

# The columns the pandas baseline computes the reports from: what the SQL reports read.
FRAMES = {
    "tickets": "id, status, requester_id, assignee_id, channel, account, tags, created_at, solved_at, first_reply_at",
    "events": "id, ticket_id, user_id, kind, actor_type, actor_id, data::VARCHAR AS data, created_at",
    "outbox": "id, ticket_id, agent_id, state, attempts, window_closed, template IS NOT NULL AS templ, created_at, "
              "sent_at, delivered_at, read_at",
    "users": "id, role, name, phone, merged_into",
    "accounts": "channel, account, name",
}


def busiest_agent(con: Con) -> str:
    """The Slack id of the agent with the most new and open tickets: the longest notifier tab."""
    return str(scalar(con, "SELECT u.slack_user_id FROM tickets t JOIN users u ON u.id = t.assignee_id "
                           "WHERE t.status IN ('new', 'open') GROUP BY 1 ORDER BY count(*) DESC LIMIT 1"))


def a_phone(con: Con, skip: int) -> str:
    """A customer's phone number (E.164), the `skip`-th one stored: not one the store keeps near the top."""
    return str(scalar(con, "SELECT phone FROM users WHERE phone IS NOT NULL LIMIT 1 OFFSET ?", [skip]))


def messages_after(con: Con, comment_id: int) -> list[tuple[int, str]]:
    """(comment id, platform message id) of every comment stored after `comment_id`."""
    return con.execute("SELECT id, platform_message_id FROM comments WHERE id > ?", [comment_id]).fetchall()


def messages_stored(con: Con) -> int:
    return int(scalar(con, "SELECT count(*) FROM comments"))


def frames(con: Con) -> dict[str, pd.DataFrame]:
    """The tables of `FRAMES`, whole, as pandas frames."""
    return {table: con.execute(f"SELECT {columns} FROM {table}").df() for table, columns in FRAMES.items()}
