"""What a conversation carries besides plain messages (issue 12): users known by two ids, reactions,
ad referrals, the business's messages sent from elsewhere, edits, unsent messages, played and priced
replies. At the store, through the one ingestion path.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import T0, ingest, later, msg
from warehouse import open_store, queries, register_accounts
from warehouse import outbox as box
from warehouse.ingest import Delivery, IngestResult, ingest_batch
from warehouse.model import InboundMessage, MessageEdit, MessageWithdrawn, StatusUpdate
from warehouse.store import Store
from warehouse.tickets import ensure_agent, reply

BSUID = "US.13491208655302741918"
OTHER_BSUID = "US.98765432109876543210"
THIRD_BSUID = "US.55555555555555555555"
PHONE = "33612345678"


def rows(store: Store, sql: str, *params: Any) -> list[tuple]:
    return store.read(lambda c: c.execute(sql, list(params)).fetchall())


def bodies(store: Store, ticket: int = 1) -> list[str]:
    return [c["body"] for c in queries.ticket(store.connection.cursor(), ticket)["comments"]]


def event_kinds(store: Store, ticket: int = 1) -> list[str]:
    return [e["kind"] for e in queries.ticket(store.connection.cursor(), ticket)["events"]]


def sent_reply(store: Store, text: str, platform_id: str) -> int:
    """A reply of ours on ticket 1, recorded as sent with `platform_id`."""
    agent = store.write(lambda c: ensure_agent(c, "U1", "Ada"))
    oid = store.write(lambda c: reply(c, 1, agent, text))["outbox_id"]
    store.write(lambda c: box.record(c, [box.Outcome(oid, 1, "sent", platform_id)]))
    return oid


# -- customers without a phone number: WhatsApp business-scoped user ids ---------------------------

def test_a_customer_known_only_by_a_business_scoped_id_gets_a_ticket(store: Store) -> None:
    result = ingest(store, msg(user=BSUID, text="Hi", name="Ana", username="ana.b"))
    assert result.created_tickets == [1]
    assert rows(store, "SELECT recipient FROM tickets") == [(BSUID,)]
    assert rows(store, "SELECT name, phone FROM users WHERE role = 'end-user'") == [("Ana", None)]


def test_a_customer_who_later_shows_both_ids_is_the_same_user_on_the_same_ticket(store: Store) -> None:
    ingest(store, msg(user="33612345678", text="First", at=later(0)))
    result = ingest(store, replace(msg(user=BSUID, text="Second", at=later(1)), aliases=("33612345678",)))
    assert result.updated_tickets == [1] and result.created_tickets == []
    assert rows(store, "SELECT count(*) FROM users WHERE role = 'end-user'") == [(1,)]
    assert sorted(rows(store, "SELECT platform_user_id FROM identities")) == [("33612345678",), (BSUID,)]
    # Replies go to the id the customer now writes from.
    assert rows(store, "SELECT recipient FROM tickets") == [(BSUID,)]
    assert bodies(store) == ["First", "Second"]


def test_the_phone_alone_finds_a_user_first_known_by_both(store: Store) -> None:
    ingest(store, replace(msg(user=BSUID, text="First", at=later(0)), aliases=("33612345678",)))
    ingest(store, msg(user=BSUID, text="Again", at=later(1)))
    assert rows(store, "SELECT count(*) FROM tickets") == [(1,)]


def one_round(store: Store, *messages: InboundMessage) -> list[IngestResult]:
    """The messages as one round of the log gives them to ingestion: one transaction, one delivery each.
    (Through the log a round that fails is split up and tried again, which would hide the failure.)"""
    return store.write(lambda c: ingest_batch(c, [Delivery([m], "whatsapp") for m in messages]))


def by(user: str, text: str, hours: float, *aliases: str) -> InboundMessage:
    """A message from `user`, who names `aliases` as their other ids; each id comes with a profile of its own."""
    return replace(msg(user=user, text=text, at=later(hours), name=f"Customer {user}"), aliases=aliases)


def test_two_new_ids_naming_the_same_phone_in_one_round_are_one_customer_on_one_ticket(store: Store) -> None:
    """As when they come in two rounds: the second id joins the user the phone belongs to by then."""
    results = one_round(store, by(BSUID, "First", 0, PHONE), by(OTHER_BSUID, "Second", 1, PHONE))
    assert sum(r.stored for r in results) == 2
    assert rows(store, "SELECT count(*) FROM users WHERE role = 'end-user'") == [(1,)]
    assert sorted(rows(store, "SELECT platform_user_id, user_id FROM identities")) == [
        (PHONE, 1), (BSUID, 1), (OTHER_BSUID, 1)]
    # One conversation, answered on the id the customer wrote from last.
    assert rows(store, "SELECT status, recipient, end_user_messages FROM tickets") == [("open", OTHER_BSUID, 2)]
    assert bodies(store) == ["First", "Second"]


def snapshot(store: Store) -> dict[str, Any]:
    """What agents and reports see of end users and their tickets, without times of processing."""
    def q(sql: str) -> list[tuple]:
        return rows(store, sql)
    events = q("SELECT ticket_id, user_id, kind, actor_type, actor_id, data FROM events")
    return {"users": q("SELECT id, role, name, phone, social_messaging_info::VARCHAR FROM users ORDER BY id"),
            "identities": q("SELECT channel, account, platform_user_id, user_id, profile::VARCHAR FROM identities "
                            "ORDER BY ALL"),
            "tickets": q("SELECT id, status, requester_id, account, recipient, subject, end_user_messages, "
                         "created_at, last_end_user_message_at, last_end_user_text, channel_info::VARCHAR "
                         "FROM tickets ORDER BY id"),
            "comments": q("SELECT id, ticket_id, author_id, body FROM comments ORDER BY id"),
            "events": sorted(events, key=repr)}


@pytest.mark.parametrize(("before", "batch"), [
    pytest.param([], [(BSUID, 0, PHONE), (OTHER_BSUID, 1, PHONE)], id="two new ids naming the same phone"),
    pytest.param([], [(BSUID, 0, PHONE), (OTHER_BSUID, 1, PHONE), (THIRD_BSUID, 2, PHONE)], id="three of them"),
    pytest.param([(PHONE, -1)], [(BSUID, 0, PHONE), (OTHER_BSUID, 1, PHONE)], id="the phone known from before"),
    pytest.param([(PHONE, -1)], [(BSUID, 0, PHONE), (PHONE, 1), (OTHER_BSUID, 2, PHONE)],
                 id="the phone known from before and writing too"),
    pytest.param([], [(PHONE, 0), (BSUID, 1, PHONE)], id="the phone writes, then an id naming it"),
    pytest.param([], [(BSUID, 0, PHONE), (PHONE, 1)], id="an id naming the phone, then the phone"),
    pytest.param([], [(BSUID, 0, PHONE), (OTHER_BSUID, 1, PHONE), (BSUID, 2, PHONE)],
                 id="the first id writes again after the second"),
])
def test_one_round_stores_what_the_same_messages_store_one_round_each(
        store: Store, tmp_path: Any, before: list[tuple[Any, ...]], batch: list[tuple[Any, ...]]) -> None:
    """A round of the log is only a way to go faster: which messages happen to share one must not change
    who the customers are, nor their tickets."""
    apart = open_store(tmp_path / "apart.duckdb")
    try:
        register_accounts(apart, [{"channel": c, "account": a, "name": n, "info": json.loads(i)} for c, a, n, i in
                                  rows(store, "SELECT channel, account, name, info FROM accounts ORDER BY ALL")])
        for user, hours, *aliases in before:
            one_round(store, by(user, f"before {hours}", hours, *aliases))
            one_round(apart, by(user, f"before {hours}", hours, *aliases))
        messages = [by(user, f"at {hours}", hours, *aliases) for user, hours, *aliases in batch]
        one_round(store, *messages)
        for m in messages:
            one_round(apart, m)
        assert snapshot(store) == snapshot(apart)
    finally:
        apart.close()


# -- reactions and referrals -----------------------------------------------------------------------

def test_a_reaction_says_which_of_the_customers_messages_it_is_to(store: Store) -> None:
    ingest(store, msg(text="My parcel is late", message_id="wamid.1", at=later(0)))
    ingest(store, replace(msg(text="", message_id="wamid.2", at=later(1)), reaction="👍", reply_to="wamid.1"))
    assert bodies(store)[-1] == "reacted 👍 to: “My parcel is late”"


def test_a_reaction_to_our_reply_quotes_the_reply(store: Store, frozen_clock: Any) -> None:
    ingest(store, msg(text="Help", at=T0))
    sent_reply(store, "It ships tomorrow", "wamid.out1")
    ingest(store, replace(msg(text="", message_id="wamid.r", at=later(1)), reaction="❤️", reply_to="wamid.out1"))
    assert bodies(store)[-1] == "reacted ❤️ to: “It ships tomorrow”"


def test_a_removed_reaction_and_a_reaction_to_an_unknown_message_still_read_plainly(store: Store) -> None:
    ingest(store, replace(msg(text="", message_id="r1", at=later(0)), reaction="👍", reply_to="wamid.nowhere"),
           replace(msg(text="", message_id="r2", at=later(1)), reaction="", reply_to="wamid.nowhere"))
    assert bodies(store) == ["reacted 👍 to a message", "removed their reaction from a message"]


def test_an_ad_referral_goes_into_the_tickets_channel_info(store: Store) -> None:
    referral = {"referral": {"source_type": "ad", "source_id": "120200", "headline": "Winter sale"}}
    ingest(store, replace(msg(text="Is this on sale?", at=later(0)), channel_info=referral))
    info = queries.ticket(store.connection.cursor(), 1)["fields"]["social_messaging_channel_info"]
    assert info["referral"]["source_id"] == "120200" and info["account_name"] == "Paris support"  # R8 kept


def test_a_referral_on_a_later_message_is_added_to_the_open_ticket(store: Store) -> None:
    ingest(store, msg(text="Hi", at=later(0)))
    ingest(store, replace(msg(text="About the ad", at=later(1)), channel_info={"referral": {"ref": "spring"}}))
    info = queries.ticket(store.connection.cursor(), 1)["fields"]["social_messaging_channel_info"]
    assert info["referral"] == {"ref": "spring"} and info["phone_number_id"] == "PN1"


# -- what the business sends from elsewhere ---------------------------------------------------------

def test_a_message_the_business_sent_from_the_app_joins_the_customers_ticket(store: Store) -> None:
    ingest(store, msg(text="Hello?", at=later(0)))
    result = ingest(store, replace(msg(text="We are on it", message_id="echo1", at=later(1)),
                                   business_origin="the WhatsApp Business app"))
    assert result.created_tickets == [] and rows(store, "SELECT count(*) FROM tickets") == [(1,)]
    [last] = queries.ticket(store.connection.cursor(), 1)["comments"][-1:]
    assert (last["body"], last["author"], last["author_role"], last["public"]) == (
        "We are on it", "Paris support", "agent", True)
    assert rows(store, "SELECT origin FROM comments WHERE platform_message_id = 'echo1'") == [
        ("the WhatsApp Business app",)]


def test_the_echo_of_our_own_reply_changes_nothing(store: Store, frozen_clock: Any) -> None:
    ingest(store, msg(text="Help", at=T0))
    sent_reply(store, "On it", "wamid.ours")
    before = (bodies(store), event_kinds(store))
    ingest(store, replace(msg(text="On it", message_id="wamid.ours", at=later(1)),
                          business_origin="the WhatsApp Business app"))
    assert (bodies(store), event_kinds(store)) == before


def test_a_business_message_to_a_customer_without_a_ticket_opens_none(store: Store) -> None:
    result = ingest(store, replace(msg(text="Promo", message_id="echo2"), business_origin="the app"))
    assert result.created_tickets == [] and rows(store, "SELECT count(*) FROM tickets") == [(0,)]


# -- edits and unsent messages ---------------------------------------------------------------------

def edit(message_id: str, text: str, edit_id: str = "e1") -> MessageEdit:
    return MessageEdit("whatsapp", "PN1", "33612345678", message_id, edit_id, later(2), text)


def test_an_edit_keeps_the_original_and_records_the_new_text(store: Store) -> None:
    ingest(store, msg(text="My order is 1234", message_id="wamid.1", at=later(0)))
    ingest(store, edit("wamid.1", "My order is 1243"))
    assert bodies(store) == ["My order is 1234"]
    [edited] = [e for e in queries.ticket(store.connection.cursor(), 1)["events"] if e["kind"] == "comment_edited"]
    assert edited["data"]["text"] == "My order is 1243" and edited["actor"]["type"] == "end-user"


def test_the_same_edit_twice_is_recorded_once(store: Store) -> None:
    ingest(store, msg(text="a", message_id="wamid.1", at=later(0)))
    ingest(store, edit("wamid.1", "b"))
    result = ingest(store, edit("wamid.1", "b"))
    assert result.duplicates == 1 and event_kinds(store).count("comment_edited") == 1


def test_an_edit_of_a_message_never_received_is_kept_as_a_message(store: Store) -> None:
    ingest(store, edit("wamid.lost", "The right address is 3 rue Blanche"))
    assert bodies(store) == ["✏️ edited a message: The right address is 3 rue Blanche"]


def test_an_unsent_message_is_kept_and_marked_withdrawn(store: Store) -> None:
    ingest(store, msg(text="Oops, wrong chat", message_id="wamid.1", at=later(0)))
    withdrawn = MessageWithdrawn("whatsapp", "PN1", "33612345678", "wamid.1", later(1))
    ingest(store, withdrawn)
    ingest(store, withdrawn)
    assert bodies(store) == ["Oops, wrong chat"]
    assert rows(store, "SELECT withdrawn_at IS NOT NULL FROM comments") == [(True,)]
    assert event_kinds(store).count("comment_withdrawn") == 1


# -- receipts: played, pricing ---------------------------------------------------------------------

@pytest.fixture
def replied(store: Store, frozen_clock: Any) -> int:
    ingest(store, msg(text="Voice note please", at=T0))
    return sent_reply(store, "🎤", "wamid.voice")


def status(state: str, **kw: Any) -> StatusUpdate:
    return StatusUpdate("whatsapp", "PN1", "33612345678", state, later(2), message_id="wamid.voice", **kw)  # type: ignore[arg-type]


def test_played_comes_after_read_and_never_goes_back(store: Store, replied: int) -> None:
    ingest(store, status("played"))
    ingest(store, status("read"))
    assert rows(store, "SELECT state, read_at IS NOT NULL, played_at IS NOT NULL FROM outbox") == [
        ("played", True, True)]


def test_whatsapps_pricing_is_kept_on_the_reply(store: Store, replied: int) -> None:
    pricing = {"billable": False, "pricing_model": "PMP", "category": "service"}
    ingest(store, status("sent", pricing=pricing))
    assert json.loads(rows(store, "SELECT pricing FROM outbox")[0][0]) == pricing


def test_pricing_on_a_receipt_that_beats_the_send_is_kept_too(store: Store, frozen_clock: Any) -> None:
    ingest(store, msg(text="Hi", at=T0))
    pricing = {"billable": True, "pricing_model": "PMP", "category": "utility"}
    ingest(store, StatusUpdate("whatsapp", "PN1", "33612345678", "delivered", later(2), message_id="wamid.early",
                               pricing=pricing))
    sent_reply(store, "Hello", "wamid.early")
    assert rows(store, "SELECT state, pricing IS NOT NULL FROM outbox") == [("delivered", True)]


# -- a reply the platform took though its send seemed to fail (issue 13) ------------------------------

def test_a_status_naming_our_outbox_row_marks_a_reply_sent_that_we_were_about_to_send_again(
        store: Store, frozen_clock: Any) -> None:
    """The send timed out after WhatsApp took it; its status webhook (biz_opaque_callback_data) comes first."""
    ingest(store, msg(text="Help", at=T0))
    agent = store.write(lambda c: ensure_agent(c, "U1", "Ada"))
    oid = store.write(lambda c: reply(c, 1, agent, "On its way"))["outbox_id"]
    store.write(lambda c: box.record(c, [box.Outcome(oid, 1, "retry", reason="timeout", retry_in=30)]))
    ingest(store, StatusUpdate("whatsapp", "PN1", "33612345678", "sent", later(1), message_id="wamid.took",
                               outbox_id=oid))
    assert rows(store, "SELECT state, platform_message_id FROM outbox") == [("sent", "wamid.took")]
    assert store.read(lambda c: box.due(c, frozen_clock[0] + timedelta(hours=1))) == []


def test_an_edit_in_the_same_body_as_its_original_is_an_edit(store: Store) -> None:
    ingest(store, msg(text="Hello wrold", message_id="wamid.1", at=later(0)), edit("wamid.1", "Hello world"))
    assert bodies(store) == ["Hello wrold"] and event_kinds(store).count("comment_edited") == 1


def test_a_new_customer_who_shows_both_ids_is_found_later_by_the_phone_alone(store: Store) -> None:
    ingest(store, replace(msg(user=BSUID, text="First", at=later(0)), aliases=("33612345678",)))
    result = ingest(store, msg(user="33612345678", text="From the phone", at=later(1)))
    assert result.created_tickets == [] and rows(store, "SELECT count(*) FROM users WHERE role = 'end-user'") == [(1,)]


def test_the_ticket_keeps_the_start_of_the_customers_last_message_for_the_rows(store: Store) -> None:
    """What every row of the notifier shows (issue 11), kept on the ticket: a message delivered late does not
    replace the newer one."""
    ingest(store, msg(text="Where is my parcel? " + "x" * 300, message_id="m2", at=later(1)))
    ingest(store, msg(text="Hello", message_id="m1", at=later(0)))
    [(text,)] = rows(store, "SELECT last_end_user_text FROM tickets")
    assert text.startswith("Where is my parcel?") and len(text) == 200
    [row] = store.read(lambda c: queries.notifier(c, None, "unassigned"))["tickets"]
    assert row["preview"] == text
