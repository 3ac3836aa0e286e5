"""Triggers on real tickets: order, once per update, loops, events, defaults (R3, R9, B3)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import msg
from warehouse import queries
from warehouse.desk import Desk
from warehouse.ingest import Delivery
from warehouse.rules import RuleSet, load_rules, trigger_runner
from warehouse.store import Store
from warehouse.tickets import SYSTEM, Actor, change_tags, ensure_agent, merge_users

TAGGED = {"field": "current_tags", "operator": "includes", "value": "messaging_support"}


def rules_with(tmp_path: Path, *triggers: dict[str, Any], assignment: dict | None = None) -> RuleSet:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "t.json").write_text(json.dumps({"triggers": list(triggers)}))
    return load_rules(tmp_path / "rules", assignment)


def deliver(store: Store, rules: RuleSet, *messages: Any) -> None:
    Desk(store, trigger_runner(rules)).ingest_sync(Delivery(list(messages)))


def events(store: Store, ticket_id: int, kind: str | None = None) -> list[dict[str, Any]]:
    found = store.read(lambda c: queries.ticket(c, ticket_id))["events"]
    return [e for e in found if kind is None or e["kind"] == kind]


def tags(store: Store, ticket_id: int) -> list[str]:
    return store.read(lambda c: queries.ticket(c, ticket_id))["tags"]


def test_b3_a_new_social_ticket_is_announced_in_the_triage_channel(store: Store) -> None:
    deliver(store, load_rules(None), msg(name="Amélie Dupont"))
    (note,) = events(store, 1, "slack_notification")
    assert note["data"]["target"] == "triage"
    assert note["data"]["text"] == "New WhatsApp conversation with Amélie Dupont on Paris support (ticket #1)"


def test_every_firing_is_an_event_on_the_ticket_naming_the_rule(store: Store) -> None:
    deliver(store, load_rules(None), msg())
    (fired,) = events(store, 1, "trigger_fired")
    assert fired["actor"] == {"type": "rule", "id": "trigger:Announce new social tickets in triage"}
    assert fired["data"]["update_type"] == "Create"


def test_a_later_message_is_a_change_not_a_create(store: Store) -> None:
    rules = load_rules(None)
    deliver(store, rules, msg())
    deliver(store, rules, msg())
    assert len(events(store, 1, "trigger_fired")) == 1


def test_a_change_made_by_one_trigger_is_seen_by_the_others_even_earlier_ones(tmp_path: Path, store: Store) -> None:
    rules = rules_with(tmp_path,
                       {"title": "Second step", "conditions": {"all": [
                           {"field": "current_tags", "operator": "includes", "value": "step1"}]},
                        "actions": [{"field": "current_tags", "value": "step2"}]},
                       {"title": "First step", "conditions": {"all": [
                           {"field": "update_type", "operator": "is", "value": "Create"}, TAGGED]},
                        "actions": [{"field": "current_tags", "value": "step1"}]})
    deliver(store, rules, msg())
    assert tags(store, 1)[-2:] == ["step1", "step2"]
    fired = [e["data"]["rule"] for e in events(store, 1, "trigger_fired")]
    assert fired.index("First step") < fired.index("Second step")


def test_triggers_fire_in_order_and_each_at_most_once_per_update(tmp_path: Path, store: Store) -> None:
    rules = rules_with(tmp_path, *[{"title": f"T{i}", "conditions": {"all": [TAGGED]},
                                    "actions": [{"field": "current_tags", "value": f"t{i}"}]} for i in range(3)])
    deliver(store, rules, msg())
    fired = [e["data"]["rule"] for e in events(store, 1, "trigger_fired")]
    assert fired[-3:] == ["T0", "T1", "T2"] and len(fired) == len(set(fired))


def test_a_loop_between_two_triggers_stops_with_an_event(tmp_path: Path, store: Store) -> None:
    rules = rules_with(tmp_path,
                       {"title": "Flag", "conditions": {"all": [TAGGED, {"field": "current_tags",
                                                                         "operator": "not_includes", "value": "flag"}]},
                        "actions": [{"field": "current_tags", "value": "flag"}]},
                       {"title": "Unflag", "conditions": {"all": [{"field": "current_tags", "operator": "includes",
                                                                   "value": "flag"}]},
                        "actions": [{"field": "remove_tags", "value": "flag"}]})
    deliver(store, rules, msg())
    (stopped,) = events(store, 1, "trigger_loop_stopped")
    assert stopped["data"]["rule"] == "Flag" and stopped["actor"]["type"] == "rule"


def test_round_robin_assignment_is_off_by_default(store: Store) -> None:
    deliver(store, load_rules(None), msg())
    assert store.read(lambda c: queries.ticket(c, 1))["assignee"] is None


def test_round_robin_assigns_new_tickets_in_turn_per_channel(store: Store) -> None:
    rules = load_rules(None, {"enabled": True, "agents": ["UA", "UB"], "by": "channel"})
    for user in ("u1", "u2", "u3"):
        deliver(store, rules, msg(user=user, name=user))
    deliver(store, rules, msg(channel="line", account="L1", user="Ux", name="Lee"))
    got = [store.read(lambda c, t=t: queries.ticket(c, t))["assignee"]["slack_user_id"] for t in (1, 2, 3, 4)]
    assert got == ["UA", "UB", "UA", "UA"]
    assert store.read(lambda c: queries.ticket(c, 1))["status"] == "open"


def test_round_robin_per_business_account_keeps_one_turn_per_account(store: Store) -> None:
    rules = load_rules(None, {"enabled": True, "agents": ["UA", "UB"], "by": "account"})
    for account, user in (("PN1", "u1"), ("PN2", "u2"), ("PN1", "u3")):
        deliver(store, rules, msg(account=account, user=user, name=user))
    got = [store.read(lambda c, t=t: queries.ticket(c, t))["assignee"]["slack_user_id"] for t in (1, 2, 3)]
    assert got == ["UA", "UA", "UB"]


def test_round_robin_skips_agents_who_are_not_online(store: Store) -> None:
    rules = load_rules(None, {"enabled": True, "agents": ["UA", "UB"], "online": ["UB"]})
    deliver(store, rules, msg())
    assert store.read(lambda c: queries.ticket(c, 1))["assignee"]["slack_user_id"] == "UB"


def test_a_trigger_reply_on_create_leaves_from_the_ticket_account_and_keeps_it_new(
        tmp_path: Path, store: Store, frozen_clock: Any) -> None:
    """The message was sent an hour before the store's clock: WhatsApp's window is open, the reply is queued."""
    rules = rules_with(tmp_path, {"title": "Auto-reply", "conditions": {"all": [
        {"field": "update_type", "operator": "is", "value": "Create"}, TAGGED]},
        "actions": [{"field": "comment_value", "value": "Hi {{ticket.requester.first_name}}, we are on it."}]})
    deliver(store, rules, msg(name="Amélie Dupont"))
    t = store.read(lambda c: queries.ticket(c, 1))
    reply = t["comments"][-1]
    assert (reply["body"], reply["author"], reply["delivery"]["state"]) == (
        "Hi Amélie, we are on it.", "SocialDesk", "queued")
    assert t["status"] == "new" and t["assignee"] is None
    assert store.read(lambda c: c.execute("SELECT account FROM outbox").fetchone()[0]) == "PN1"


def test_agent_updates_fire_triggers_with_current_user(tmp_path: Path, store: Store) -> None:
    rules = rules_with(tmp_path, {"title": "Take it", "conditions": {"all": [
        {"field": "current_tags", "operator": "includes", "value": "mine"},
        {"field": "assignee_id", "operator": "not_present"}]},
        "actions": [{"field": "assignee_id", "value": "current_user"}]})
    deliver(store, rules, msg())
    agent = store.write(lambda c: ensure_agent(c, "UA", "Ada"))

    def tag(con: Any) -> None:
        change_tags(con, 1, ["mine"], [], Actor.agent(agent))
        trigger_runner(rules)(con, [1], "Change", Actor.agent(agent))
    store.write(tag)
    assert store.read(lambda c: queries.ticket(c, 1))["assignee"]["id"] == agent


def test_merging_a_user_fires_no_trigger(tmp_path: Path, store: Store) -> None:
    rules = rules_with(tmp_path, {"title": "Any change", "conditions": {"all": [TAGGED]}, "actions": [
        {"field": "notification_slack", "value": ["#log", "{{ticket.id}} changed"]}]})
    deliver(store, rules, msg(account="PN1"), msg(account="PN2", user="4477001122"))
    before = [len(events(store, t, "trigger_fired")) for t in (1, 2)]
    Desk(store, trigger_runner(rules))  # the desk's merge never calls the triggers
    store.write(lambda c: merge_users(c, 2, 1, SYSTEM))
    assert [len(events(store, t, "trigger_fired")) for t in (1, 2)] == before
    assert events(store, 2, "requester_merged")


def test_r9_the_views_notifier_and_triggers_follow_the_messaging_support_tag(tmp_path: Path, store: Store) -> None:
    rules = rules_with(tmp_path, {"title": "Social only", "conditions": {"all": [TAGGED]}, "actions": [
        {"field": "notification_slack", "value": ["#social", "{{ticket.id}}"]}]})
    deliver(store, rules, msg())
    agent = store.write(lambda c: ensure_agent(c, "UA", "Ada"))
    store.write(lambda c: c.execute("UPDATE tickets SET assignee_id = ? WHERE id = 1", [agent]))
    deliver(store, rules, msg(user="u2", name="Bo"))

    def seen() -> list[bool]:
        return [1 in [t["id"] for t in store.read(lambda c, v=v: queries.view(c, v, "UA"))["tickets"]]
                for v in (queries.ASSIGNED_VIEW, queries.UNASSIGNED_VIEW)] + [
            bool(store.read(lambda c: queries.notifier(c, "UA"))["tickets"])]
    assert seen() == [True, False, True]
    fired = len(events(store, 1, "slack_notification"))
    store.write(lambda c: change_tags(c, 1, [], ["messaging_support"], SYSTEM))
    deliver(store, rules, msg())  # a change to a ticket without the tag: the social trigger does not act
    assert seen() == [False, False, False] and len(events(store, 1, "slack_notification")) == fired
    store.write(lambda c: change_tags(c, 1, ["messaging_support"], [], SYSTEM))
    assert seen() == [True, False, True]
