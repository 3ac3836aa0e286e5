"""Channels become tickets: R1, R2, R4, R6, R7, R8, B4, and card redaction."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ingest, later, msg
from warehouse import queries
from warehouse.store import Store
from warehouse.tickets import SYSTEM, set_status


def tickets(store: Store) -> list[tuple]:
    return store.read(lambda c: c.execute(
        "SELECT id, status, requester_id, channel, account, tags, end_user_messages FROM tickets ORDER BY id"
    ).fetchall())


def test_r1_a_first_message_opens_a_new_unassigned_ticket(store: Store) -> None:
    result = ingest(store, msg(text="Where is my order?"))
    assert result.created_tickets == [1]
    t = queries.ticket(store.connection.cursor(), 1)
    assert (t["status"], t["assignee"]) == ("new", None)
    assert [c["body"] for c in t["comments"]] == ["Where is my order?"]


def test_r1_a_message_to_an_unsolved_ticket_is_added_to_it_and_reopens_it(store: Store) -> None:
    ingest(store, msg(at=later(0)))
    for status in ("pending", "hold"):
        store.write(lambda c, s=status: set_status(c, 1, s, SYSTEM))
        result = ingest(store, msg(at=later(1)))
        assert result.updated_tickets == [1]
        assert tickets(store)[0][1] == "open"
    assert len(tickets(store)) == 1


def test_r1_a_second_message_turns_a_new_ticket_open(store: Store) -> None:
    ingest(store, msg(at=later(0)))
    ingest(store, msg(at=later(1)))
    assert tickets(store)[0][1] == "open"
    assert tickets(store)[0][6] == 2


@pytest.mark.parametrize("status", ["solved", "closed"])
def test_r1_after_solved_or_closed_the_next_message_opens_a_new_ticket(store: Store, status: str) -> None:
    ingest(store, msg())
    store.write(lambda c: set_status(c, 1, status, SYSTEM))
    result = ingest(store, msg(text="one more thing"))
    assert result.created_tickets == [2]
    assert [t[1] for t in tickets(store)] == [status, "new"]


def test_r2_each_ticket_records_the_business_account_it_came_in_on(store: Store) -> None:
    ingest(store, msg(account="PN1"), msg(account="PN2"))
    assert [(t[3], t[4]) for t in tickets(store)] == [("whatsapp", "PN1"), ("whatsapp", "PN2")]


def test_r4_an_end_user_gets_one_account_per_business_account(store: Store) -> None:
    ingest(store, msg(account="PN1"), msg(account="PN1"), msg(account="PN2"))
    users = store.read(lambda c: c.execute("SELECT count(*) FROM users WHERE role = 'end-user'").fetchone()[0])
    assert users == 2
    assert [t[2] for t in tickets(store)] == [1, 2]


def test_r6_the_profile_keeps_what_channels_sent_and_the_phone_in_e164(store: Store) -> None:
    ingest(store, msg(user="33612345678", name="Amélie", phone="33 6 12 34 56 78", locale="fr_FR"))
    u = queries.user(store.connection.cursor(), 1)
    assert u["phone"] == "+33612345678"
    assert u["social_messaging_info"]["whatsapp:PN1"]["locale"] == "fr_FR"
    assert u["name"] == "Amélie"


@pytest.mark.parametrize(("channel", "tag"), [("whatsapp", "whatsapp"), ("messenger", "facebook"), ("line", "line"),
                                              ("wechat", "wechat"), ("x", "twitter")])
def test_r7_every_social_ticket_carries_its_channel_tag_and_messaging_support(store: Store, channel: str,
                                                                               tag: str) -> None:
    ingest(store, msg(channel=channel, account="A", user="u1", name="Kim"))
    assert list(tickets(store)[0][5]) == [tag, "messaging_support"]


def test_r8_the_ticket_carries_the_channel_info_of_its_business_account(store: Store) -> None:
    ingest(store, msg(account="PN2"))
    info = queries.ticket(store.connection.cursor(), 1)["fields"]["social_messaging_channel_info"]
    assert info == {"channel": "whatsapp", "account_name": "Lyon support", "phone_number_id": "PN2",
                    "display_phone_number": "+33 4 00 00 00 00"}


def test_b4_the_same_message_twice_changes_nothing(store: Store) -> None:
    first = ingest(store, msg(message_id="wamid.1"))
    again = ingest(store, msg(message_id="wamid.1"), msg(message_id="wamid.1"))
    assert (first.stored, again.stored, again.duplicates) == (1, 0, 2)
    counts = store.read(lambda c: c.execute("SELECT (SELECT count(*) FROM comments), (SELECT count(*) FROM tickets), "
                                            "(SELECT count(*) FROM events)").fetchone())
    assert counts[:2] == (1, 1)


def test_the_same_message_id_on_another_business_account_is_another_message(store: Store) -> None:
    result = ingest(store, msg(account="PN1", message_id="x"), msg(account="PN2", message_id="x"))
    assert result.stored == 2


def test_card_numbers_are_redacted_before_they_are_stored_and_the_redaction_is_an_event(store: Store) -> None:
    ingest(store, msg(text="my card is 4111 1111 1111 1111, exp 12/28"))
    t = queries.ticket(store.connection.cursor(), 1)
    assert "4111 1111" not in t["comments"][0]["body"]
    assert t["comments"][0]["body"].endswith("1111, exp 12/28")
    assert any(e["kind"] == "card_number_redacted" for e in t["events"])
    raw = store.read(lambda c: c.execute("SELECT count(*) FROM comments WHERE body LIKE '%4111 1111%'").fetchone()[0])
    assert raw == 0


def test_every_change_is_an_event_with_its_actor(store: Store) -> None:
    ingest(store, msg())
    kinds = [(e["kind"], e["actor"]["type"]) for e in queries.ticket(store.connection.cursor(), 1)["events"]]
    assert ("ticket_created", "end-user") in kinds and ("comment_added", "end-user") in kinds


def test_attachments_are_kept_as_metadata(store: Store) -> None:
    from warehouse.model import Attachment, InboundMessage
    m = msg()
    m = InboundMessage(m.channel, m.account, m.user_id, m.message_id, m.sent_at, "", (
        Attachment("image", media_id="MEDIA1", mime_type="image/jpeg", caption="the box"),), m.profile)
    ingest(store, m)
    att = queries.ticket(store.connection.cursor(), 1)["comments"][0]["attachments"]
    assert att == [{"type": "image", "media_id": "MEDIA1", "mime_type": "image/jpeg", "caption": "the box"}]
    assert json.dumps(att)
