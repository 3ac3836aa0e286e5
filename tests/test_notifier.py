"""The notifier and the two shared views: R9-R16, R18, R19."""

from __future__ import annotations

import pytest

from tests.conftest import T0, ingest, later, msg
from warehouse import queries
from warehouse.store import Store
from warehouse.tickets import SYSTEM, change_tags, claim, ensure_agent, set_status
from warehouse.views import save_personal_view

AGENT = "U_AGENT"


def notifier(store: Store, tab: str = "assigned", page: int = 1, agent: str = AGENT) -> dict:
    return store.read(lambda c: queries.notifier(c, agent, tab, page))


def ids(result: dict) -> list[int]:
    return [t["id"] for t in result["tickets"]]


def new_tickets(store: Store, n: int) -> None:
    ingest(store, *[msg(user=f"u{i}", name=f"User {i}", at=later(i / 60)) for i in range(n)])


@pytest.fixture
def agent(store: Store) -> int:
    return store.write(lambda c: ensure_agent(c, AGENT, "Ada"))


def test_r10_the_notifier_opens_on_assigned_to_you(store: Store, agent: int) -> None:
    assert notifier(store)["tab"] == "assigned"


def test_r11_assigned_to_you_lists_new_or_open_tickets_until_their_status_changes(store: Store, agent: int) -> None:
    new_tickets(store, 2)
    store.write(lambda c: claim(c, 1, agent))
    store.write(lambda c: claim(c, 2, agent))
    assert ids(notifier(store)) == [2, 1]
    store.write(lambda c: set_status(c, 1, "pending", SYSTEM))
    assert ids(notifier(store)) == [2]


def test_r12_unassigned_lists_every_social_ticket_with_no_assignee_whatever_its_status(store: Store) -> None:
    new_tickets(store, 3)
    store.write(lambda c: set_status(c, 2, "solved", SYSTEM))
    assert sorted(ids(notifier(store, "unassigned"))) == [1, 2, 3]


def test_r13_rows_show_status_channel_requester_and_conversation_status(store: Store, agent: int) -> None:
    new_tickets(store, 1)
    ingest(store, msg(user="u9", name="Bo"), msg(user="u9", name="Bo"))
    rows = {t["id"]: t for t in notifier(store, "unassigned")["tickets"]}
    assert rows[1]["conversation_status"] == "Started a new chat"
    assert rows[2]["conversation_status"] == "Replied to the conversation"
    assert (rows[1]["status"], rows[1]["channel"], rows[1]["requester"]["name"]) == ("new", "whatsapp", "User 0")


def test_r14_the_order_is_fixed_most_recently_updated_first(store: Store) -> None:
    new_tickets(store, 3)
    ingest(store, msg(user="u0", name="User 0"))  # ticket 1 moves to the top
    assert ids(notifier(store, "unassigned")) == [1, 3, 2]


def test_r15_the_red_dot_shows_while_new_unassigned_tickets_wait(store: Store, agent: int) -> None:
    assert notifier(store)["red_dot"] is False
    new_tickets(store, 1)
    assert notifier(store)["red_dot"] is True
    store.write(lambda c: claim(c, 1, agent))
    assert notifier(store)["red_dot"] is False


def test_r16_twenty_tickets_show_no_load_more(store: Store) -> None:
    new_tickets(store, 20)
    page = notifier(store, "unassigned")
    assert (len(page["tickets"]), page["has_more"]) == (20, False)


def test_r16_twenty_one_tickets_show_load_more_and_the_view_has_the_rest(store: Store) -> None:
    new_tickets(store, 21)
    page = notifier(store, "unassigned")
    assert (len(page["tickets"]), page["has_more"]) == (20, True)
    view_page2 = store.read(lambda c: queries.view(c, "Unassigned social messaging tickets", AGENT, 2))
    assert len(view_page2["tickets"]) == 1 and view_page2["has_more"] is False


def test_r16_r18_your_view_matches_the_assigned_tab(store: Store, agent: int) -> None:
    new_tickets(store, 3)
    for t in (1, 3):
        store.write(lambda c, t=t: claim(c, t, agent))
    view = store.read(lambda c: queries.view(c, "Your social messaging tickets", AGENT))
    assert ids(view) == ids(notifier(store)) == [3, 1]


