"""Ticket fields (priority, group, subject, custom fields) have one owner, `warehouse.tickets.set_fields`:
rules, Slack and the CLI change them through it, with the same events, and conditions read them (R3).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from socialdesk.cli import main
from tests import test_slack_harness as harness
from tests.conftest import msg
from tests.test_slack_harness import AGENT, STRANGER, TRIAGE, World, text_of
from warehouse import queries
from warehouse.desk import Desk
from warehouse.ingest import Delivery
from warehouse.rules import RuleSet, load_rules, trigger_runner
from warehouse.store import Store
from warehouse.tickets import Actor

world = harness.world  # the fixture
NOW = datetime(2026, 11, 24, 10, 0)
ON_CHANGE = {"field": "update_type", "operator": "is", "value": "Change"}
SUBJECT = "WhatsApp conversation with Amélie Dupont"  # what ingestion names a new ticket


def rules_with(tmp_path: Path, *triggers: dict[str, Any]) -> RuleSet:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "t.json").write_text(json.dumps({"triggers": list(triggers)}))
    return load_rules(tmp_path / "rules")


def field_events(t: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    kinds = ("priority_changed", "group_changed", "subject_changed", "custom_field_changed")
    return [(e["kind"], e["actor"], e["data"]) for e in t["events"] if e["kind"] in kinds]


# -- rules ------------------------------------------------------------------------------------------

def test_r3_a_rule_sets_priority_group_subject_and_custom_fields_with_an_event_each(
        tmp_path: Path, store: Store, frozen_clock: list[datetime]) -> None:
    rules = rules_with(tmp_path, {"title": "Escalate", "conditions": {"all": [ON_CHANGE]}, "actions": [
        {"field": "priority", "value": "high"}, {"field": "group_id", "value": 360004455667},
        {"field": "subject", "value": "{{ticket.requester.first_name}} wrote again"},
        {"field": "custom_fields_order", "value": "A-1"}, {"field": "custom_fields_vip", "value": True}]})
    desk = Desk(store, trigger_runner(rules))
    desk.ingest_sync(Delivery([msg(name="Amélie Dupont")]))
    desk.ingest_sync(Delivery([msg(name="Amélie Dupont")]))  # a change: the trigger fires
    desk.ingest_sync(Delivery([msg(name="Amélie Dupont")]))  # fires again and changes nothing
    t = store.read(lambda c: queries.ticket(c, 1))
    assert (t["priority"], t["group_id"], t["subject"]) == ("high", "360004455667", "Amélie wrote again")
    assert (t["fields"]["order"], t["fields"]["vip"]) == ("A-1", True)
    rule = {"type": "rule", "id": "trigger:Escalate"}
    assert field_events(t) == [
        ("priority_changed", rule, {"previous": None, "priority": "high"}),
        ("group_changed", rule, {"previous": None, "group_id": "360004455667"}),
        ("subject_changed", rule, {"previous": "WhatsApp conversation with Amélie Dupont",
                                   "subject": "Amélie wrote again"}),
        ("custom_field_changed", rule, {"field": "order", "previous": None, "value": "A-1"}),
        ("custom_field_changed", rule, {"field": "vip", "previous": None, "value": True}),
    ]


def test_r3_a_rule_clears_priority_and_group_with_an_empty_value(
        tmp_path: Path, store: Store, frozen_clock: list[datetime]) -> None:
    rules = rules_with(tmp_path, {"title": "Raise", "conditions": {"all": [
        ON_CHANGE, {"field": "priority", "operator": "is", "value": ""}]}, "actions": [
        {"field": "priority", "value": "urgent"}, {"field": "group_id", "value": "tier2"}]},
        {"title": "Lower", "conditions": {"all": [ON_CHANGE, {"field": "priority", "operator": "is",
                                                              "value": "urgent"}]},
         "actions": [{"field": "priority", "value": ""}, {"field": "group_id", "value": None}]})
    desk = Desk(store, trigger_runner(rules))
    for _ in range(3):
        desk.ingest_sync(Delivery([msg()]))
    t = store.read(lambda c: queries.ticket(c, 1))
    assert (t["priority"], t["group_id"]) == (None, None)
    assert [(kind, data) for kind, _, data in field_events(t)][-2:] == [
        ("priority_changed", {"previous": "urgent", "priority": None}),
        ("group_changed", {"previous": "tier2", "group_id": None})]


def test_r3_a_rule_subject_that_renders_blank_is_a_failed_action_and_the_message_is_stored(
        tmp_path: Path, store: Store, frozen_clock: list[datetime]) -> None:
    """Nobody is assigned, so the placeholder renders nothing: the subject stays, the rule's failure is an
    event, and the customer's message is on the ticket (it used to become a dead letter)."""
    rules = rules_with(tmp_path, {"title": "Name it after the assignee", "conditions": {"all": [ON_CHANGE]},
                                  "actions": [{"field": "subject", "value": "{{ticket.assignee.name}}"},
                                              {"field": "current_tags", "value": "renamed"}]})
    desk = Desk(store, trigger_runner(rules))
    desk.ingest_sync(Delivery([msg(text="First")]))
    result = desk.ingest_sync(Delivery([msg(text="Second")]))
    assert (result.stored, result.dead_letters) == (1, 0)
    t = store.read(lambda c: queries.ticket(c, 1))
    assert (t["subject"], "renamed" in t["tags"]) == (SUBJECT, True)
    [failed] = [e["data"] for e in t["events"] if e["kind"] == "rule_action_failed"]
    assert (failed["field"], failed["reason"]) == ("subject", "a subject needs text")


