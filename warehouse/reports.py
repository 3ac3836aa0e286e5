"""Managers' reports over social tickets, as named functions returning DataFrames (R28, R9).

Every report selects social tickets by their tags, never by a hidden flag: a ticket is social while
its tags include `messaging_support`, and it counts under the channel TAG it carries (`whatsapp`,
`facebook`, `line`, `wechat`, `twitter`), so removing a tag takes it out of the reports (R9). A
social ticket whose channel tag was removed counts under `untagged`. Only the tag-hygiene report
(8) looks at `tickets.channel`, to find exactly those tickets.

Each report takes any DuckDB connection where the store's tables resolve unqualified: the file
opened read-only, or the live store attached as `desk` with `USE desk` (see `warehouse.connect`).
Date ranges: `start` is included; `end` is included when it is a date (the range ends at the next
midnight) and excluded when it is a datetime. Times are naive UTC; durations are calendar hours.
`channels` accepts channel names or tags (`messenger` or `facebook`, `x` or `twitter`); `accounts`
accepts business account ids or their configured names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import pandas as pd

from warehouse import channels as channel_table
from warehouse import clock
from warehouse.model import SOCIAL_TAG, UNSOLVED

UNTAGGED = "untagged"
# Ages of waiting tickets, in hours: (label, lower bound inclusive).
AGE_BUCKETS = (("< 1 h", 0), ("1-4 h", 1), ("4-24 h", 4), ("1-3 d", 24), ("3-7 d", 72), ("> 7 d", 168))
AGE_LABELS = tuple(label for label, _ in AGE_BUCKETS)
_PARAM = re.compile(r"\$([a-z_]+)")
_SQL_LIST = lambda values: "[" + ", ".join(f"'{v}'" for v in values) + "]"  # noqa: E731 (constants only)
_UNSOLVED = _SQL_LIST(UNSOLVED)


# The channels are registered once connectors.registry is imported, so what depends on them is built per
# query, not at import.
def _tag_list() -> str:
    """Every channel's tag, as an SQL list."""
    return _SQL_LIST(channel_table.tags())


def _tag_of_channel(col: str) -> str:
    """SQL: the tag of the channel named in `col`."""
    return "CASE " + col + " " + " ".join(f"WHEN '{c.name}' THEN '{c.tag}'" for c in channel_table.every()) + " END"


def _priced_channels() -> str:
    """SQL: the channels whose receipts say what each reply cost."""
    return _SQL_LIST([c.name for c in channel_table.every() if c.priced_replies] or [""])


# -- parameters ----------------------------------------------------------------------------------

def _day(value: date | datetime | str) -> date | datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value) if "T" in value or " " in value.strip() else date.fromisoformat(value)
    return value


def date_range(start: date | datetime | str, end: date | datetime | str) -> tuple[datetime, datetime]:
    """[start, end) as timestamps: a date `end` is included whole."""
    s, e = _day(start), _day(end)
    lo = s if isinstance(s, datetime) else datetime.combine(s, datetime.min.time())
    hi = e if isinstance(e, datetime) else datetime.combine(e, datetime.min.time()) + timedelta(days=1)
    if hi <= lo:
        raise ValueError(f"empty date range: {start} .. {end}")
    return lo, hi


def channel_tags(channels: Iterable[str] | str | None) -> list[str] | None:
    """Channel names or tags as tags (`messenger` -> `facebook`); None means every channel."""
    if channels is None:
        return None
    if isinstance(channels, str):
        channels = [c for c in channels.split(",") if c.strip()]
    out = []
    for c in channels:
        c = c.strip().lower()
        found = channel_table.by_tag_or_name(c)
        tag = found.tag if found else c
        if found is None and tag != UNTAGGED:
            raise ValueError(f"unknown channel {c!r} (one of {', '.join(channel_table.names())} or their tags)")
        out.append(tag)
    return out or None


def _accounts(accounts: Iterable[str] | str | None) -> list[str] | None:
    if accounts is None:
        return None
    if isinstance(accounts, str):
        accounts = accounts.split(",")
    return [a.strip() for a in accounts if a.strip()] or None


