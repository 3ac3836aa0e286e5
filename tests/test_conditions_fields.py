"""The subject and custom fields in conditions (issue 14): Zendesk's `subject_includes_word` and
`custom_fields_<id>`, and the `changed` family on `subject` and custom fields in triggers, over real
tickets changed through `set_fields`; views; refusals at load; quotes in values.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ingest, msg
from warehouse import queries
from warehouse.desk import Desk
from warehouse.ingest import Delivery
from warehouse.rules import RuleError, RuleSet, load_rules, run_automations, trigger_runner
from warehouse.store import Store
from warehouse.tickets import SYSTEM, Actor, ensure_agent, set_fields
from warehouse.views import sync_shared_views

ON_CHANGE = {"field": "update_type", "operator": "is", "value": "Change"}
INJECTION = "x' OR 1=1 --"


def cond(field: str, operator: str, value: Any = None) -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


def rules_with(tmp_path: Path, **kinds: list[dict[str, Any]]) -> RuleSet:
    """A rules folder holding `triggers=[...]`, `automations=[...]`, `views=[...]`, loaded."""
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "r.json").write_text(json.dumps(kinds))
    return load_rules(tmp_path / "rules")


def refusal(tmp_path: Path, **kinds: list[dict[str, Any]]) -> tuple[str | None, str]:
    """The one problem loading these rules reports: (its field, its text)."""
    with pytest.raises(RuleError) as err:
        rules_with(tmp_path, **kinds)
    (problem,) = err.value.problems
    return problem.field, str(problem)


def trigger(title: str, *conditions: dict[str, Any], actions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"title": title, "conditions": {"all": list(conditions)},
            "actions": actions or [{"field": "current_tags", "value": "fired"}]}


def ticket(store: Store, ticket_id: int) -> dict[str, Any]:
    return store.read(lambda c: queries.ticket(c, ticket_id))


def firings(store: Store, ticket_id: int, title: str) -> int:
    return sum(1 for e in ticket(store, ticket_id)["events"]
               if e["kind"] == "trigger_fired" and e["data"]["rule"] == title)


def set_quietly(store: Store, ticket_id: int, changes: dict[str, Any]) -> None:
    """Change a ticket's fields without running triggers: the state a test starts from."""
    store.write(lambda c: set_fields(c, ticket_id, changes, SYSTEM))


def view_ids(store: Store, rules: RuleSet, title: str) -> list[int]:
    store.write(lambda c: sync_shared_views(c, rules.shared_views()))
    return sorted(t["id"] for t in store.read(lambda c: queries.view(c, title))["tickets"])


@pytest.fixture
def agent(store: Store) -> Actor:
    return Actor.agent(store.write(lambda c: ensure_agent(c, "U_AGENT", "Ada")))


# -- subject_includes_word ------------------------------------------------------------------------

def test_a_trigger_on_subject_words_fires_on_the_ticket_whose_subject_has_one_and_not_on_another(
        tmp_path: Path, store: Store, frozen_clock: list[datetime]) -> None:
    rules = rules_with(tmp_path, triggers=[
        trigger("Refunds", ON_CHANGE, cond("subject_includes_word", "includes", "refund money"))])
    desk = Desk(store, trigger_runner(rules))
    desk.ingest_sync(Delivery([msg(user="33600000001"), msg(user="33600000002")]))
    set_quietly(store, 1, {"subject": "Refund for order A-1"})
    desk.ingest_sync(Delivery([msg(user="33600000001"), msg(user="33600000002")]))
    assert (firings(store, 1, "Refunds"), firings(store, 2, "Refunds")) == (1, 0)


def test_a_trigger_on_subject_words_fires_on_create_for_the_name_ingestion_puts_in_the_subject(
        tmp_path: Path, store: Store, frozen_clock: list[datetime]) -> None:
    """Words match whole and in any case: "amélie" is in "WhatsApp conversation with Amélie Dupont"."""
    rules = rules_with(tmp_path, triggers=[trigger("Amélie", cond("subject_includes_word", "includes", "amélie"))])
    Desk(store, trigger_runner(rules)).ingest_sync(Delivery([
        msg(user="33600000001", name="Amélie Dupont"), msg(user="33600000002", name="Amelia Pond")]))
    assert (firings(store, 1, "Amélie"), firings(store, 2, "Amélie")) == (1, 0)