# -- Slack ------------------------------------------------------------------------------------------

async def new_ticket(world: World) -> int:
    result = await world.ingest(msg(text="Where is my parcel?", at=NOW))
    return int(result.created_tickets[0])


def fields(priority: str, subject: str) -> dict[str, Any]:
    """The fields modal's state, as Slack submits it."""
    return {"priority": {"fields_priority": {"type": "static_select", "selected_option": {"value": priority}}},
            "subject": {"fields_subject": {"type": "plain_text_input", "value": subject}}}


async def open_fields(world: World, ticket_id: int, user: str = AGENT) -> dict[str, Any]:
    await world.click(user, "fields", str(ticket_id), channel=TRIAGE)
    return world.last_modal()


async def test_an_agent_sets_priority_and_subject_from_the_card_with_an_event_each(world: World, frozen: Any) -> None:
    tid = await new_ticket(world)
    modal = await open_fields(world, tid)
    shown = {b["block_id"]: b["element"] for b in modal["blocks"] if b["type"] == "input"}
    assert shown["priority"]["initial_option"]["value"] == "none"
    assert shown["subject"]["initial_value"] == SUBJECT
    await world.submit(AGENT, modal, fields("high", "  Parcel lost in Lyon "))
    ticket = await world.desk.ticket(tid)
    assert (ticket["priority"], ticket["subject"]) == ("high", "Parcel lost in Lyon")
    agent = {"type": "agent", "id": str(await world.desk.agent(AGENT))}
    assert field_events(ticket) == [
        ("priority_changed", agent, {"previous": None, "priority": "high"}),
        ("subject_changed", agent, {"previous": SUBJECT, "subject": "Parcel lost in Lyon"})]
    await world.notify()
    _, ts = await world.slack_message(tid)
    card = text_of(world.last("chat.update", ts=ts)["blocks"])
    assert "*Priority*\\nHigh" in card and "Parcel lost in Lyon" in card


async def test_a_field_left_as_it_was_is_not_written_back(world: World, frozen: Any) -> None:
    """Only what the agent changed is saved: a subject a rule changed while the modal was open stays."""
    tid = await new_ticket(world)
    modal = await open_fields(world, tid)
    agent = await world.desk.agent(AGENT)
    await world.desk.set_fields(tid, {"subject": "Renamed meanwhile"}, Actor("rule", "trigger:x"))
    await world.submit(AGENT, modal, fields("urgent", SUBJECT))
    ticket = await world.desk.ticket(tid)
    assert (ticket["priority"], ticket["subject"]) == ("urgent", "Renamed meanwhile")
    assert [(kind, actor["id"]) for kind, actor, _ in field_events(ticket)] == [
        ("subject_changed", "trigger:x"), ("priority_changed", str(agent))]


async def test_a_value_the_desk_refuses_is_an_error_on_its_field_and_changes_nothing(
        world: World, frozen: Any) -> None:
    tid = await new_ticket(world)
    modal = await open_fields(world, tid)
    resp = await world.submit(AGENT, modal, fields("high", "   "))
    assert await resp.json() == {"response_action": "errors", "errors": {"subject": "A subject needs text"}}
    resp = await world.submit(AGENT, modal, fields("critical", "Parcel lost"))
    answer = await resp.json()
    assert list(answer["errors"]) == ["priority"] and "is not one of low, normal, high, urgent" in \
        answer["errors"]["priority"]
    ticket = await world.desk.ticket(tid)
    assert (ticket["priority"], ticket["subject"], field_events(ticket)) == (None, SUBJECT, [])


