"""A trigger and a macro exported from Zendesk's API load unchanged and act as in Zendesk (R3, R21)."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import msg
from warehouse import queries
from warehouse.desk import Desk
from warehouse.ingest import Delivery
from warehouse.rules import RuleSet, apply_macro, load_rules, trigger_runner
from warehouse.store import Store
from warehouse.tickets import SYSTEM, ensure_agent, set_status

FIXTURES = Path(__file__).parent / "fixtures" / "zendesk"
TRIGGER = "Customer follow-up: raise priority and route to Tier 2"
MACRO = "Shipping::Where is my order"
START = datetime(2026, 11, 24, 9, 0)


@pytest.fixture
def rules(tmp_path: Path) -> RuleSet:
    for name in ("trigger.json", "macro.json"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    return load_rules(tmp_path)


def deliver(store: Store, rules: RuleSet, hours: float) -> None:
    Desk(store, trigger_runner(rules)).ingest_sync(Delivery([msg(at=START + timedelta(hours=hours),
                                                                 name="Amélie Dupont")]))


def ticket(store: Store) -> dict[str, Any]:
    return store.read(lambda c: queries.ticket(c, 1))


def fired(t: dict[str, Any]) -> list[str]:
    """The Zendesk trigger's firings (the shipped triage announcement fires on every create too)."""
    return [e["data"]["rule"] for e in t["events"] if e["kind"] == "trigger_fired" and e["data"]["rule"] == TRIGGER]


def test_the_exports_load_unchanged_with_their_zendesk_metadata(rules: RuleSet) -> None:
    trigger = rules.find(TRIGGER, "trigger")
    raw = json.loads((FIXTURES / "trigger.json").read_text())["trigger"]
    assert trigger.raw == raw and trigger.id == "360101234567"
    assert rules.find("360087654321", "macro").title == MACRO


def test_the_trigger_acts_when_the_customer_writes_on_a_waiting_ticket(store: Store, rules: RuleSet,
                                                                      frozen_clock: list[datetime]) -> None:
    deliver(store, rules, 0)
    assert ticket(store)["priority"] is None  # created, not changed: the trigger waits for an update
    store.write(lambda c: set_status(c, 1, "pending", SYSTEM))
    deliver(store, rules, 1)
    t = ticket(store)
    assert (t["priority"], t["group_id"], "customer_followup" in t["tags"]) == ("high", "360004455667", True)
    note = t["comments"][-1]
    assert (note["public"], note["body"]) == (False, "Amélie Dupont wrote again on WhatsApp; priority raised.")
    assert fired(t) == [TRIGGER]


def test_the_trigger_does_not_act_when_the_status_did_not_change(store: Store, rules: RuleSet,
                                                                 frozen_clock: list[datetime]) -> None:
    deliver(store, rules, 0)
    deliver(store, rules, 0.1)  # new -> open: "status changed to open", fires
    store.write(lambda c: c.execute("UPDATE tickets SET priority = NULL WHERE id = 1"))
    deliver(store, rules, 0.2)  # already open: no status change in this update
    assert fired(ticket(store)) == [TRIGGER]


def test_the_macro_acts_as_in_zendesk(store: Store, rules: RuleSet, frozen_clock: list[datetime]) -> None:
    deliver(store, rules, 0)
    agent = store.write(lambda c: ensure_agent(c, "UA", "Ada Lovelace"))
    store.write(lambda c: apply_macro(c, rules, MACRO, 1, agent))
    t = ticket(store)
    assert t["comments"][-1]["body"] == ("Hi Amélie,\nCould you send us your order number? We'll check where your "
                                         "parcel is.\nAda Lovelace")
    assert t["comments"][-1]["public"] is True
    assert t["status"] == "pending" and {"shipping", "wismo"} <= set(t["tags"])
    assert t["fields"]["360001112223"] == "order_status"


def via_trigger(tmp_path: Path, condition: dict[str, Any]) -> RuleSet:
    """A Zendesk trigger export selecting a channel the way real exports do, with `via_id`."""
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "via.json").write_text(json.dumps({"trigger": {
        "id": 360200000001, "title": "Tag by via", "active": True,
        "conditions": {"all": [{"field": "update_type", "operator": "is", "value": "Create"}, condition]},
        "actions": [{"field": "current_tags", "value": "via_matched"}]}}))
    return load_rules(tmp_path / "rules")


@pytest.mark.parametrize(("value", "channel", "other"), [
    ("74", "whatsapp", "line"), (74, "whatsapp", "line"), ("whatsapp", "whatsapp", "line"),
    ("72", "line", "whatsapp"), ("73", "wechat", "x"), ("wechat", "wechat", "x"),
    ("41", "messenger", "whatsapp"), ("sunshine_conversations_facebook_messenger", "messenger", "x"),
    ("26", "x", "messenger"), ("88", "x", "wechat"),
])
def test_zendesk_via_id_conditions_select_the_channel_issue_13(store: Store, tmp_path: Path, value: Any,
                                                               channel: str, other: str) -> None:
    rules = via_trigger(tmp_path, {"field": "via_id", "operator": "is", "value": value})
    desk = Desk(store, trigger_runner(rules))
    desk.ingest_sync(Delivery([msg(channel=channel, account="A1", user="u1"),
                               msg(channel=other, account="A2", user="u2")]))
    tags = {t["channel"]: t["tags"] for t in (store.read(lambda c, i=i: queries.ticket(c, i)) for i in (1, 2))}
    assert "via_matched" in tags[channel] and "via_matched" not in tags[other]


def test_a_via_id_of_a_channel_we_do_not_have_matches_nothing_and_its_negation_everything(
        store: Store, tmp_path: Path) -> None:
    for condition, tagged in (({"field": "via_id", "operator": "is", "value": 4}, False),
                              ({"field": "via_id", "operator": "is_not", "value": "mail"}, True)):
        rules = via_trigger(tmp_path, condition)
        Desk(store, trigger_runner(rules)).ingest_sync(Delivery([msg(user=f"u{tagged}")]))
        (tags,) = store.read(lambda c: c.execute("SELECT tags FROM tickets ORDER BY id DESC LIMIT 1").fetchone())
        assert ("via_matched" in tags) is tagged


def test_a_via_id_that_is_no_zendesk_value_is_refused_with_its_place(tmp_path: Path) -> None:
    from warehouse.conditions import ConditionError, Context, compile_conditions
    with pytest.raises(ConditionError, match=r"all\[0\]: via_id 'what\?' is not a Zendesk via id"):
        compile_conditions({"all": [{"field": "via_id", "operator": "is", "value": "what?"}]}, Context(now=START))