def test_a_view_on_subject_words_matches_whole_words_not_part_of_one(tmp_path: Path, store: Store) -> None:
    rules = rules_with(tmp_path, views=[{"title": "Refunds", "conditions": {
        "all": [cond("subject_includes_word", "includes", "refund")]}}])
    ingest(store, *[msg(user=f"3360000000{i}") for i in range(1, 4)])
    set_quietly(store, 1, {"subject": "Refund: parcel lost"})
    set_quietly(store, 2, {"subject": "Refunds and returns"})
    assert view_ids(store, rules, "Refunds") == [1]


def test_subject_is_matches_the_value_as_a_string_inside_the_subject(tmp_path: Path, store: Store) -> None:
    """Zendesk's `is` on the subject text: "contains the following string", any case."""
    rules = rules_with(tmp_path, views=[{"title": "Lost parcels", "conditions": {
        "all": [cond("subject_includes_word", "is", "parcel lost")]}}])
    ingest(store, msg(user="33600000001"), msg(user="33600000002"))
    set_quietly(store, 1, {"subject": "Where is my PARCEL LOST in Lyon?"})
    set_quietly(store, 2, {"subject": "Parcel was lost"})
    assert view_ids(store, rules, "Lost parcels") == [1]


# -- custom fields --------------------------------------------------------------------------------

async def test_a_trigger_on_a_custom_field_fires_after_an_agent_sets_it(
        tmp_path: Path, store: Store, frozen_clock: list[datetime], agent: Actor) -> None:
    rules = rules_with(tmp_path, triggers=[trigger(
        "VIPs are urgent", ON_CHANGE, cond("custom_fields_vip", "is", True),
        actions=[{"field": "priority", "value": "urgent"}])])
    desk = Desk(store, trigger_runner(rules))
    desk.ingest_sync(Delivery([msg()]))
    desk.ingest_sync(Delivery([msg()]))
    assert ticket(store, 1)["priority"] is None
    await desk.set_fields(1, {"custom_fields": {"vip": True}}, agent)
    assert ticket(store, 1)["priority"] == "urgent"


def test_a_trigger_on_a_custom_field_sees_the_value_another_trigger_set_in_the_same_update(
        tmp_path: Path, store: Store, frozen_clock: list[datetime]) -> None:
    """A rule sets the field through `set_fields`; the triggers start again from the top and see it."""
    rules = rules_with(tmp_path, triggers=[
        trigger("Gold goes to tier 2", cond("custom_fields_tier", "is", "gold"),
                actions=[{"field": "group_id", "value": "tier2"}]),
        trigger("Returning customers are gold", ON_CHANGE,
                actions=[{"field": "custom_fields_tier", "value": "gold"}])])
    desk = Desk(store, trigger_runner(rules))
    desk.ingest_sync(Delivery([msg()]))
    assert ticket(store, 1)["group_id"] is None
    desk.ingest_sync(Delivery([msg()]))
    t = ticket(store, 1)
    assert (t["fields"]["tier"], t["group_id"]) == ("gold", "tier2")


def test_a_view_on_a_custom_field_lists_the_tickets_with_that_value(tmp_path: Path, store: Store) -> None:
    rules = rules_with(tmp_path, views=[{"title": "Order A-1", "conditions": {
        "all": [cond("custom_fields_order", "is", "A-1")]}}])
    ingest(store, *[msg(user=f"3360000000{i}") for i in range(1, 5)])
    set_quietly(store, 1, {"custom_fields": {"order": "A-1"}})
    set_quietly(store, 2, {"custom_fields": {"order": "A-10"}})
    set_quietly(store, 3, {"custom_fields": {"other": "A-1"}})
    set_quietly(store, 4, {"custom_fields": {"order": "A-1"}})
    assert view_ids(store, rules, "Order A-1") == [1, 4]


