"""Automations on a controllable clock, and which rules would act on a ticket now (R22, R24, B1)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import msg
from warehouse import clock, queries
from warehouse.desk import Desk
from warehouse.ingest import Delivery
from warehouse.rules import RuleSet, load_rules, rules_affecting, run_automations, trigger_runner
from warehouse.store import Store
from warehouse.tickets import SYSTEM, ensure_agent, reply, set_status

START = datetime(2026, 11, 24, 9, 0)
WARNING = "Warn before the WhatsApp window closes"


def at(frozen: list[datetime], hours: float) -> datetime:
    frozen[0] = START + timedelta(hours=hours)
    return frozen[0]


def deliver(store: Store, rules: RuleSet, hours: float = 0, **kw: Any) -> None:
    Desk(store, trigger_runner(rules)).ingest_sync(Delivery([msg(at=(START + timedelta(hours=hours)), **kw)]))


def tick(store: Store, rules: RuleSet) -> list[dict[str, Any]]:
    return store.write(lambda c: run_automations(c, rules, clock.now()))


def kinds(store: Store, ticket_id: int, kind: str) -> list[dict[str, Any]]:
    return [e for e in store.read(lambda c: queries.ticket(c, ticket_id))["events"] if e["kind"] == kind]


def test_b1_the_whatsapp_window_warning_comes_20_hours_after_the_last_message(store: Store,
                                                                            frozen_clock: list[datetime]) -> None:
    rules = load_rules(None)
    at(frozen_clock, 0)
    deliver(store, rules)
    agent = store.write(lambda c: ensure_agent(c, "UA", "Ada"))
    store.write(lambda c: c.execute("UPDATE tickets SET assignee_id = ? WHERE id = 1", [agent]))
    at(frozen_clock, 19.9)
    assert tick(store, rules) == []
    at(frozen_clock, 20.1)
    assert [f["automation"] for f in tick(store, rules)] == [WARNING]
    t = store.read(lambda c: queries.ticket(c, 1))
    assert "whatsapp_window_closing" in t["tags"]
    (note,) = kinds(store, 1, "slack_notification")[-1:]
    assert (note["data"]["target"], note["data"]["assignee_slack_id"]) == ("assignee", "UA")
    assert note["actor"] == {"type": "rule", "id": f"automation:{WARNING}"}


def test_b1_the_warning_fires_once_per_window(store: Store, frozen_clock: list[datetime]) -> None:
    rules = load_rules(None)
    at(frozen_clock, 0)
    deliver(store, rules)
    at(frozen_clock, 21)
    tick(store, rules)
    at(frozen_clock, 21.1)
    assert tick(store, rules) == []
    assert len(kinds(store, 1, "automation_fired")) == 1


def test_b1_no_warning_when_an_agent_replied_since(store: Store, frozen_clock: list[datetime]) -> None:
    rules = load_rules(None)
    at(frozen_clock, 0)
    deliver(store, rules)
    agent = store.write(lambda c: ensure_agent(c, "UA", "Ada"))
    at(frozen_clock, 1)
    store.write(lambda c: reply(c, 1, agent, "On it"))
    at(frozen_clock, 21)
    assert tick(store, rules) == []


def test_b1_the_customer_writing_again_rearms_the_warning(store: Store, frozen_clock: list[datetime]) -> None:
    rules = load_rules(None)
    at(frozen_clock, 0)
    deliver(store, rules)
    at(frozen_clock, 21)
    tick(store, rules)
    at(frozen_clock, 22)
    deliver(store, rules, hours=22)
    assert "whatsapp_window_closing" not in store.read(lambda c: queries.ticket(c, 1))["tags"]
    at(frozen_clock, 43)
    assert [f["automation"] for f in tick(store, rules)] == [WARNING]


def test_no_warning_once_the_window_has_closed_or_on_other_channels(store: Store,
                                                                     frozen_clock: list[datetime]) -> None:
    rules = load_rules(None)
    at(frozen_clock, 0)
    deliver(store, rules, channel="line", account="L1", user="Uline")
    at(frozen_clock, 30)
    deliver(store, rules, hours=0, user="u2")  # a WhatsApp message already 30 hours old
    assert tick(store, rules) == []


def test_solved_tickets_close_after_4_days(store: Store, frozen_clock: list[datetime]) -> None:
    rules = load_rules(None)
    at(frozen_clock, 0)
    deliver(store, rules, channel="line", account="L1", user="Uline")
    store.write(lambda c: set_status(c, 1, "solved", SYSTEM))
    at(frozen_clock, 95.9)
    tick(store, rules)
    assert store.read(lambda c: queries.ticket(c, 1))["status"] == "solved"
    at(frozen_clock, 96.1)
    tick(store, rules)
    assert store.read(lambda c: queries.ticket(c, 1))["status"] == "closed"
    (changed,) = [e for e in kinds(store, 1, "status_changed") if e["data"]["status"] == "closed"]
    assert changed["actor"] == {"type": "rule", "id": "automation:Close solved tickets after 4 days"}
    at(frozen_clock, 200)
    assert tick(store, rules) == []  # closed tickets are never touched again


def test_an_automation_change_fires_the_triggers(tmp_path: Path, store: Store, frozen_clock: list[datetime]) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"trigger": {"title": "Closed notice", "conditions": {"all": [
        {"field": "status", "operator": "value", "value": "closed"}]},
        "actions": [{"field": "notification_slack", "value": ["#closed", "#{{ticket.id}} closed"]}]}}))
    rules = load_rules(tmp_path)
    at(frozen_clock, 0)
    deliver(store, rules, channel="line", account="L1", user="Uline")
    store.write(lambda c: set_status(c, 1, "solved", SYSTEM))
    at(frozen_clock, 97)
    tick(store, rules)
    assert [e["data"]["text"] for e in kinds(store, 1, "slack_notification")][-1] == "#1 closed"


def test_a_one_shot_hours_is_automation_fires_once(tmp_path: Path, store: Store,
                                                   frozen_clock: list[datetime]) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"automation": {"title": "Day one", "conditions": {"all": [
        {"field": "hours_since_created", "operator": "is", "value": "24"}]},
        "actions": [{"field": "notification_slack", "value": ["#ops", "#{{ticket.id}} is a day old"]}]}}))
    rules = load_rules(tmp_path)
    at(frozen_clock, 0)
    deliver(store, rules, channel="line", account="L1", user="Uline")
    fired = []
    for minutes in range(23 * 60, 26 * 60, 5):
        frozen_clock[0] = START + timedelta(minutes=minutes)
        fired += [f for f in tick(store, rules) if f["automation"] == "Day one"]
    assert len(fired) == 1


def test_r24_the_agent_sees_which_rules_would_act_on_the_ticket_now(tmp_path: Path, store: Store,
                                                                    frozen_clock: list[datetime]) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"trigger": {"title": "Log agent replies", "conditions": {"all": [
        {"field": "role", "operator": "is", "value": "agent"},
        {"field": "comment_is_public", "operator": "is", "value": "true"}]},
        "actions": [{"field": "notification_slack", "value": ["#log", "reply on {{ticket.id}}"]}]}}))
    rules = load_rules(tmp_path)
    at(frozen_clock, 0)
    deliver(store, rules)
    at(frozen_clock, 21)
    found = store.read(lambda c: rules_affecting(c, rules, 1, clock.now()))
    assert [t["title"] for t in found["triggers"]] == ["Log agent replies"]
    assert [a["title"] for a in found["automations"]] == [WARNING]
    at(frozen_clock, 2)
    assert store.read(lambda c: rules_affecting(c, rules, 1, clock.now()))["automations"] == []