def test_r9_removing_messaging_support_removes_the_ticket_from_both_tabs_and_views(store: Store, agent: int) -> None:
    new_tickets(store, 2)
    store.write(lambda c: claim(c, 1, agent))
    store.write(lambda c: change_tags(c, 1, [], ["messaging_support"], SYSTEM))
    store.write(lambda c: change_tags(c, 2, [], ["messaging_support"], SYSTEM))
    assert ids(notifier(store)) == [] and ids(notifier(store, "unassigned")) == []
    for title in ("Your social messaging tickets", "Unassigned social messaging tickets"):
        assert ids(store.read(lambda c, t=title: queries.view(c, t, AGENT))) == []
    store.write(lambda c: change_tags(c, 1, ["messaging_support"], [], SYSTEM))
    assert ids(notifier(store)) == [1]


def test_r9_removing_only_the_channel_tag_keeps_the_ticket_in_the_notifier(store: Store) -> None:
    new_tickets(store, 1)
    store.write(lambda c: change_tags(c, 1, [], ["whatsapp"], SYSTEM))
    assert ids(notifier(store, "unassigned")) == [1]


def test_r19_an_agent_saves_a_personal_view_of_social_tickets(store: Store, agent: int) -> None:
    ingest(store, msg(channel="line", account="L1", user="Uline", name="Lee"), msg(user="u1", name="Wa"))
    conditions = {"all": [{"field": "current_tags", "operator": "includes", "value": "messaging_support"},
                          {"field": "via", "operator": "is", "value": "line"}]}
    store.write(lambda c: save_personal_view(c, agent, "My LINE tickets", conditions))
    assert ids(store.read(lambda c: queries.view(c, "My LINE tickets", AGENT))) == [1]
    assert "My LINE tickets" not in [v["title"] for v in store.read(lambda c: queries.list_views(c, None))]


def test_an_unknown_tab_or_view_is_a_clear_error(store: Store) -> None:
    with pytest.raises(ValueError, match="unknown tab"):
        notifier(store, "everything")
    with pytest.raises(ValueError, match="no view named"):
        store.read(lambda c: queries.view(c, "Nope"))


def test_a_view_on_a_tag_matches_that_tag_only_not_a_longer_one_r9(store: Store) -> None:
    """Views select by tag on the tickets' tag text (" a b c "): `vip` is not `vip2`, nor the end of `not_vip`."""
    from warehouse.conditions import Context, compile_conditions
    ingest(store, msg(user="33600000001"), msg(user="33600000002"), msg(user="33600000003"))
    for tid, tag in ((1, "vip"), (2, "vip2"), (3, "not_vip")):
        store.write(lambda c, t=tid, g=tag: change_tags(c, t, [g], [], SYSTEM))
    compiled = compile_conditions({"all": [{"field": "current_tags", "operator": "includes", "value": "vip"}]},
                                  Context(now=T0))
    query = f"SELECT id FROM tickets t WHERE {compiled.sql} ORDER BY id"
    assert store.read(lambda c: c.execute(query, compiled.params).fetchall()) == [(1,)]
    store.write(lambda c: change_tags(c, 1, [], ["vip"], SYSTEM))
    assert store.read(lambda c: c.execute(query, compiled.params).fetchall()) == []


def test_a_tag_with_a_quote_selects_its_tickets_and_injects_nothing_r9(store: Store) -> None:
    from warehouse.conditions import Context, compile_conditions
    ingest(store, msg(user="33600000001"))
    store.write(lambda c: change_tags(c, 1, ["o'hara"], [], SYSTEM))
    compiled = compile_conditions({"all": [{"field": "current_tags", "operator": "includes", "value": "o'hara"}]},
                                  Context(now=T0))
    assert store.read(lambda c: c.execute(f"SELECT id FROM tickets t WHERE {compiled.sql}",
                                          compiled.params).fetchall()) == [(1,)]


@pytest.mark.parametrize(("operator", "value", "expected"), [
    ("less_than", "pending", ["new", "open"]), ("less_than", "new", []),
    ("greater_than", "open", ["pending", "hold", "solved", "closed"]), ("greater_than", "closed", [])])
def test_views_compare_statuses_in_zendesks_order(store: Store, operator: str, value: str,
                                                  expected: list[str]) -> None:
    """Status conditions "less than" / "greater than" follow new < open < pending < hold < solved < closed."""
    new_tickets(store, 6)
    for tid, status in zip(range(2, 7), ["open", "pending", "hold", "solved", "closed"], strict=True):
        store.write(lambda c, tid=tid, status=status: set_status(c, tid, status, SYSTEM))
    view = {"title": "By status", "conditions": {"all": [{"field": "status", "operator": operator, "value": value}]}}
    found = store.read(lambda c: queries.run_view(c, view, None, per_page=50))
    assert sorted(t["status"] for t in found["tickets"]) == sorted(expected)