def test_a_cleared_custom_field_is_not_present(tmp_path: Path, store: Store) -> None:
    """Slack and the CLI clear a field to "": it has no value, like a field never set."""
    rules = rules_with(tmp_path, views=[
        {"title": "With an order", "conditions": {"all": [cond("custom_fields_order", "present")]}},
        {"title": "Without", "conditions": {"all": [cond("custom_fields_order", "not_present")]}}])
    ingest(store, *[msg(user=f"3360000000{i}") for i in range(1, 4)])
    set_quietly(store, 1, {"custom_fields": {"order": "A-1"}})
    set_quietly(store, 2, {"custom_fields": {"order": ""}})
    assert (view_ids(store, rules, "With an order"), view_ids(store, rules, "Without")) == ([1], [2, 3])


def test_a_checkbox_never_checked_is_false(tmp_path: Path, store: Store) -> None:
    rules = rules_with(tmp_path, views=[{"title": "Not VIP", "conditions": {
        "all": [cond("custom_fields_vip", "is", "false")]}}])
    ingest(store, *[msg(user=f"3360000000{i}") for i in range(1, 4)])
    set_quietly(store, 1, {"custom_fields": {"vip": True}})
    set_quietly(store, 2, {"custom_fields": {"vip": False}})
    assert view_ids(store, rules, "Not VIP") == [2, 3]


def test_custom_field_includes_matches_one_of_the_words_of_its_value(tmp_path: Path, store: Store) -> None:
    """As Zendesk's multi-select fields: the value's options, a space apart; `blue` is not `blueish`."""
    rules = rules_with(tmp_path, views=[{"title": "Blue", "conditions": {
        "all": [cond("custom_fields_colours", "includes", "blue green")]}}])
    ingest(store, *[msg(user=f"3360000000{i}") for i in range(1, 4)])
    set_quietly(store, 1, {"custom_fields": {"colours": "red blue"}})
    set_quietly(store, 2, {"custom_fields": {"colours": "blueish"}})
    assert view_ids(store, rules, "Blue") == [1]


# -- changed, in triggers -------------------------------------------------------------------------

async def test_a_trigger_on_subject_changed_fires_only_in_the_update_that_changed_it(
        tmp_path: Path, store: Store, frozen_clock: list[datetime], agent: Actor) -> None:
    rules = rules_with(tmp_path, triggers=[trigger("Renamed", cond("subject", "changed"))])
    desk = Desk(store, trigger_runner(rules))
    desk.ingest_sync(Delivery([msg()]))
    await desk.set_fields(1, {"subject": "Refund"}, agent)
    desk.ingest_sync(Delivery([msg()]))
    await desk.set_fields(1, {"priority": "high"}, agent)
    await desk.set_fields(1, {"subject": "Refund"}, agent)  # the same subject: no change
    assert firings(store, 1, "Renamed") == 1


async def test_a_trigger_on_a_custom_field_changed_fires_only_in_the_update_that_changed_that_field(
        tmp_path: Path, store: Store, frozen_clock: list[datetime], agent: Actor) -> None:
    rules = rules_with(tmp_path, triggers=[trigger("Order changed", cond("custom_fields_order", "changed"))])
    desk = Desk(store, trigger_runner(rules))
    desk.ingest_sync(Delivery([msg()]))
    await desk.set_fields(1, {"custom_fields": {"order": "A-1"}}, agent)
    desk.ingest_sync(Delivery([msg()]))
    await desk.set_fields(1, {"custom_fields": {"note": "call back"}}, agent)  # another custom field
    assert firings(store, 1, "Order changed") == 1