def _params(start: Any = None, end: Any = None, channels: Any = None, accounts: Any = None) -> dict[str, Any]:
    p: dict[str, Any] = {"channels": channel_tags(channels), "accounts": _accounts(accounts)}
    if start is not None and end is not None:
        p["start"], p["end"] = date_range(start, end)
    return p


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if isinstance(value, date):
        return f"DATE '{value.isoformat()}'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_literal(v) for v in value) + "]::VARCHAR[]" if value else "[]::VARCHAR[]"
    return "'" + str(value).replace("'", "''") + "'"


def _live_uri(con: duckdb.DuckDBPyConnection) -> str | None:
    """The Quack URI when the connection's default catalog is the live store attached over Quack."""
    row = con.execute("SELECT type, path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    return row[1] if row and row[0] == "quack" else None


def _run(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> pd.DataFrame:
    used = set(_PARAM.findall(sql))
    uri = _live_uri(con)
    if uri is None:
        return con.execute(sql, {k: v for k, v in params.items() if k in used}).df()
    # Live: the whole query runs in the service's DuckDB (quack_query), which is also what Quack
    # supports; an attached catalog streams one remote table per query and refuses joins of two.
    # Parameters are inlined as literals since they cannot travel with quack_query.
    inlined = _PARAM.sub(lambda m: _literal(params[m.group(1)]), sql)
    return con.execute(f"SELECT * FROM quack_query({_literal(uri)}, {_literal(inlined)})").df()


# The social tickets, one row per channel tag carried (a ticket with none counts as `untagged`),
# filtered by channel tag and business account (id or configured name).
def _social() -> str:
    return f"""
social AS (
    SELECT t.id, t.status, t.assignee_id, t.channel, t.account, t.created_at, t.solved_at, t.first_reply_at,
           t.status_changed_at, coalesce(a.name, t.account) AS account_name,
           unnest(CASE WHEN len(t.ctags) = 0 THEN ['{UNTAGGED}'] ELSE t.ctags END) AS channel_tag
    -- only the columns reports use: the JSON fields would be carried through the unnest
    FROM (SELECT id, status, assignee_id, channel, account, created_at, solved_at, first_reply_at, status_changed_at,
                 list_filter(tags, x -> list_contains({_tag_list()}, x)) AS ctags
          FROM tickets WHERE list_contains(tags, '{SOCIAL_TAG}')) t
    LEFT JOIN accounts a ON a.channel = t.channel AND a.account = t.account
    WHERE ($accounts::VARCHAR[] IS NULL OR list_contains($accounts::VARCHAR[], t.account)
           OR list_contains($accounts::VARCHAR[], a.name))
),
social_f AS (
    SELECT * FROM social
    WHERE $channels::VARCHAR[] IS NULL OR list_contains($channels::VARCHAR[], channel_tag)
)"""

_IN_RANGE = "{col} >= $start AND {col} < $end"


def _hours(a: str, b: str) -> str:
    return f"date_diff('second', {a}, {b}) / 3600.0"


def _bucket(hours: str) -> str:
    whens = " ".join(f"WHEN {hours} >= {lo} THEN '{label}'" for label, lo in reversed(AGE_BUCKETS))
    return f"CASE {whens} END"


def _ordered_buckets(df: pd.DataFrame, column: str = "age") -> pd.DataFrame:
    df[column] = pd.Categorical(df[column], categories=AGE_LABELS, ordered=True)
    return df.sort_values([c for c in df.columns if c in ("day", "channel")] + [column], ignore_index=True)


# -- 1. volume -----------------------------------------------------------------------------------

def volume(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None, accounts: Any = None,
           period: str = "day") -> pd.DataFrame:
    """New social tickets per day (or week, starting Monday) by channel tag and business account.

    Columns: period_start, channel, account, tickets.
    """
    if period not in ("day", "week"):
        raise ValueError("period is 'day' or 'week'")
    sql = f"""WITH {_social()}
    SELECT date_trunc('{period}', created_at)::DATE AS period_start, channel_tag AS channel,
           account_name AS account, count(*) AS tickets
    FROM social_f WHERE {_IN_RANGE.format(col='created_at')}
    GROUP BY ALL ORDER BY ALL"""
    return _run(con, sql, _params(start, end, channels, accounts))


# -- 2. responsiveness ---------------------------------------------------------------------------

def responsiveness(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
                   accounts: Any = None) -> pd.DataFrame:
    """First reply and resolution times by channel tag, median and 90th percentile, in calendar hours.

    Over social tickets created in the range. First reply: the ticket's first public agent reply
    (`first_reply_at`). Resolution: created to solved, for tickets now solved or closed.
    Columns: channel, tickets, replied, first_reply_median_h, first_reply_p90_h, solved,
    resolution_median_h, resolution_p90_h.
    """
    fr, rs = _hours("created_at", "first_reply_at"), _hours("created_at", "solved_at")
    solved = "status IN ('solved', 'closed') AND solved_at IS NOT NULL"
    sql = f"""WITH {_social()}
    SELECT channel_tag AS channel, count(*) AS tickets, count(first_reply_at) AS replied,
           median({fr}) AS first_reply_median_h, quantile_cont({fr}, 0.9) AS first_reply_p90_h,
           count(*) FILTER ({solved}) AS solved,
           median({rs}) FILTER ({solved}) AS resolution_median_h,
           quantile_cont({rs}, 0.9) FILTER ({solved}) AS resolution_p90_h
    FROM social_f WHERE {_IN_RANGE.format(col='created_at')}
    GROUP BY ALL ORDER BY channel"""
    return _run(con, sql, _params(start, end, channels, accounts))


# -- 3. backlog ----------------------------------------------------------------------------------

def backlog_now(con: duckdb.DuckDBPyConnection, channels: Any = None, accounts: Any = None,
                at: datetime | None = None) -> pd.DataFrame:
    """Unsolved (new, open, pending, on-hold) social tickets now, and the unassigned among them.

    Columns: channel, age (bucket, ordered), unsolved, unassigned.
    """
    p = _params(None, None, channels, accounts)
    p["at"] = at or clock.now()
    sql = f"""WITH {_social()}
    SELECT channel_tag AS channel, {_bucket(_hours('created_at', '$at'))} AS age, count(*) AS unsolved,
           count(*) FILTER (assignee_id IS NULL) AS unassigned
    FROM social_f WHERE status IN (SELECT unnest({_UNSOLVED})) AND created_at <= $at
    GROUP BY ALL"""
    return _ordered_buckets(_run(con, sql, p))


def backlog(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
            accounts: Any = None) -> pd.DataFrame:
    """Day by day: unsolved and unassigned social tickets at the end of each day, by channel and age.

    Each ticket's past status and assignee are rebuilt from its `status_changed` and
    `assignee_changed` events (a ticket starts New and unassigned); its channel is its current tag.
    The snapshot of today is taken now. Columns: day, channel, age, unsolved, unassigned.
    """
    p = _params(start, end, channels, accounts)
    p["now"] = clock.now()
    sql = f"""WITH {_social()},
    -- A ticket solved or closed before the range and unchanged since was never unsolved in it: skip its history.
    s AS (SELECT id, created_at, channel_tag FROM social_f WHERE created_at < $end
          AND NOT (status IN ('solved', 'closed') AND status_changed_at < $start)),
    ids AS (SELECT DISTINCT id, created_at FROM s),
    changes AS (
        SELECT e.ticket_id, e.created_at AS ts, e.id AS seq,
               CASE WHEN e.kind = 'status_changed' THEN (e.data ->> 'status') END AS status,
               CASE WHEN e.kind = 'assignee_changed' THEN coalesce((e.data ->> 'assignee_id'), '') END AS assignee
        FROM events e SEMI JOIN ids ON ids.id = e.ticket_id
        WHERE e.kind IN ('status_changed', 'assignee_changed') AND e.created_at < $end
        UNION ALL
        SELECT id, created_at, -1, 'new', '' FROM ids
    ),
    states AS (
        SELECT ticket_id, ts,
               last_value(status IGNORE NULLS) OVER w AS status,
               last_value(assignee IGNORE NULLS) OVER w AS assignee,
               coalesce(lead(ts) OVER (PARTITION BY ticket_id ORDER BY ts, seq), TIMESTAMP 'infinity') AS until
        FROM changes
        WINDOW w AS (PARTITION BY ticket_id ORDER BY ts, seq ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    ),
    days AS (
        SELECT d::DATE AS day, least(d + INTERVAL 1 day, $end, $now) AS snap
        FROM range(date_trunc('day', $start), $end, INTERVAL 1 day) r(d)
        WHERE d <= $now
    ),
    open_at AS (
        SELECT days.day, days.snap, st.ticket_id, st.assignee
        FROM days JOIN states st ON st.ts <= days.snap AND st.until > days.snap
        WHERE list_contains({_UNSOLVED}, st.status)
    )
    SELECT o.day, s.channel_tag AS channel, {_bucket(_hours('s.created_at', 'o.snap'))} AS age,
           count(*) AS unsolved, count(*) FILTER (o.assignee = '') AS unassigned
    FROM open_at o JOIN s ON s.id = o.ticket_id
    GROUP BY ALL"""
    return _ordered_buckets(_run(con, sql, p))


# -- 4. agents -----------------------------------------------------------------------------------

def agents(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
           accounts: Any = None) -> pd.DataFrame:
    """Per agent, on social tickets: tickets claimed, replies sent, tickets solved, median first reply.

    Claimed: the agent assigned the ticket to themself. Replies: outbox rows the agent wrote, and
    how many reached the channel. Solved: the agent set Solved. Median first reply (calendar hours)
    over tickets whose first reply was the agent's. Columns: agent_id, agent, claimed, replies,
    replies_sent, solved, first_reply_median_h.
    """
    sql = f"""WITH {_social()},
    tk AS (SELECT DISTINCT id, created_at FROM social_f),
    claimed AS (
        SELECT TRY_CAST(e.actor_id AS BIGINT) AS agent_id, count(DISTINCT e.ticket_id) AS claimed
        FROM events e SEMI JOIN tk ON tk.id = e.ticket_id
        WHERE e.kind = 'assignee_changed' AND e.actor_type = 'agent' AND (e.data ->> 'assignee_id') = e.actor_id
          AND {_IN_RANGE.format(col='e.created_at')}
        GROUP BY 1),
    solved AS (
        SELECT TRY_CAST(e.actor_id AS BIGINT) AS agent_id, count(DISTINCT e.ticket_id) AS solved
        FROM events e SEMI JOIN tk ON tk.id = e.ticket_id
        WHERE e.kind = 'status_changed' AND e.actor_type = 'agent' AND (e.data ->> 'status') = 'solved'
          AND {_IN_RANGE.format(col='e.created_at')}
        GROUP BY 1),
    replies AS (
        SELECT o.agent_id, count(*) AS replies,
               count(*) FILTER (o.sent_at IS NOT NULL OR o.state IN ('sent', 'delivered', 'read')) AS replies_sent
        FROM outbox o SEMI JOIN tk ON tk.id = o.ticket_id
        WHERE {_IN_RANGE.format(col='o.created_at')}
        GROUP BY 1),
    firsts AS (  -- a reply the closed window refused never reached the customer: not a first reply (R22)
        SELECT o.ticket_id, arg_min(o.agent_id, o.created_at) AS agent_id, min(o.created_at) AS first_at
        FROM outbox o SEMI JOIN tk ON tk.id = o.ticket_id
        WHERE NOT o.window_closed
        GROUP BY 1),
    first_reply AS (
        SELECT f.agent_id, median({_hours('tk.created_at', 'f.first_at')}) AS first_reply_median_h
        FROM firsts f JOIN tk ON tk.id = f.ticket_id
        WHERE {_IN_RANGE.format(col='f.first_at')}
        GROUP BY 1)
    SELECT u.id AS agent_id, coalesce(u.name, 'agent ' || u.id) AS agent,
           coalesce(c.claimed, 0) AS claimed, coalesce(r.replies, 0) AS replies,
           coalesce(r.replies_sent, 0) AS replies_sent, coalesce(s.solved, 0) AS solved, f.first_reply_median_h
    FROM users u
    LEFT JOIN claimed c ON c.agent_id = u.id LEFT JOIN solved s ON s.agent_id = u.id
    LEFT JOIN replies r ON r.agent_id = u.id LEFT JOIN first_reply f ON f.agent_id = u.id
    WHERE u.role = 'agent' AND (c.agent_id IS NOT NULL OR s.agent_id IS NOT NULL OR r.agent_id IS NOT NULL)
    ORDER BY replies DESC, agent"""
    return _run(con, sql, _params(start, end, channels, accounts))


# -- 5. messaging windows ------------------------------------------------------------------------

def messaging_windows(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
                      accounts: Any = None) -> pd.DataFrame:
    """Replies stopped by a closed messaging window, and templates sent instead (R22, B1).

    By channel tag, agent and hour of day (UTC) the reply was written. `refused`: refused at once,
    before any send; `failed`: the channel rejected it as outside the window; `templates`: approved
    WhatsApp templates sent. Columns: channel, agent_id, agent, hour, refused, failed, templates.
    """
    sql = f"""WITH {_social()},
    tk AS (SELECT DISTINCT id, channel_tag FROM social_f)
    SELECT tk.channel_tag AS channel, o.agent_id, coalesce(u.name, 'agent ' || o.agent_id) AS agent,
           hour(o.created_at) AS hour,
           count(*) FILTER (o.window_closed AND o.attempts = 0) AS refused,
           count(*) FILTER (o.window_closed AND o.attempts > 0) AS failed,
           count(*) FILTER (o.template IS NOT NULL) AS templates
    FROM outbox o JOIN tk ON tk.id = o.ticket_id LEFT JOIN users u ON u.id = o.agent_id
    WHERE (o.window_closed OR o.template IS NOT NULL) AND {_IN_RANGE.format(col='o.created_at')}
    GROUP BY ALL ORDER BY channel, agent, hour"""
    return _run(con, sql, _params(start, end, channels, accounts))


# A priced channel (WhatsApp, which bills per message since 2025-07) says in each status's `pricing` what a
# reply costs (billable, category, pricing_model; channels.md 7). A reply with no status yet counts under
# this category.
UNPRICED = "unknown"
NO_TAG = "(no tag)"


def _priced(df: pd.DataFrame, rates: dict[str, float] | None) -> pd.DataFrame:
    """`cost`: billable x the category's rate; nothing billable costs 0, a billable category without a
    rate stays NaN (unknown, never guessed), and without rates there is no cost at all."""
    if not rates:
        df["cost"] = float("nan")
        return df
    rate = df["category"].map(rates).astype(float)
    df["cost"] = (df["billable"] * rate).where(df["billable"] > 0, 0.0)
    return df


def reply_costs(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
                accounts: Any = None, rates: dict[str, float] | None = None) -> pd.DataFrame:
    """What the replies sent in the range on priced channels cost, from the pricing their receipts report
    (WhatsApp's; issue 12, B1).

    By channel tag, business account and pricing category (service, utility, marketing,
    authentication, ...; `unknown` while no status has said). `messages`: replies sent; `billable`:
    those WhatsApp bills; `free`: priced and not billable. `cost` is billable x `rates[category]`
    (the price of one message in the business's currency, from Meta's rate card for its market): 0
    when nothing is billable, NaN for a billable category without a rate or without rates.
    Columns: channel, account, category, pricing_model, messages, billable, free, cost.
    """
    sql = f"""WITH {_social()},
    tk AS (SELECT DISTINCT id, channel_tag, account_name FROM social_f)
    SELECT tk.channel_tag AS channel, tk.account_name AS account,
           coalesce(o.pricing ->> 'category', '{UNPRICED}') AS category,
           coalesce(o.pricing ->> 'pricing_model', '') AS pricing_model,
           count(*) AS messages,
           count(*) FILTER (TRY_CAST(o.pricing ->> 'billable' AS BOOLEAN)) AS billable,
           count(*) FILTER (NOT TRY_CAST(o.pricing ->> 'billable' AS BOOLEAN)) AS free
    FROM outbox o JOIN tk ON tk.id = o.ticket_id
    WHERE list_contains({_priced_channels()}, o.channel) AND o.sent_at IS NOT NULL
      AND {_IN_RANGE.format(col='o.sent_at')}
    GROUP BY ALL ORDER BY channel, account, category, pricing_model"""
    return _priced(_run(con, sql, _params(start, end, channels, accounts)), rates)


def reply_costs_by_tag(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
                       accounts: Any = None, rates: dict[str, float] | None = None) -> pd.DataFrame:
    """The same priced replies by their ticket's tags (other than the social ones, R7): a reply counts
    under each tag its ticket carries, `(no tag)` when none, so rows do not add up to the total.
    Columns: tag, category, messages, billable, free, cost."""
    sql = f"""WITH {_social()},
    tk AS (SELECT DISTINCT id FROM social_f),
    tagged AS (
        SELECT t.id, unnest(CASE WHEN len(t.own) = 0 THEN ['{NO_TAG}'] ELSE t.own END) AS tag
        FROM (SELECT id, list_filter(tags, g -> g <> '{SOCIAL_TAG}' AND NOT list_contains({_tag_list()}, g)) AS own
              FROM tickets) t
        SEMI JOIN tk ON tk.id = t.id)
    SELECT tagged.tag, coalesce(o.pricing ->> 'category', '{UNPRICED}') AS category,
           count(*) AS messages,
           count(*) FILTER (TRY_CAST(o.pricing ->> 'billable' AS BOOLEAN)) AS billable,
           count(*) FILTER (NOT TRY_CAST(o.pricing ->> 'billable' AS BOOLEAN)) AS free
    FROM outbox o JOIN tagged ON tagged.id = o.ticket_id
    WHERE list_contains({_priced_channels()}, o.channel) AND o.sent_at IS NOT NULL
      AND {_IN_RANGE.format(col='o.sent_at')}
    GROUP BY ALL ORDER BY tag, category"""
    return _priced(_run(con, sql, _params(start, end, channels, accounts)), rates)


# -- 6. delivery ---------------------------------------------------------------------------------

def delivery(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
             accounts: Any = None) -> pd.DataFrame:
    """Replies written in the range per channel tag: how far they got, and the outbox's retries (B2, B4).

    sent/delivered/read count replies that reached at least that state; failed, those that failed
    (of which window_closed for a closed window); queued, those still waiting. retries: the
    outbox's `reply_retry` events; replies_retried: replies with at least one. Columns: channel,
    replies, queued, sent, delivered, read, failed, failed_window_closed, retries, replies_retried,
    max_attempts.
    """
    sql = f"""WITH {_social()},
    tk AS (SELECT DISTINCT id, channel_tag FROM social_f),
    o AS (SELECT o.* FROM outbox o SEMI JOIN tk ON tk.id = o.ticket_id
          WHERE {_IN_RANGE.format(col='o.created_at')}),
    retries AS (
        SELECT TRY_CAST((e.data ->> 'outbox_id') AS BIGINT) AS outbox_id, count(*) AS n
        FROM events e SEMI JOIN o ON o.ticket_id = e.ticket_id
        WHERE e.kind = 'reply_retry'
        GROUP BY 1)
    SELECT tk.channel_tag AS channel, count(*) AS replies,
           count(*) FILTER (o.state = 'queued') AS queued,
           count(*) FILTER (o.sent_at IS NOT NULL OR o.state IN ('sent', 'delivered', 'read')) AS sent,
           count(*) FILTER (o.delivered_at IS NOT NULL OR o.state IN ('delivered', 'read')) AS delivered,
           count(*) FILTER (o.read_at IS NOT NULL OR o.state = 'read') AS read,
           count(*) FILTER (o.state = 'failed') AS failed,
           count(*) FILTER (o.state = 'failed' AND o.window_closed) AS failed_window_closed,
           coalesce(sum(r.n), 0)::BIGINT AS retries, count(r.n) AS replies_retried,
           coalesce(max(o.attempts), 0) AS max_attempts
    FROM o JOIN tk ON tk.id = o.ticket_id LEFT JOIN retries r ON r.outbox_id = o.id
    GROUP BY ALL ORDER BY channel"""
    return _run(con, sql, _params(start, end, channels, accounts))


# -- 7. end users --------------------------------------------------------------------------------

# Each end user's first channel and business account, from its `user_created` event (they survive merges).
def _origins() -> str:
    return f"""
origins AS (
    SELECT e.user_id, e.created_at, {_tag_of_channel("(e.data ->> 'channel')")} AS channel,
           (e.data ->> 'account') AS account_id, coalesce(a.name, (e.data ->> 'account')) AS account
    FROM events e LEFT JOIN accounts a ON a.channel = (e.data ->> 'channel') AND a.account = (e.data ->> 'account')
    WHERE e.kind = 'user_created'
),
origins_f AS (
    SELECT * FROM origins
    WHERE ($channels::VARCHAR[] IS NULL OR list_contains($channels::VARCHAR[], channel))
      AND ($accounts::VARCHAR[] IS NULL OR list_contains($accounts::VARCHAR[], account_id)
           OR list_contains($accounts::VARCHAR[], account))
)"""


def new_end_users(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
                  accounts: Any = None) -> pd.DataFrame:
    """End-user accounts created per day by channel tag and business account (R4).

    Columns: day, channel, account, new_accounts.
    """
    sql = f"""WITH {_origins()}
    SELECT created_at::DATE AS day, channel, account, count(*) AS new_accounts
    FROM origins_f WHERE {_IN_RANGE.format(col='created_at')}
    GROUP BY ALL ORDER BY ALL"""
    return _run(con, sql, _params(start, end, channels, accounts))


def merges(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
           accounts: Any = None) -> pd.DataFrame:
    """Merges done and undone per day, by the merged account's channel tag (R5).

    Columns: day, channel, merged, unmerged.
    """
    sql = f"""WITH {_origins()}
    SELECT e.created_at::DATE AS day, o.channel,
           count(*) FILTER (e.kind = 'user_merged') AS merged,
           count(*) FILTER (e.kind = 'user_unmerged') AS unmerged
    FROM events e JOIN origins_f o ON o.user_id = e.user_id
    WHERE e.kind IN ('user_merged', 'user_unmerged') AND {_IN_RANGE.format(col='e.created_at')}
    GROUP BY ALL ORDER BY ALL"""
    return _run(con, sql, _params(start, end, channels, accounts))


def duplicate_phones(con: duckdb.DuckDBPyConnection, start: Any = None, end: Any = None, channels: Any = None,
                     accounts: Any = None) -> pd.DataFrame:
    """Suspected duplicates: end-user accounts, not merged, that share a phone number (B5).

    A phone counts when at least one of its accounts was created in the range (any time without
    one) on a matching channel and account. Columns: phone, accounts, user_ids, channels.
    """
    p = _params(start, end, channels, accounts)
    in_range = _IN_RANGE.format(col="o.created_at") if "start" in p else "true"
    sql = f"""WITH {_origins()},
    active AS (
        SELECT u.id, u.phone, o.channel, o.account_id, o.account, o.created_at
        FROM users u LEFT JOIN origins o ON o.user_id = u.id
        WHERE u.role = 'end-user' AND u.merged_into IS NULL AND u.phone IS NOT NULL AND u.phone <> ''
    ),
    shared AS (SELECT phone FROM active GROUP BY phone HAVING count(DISTINCT id) > 1),
    wanted AS (
        SELECT DISTINCT o.phone FROM active o SEMI JOIN origins_f f ON f.user_id = o.id
        WHERE {in_range}
    )
    SELECT a.phone, count(DISTINCT a.id) AS accounts, list(DISTINCT a.id ORDER BY a.id) AS user_ids,
           list(DISTINCT a.channel || ':' || a.account ORDER BY a.channel || ':' || a.account) AS channels
    FROM active a SEMI JOIN shared USING (phone) SEMI JOIN wanted USING (phone)
    GROUP BY a.phone ORDER BY accounts DESC, a.phone"""
    return _run(con, sql, p)


def end_users(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
              accounts: Any = None) -> pd.DataFrame:
    """One line per channel tag: new accounts, merges done and undone, accounts sharing a phone.

    Columns: channel, new_accounts, merged, unmerged, duplicate_accounts.
    """
    new = new_end_users(con, start, end, channels, accounts).groupby("channel")["new_accounts"].sum()
    m = merges(con, start, end, channels, accounts).groupby("channel")[["merged", "unmerged"]].sum()
    dups = duplicate_phones(con, start, end, channels, accounts)
    dup_counts: dict[str, int] = {}
    for chans in dups["channels"]:
        for c in chans:
            dup_counts[c.split(":", 1)[0]] = dup_counts.get(c.split(":", 1)[0], 0) + 1
    out = pd.concat([new, m, pd.Series(dup_counts, name="duplicate_accounts", dtype="int64")], axis=1)
    out = out.fillna(0).astype("int64").rename_axis("channel").reset_index()
    return out[["channel", "new_accounts", "merged", "unmerged", "duplicate_accounts"]].sort_values(
        "channel", ignore_index=True)


# -- 8. tag hygiene ------------------------------------------------------------------------------

def tag_hygiene(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
                accounts: Any = None) -> pd.DataFrame:
    """Tickets that came in through a social channel but no longer carry its tags (R9).

    By `tickets.channel` (how it came in), created in the range. Columns: ticket_id, channel (the
    tag it should carry), account, status, created_at, missing (tags), removed_by (actor of the last
    tag change that removed one), removed_at.
    """
    sql = f"""WITH t AS (
        SELECT t.id, {_tag_of_channel('t.channel')} AS channel, t.tags, t.status, t.created_at,
               t.account, coalesce(a.name, t.account) AS account_name
        FROM tickets t LEFT JOIN accounts a ON a.channel = t.channel AND a.account = t.account
        WHERE {_IN_RANGE.format(col='t.created_at')}
    ),
    bad AS (
        SELECT *, list_filter([channel, '{SOCIAL_TAG}'], x -> NOT list_contains(tags, x)) AS missing FROM t
        WHERE channel IS NOT NULL AND (NOT list_contains(tags, channel) OR NOT list_contains(tags, '{SOCIAL_TAG}'))
          AND ($channels::VARCHAR[] IS NULL OR list_contains($channels::VARCHAR[], channel))
          AND ($accounts::VARCHAR[] IS NULL OR list_contains($accounts::VARCHAR[], account)
               OR list_contains($accounts::VARCHAR[], account_name))
    ),
    removals AS (
        SELECT e.ticket_id, arg_max(e.actor_type || coalesce(' ' || e.actor_id, ''), e.created_at) AS removed_by,
               max(e.created_at) AS removed_at
        FROM events e SEMI JOIN bad ON bad.id = e.ticket_id
        WHERE e.kind = 'tags_changed'
          AND list_has_any(from_json(e.data -> 'removed', '["VARCHAR"]'),
                           {_SQL_LIST((*channel_table.tags(), SOCIAL_TAG))})
        GROUP BY 1
    )
    SELECT bad.id AS ticket_id, bad.channel, bad.account_name AS account, bad.status, bad.created_at,
           bad.missing, r.removed_by, r.removed_at
    FROM bad LEFT JOIN removals r ON r.ticket_id = bad.id
    ORDER BY bad.created_at, bad.id"""
    return _run(con, sql, _params(start, end, channels, accounts))


REPORTS = {
    "volume": volume, "responsiveness": responsiveness, "backlog": backlog, "agents": agents,
    "messaging_windows": messaging_windows, "reply_costs": reply_costs,
    "reply_costs_by_tag": reply_costs_by_tag, "delivery": delivery, "new_end_users": new_end_users,
    "merges": merges, "duplicate_phones": duplicate_phones, "end_users": end_users, "tag_hygiene": tag_hygiene,
}


def all_reports(con: duckdb.DuckDBPyConnection, start: Any, end: Any, channels: Any = None,
                accounts: Any = None) -> dict[str, pd.DataFrame]:
    """Every report over the same range and filters (the benchmark and the overview notebook)."""
    out = {name: fn(con, start, end, channels, accounts) for name, fn in REPORTS.items()}
    out["backlog_now"] = backlog_now(con, channels, accounts)
    return out
