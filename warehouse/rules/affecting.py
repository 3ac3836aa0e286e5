"""Which rules would act on a ticket now (R24): shown to the agent before replying.

Triggers are checked against the update the agent is about to make (a public reply, a Change by an
agent); automations against the clock. A rule counts when its conditions hold and it would do
something: change the ticket, comment or notify.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb

from warehouse import clock
from warehouse.conditions import compile_conditions
from warehouse.rules.actions import ticket_row, would_change
from warehouse.rules.automations import automation_query
from warehouse.rules.loader import Rule, RuleSet
from warehouse.rules.triggers import matching, trigger_context
from warehouse.tickets import Actor

_ACTING = ("comment_value", "comment_value_html", "comment_value_internal", "notification_slack")


def _entry(rule: Rule, changes: bool) -> dict[str, Any]:
    return {"title": rule.title, "description": rule.description, "source": rule.source,
            "actions": rule.actions, "changes_ticket": changes}


def rules_affecting(con: duckdb.DuckDBPyConnection, rules: RuleSet, ticket_id: int, now: datetime | None = None,
                    agent_id: int | None = None) -> dict[str, Any]:
    now = now or clock.now()
    t = ticket_row(con, ticket_id)
    actor = Actor.agent(agent_id) if agent_id is not None else Actor("agent")
    ctx = trigger_context("Change", actor, True, now)
    triggers = []
    for rule in rules.triggers:
        if not rule.active:
            continue
        changes = would_change(t, rule.actions, agent_id, con)
        acts = changes or any(a.get("field") in _ACTING for a in rule.actions)
        if acts and matching(con, compile_conditions(rule.conditions, ctx), [ticket_id]):
            triggers.append(_entry(rule, changes))
    automations = []
    for rule in rules.automations:
        if rule.active:
            q = automation_query(rule, now, ticket_id)
            if con.execute(q.sql, q.params).fetchone():
                automations.append(_entry(rule, would_change(t, rule.actions, con=con)))
    return {"ticket_id": ticket_id, "triggers": triggers, "automations": automations,
            "assumes": "triggers: an agent's public reply to this ticket now; automations: their next run"}