async def test_a_trigger_on_a_custom_field_changed_from_one_value_to_another_reads_the_recorded_event(
        tmp_path: Path, store: Store, frozen_clock: list[datetime], agent: Actor) -> None:
    rules = rules_with(tmp_path, triggers=[trigger(
        "A-1 became A-2", cond("custom_fields_order", "value_previous", "A-1"),
        cond("custom_fields_order", "value", "A-2"))])
    desk = Desk(store, trigger_runner(rules))
    desk.ingest_sync(Delivery([msg()]))
    for order in ("A-1", "A-3", "A-2", "A-1", "A-2"):
        await desk.set_fields(1, {"custom_fields": {"order": order}}, agent)
    assert firings(store, 1, "A-1 became A-2") == 1


# -- the rules engine: loops and automations ------------------------------------------------------

def test_two_triggers_fighting_over_a_custom_field_stop_with_an_event(
        tmp_path: Path, store: Store, frozen_clock: list[datetime]) -> None:
    rules = rules_with(tmp_path, triggers=[
        trigger("Gold", cond("custom_fields_tier", "is_not", "gold"),
                actions=[{"field": "custom_fields_tier", "value": "gold"}]),
        trigger("Silver", cond("custom_fields_tier", "is", "gold"),
                actions=[{"field": "custom_fields_tier", "value": "silver"}])])
    Desk(store, trigger_runner(rules)).ingest_sync(Delivery([msg()]))
    stopped = [e["data"]["rule"] for e in ticket(store, 1)["events"] if e["kind"] == "trigger_loop_stopped"]
    assert stopped == ["Gold"]


def test_a_trigger_renaming_a_ticket_with_a_placeholder_is_not_taken_for_a_loop(
        tmp_path: Path, store: Store, frozen_clock: list[datetime]) -> None:
    """The subject it set is the rendered template: the rule would not change the ticket again."""
    rules = rules_with(tmp_path, triggers=[trigger(
        "Name refunds", ON_CHANGE, cond("subject_includes_word", "includes", "refund"),
        actions=[{"field": "subject", "value": "Refund for {{ticket.requester.first_name}}"}])])
    desk = Desk(store, trigger_runner(rules))
    desk.ingest_sync(Delivery([msg(name="Amélie Dupont")]))
    set_quietly(store, 1, {"subject": "refund please"})
    desk.ingest_sync(Delivery([msg(name="Amélie Dupont")]))
    t = ticket(store, 1)
    assert t["subject"] == "Refund for Amélie"
    assert [e for e in t["events"] if e["kind"] == "trigger_loop_stopped"] == []


def test_an_automation_that_sets_the_custom_field_it_tests_acts_once(
        tmp_path: Path, store: Store, frozen_clock: list[datetime]) -> None:
    rules = rules_with(tmp_path, automations=[{"title": "Follow up", "conditions": {"all": [
        cond("hours_since_created", "greater_than", 48), cond("custom_fields_followed_up", "is_not", True)]},
        "actions": [{"field": "custom_fields_followed_up", "value": True}]}])
    ingest(store, msg())
    frozen_clock[0] += timedelta(hours=50)
    store.write(lambda c: run_automations(c, rules))
    store.write(lambda c: run_automations(c, rules))
    assert [e["kind"] for e in ticket(store, 1)["events"]].count("automation_fired") == 1


def test_an_automation_whose_actions_leave_its_custom_field_condition_true_is_refused(tmp_path: Path) -> None:
    field, text = refusal(tmp_path, automations=[{"title": "Follow up", "conditions": {"all": [
        cond("hours_since_created", "greater_than", 48), cond("custom_fields_followed_up", "is_not", True)]},
        "actions": [{"field": "custom_fields_followed_up", "value": False}]}])
    assert field == "conditions" and "no condition in 'all' is made false" in text


def test_an_automation_that_renames_away_from_its_subject_condition_loads(tmp_path: Path) -> None:
    rules = rules_with(tmp_path, automations=[{"title": "Flag overdue", "conditions": {"all": [
        cond("hours_since_created", "greater_than", 48),
        cond("subject_includes_word", "not_includes", "overdue")]},
        "actions": [{"field": "subject", "value": "Overdue: customer waiting"}]}])
    assert [a.title for a in rules.automations][-1] == "Flag overdue"


