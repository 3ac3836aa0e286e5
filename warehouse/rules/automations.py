"""Automations: time-based rules the service runs on a clock (every 5 minutes by default).

Each automation is one set-based statement over all tickets, then its actions on the tickets it
matched, then the triggers on those tickets (an automation's change is an update like any other).
As in Zendesk, closed tickets are never touched, and the loader refuses an automation that no
action of its own can make false; one whose only guard is a one-hour `hours_since_... is N`
condition fires at most once in that hour, remembered through its `automation_fired` events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from warehouse import clock
from warehouse.conditions import Compiled, Context, compile_conditions
from warehouse.rows import event, record_events
from warehouse.rules.actions import Applying, apply_actions, once_only
from warehouse.rules.loader import Rule, RuleSet
from warehouse.rules.triggers import run_triggers


def automation_query(rule: Rule, now: datetime, ticket_id: int | None = None) -> Compiled:
    """The tickets `rule` acts on at `now` (or whether it acts on one ticket)."""
    c = compile_conditions(rule.conditions, Context(now=now), f"automation {rule.title!r}")
    sql = f"SELECT t.id FROM tickets t WHERE t.status <> 'closed' AND ({c.sql})"
    params = list(c.params)
    if once_only(rule.conditions):
        sql += (" AND NOT EXISTS (SELECT 1 FROM events e WHERE e.ticket_id = t.id AND e.kind = 'automation_fired' "
                "AND e.actor_id = ? AND e.created_at > ?::TIMESTAMP - INTERVAL 1 HOUR)")
        params += [rule.actor.id, now]
    if ticket_id is not None:
        sql += " AND t.id = ?"
        params.append(ticket_id)
    return Compiled(sql + " ORDER BY t.id", params)


def run_automations(con: duckdb.DuckDBPyConnection, rules: RuleSet,
                    now: datetime | None = None) -> list[dict[str, Any]]:
    """One run of every active automation, in order; returns what fired (run it in the writer)."""
    now = now or clock.now()
    firings: list[dict[str, Any]] = []
    for rule in rules.automations:
        if not rule.active:
            continue
        q = automation_query(rule, now)
        ids = [r[0] for r in con.execute(q.sql, q.params).fetchall()]
        if not ids:
            continue
        record_events(con, [event(t, "automation_fired", rule.actor.type, rule.actor.id, at=now, rule=rule.title,
                                  source=rule.source) for t in ids])
        for t in ids:
            run = Applying(con, t, rule.actor, rule.title, assignment=rules.assignment)
            firings.append({"ticket_id": t, "automation": rule.title, "results": apply_actions(run, rule.actions)})
        run_triggers(con, rules, ids, "Change", rule.actor)
    return firings
