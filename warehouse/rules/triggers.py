"""Triggers: run after every ticket create or update, in the same transaction (R3).

Zendesk's cycle: the triggers are checked in order; when one fires, its changes are made and the
check starts again from the top, so a change made by one trigger is seen by the others; each
trigger fires at most once per update, which is what ends every loop. A trigger that fired, still
matches and would change the ticket again has been undone by another: that loop is stopped and
recorded as a `trigger_loop_stopped` event. Every firing is a `trigger_fired` event.

Tickets are handled as a set: one statement per trigger and round, whatever the batch size.
Merges never call this (as in Zendesk, requester changes made by a merge fire no trigger).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import duckdb

from warehouse import clock
from warehouse.conditions import Compiled, Context, compile_conditions
from warehouse.rows import event, record_events, sql_list
from warehouse.rules.actions import Applying, apply_actions, notify_many, ticket_row, would_change
from warehouse.rules.loader import RuleSet
from warehouse.tickets import Actor

ROLES = {"end-user": "end_user", "agent": "agent"}


def updater(actor: Actor) -> int | None:
    """The user behind an update: `current_user` in conditions, actions and placeholders."""
    if actor.type not in ROLES or actor.id is None:
        return None
    try:
        return int(actor.id)
    except (TypeError, ValueError):
        return None


def trigger_context(update_type: str | None, actor: Actor, comment_is_public: bool | None,
                    now: Any = None) -> Context:
    return Context(now=now or clock.now(), current_user=updater(actor), update_type=update_type,
                   comment_is_public=comment_is_public, current_role=ROLES.get(actor.type), trigger=True)


def matching(con: duckdb.DuckDBPyConnection, compiled: Compiled, ticket_ids: list[int]) -> set[int]:
    if compiled.sql == "FALSE":
        return set()
    # A literal id list lets DuckDB use the primary key instead of scanning every ticket.
    rows = con.execute(f"SELECT t.id FROM tickets t WHERE t.id IN {sql_list(ticket_ids)} AND ({compiled.sql})",
                       compiled.params).fetchall()
    return {r[0] for r in rows}


def _mark(con: duckdb.DuckDBPyConnection, ticket_ids: list[int]) -> None:
    """What the triggers have seen: later events are the next update's (`changed` and friends)."""
    # Event ids only grow, so the sequence's next value less one bounds every event so far, without
    # reading the events table (the gap it leaves in the ids is harmless).
    con.execute("INSERT INTO trigger_marks SELECT unnest(?::BIGINT[]), nextval('event_ids') - 1 "
                "ON CONFLICT DO UPDATE SET event_id = excluded.event_id", [ticket_ids])


def run_triggers(con: duckdb.DuckDBPyConnection, rules: RuleSet, ticket_ids: list[int], update_type: str,
                 actor: Actor, comment_is_public: bool | None = None) -> list[dict[str, Any]]:
    """Run the active triggers on tickets just created ("Create") or updated ("Change") by `actor`."""
    ids = list(dict.fromkeys(int(t) for t in ticket_ids))
    active = [r for r in rules.triggers if r.active]
    if not ids:
        return []
    if not active:
        _mark(con, ids)
        return []
    ctx = trigger_context(update_type, actor, comment_is_public)
    compiled = [compile_conditions(r.conditions, ctx, f"trigger {r.title!r}") for r in active]
    pointer = dict.fromkeys(ids, 0)  # the next trigger each ticket is checked against
    fired: dict[int, list[int]] = {t: [] for t in ids}
    firings: list[dict[str, Any]] = []
    while pointer:
        i = min(pointer.values())
        here = [t for t, p in pointer.items() if p == i]
        if i >= len(active):
            for t in here:
                del pointer[t]
            continue
        candidates = [t for t in here if i not in fired[t]]
        matched = matching(con, compiled[i], candidates) if candidates else set()
        for t in here:
            pointer[t] = i + 1
        if not matched:
            continue
        rule = active[i]
        record_events(con, [event(t, "trigger_fired", rule.actor.type, rule.actor.id, rule=rule.title,
                                  source=rule.source, update_type=update_type) for t in sorted(matched)])
        if all(a.get("field") == "notification_slack" for a in rule.actions):
            for a in rule.actions:
                results = notify_many(con, sorted(matched), rule.actor, rule.title, list(a["value"]),
                                      ctx.current_user)
            for t, result in zip(sorted(matched), results, strict=True):
                firings.append({"ticket_id": t, "trigger": rule.title,
                                "results": [{"field": "notification_slack", "ok": True, "result": result}]})
                fired[t].append(i)
                pointer[t] = 0
            continue
        for t in sorted(matched):
            run = Applying(con, t, rule.actor, rule.title, current_user=ctx.current_user,
                           assignment=rules.assignment)
            firings.append({"ticket_id": t, "trigger": rule.title, "results": apply_actions(run, rule.actions)})
            fired[t].append(i)
            pointer[t] = 0  # start again from the top: the others see this trigger's changes
    _stop_loops(con, rules, active, compiled, fired, ctx)
    _mark(con, ids)
    return firings


def _stop_loops(con: duckdb.DuckDBPyConnection, rules: RuleSet, active: list[Any], compiled: list[Compiled],
                fired: dict[int, list[int]], ctx: Context) -> None:
    stopped = []
    for t, indexes in fired.items():
        for i in indexes:
            rule = active[i]
            if all(a.get("field") == "notification_slack" for a in rule.actions):
                continue  # a notification changes nothing another trigger could undo
            changes = would_change(ticket_row(con, t), rule.actions, ctx.current_user, con)
            if changes and matching(con, compiled[i], [t]):
                stopped.append(event(t, "trigger_loop_stopped", rule.actor.type, rule.actor.id, rule=rule.title,
                                     reason="another trigger undid this trigger's changes; each trigger fires at "
                                            "most once per update"))
    record_events(con, stopped)


def trigger_runner(rules: RuleSet) -> Callable[..., list[dict[str, Any]]]:
    """The callable `warehouse.desk.Desk(store, triggers=...)` takes, bound to this rule set."""
    def run(con: duckdb.DuckDBPyConnection, ticket_ids: list[int], update_type: str, actor: Actor,
            comment_is_public: bool | None = None) -> list[dict[str, Any]]:
        return run_triggers(con, rules, ticket_ids, update_type, actor, comment_is_public)
    return run
