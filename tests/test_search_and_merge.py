"""Search (R25-R27), merging end users (R5) and merge suggestions (B5)."""

from __future__ import annotations

import pytest

from tests.conftest import ingest, msg
from warehouse import queries
from warehouse.store import Store
from warehouse.tickets import SYSTEM, OperationError, ensure_agent, merge_users, unmerge_user


def search(store: Store, q: str) -> dict:
    return store.read(lambda c: queries.search(c, q))


@pytest.mark.parametrize("typed", ["+33 6 12 34 56 78", "0033612345678", "33612345678", "+33612345678"])
def test_r25_a_user_is_found_by_phone_whatever_common_format_is_typed(store: Store, typed: str) -> None:
    ingest(store, msg(user="33612345678", name="Amélie", phone="+33612345678"))
    result = search(store, typed)
    assert [u["name"] for u in result["users"]] == ["Amélie"]
    assert result["users"][0]["ticket_ids"] == [1]


def test_r25_the_phone_search_lists_all_the_users_tickets(store: Store) -> None:
    ingest(store, msg(account="PN1"), msg(account="PN2"))
    store.write(lambda c: merge_users(c, 2, 1, SYSTEM))
    assert search(store, "+33612345678")["users"][0]["ticket_ids"] == [1, 2]


def test_r26_users_are_found_by_their_social_messaging_info(store: Store) -> None:
    ingest(store, msg(channel="x", account="X1", user="272953809", name="Nicolas", screen_name="nicpottier"))
    assert [u["id"] for u in search(store, "nicpottier")["users"]] == [1]


def test_r27_tickets_are_found_by_their_channel_info(store: Store) -> None:
    ingest(store, msg(account="PN1"), msg(account="PN2", user="4477001122"))
    assert [t["id"] for t in search(store, "Lyon support")["tickets"]] == [2]


def test_r5_merging_moves_identities_tickets_and_comments_and_leaves_a_tombstone(store: Store) -> None:
    ingest(store, msg(channel="messenger", account="PAGE", user="psid1", name="Amélie D"))
    ingest(store, msg(account="PN1", user="33612345678", name="Amélie", phone="+33612345678"))
    result = store.write(lambda c: merge_users(c, 2, 1, SYSTEM))
    assert result["tickets_moved"] == [2]
    cur = store.connection.cursor()
    survivor, tomb = queries.user(cur, 1), queries.user(cur, 2)
    assert survivor["ticket_ids"] == [1, 2]
    assert {i["channel"] for i in survivor["identities"]} == {"messenger", "whatsapp"}
    assert survivor["phone"] == "+33612345678"
    assert set(survivor["social_messaging_info"]) == {"messenger:PAGE", "whatsapp:PN1"}
    assert (tomb["merged_into"], tomb["identities"], tomb["ticket_ids"]) == (1, [], [])
    assert queries.ticket(cur, 2)["comments"][0]["author_id"] == 1


def test_r5_a_message_after_the_merge_lands_on_the_survivor(store: Store) -> None:
    ingest(store, msg(channel="messenger", account="PAGE", user="psid1"))
    ingest(store, msg(account="PN1", user="33612345678"))
    store.write(lambda c: merge_users(c, 2, 1, SYSTEM))
    ingest(store, msg(account="PN1", user="33612345678", text="again"))
    assert queries.ticket(store.connection.cursor(), 2)["requester"]["id"] == 1


def test_r5_merging_an_agent_a_user_into_itself_or_a_tombstone_fails(store: Store) -> None:
    ingest(store, msg(user="a"), msg(user="b"), msg(user="c"))
    agent = store.write(lambda c: ensure_agent(c, "U1"))
    for source, target, error in [(1, 1, "into itself"), (agent, 1, "agent"), (1, agent, "agent")]:
        with pytest.raises(OperationError, match=error):
            store.write(lambda c, s=source, t=target: merge_users(c, s, t, SYSTEM))
    store.write(lambda c: merge_users(c, 2, 1, SYSTEM))
    with pytest.raises(OperationError, match="already merged"):
        store.write(lambda c: merge_users(c, 2, 3, SYSTEM))


def test_r5_a_merge_can_be_undone_from_its_event(store: Store) -> None:
    ingest(store, msg(channel="messenger", account="PAGE", user="psid1", name="Amélie D"))
    ingest(store, msg(account="PN1", user="33612345678", name="Amélie"))
    before = queries.user(store.connection.cursor(), 1)
    store.write(lambda c: merge_users(c, 2, 1, SYSTEM))
    store.write(lambda c: unmerge_user(c, 2, SYSTEM))
    cur = store.connection.cursor()
    assert queries.user(cur, 2)["ticket_ids"] == [2] and queries.user(cur, 2)["merged_into"] is None
    after = queries.user(cur, 1)
    assert (after["ticket_ids"], after["phone"], after["social_messaging_info"]) == (
        before["ticket_ids"], before["phone"], before["social_messaging_info"])


def test_b5_accounts_sharing_a_phone_number_are_suggested_for_merging(store: Store) -> None:
    ingest(store, msg(account="PN1", user="33612345678"), msg(account="PN2", user="33612345678"))
    suggestions = queries.user(store.connection.cursor(), 1)["merge_suggestions"]
    assert [(s["id"], s["reason"]) for s in suggestions] == [(2, "same phone number")]
