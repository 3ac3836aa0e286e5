"""Macros from the reply modal: preview, apply, and the messaging window (R21, R22, B1)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import msg
from warehouse import queries
from warehouse.desk import Desk
from warehouse.ingest import Delivery
from warehouse.rules import RuleSet, apply_macro, load_rules, preview_macro, trigger_runner
from warehouse.store import Store
from warehouse.tickets import OperationError, ensure_agent

START = datetime(2026, 11, 24, 9, 0)


@pytest.fixture
def rules() -> RuleSet:
    return load_rules(None)


@pytest.fixture
def agent(store: Store) -> int:
    return store.write(lambda c: ensure_agent(c, "UA", "Ada Lovelace"))


def open_ticket(store: Store, rules: RuleSet, frozen: list[datetime], hours_ago: float = 1, **kw: Any) -> None:
    frozen[0] = START + timedelta(hours=hours_ago)
    Desk(store, trigger_runner(rules)).ingest_sync(Delivery([msg(at=START, name="Amélie Dupont", **kw)]))


def test_r21_the_preview_fills_the_reply_modal(store: Store, rules: RuleSet, agent: int,
                                               frozen_clock: list[datetime]) -> None:
    open_ticket(store, rules, frozen_clock)
    p = store.read(lambda c: preview_macro(c, rules, "Ask for the order number", 1, agent))
    assert p["comment"] == ("Hello Amélie, could you send me your order number so I can look into it? Ada")
    assert (p["status"], p["tags_added"], p["comment_blocked"]) == ("pending", ["awaiting_order_number"], None)
    assert store.read(lambda c: queries.ticket(c, 1))["status"] == "new"  # nothing written


def test_r21_applying_a_macro_replies_sets_status_and_tags_with_the_macro_as_actor(
        store: Store, rules: RuleSet, agent: int, frozen_clock: list[datetime]) -> None:
    open_ticket(store, rules, frozen_clock)
    result = store.write(lambda c: apply_macro(c, rules, "ask for the order number", 1, agent))
    assert result["reply"]["state"] == "queued" and result["failed"] == []
    t = store.read(lambda c: queries.ticket(c, 1))
    assert (t["status"], "awaiting_order_number" in t["tags"]) == ("pending", True)
    assert t["comments"][-1]["author"] == "Ada Lovelace"
    applied = [e for e in t["events"] if e["kind"] == "macro_applied"]
    assert applied[0]["actor"] == {"type": "agent", "id": str(agent)}
    changed = [e for e in t["events"] if e["kind"] == "status_changed"][-1]
    assert changed["actor"] == {"type": "rule", "id": "macro:Ask for the order number"}


def test_r22_outside_the_whatsapp_window_the_preview_warns_and_the_reply_fails_as_an_event(
        store: Store, rules: RuleSet, agent: int, frozen_clock: list[datetime]) -> None:
    open_ticket(store, rules, frozen_clock, hours_ago=25)
    p = store.read(lambda c: preview_macro(c, rules, "Solve and thank", 1, agent))
    assert p["comment_blocked"].startswith("The 24-hour messaging window is closed")
    result = store.write(lambda c: apply_macro(c, rules, "Solve and thank", 1, agent))
    assert result["reply"]["state"] == "failed"
    t = store.read(lambda c: queries.ticket(c, 1))
    assert any(e["kind"] == "reply_failed" for e in t["events"])
    assert t["status"] == "solved"  # the ticket update itself goes through, as in Zendesk


def test_b1_the_wechat_window_is_48_hours(store: Store, rules: RuleSet, agent: int,
                                          frozen_clock: list[datetime]) -> None:
    open_ticket(store, rules, frozen_clock, hours_ago=30, channel="wechat", account="gh_1", user="oABC")
    assert store.read(lambda c: preview_macro(c, rules, "Solve and thank", 1, agent))["comment_blocked"] is None


def test_the_modal_can_apply_the_rest_of_a_macro_after_editing_its_comment(
        store: Store, rules: RuleSet, agent: int, frozen_clock: list[datetime]) -> None:
    open_ticket(store, rules, frozen_clock)
    desk = Desk(store, trigger_runner(rules))
    asyncio.run(desk.reply(1, agent, "My own words", status="pending", before=lambda c: apply_macro(
        c, rules, "Ask for the order number", 1, agent, comment=False, skip_fields=("status",))))
    t = store.read(lambda c: queries.ticket(c, 1))
    assert [c["body"] for c in t["comments"] if c["author"] == "Ada Lovelace"] == ["My own words"]
    assert "awaiting_order_number" in t["tags"] and t["status"] == "pending"


def test_an_unknown_macro_is_a_clear_error(store: Store, rules: RuleSet, agent: int,
                                           frozen_clock: list[datetime]) -> None:
    open_ticket(store, rules, frozen_clock)
    with pytest.raises(OperationError, match="no macro named 'Nope'"):
        store.write(lambda c: apply_macro(c, rules, "Nope", 1, agent))