# -- refused at load ------------------------------------------------------------------------------

@pytest.mark.parametrize(("condition", "message"), [
    (cond("subject_includes_word", "present"), "subject_includes_word takes includes, not_includes, is, is_not"),
    (cond("subject_includes_word", "changed"), "a change of the subject is the field subject"),
    (cond("subject", "is", "Refund"), "to match its words use subject_includes_word"),
    (cond("custom_fields_order", "less_than", "5"), "custom_fields_order takes is, is_not, present, not_present"),
])
def test_an_operator_the_field_does_not_take_is_refused_at_load_naming_the_field(
        tmp_path: Path, condition: dict[str, Any], message: str) -> None:
    field, text = refusal(tmp_path, triggers=[trigger("T", condition)])
    assert field == condition["field"] and message in text


@pytest.mark.parametrize("condition", [
    cond("custom_fields_order", "is", ["A-1", "A-2"]),
    cond("custom_fields_order", "value", {"order": "A-1"}),
    cond("subject_includes_word", "includes", ["refund"]),
])
def test_a_list_or_object_value_is_refused_at_load(tmp_path: Path, condition: dict[str, Any]) -> None:
    field, text = refusal(tmp_path, triggers=[trigger("T", condition)])
    assert field == condition["field"] and "takes a text, number or true/false value" in text


@pytest.mark.parametrize("value", ["", "-- !"])
def test_subject_words_with_no_word_are_refused_at_load(tmp_path: Path, value: str) -> None:
    field, text = refusal(tmp_path, triggers=[trigger("T", cond("subject_includes_word", "includes", value))])
    assert field == "subject_includes_word" and "needs at least one word" in text


def test_a_custom_field_id_that_is_not_a_word_is_refused_at_load(tmp_path: Path) -> None:
    field, text = refusal(tmp_path, views=[{"title": "V", "conditions": {"all": [
        cond("custom_fields_order'); DROP TABLE tickets; --", "present")]}}])
    assert field is not None and field.startswith("custom_fields_") and "letters, digits, _ and -" in text


def test_changed_on_a_custom_field_is_refused_in_a_view(tmp_path: Path) -> None:
    field, text = refusal(tmp_path, views=[{"title": "V", "conditions": {"all": [
        cond("custom_fields_order", "changed")]}}])
    assert field == "custom_fields_order" and "only triggers can use it" in text


# -- quotes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("condition", [
    cond("subject_includes_word", "includes", INJECTION),
    cond("subject_includes_word", "is", INJECTION),
    cond("custom_fields_order", "is", INJECTION),
    cond("custom_fields_order", "includes", INJECTION),
])
def test_a_quote_in_a_value_is_data_not_sql(tmp_path: Path, store: Store, condition: dict[str, Any]) -> None:
    """Only the ticket holding the text matches: `OR 1=1` would have matched both."""
    rules = rules_with(tmp_path, views=[{"title": "Quoted", "conditions": {"all": [condition]}}])
    ingest(store, msg(user="33600000001"), msg(user="33600000002"))
    set_quietly(store, 1, {"subject": INJECTION, "custom_fields": {"order": INJECTION}})
    assert view_ids(store, rules, "Quoted") == [1]


async def test_a_quote_in_a_changed_to_value_is_data_not_sql(
        tmp_path: Path, store: Store, frozen_clock: list[datetime], agent: Actor) -> None:
    rules = rules_with(tmp_path, triggers=[trigger("Quoted", cond("custom_fields_order", "value", INJECTION))])
    desk = Desk(store, trigger_runner(rules))
    desk.ingest_sync(Delivery([msg()]))
    await desk.set_fields(1, {"custom_fields": {"order": "A-1"}}, agent)
    assert firings(store, 1, "Quoted") == 0
    await desk.set_fields(1, {"custom_fields": {"order": INJECTION}}, agent)
    assert firings(store, 1, "Quoted") == 1