async def test_a_non_agent_can_neither_open_nor_submit_the_fields_modal(world: World, frozen: Any) -> None:
    tid = await new_ticket(world)
    modal = await open_fields(world, tid)
    world.api.clear()
    await world.click(STRANGER, "fields", str(tid), channel=TRIAGE)
    await world.submit(STRANGER, modal, fields("urgent", "Hijacked"))
    assert not world.api.called("views.open")
    refusals = world.api.called("chat.postEphemeral") + world.posts(thread=False)
    assert [r.get("channel") for r in refusals] == [TRIAGE, STRANGER]
    assert all("only support agents" in r["text"] for r in refusals)
    ticket = await world.desk.ticket(tid)
    assert (ticket["priority"], ticket["subject"], field_events(ticket)) == (None, SUBJECT, [])


async def test_r3_a_trigger_on_priority_fires_after_an_agent_raises_it_from_slack(
        world: World, frozen: Any, tmp_path: Path) -> None:
    """Priority is usable in conditions, and an agent's change from Slack runs the triggers."""
    rules = rules_with(tmp_path, {"title": "Urgent goes to tier 2", "conditions": {"all": [
        ON_CHANGE, {"field": "priority", "operator": "is", "value": "urgent"}]},
        "actions": [{"field": "group_id", "value": "tier2"}, {"field": "current_tags", "value": "escalated"}]})
    world.desk.triggers = trigger_runner(rules)
    tid = await new_ticket(world)
    modal = await open_fields(world, tid)
    await world.submit(AGENT, modal, fields("urgent", SUBJECT))
    ticket = await world.desk.ticket(tid)
    assert (ticket["priority"], ticket["group_id"], "escalated" in ticket["tags"]) == ("urgent", "tier2", True)
    [fired] = [e for e in ticket["events"] if e["kind"] == "trigger_fired" and e["data"]["rule"] ==
               "Urgent goes to tier 2"]
    assert fired["data"]["update_type"] == "Change"


# -- the CLI ----------------------------------------------------------------------------------------

@pytest.fixture
def cli_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    """A store with one WhatsApp ticket (#1), for the CLI run in process."""
    monkeypatch.setenv("SOCIALDESK_DB", str(tmp_path / "cli.duckdb"))
    monkeypatch.chdir(tmp_path)
    line = {"channel": "whatsapp", "account": "PN1", "user_id": "33612345678", "message_id": "wamid.1",
            "sent_at": "2026-11-24T09:00:00Z", "text": "Bonjour", "profile": {"name": "Amélie Dupont"}}
    (tmp_path / "in.jsonl").write_text(json.dumps(line) + "\n")
    assert main(["ingest", "in.jsonl"]) == 0
    capsys.readouterr()
    return tmp_path


def test_the_cli_field_command_sets_priority_group_subject_and_custom_fields(
        cli_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["field", "1", "--priority", "high", "--group", "tier2", "--subject", "Refund",
                 "--custom", "order=A-1", "--custom", "note=", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (result["priority"], result["group_id"], result["subject"]) == ("high", "tier2", "Refund")
    assert result["custom_fields"] == {"order": "A-1", "note": ""}
    assert result["changed"] == ["priority", "group_id", "subject", "custom_fields.order", "custom_fields.note"]
    assert main(["ticket", "1", "--json"]) == 0
    ticket = json.loads(capsys.readouterr().out)
    cli = {"type": "system", "id": "cli"}
    assert [(kind, actor) for kind, actor, _ in field_events(ticket)] == [
        ("priority_changed", cli), ("group_changed", cli), ("subject_changed", cli),
        ("custom_field_changed", cli), ("custom_field_changed", cli)]


@pytest.mark.parametrize(("args", "error"), [
    (["--priority", "critical"], "priority 'critical' is not one of low, normal, high, urgent"),
    (["--subject", " "], "a subject needs text"),
    (["--custom", "order"], "--custom takes KEY=VALUE"),
    ([], "field takes at least one of"),
])
def test_the_cli_field_command_refuses_a_bad_value_with_a_one_line_error(
        cli_store: Path, capsys: pytest.CaptureFixture[str], args: list[str], error: str) -> None:
    code = main(["field", "1", *args])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1 and error in err
    assert main(["ticket", "1", "--json"]) == 0
    ticket = json.loads(capsys.readouterr().out)
    assert (ticket["priority"], ticket["subject"], field_events(ticket)) == (None, SUBJECT, [])
