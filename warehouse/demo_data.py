"""A realistic demo store generated set-based in SQL: millions of tickets in minutes.

`generate(con, tickets, seed)` writes into an open write connection (inside the writer's
transaction, or a plain connection for the benchmark): every registered channel with the demo accounts
and traffic its module declares (`warehouse.channels.DemoProfile`), several business accounts,
agents, end users with duplicate accounts (shared phones, B5), merges done and undone, tickets whose
lifecycle (claim, first reply, solve, close) is consistent with the clock, comments, replies with
delivery receipts, retries, closed-window refusals and approved templates instead where the channel has
them (R22, B1, B2, B4),
and tickets whose social tags were removed (R9). Every table is filled by a few INSERT ... SELECT
statements, never row by row. Randomness is `hash(row, purpose, seed)`, so a seed gives the same
store whatever the thread count. Ids come from the store's sequences, reserved in blocks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import duckdb

from warehouse import channels, clock
from warehouse.channels import Channel, DemoProfile, DemoUserIds
from warehouse.model import SOCIAL_TAG
from warehouse.rows import one, scalar, sql_list

AGENTS = ("Alice Martin", "Bruno Lefèvre", "Chloé Bernard", "David Kim", "Emma Rossi", "Farid Haddad",
          "Gaëlle Petit", "Hiro Tanaka", "Inès Moreau", "Jun Li", "Karim Benali", "Lucie Roux")


def _profiled() -> list[tuple[Channel, DemoProfile]]:
    """The registered channels that say how to invent their traffic (every channel's module does)."""
    return [(c, c.demo) for c in channels.every() if c.demo is not None]


def accounts() -> list[tuple[str, str, str, float]]:
    """(channel, account id, name, share of the traffic) of every demo business account."""
    return [(c.name, a, n, w) for c, profile in _profiled() for a, n, w in profile.accounts]


def _case(column: str, values: dict[str, str], default: str = "NULL") -> str:
    """SQL: `values[<column's channel>]`, else `default`."""
    whens = " ".join(f"WHEN '{channel}' THEN {sql}" for channel, sql in values.items())
    return f"CASE {column} {whens} ELSE {default} END" if whens else default


def _channels_where(test: Any) -> str:
    """SQL: the channels for which `test(channel)` holds, for `IN`."""
    return sql_list([c.name for c, _ in _profiled() if test(c)] or [""])
CUSTOMER_TEXT = "Hello, I have a question about my order."  # every generated customer message


def _reserve(con: duckdb.DuckDBPyConnection, sequence: str, n: int) -> int:
    """The first of `n` consecutive ids taken from `sequence` (nobody else draws while the writer runs)."""
    if n <= 0:
        return 0
    lo, hi = one(con, f"SELECT min(v), max(v) FROM (SELECT nextval('{sequence}') AS v FROM range({int(n)}))")
    if hi - lo != n - 1:
        raise RuntimeError(f"ids from {sequence} were not consecutive")
    return int(lo)


def generate(con: duckdb.DuckDBPyConnection, tickets: int, seed: int = 1, *, days: int = 90,
             now: datetime | None = None) -> dict[str, int]:
    """Fill the store with `tickets` social tickets spread over the last `days` days; returns row counts.

    `_draw_*` steps only prepare a work table (`_g_...`) for the steps after; `_generate_*` steps write
    the store's rows. They run in this order: each reads the work tables of the ones before, and takes
    its ids from the sequences after theirs.
    """
    if tickets <= 0:
        raise ValueError("tickets must be positive")
    now = (now or clock.now()).replace(microsecond=0)
    # The last day is today: tickets drawn later than now move a day back.
    start = now.replace(hour=0, minute=0, second=0) - timedelta(days=days - 1)
    seed = int(seed)
    n_users = max(8, tickets * 3 // 5)
    period = {"now": now, "start": start}

    _generate_accounts(con)
    n_agents = _generate_agents(con, tickets, period)
    _draw_end_users(con, n_users, seed)
    _draw_ticket_lives(con, tickets, days, n_users, n_agents, seed, period)
    n_comments = _generate_comments(con, seed, period)
    n_out, o0 = _generate_outbox(con, period)
    _generate_end_users(con, period)
    _generate_tickets(con)
    n_events = _generate_events(con, o0, n_agents, period)
    for table in ("_g_acc", "_g_agents", "_g_users", "_g_tickets", "_g_comments2", "_g_outbox", "_g_user_first",
                  "_g_events"):
        _sql(con, f"DROP TABLE {table}")
    return {"tickets": tickets, "users": n_users + n_agents, "agents": n_agents, "comments": n_comments,
            "outbox": n_out, "events": n_events}


def _uniform(seed: int) -> Callable[[str, int], str]:
    """`rnd(row, purpose)`: SQL for a number uniform in [0, 1), a pure function of (row, purpose, seed)."""
    def rnd(row: str, purpose: int) -> str:
        return f"((hash({row}, {purpose}, {seed}) % 1000003) / 1000003.0)"
    return rnd


def _sql(con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    """Execute `sql` with those of `params` it names (`$now`, `$start`)."""
    return con.execute(sql, {k: v for k, v in (params or {}).items() if f"${k}" in sql})


def _profiles_by_channel() -> dict[str, DemoProfile]:
    """The demo profile of each channel, by its name."""
    return dict((c.name, p) for c, p in _profiled())


def _generate_accounts(con: duckdb.DuckDBPyConnection) -> None:
    """Business accounts (and `_g_acc`), with cumulative weights for picking one per end user."""
    demo_accounts = accounts()
    total = sum(w for *_, w in demo_accounts)
    acc_values = ", ".join(f"({k}, '{c}', '{a}', '{n}', {w / total})" for k, (c, a, n, w) in enumerate(demo_accounts))
    _sql(con, f"CREATE OR REPLACE TEMP TABLE _g_acc AS SELECT k, channel, account, name, "
              f"sum(w) OVER (ORDER BY k) - w AS lo, sum(w) OVER (ORDER BY k) AS hi "
              f"FROM (VALUES {acc_values}) v(k, channel, account, name, w)")
    _sql(con, "INSERT INTO accounts SELECT channel, account, name, json_object('channel', channel, "
              "'account', account, 'account_name', name) FROM _g_acc ON CONFLICT DO NOTHING")


def _generate_agents(con: duckdb.DuckDBPyConnection, tickets: int, period: dict[str, datetime]) -> int:
    """Agents (and `_g_agents`); returns how many."""
    # A support team grows with its volume: the named dozen, and up to 50 agents from half a million tickets.
    roster = AGENTS + tuple(f"Agent {k + 1}" for k in range(len(AGENTS), 50 if tickets >= 500_000 else 0))
    a0 = _reserve(con, "user_ids", len(roster))
    names = ", ".join(f"({k}, '{n}')" for k, n in enumerate(roster))
    _sql(con, f"CREATE OR REPLACE TEMP TABLE _g_agents AS SELECT k, {a0} + k AS id, name, "
              f"'UDEMO' || lpad(k::VARCHAR, 4, '0') AS slack FROM (VALUES {names}) v(k, name)")
    _sql(con, "INSERT INTO users (id, role, name, social_messaging_info, slack_user_id, created_at, updated_at) "
              "SELECT id, 'agent', name, '{}', slack, $start, $start FROM _g_agents", period)
    return len(roster)


def _twins() -> tuple[DemoProfile | None, list[tuple[str, str]], float]:
    """The demo profile of the channel twins write on, its two accounts (id, name), and where the first
    account begins on the accounts' cumulative weights."""
    demo_accounts = accounts()
    total = sum(w for *_, w in demo_accounts)
    # Twins (one person writing from a second account sharing the first's phone, R4, B5) use the first
    # channel with phone numbers and two business accounts: one account each.
    twin_channel = next((p for _, p in _profiled() if p.phones and len(p.accounts) >= 2), None)
    twin_accounts = [(a, n) for a, n, _ in twin_channel.accounts[:2]] if twin_channel else []
    twin_lo = 0.0
    for _, a, _, w in demo_accounts:
        if twin_accounts and a == twin_accounts[0][0]:
            break
        twin_lo += w / total
    return twin_channel, twin_accounts, twin_lo


def _draw_end_users(con: duckdb.DuckDBPyConnection, n_users: int, seed: int) -> None:
    """`_g_users`, the end users: one per (channel, account, platform user). Some people write twice, to another
    WhatsApp number: a second account sharing the first's phone (R4, B5); some of those get merged."""
    rnd = _uniform(seed)
    twin_channel, twin_accounts, twin_lo = _twins()
    profiles = _profiles_by_channel()
    user_ids = _case("a.channel", {c: _user_id(p.user_ids, "b.j", seed) for c, p in profiles.items()},
                     "(7000000000000000 + b.j)::VARCHAR")
    phones = _channels_where(lambda c: c.demo is not None and c.demo.phones)
    u0 = _reserve(con, "user_ids", n_users)
    _sql(con, f"""CREATE OR REPLACE TEMP TABLE _g_users AS
    WITH draw AS (
        SELECT j, {u0} + j AS id, j > 0 AND {rnd('j', 1)} < 0.06 AS twin0, {rnd('j', 2)} AS r_acc,
               {rnd('j', 3)} AS r_merge
        FROM range({n_users}) r(j)
    ),
    base AS (  -- a twin's first account is never a twin itself
        SELECT *, twin0 AND NOT coalesce(lag(twin0) OVER (ORDER BY j), false) AS twin FROM draw
    )
    SELECT b.j, b.id, b.twin, a.channel, a.account, a.name AS account_name,
           {user_ids} AS pid,
           'Customer ' || b.j AS name,
           CASE WHEN b.twin OR a.channel IN {phones} OR lead(b.twin) OVER (ORDER BY b.j)
                THEN '+336' || lpad((10000000 + CASE WHEN b.twin THEN b.j - 1 ELSE b.j END)::VARCHAR, 8, '0') END
                AS phone,
           CASE WHEN b.twin AND b.r_merge < 0.4 THEN {u0} + b.j - 1 END AS merge_target,
           b.twin AND b.r_merge < 0.08 AS unmerged
    FROM base b JOIN _g_acc a
      ON (CASE WHEN b.twin THEN {twin_lo} ELSE b.r_acc END) >= a.lo
     AND (CASE WHEN b.twin THEN {twin_lo} ELSE b.r_acc END) < a.hi
    """)
    if twin_channel:
        # A twin writes to the other account than the person's first one, from the same phone.
        (first, first_name), (second, second_name) = twin_accounts
        twin_pid = _user_id(twin_channel.user_ids, "_g_users.j - 1", seed)
        _sql(con, f"UPDATE _g_users SET account = CASE WHEN f.account = '{second}' THEN '{first}' "
                  f"ELSE '{second}' END, "
                  f"account_name = CASE WHEN f.account = '{second}' THEN '{first_name}' ELSE '{second_name}' END, "
                  f"pid = {twin_pid} FROM _g_users f WHERE _g_users.twin AND f.j = _g_users.j - 1")


def _draw_ticket_lives(con: duckdb.DuckDBPyConnection, tickets: int, days: int, n_users: int, n_agents: int,
                           seed: int, period: dict[str, datetime]) -> None:
    """`_g_tickets`: a lifecycle per ticket (claim, first reply, solve, close) read against `now`."""
    rnd = _uniform(seed)
    profiles = _profiles_by_channel()
    t0 = _reserve(con, "ticket_ids", tickets)
    reply_hours = _case("u.channel", {c: str(p.reply_hours) for c, p in profiles.items()}, "2.0")
    _sql(con, f"""CREATE OR REPLACE TEMP TABLE _g_tickets AS
    WITH base AS (
        SELECT i, {t0} + i AS id,
               -- more traffic in the day than at night, and a little growth over the period
               $start + to_seconds(
                   floor(sqrt({rnd('i', 10)}) * {days})::BIGINT * 86400
                   + floor((7 + 15 * {rnd('i', 11)} * {rnd('i', 12)} + 2 * {rnd('i', 13)}) * 3600)::BIGINT
               ) AS created_at,
               (hash(i, 14, {seed}) % {n_users})::BIGINT AS j,
               {rnd('i', 15)} AS r_claim, {rnd('i', 16)} AS r_solve, {rnd('i', 17)} AS r_state,
               {rnd('i', 18)} AS r_tag, 2 + (hash(i, 19, {seed}) % 7)::INTEGER AS messages,
               {n_agents} AS n_agents
        FROM range({tickets}) r(i)
    ),
    life AS (
        SELECT b.*, u.id AS requester_id, u.channel, u.account, u.account_name, u.pid, u.name AS user_name,
               CASE WHEN b.created_at > $now THEN b.created_at - INTERVAL 1 day ELSE b.created_at END AS created,
               -- exponential waits: fast channels answer faster
               -ln(1 - b.r_claim) * {reply_hours} AS reply_h,
               -ln(1 - b.r_solve) * 20.0 AS resolve_h,
               (SELECT id FROM _g_agents WHERE k = hash(b.i, 20, {seed}) % b.n_agents) AS agent_id
        FROM base b JOIN _g_users u ON u.j = b.j
    ),
    times AS (
        SELECT *, created + to_seconds((reply_h * 0.6 * 3600)::BIGINT) AS claim_at,
               created + to_seconds((reply_h * 3600)::BIGINT) AS reply_at,
               created + to_seconds(((reply_h + resolve_h) * 3600)::BIGINT) AS solve_at,
               created + to_seconds(((reply_h + resolve_h + 96) * 3600)::BIGINT) AS close_at,
               r_state < 0.08 AS stuck  -- never solved (waiting on the customer, on hold, ...)
        FROM life
    )
    SELECT *,
        CASE WHEN $now < claim_at THEN 'new'
             WHEN stuck OR $now < solve_at THEN CASE WHEN r_state < 0.02 THEN 'hold' WHEN r_state < 0.05 OR
                  ($now >= reply_at AND r_state > 0.7) THEN 'pending' ELSE 'open' END
             WHEN $now < close_at THEN 'solved' ELSE 'closed' END AS status,
        CASE WHEN r_tag < 0.006 THEN 'channel' WHEN r_tag < 0.01 THEN 'social' END AS tag_removed
    FROM times
    """, period)
    _sql(con, """UPDATE _g_tickets SET tag_removed = NULL WHERE status = 'new'""")


def _generate_comments(con: duckdb.DuckDBPyConnection, seed: int, period: dict[str, datetime]) -> int:
    """Comments: the customer's first message, then replies and messages alternating until solved or now.

    Returns how many (`_g_comments2` keeps them for the steps after)."""
    rnd = _uniform(seed)
    profiles = _profiles_by_channel()
    _sql(con, """CREATE OR REPLACE TEMP TABLE _g_comments AS
    SELECT t.id AS ticket_id, t.i, m.m, t.channel, t.account, t.pid,
           m.m % 2 = 1 AS from_agent,
           CASE WHEN m.m = 0 THEN t.created
                ELSE t.reply_at + to_seconds(((m.m - 1) * least(t.resolve_h, 48) / t.messages * 3600)::BIGINT)
           END AS ts,
           CASE WHEN m.m % 2 = 1 THEN t.agent_id ELSE t.requester_id END AS author_id
    FROM _g_tickets t, range(t.messages) m(m)
    WHERE m.m = 0 OR (t.status <> 'new' AND t.reply_at + to_seconds(((m.m - 1) * least(t.resolve_h, 48) / t.messages
          * 3600)::BIGINT) <= CASE WHEN t.status IN ('solved', 'closed') THEN t.solve_at ELSE $now END)
    """, period)
    n_comments = scalar(con, "SELECT count(*) FROM _g_comments")
    c0 = _reserve(con, "comment_ids", n_comments)
    _sql(con, f"""CREATE OR REPLACE TEMP TABLE _g_comments2 AS
    SELECT *, {c0} - 1 + row_number() OVER (ORDER BY ticket_id, m) AS id,
           CASE WHEN NOT from_agent THEN
               {_case("channel", {c: f"'{p.message_id_prefix}'" for c, p in profiles.items()}, "'mid.demo'")}
               || ticket_id || '.' || m END AS platform_message_id,
           {rnd('ticket_id * 16 + m', 30)} AS r_out, {rnd('ticket_id * 16 + m', 31)} AS r_out2
    FROM _g_comments""")
    _sql(con, "DROP TABLE _g_comments")
    _sql(con, f"""INSERT INTO comments (id, ticket_id, author_id, public, body, attachments, platform_message_id,
                                       created_at)
         SELECT id, ticket_id, author_id, true,
            CASE WHEN from_agent THEN 'Thanks for your message, we are looking into it.'
                 ELSE '{CUSTOMER_TEXT}' END, '[]', platform_message_id, ts
         FROM _g_comments2""")
    _sql(con, "INSERT INTO inbound_keys SELECT channel, account, platform_message_id FROM _g_comments2 "
              "WHERE NOT from_agent ON CONFLICT DO NOTHING")
    return int(n_comments)


def _generate_outbox(con: duckdb.DuckDBPyConnection, period: dict[str, datetime]) -> tuple[int, int]:
    """Replies in the outbox: most delivered and read; some refused because the window closed, a
    WhatsApp template sent instead; some retried, a few failed. Returns how many, and the first id."""
    windows = _channels_where(lambda c: c.window is not None)
    templates = _channels_where(lambda c: c.window is not None and c.window.templates)
    _sql(con, f"""CREATE OR REPLACE TEMP TABLE _g_outbox AS
    SELECT c.id AS comment_id, c.ticket_id, c.author_id AS agent_id, c.channel, c.account, c.pid, c.ts,
           CASE WHEN has_window AND c.r_out < 0.04 THEN 'refused'
                WHEN c.channel IN {templates} AND c.r_out < 0.06 THEN 'template'
                WHEN has_window AND c.r_out < 0.065 THEN 'window_failed'
                WHEN c.r_out < 0.075 THEN 'failed'
                WHEN c.ts > $now - INTERVAL 2 minute THEN 'queued'
                WHEN c.r_out2 < 0.12 THEN 'sent' WHEN c.r_out2 < 0.45 THEN 'delivered' ELSE 'read' END AS fate,
           CASE WHEN c.r_out2 > 0.97 THEN 3 WHEN c.r_out2 > 0.94 THEN 2 ELSE 1 END AS tries
    FROM (SELECT *, channel IN {windows} AS has_window FROM _g_comments2 WHERE from_agent) c
    """, period)
    n_out = scalar(con, "SELECT count(*) FROM _g_outbox")
    o0 = _reserve(con, "outbox_ids", n_out)
    _sql(con, f"""INSERT INTO outbox (id, ticket_id, comment_id, agent_id, channel, account, recipient, body, template,
            state, attempts, next_attempt_at, last_error, window_closed, platform_message_id, retry_key, created_at,
            sent_at, delivered_at, read_at, updated_at)
    SELECT id, ticket_id, comment_id, agent_id, channel, account, pid,
           CASE WHEN fate = 'template' THEN '' ELSE 'Thanks for your message, we are looking into it.' END,
           CASE WHEN fate = 'template' THEN '{{"name":"order_update","language":"en"}}' END::JSON,
           CASE WHEN fate IN ('refused', 'window_failed', 'failed') THEN 'failed'
                WHEN fate = 'template' THEN 'delivered' ELSE fate END,
           CASE WHEN fate = 'refused' THEN 0 WHEN fate = 'queued' THEN tries - 1 ELSE tries END,
           CASE WHEN fate = 'queued' THEN ts END,
           CASE WHEN fate = 'refused' THEN 'The messaging window closed.' WHEN fate = 'window_failed'
                THEN 'The channel refused: outside the messaging window.' WHEN fate = 'failed'
                THEN 'The channel kept failing.' END,
           fate IN ('refused', 'window_failed'),
           CASE WHEN fate IN ('sent', 'delivered', 'read', 'template') THEN 'out.demo.' || id END,
           'demo-' || id, ts,
           CASE WHEN fate IN ('sent', 'delivered', 'read', 'template') THEN ts + to_seconds(2 * tries) END,
           CASE WHEN fate IN ('delivered', 'read', 'template') THEN ts + to_seconds(2 * tries + 3) END,
           CASE WHEN fate = 'read' THEN ts + to_seconds(2 * tries + 300) END, ts
    FROM (SELECT *, {o0} - 1 + row_number() OVER (ORDER BY comment_id) AS id FROM _g_outbox)""")
    return int(n_out), o0


def _generate_end_users(con: duckdb.DuckDBPyConnection, period: dict[str, datetime]) -> None:
    """End users, with the first contact as creation time; merged twins point at their first account (R5)."""
    _sql(con, """CREATE OR REPLACE TEMP TABLE _g_user_first AS
         SELECT u.*, coalesce(f.first, $start) AS created_at
         FROM _g_users u LEFT JOIN (SELECT requester_id, min(created) AS first FROM _g_tickets GROUP BY 1) f
           ON f.requester_id = u.id""", period)
    _sql(con, """INSERT INTO users (id, role, name, phone, social_messaging_info, merged_into, created_at, updated_at)
         SELECT id, 'end-user', name, phone,
                json_object(channel || ':' || account, json_object('name', name, 'phone', phone,
                            'platform_user_id', pid)),
                CASE WHEN NOT unmerged THEN merge_target END, created_at, created_at
         FROM _g_user_first""")
    _sql(con, """INSERT INTO identities SELECT channel, account, pid,
            CASE WHEN merge_target IS NOT NULL AND NOT unmerged THEN merge_target ELSE id END,
            json_object('name', name, 'phone', phone), created_at FROM _g_user_first""")


def _channel_tag() -> str:
    """SQL: the tag of the channel `t.channel`."""
    return _case("t.channel", {c.name: f"'{c.tag}'" for c in channels.every()})


def _generate_tickets(con: duckdb.DuckDBPyConnection) -> None:
    """Tickets, with their tags (a few with a social tag removed, R9)."""
    channel_tag = _channel_tag()
    _sql(con, f"""INSERT INTO tickets (id, status, requester_id, assignee_id, group_id, priority, channel, account,
                         recipient, subject, tags, channel_info, custom_fields, end_user_messages, created_at,
                         updated_at, status_changed_at, solved_at, last_end_user_message_at, last_agent_update_at,
                         first_reply_at, last_end_user_text, tag_text)
    SELECT t.id, t.status,
           CASE WHEN u.merge_target IS NOT NULL AND NOT u.unmerged THEN u.merge_target ELSE t.requester_id END,
           CASE WHEN t.status <> 'new' THEN t.agent_id END, NULL, NULL, t.channel, t.account, t.pid,
           'Conversation with ' || t.user_name,
           CASE t.tag_removed WHEN 'channel' THEN ['{SOCIAL_TAG}'] WHEN 'social' THEN [{channel_tag}]
                ELSE [{channel_tag}, '{SOCIAL_TAG}'] END,
           json_object('channel', t.channel, 'account', t.account, 'account_name', t.account_name), '{{}}',
           coalesce(c.user_messages, 1), t.created, greatest(t.created, coalesce(c.last_at, t.created)),
           CASE t.status WHEN 'new' THEN t.created WHEN 'solved' THEN t.solve_at WHEN 'closed' THEN t.close_at
                ELSE t.claim_at END,
           CASE WHEN t.status IN ('solved', 'closed') THEN t.solve_at END,
           coalesce(c.last_user_at, t.created), c.last_agent_at, c.first_reply_at,
           CASE WHEN c.user_messages > 0 THEN '{CUSTOMER_TEXT}' END,
           CASE t.tag_removed WHEN 'channel' THEN ' {SOCIAL_TAG} ' WHEN 'social' THEN ' ' || {channel_tag} || ' '
                ELSE ' ' || {channel_tag} || ' {SOCIAL_TAG} ' END
    FROM _g_tickets t JOIN _g_users u ON u.id = t.requester_id
    LEFT JOIN (SELECT ticket_id, count(*) FILTER (NOT from_agent) AS user_messages, max(ts) AS last_at,
                      max(ts) FILTER (NOT from_agent) AS last_user_at, max(ts) FILTER (from_agent) AS last_agent_at,
                      min(ts) FILTER (from_agent) AS first_reply_at
               FROM _g_comments2 GROUP BY 1) c ON c.ticket_id = t.id""")


def _generate_events(con: duckdb.DuckDBPyConnection, o0: int, n_agents: int, period: dict[str, datetime]) -> int:
    """Events: every change with its actor, in one insert; returns how many."""
    channel_tag = _channel_tag()
    _sql(con, f"""CREATE OR REPLACE TEMP TABLE _g_events AS
    SELECT id AS ticket_id, NULL::BIGINT AS user_id, 'ticket_created' AS kind, 'end-user' AS actor_type,
           requester_id::VARCHAR AS actor_id,
           json_object('channel', channel, 'account', account, 'status', 'new') AS data, created AS ts
    FROM _g_tickets
    UNION ALL
    SELECT id, NULL, 'assignee_changed', 'agent', agent_id::VARCHAR,
           json_object('previous', NULL, 'assignee_id', agent_id), claim_at
    FROM _g_tickets WHERE status <> 'new'
    UNION ALL
    SELECT id, NULL, 'status_changed', 'agent', agent_id::VARCHAR, json_object('previous', 'new', 'status', 'open'),
           claim_at
    FROM _g_tickets WHERE status <> 'new'
    UNION ALL
    SELECT id, NULL, 'status_changed', 'agent', agent_id::VARCHAR,
           json_object('previous', 'open', 'status', status), reply_at
    FROM _g_tickets WHERE status IN ('pending', 'hold') AND reply_at <= $now
    UNION ALL
    SELECT id, NULL, 'status_changed', 'agent', agent_id::VARCHAR, json_object('previous', 'open', 'status', 'solved'),
           solve_at
    FROM _g_tickets WHERE status IN ('solved', 'closed')
    UNION ALL
    SELECT id, NULL, 'status_changed', 'rule', 'close-after-4-days',
           json_object('previous', 'solved', 'status', 'closed'), close_at
    FROM _g_tickets WHERE status = 'closed'
    UNION ALL
    SELECT id, NULL, 'tags_changed', 'agent', agent_id::VARCHAR,
           json_object('added', []::VARCHAR[], 'removed',
                       CASE tag_removed WHEN 'channel' THEN [{channel_tag.replace('t.', '')}]
                            ELSE ['{SOCIAL_TAG}'] END),
           claim_at + INTERVAL 10 minute
    FROM _g_tickets WHERE tag_removed IS NOT NULL
    UNION ALL
    SELECT ticket_id, NULL, 'comment_added', CASE WHEN from_agent THEN 'agent' ELSE 'end-user' END,
           author_id::VARCHAR, json_object('comment_id', id, 'public', true), ts
    FROM _g_comments2
    UNION ALL
    SELECT ticket_id, NULL, 'sent_to_channel', 'agent', agent_id::VARCHAR,
           json_object('outbox_id', id, 'channel', channel, 'account', account,
                       'template', CASE WHEN template IS NOT NULL THEN 'order_update' END), created_at
    FROM outbox WHERE id >= {o0}
    UNION ALL
    SELECT ticket_id, NULL, 'reply_retry', 'system', NULL,
           json_object('outbox_id', id, 'reason', 'HTTP 503 from the channel'),
           created_at + to_seconds(2 * r.n - 1)
    FROM outbox, range(1, 3) r(n) WHERE id >= {o0} AND r.n < attempts AND NOT window_closed
    UNION ALL
    SELECT ticket_id, NULL, 'reply_failed', 'system', NULL,
           json_object('outbox_id', id, 'reason', last_error, 'window_closed', window_closed), updated_at
    FROM outbox WHERE id >= {o0} AND state = 'failed'
    UNION ALL
    SELECT ticket_id, NULL, 'reply_sent', 'system', NULL,
           json_object('outbox_id', id, 'platform_message_id', platform_message_id), sent_at
    FROM outbox WHERE id >= {o0} AND sent_at IS NOT NULL
    UNION ALL
    SELECT ticket_id, NULL, 'reply_delivered', channel, NULL, json_object('outbox_id', id), delivered_at
    FROM outbox WHERE id >= {o0} AND delivered_at IS NOT NULL
    UNION ALL
    SELECT ticket_id, NULL, 'reply_read', channel, NULL, json_object('outbox_id', id), read_at
    FROM outbox WHERE id >= {o0} AND read_at IS NOT NULL
    UNION ALL
    SELECT NULL, id, 'user_created', 'system', NULL, json_object('channel', channel, 'account', account), created_at
    FROM _g_user_first
    UNION ALL
    SELECT NULL, u.id, 'user_merged', 'agent', (SELECT id FROM _g_agents WHERE k = u.j % {n_agents})::VARCHAR,
           json_object('source_id', u.id, 'target_id', u.merge_target,
                       'identities', [[u.channel, u.account, u.pid]],
                       'tickets', coalesce((SELECT list(id ORDER BY id) FROM _g_tickets t WHERE t.requester_id = u.id),
                                           []::BIGINT[]),
                       'comments', []::BIGINT[], 'target_before', json_object('phone', u.phone)),
           u.created_at + INTERVAL 2 hour
    FROM _g_user_first u WHERE u.merge_target IS NOT NULL
    UNION ALL
    SELECT NULL, u.id, 'user_unmerged', 'agent', (SELECT id FROM _g_agents WHERE k = u.j % {n_agents})::VARCHAR,
           json_object('target_id', u.merge_target), u.created_at + INTERVAL 5 hour
    FROM _g_user_first u WHERE u.unmerged
    """, period)
    n_events = scalar(con, "SELECT count(*) FROM _g_events")
    e0 = _reserve(con, "event_ids", n_events)
    _sql(con, f"""INSERT INTO events SELECT {e0} - 1 + row_number() OVER (ORDER BY ts, ticket_id, kind), ticket_id,
            user_id, kind, actor_type, actor_id, data, least(ts, $now) FROM _g_events""", period)
    return int(n_events)


GENERATION_MEMORY = "6GB"  # one transaction builds millions of rows: 1 GB is too little past a million tickets


def _user_id(ids: DemoUserIds, j: str, seed: int) -> str:
    """The SQL giving a demo end user's platform id from the expression `j` (their number)."""
    prefix = sql_list([ids.prefix])[1:-1]
    if ids.hashed:
        salt = sql_list([f"{ids.salt}{seed}"])[1:-1]
        return f"{prefix} || substr(md5(({j})::VARCHAR || {salt}), 1, {int(ids.hashed)})"
    number = f"({int(ids.start)} + {j})::VARCHAR"
    return f"{prefix} || " + (f"lpad({number}, {int(ids.width)}, '0')" if ids.width else number)


def real_data(con: duckdb.DuckDBPyConnection) -> str | None:
    """Why this store holds more than generated data (webhooks received, tickets on other accounts), if it
    does. A file that is not a store (no tickets, no log) holds nothing to protect."""
    tables = {t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if not {"inbox", "tickets"} <= tables:
        return None
    if scalar(con, "SELECT count(*) FROM inbox"):
        return "it has received webhooks"
    demo = [a for _, a, _, _ in accounts()]
    other = scalar(con, f"SELECT count(*) FROM tickets WHERE account NOT IN {sql_list(demo)}")
    return f"it has {other} tickets on accounts that are not the demo's" if other else None


def generate_store(path: Any, tickets: int, seed: int = 1, *, memory_limit: str = GENERATION_MEMORY,
                   **kw: Any) -> dict[str, int]:
    """A new store file filled with demo data (the benchmark's and the notebook tests' setup)."""
    from warehouse import open_store

    store = open_store(path, memory_limit=memory_limit)
    try:
        return store.write(lambda con: generate(con, tickets, seed, **kw))
    finally:
        store.close()
