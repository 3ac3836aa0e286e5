"""Replying: R20, R22, R23 and B1's templates, at the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ingest, msg
from warehouse import outbox as box
from warehouse import queries
from warehouse.ingest import Delivery, ingest_batch
from warehouse.model import StatusUpdate
from warehouse.store import Store
from warehouse.tickets import OperationError, ensure_agent, reply


def outbox(store: Store) -> list[tuple]:
    return store.read(lambda c: c.execute(
        "SELECT id, channel, account, recipient, body, state, window_closed, last_error FROM outbox ORDER BY id"
    ).fetchall())


def kinds(store: Store, ticket: int) -> list[str]:
    return [e["kind"] for e in queries.ticket(store.connection.cursor(), ticket)["events"]]


@pytest.fixture
def agent(store: Store) -> int:
    return store.write(lambda c: ensure_agent(c, "U1", "Ada"))


def test_r20_a_reply_leaves_from_the_tickets_business_account(store: Store, agent: int, frozen_clock) -> None:
    ingest(store, msg(account="PN1", user="111", at=None), msg(account="PN2", user="222"))
    frozen_clock[0] = frozen_clock[0].replace(hour=9, minute=30)
    store.write(lambda c: reply(c, 1, agent, "Hi from Paris"))
    store.write(lambda c: reply(c, 2, agent, "Hi from Lyon"))
    assert [(o[2], o[3], o[4], o[5]) for o in outbox(store)] == [
        ("PN1", "111", "Hi from Paris", "queued"), ("PN2", "222", "Hi from Lyon", "queued")]


def test_r23_every_reply_records_that_it_was_sent_to_the_channel(store: Store, agent: int, frozen_clock) -> None:
    ingest(store, msg())
    frozen_clock[0] = frozen_clock[0].replace(hour=9, minute=30)
    store.write(lambda c: reply(c, 1, agent, "On its way"))
    assert "sent_to_channel" in kinds(store, 1)


def test_r22_outside_the_24_hours_a_whatsapp_reply_fails_at_once_with_an_event(store: Store, agent: int,
                                                                                frozen_clock) -> None:
    ingest(store, msg())  # 09:00
    frozen_clock[0] = frozen_clock[0].replace(hour=9) + timedelta(hours=24, minutes=1)
    result = store.write(lambda c: reply(c, 1, agent, "Sorry for the wait"))
    assert result["state"] == "failed" and "24-hour" in result["reason"]
    assert outbox(store)[0][5:7] == ("failed", True)
    assert kinds(store, 1)[-4:].count("reply_failed") == 1 and "sent_to_channel" in kinds(store, 1)


def test_b1_an_approved_whatsapp_template_is_allowed_outside_the_window(store: Store, agent: int,
                                                                        frozen_clock) -> None:
    ingest(store, msg())
    frozen_clock[0] = frozen_clock[0] + timedelta(days=3)
    result = store.write(lambda c: reply(c, 1, agent, "", template={"name": "order_update", "language": "fr",
                                                                   "parameters": ["A-42"]}))
    assert result["state"] == "queued"


@pytest.mark.parametrize(("channel", "hours", "open_"), [("messenger", 23, True), ("messenger", 25, False),
                                                        ("wechat", 47, True), ("wechat", 49, False),
                                                        ("line", 500, True), ("x", 500, True)])
def test_b1_each_channel_has_its_own_window(store: Store, agent: int, frozen_clock, channel: str, hours: int,
                                            open_: bool) -> None:
    ingest(store, msg(channel=channel, account="A", user="u"))
    frozen_clock[0] = frozen_clock[0].replace(hour=9) + timedelta(hours=hours)
    result = store.write(lambda c: reply(c, 1, agent, "hello"))
    assert (result["state"] == "queued") is open_


def test_the_ticket_shows_the_time_left_in_the_window(store: Store, frozen_clock) -> None:
    ingest(store, msg())
    frozen_clock[0] = frozen_clock[0].replace(hour=10)
    window = queries.ticket(store.connection.cursor(), 1)["window"]
    assert window == {"has_window": True, "open": True, "seconds_left": 23 * 3600, "window_hours": 24,
                      "templates": True}  # WhatsApp's approved templates still go out once it closes


def test_a_reply_assigns_an_unassigned_ticket_and_opens_a_new_one(store: Store, agent: int, frozen_clock) -> None:
    ingest(store, msg())
    frozen_clock[0] = frozen_clock[0].replace(hour=9, minute=5)
    store.write(lambda c: reply(c, 1, agent, "Hello!", status="pending"))
    t = queries.ticket(store.connection.cursor(), 1)
    assert (t["assignee"]["id"], t["status"]) == (agent, "pending")


def test_a_reply_with_a_file_keeps_it_for_the_sender(store: Store, agent: int, frozen_clock) -> None:
    ingest(store, msg())
    frozen_clock[0] = frozen_clock[0].replace(hour=9, minute=5)
    store.write(lambda c: reply(c, 1, agent, "Invoice attached", file=("invoice.pdf", "application/pdf", b"%PDF")))
    comment = queries.ticket(store.connection.cursor(), 1)["comments"][-1]
    assert comment["attachments"][0]["filename"] == "invoice.pdf"
    assert store.read(lambda c: c.execute("SELECT file_data FROM outbox").fetchone()[0]) == b"%PDF"


def test_an_empty_reply_or_a_template_off_whatsapp_is_refused(store: Store, agent: int) -> None:
    ingest(store, msg(channel="line", account="L", user="u"))
    with pytest.raises(OperationError, match="needs text"):
        store.write(lambda c: reply(c, 1, agent, "  "))
    with pytest.raises(OperationError, match="WhatsApp only"):
        store.write(lambda c: reply(c, 1, agent, "", template={"name": "t"}))


def _receipt(status: str, message_id: str, user: str = "33612345678") -> Delivery:
    return Delivery([StatusUpdate("whatsapp", "PN1", user, status, datetime(2026, 11, 24, 9, 31, tzinfo=UTC),
                                  message_id=message_id)])  # type: ignore[arg-type]


def test_b2_a_receipt_that_arrives_before_the_reply_is_recorded_sent_is_applied_then(store: Store, agent: int,
                                                                                      frozen_clock) -> None:
    ingest(store, msg())
    frozen_clock[0] = frozen_clock[0].replace(hour=9, minute=30)
    queued = store.write(lambda c: reply(c, 1, agent, "On its way"))
    # The platform's webhook can beat the sender's own record of the send (it sends many at once).
    store.write(lambda c: ingest_batch(c, [_receipt("delivered", "wamid.early")]))
    store.write(lambda c: box.record(c, [box.Outcome(queued["outbox_id"], 1, "sent",
                                                     platform_message_id="wamid.early")]))
    assert outbox(store)[0][5] == "delivered"
    assert kinds(store, 1).count("reply_delivered") == 1
    store.write(lambda c: ingest_batch(c, [_receipt("delivered", "wamid.early")]))  # a redelivery: nothing more
    assert kinds(store, 1).count("reply_delivered") == 1


def test_b2_receipts_for_messages_we_never_sent_are_not_kept_forever(store: Store, frozen_clock) -> None:
    store.write(lambda c: ingest_batch(c, [_receipt("read", "wamid.from-the-phone-app")]))
    assert store.read(lambda c: c.execute("SELECT count(*) FROM early_receipts").fetchone()[0]) == 1
    frozen_clock[0] = frozen_clock[0] + timedelta(days=2)
    store.write(lambda c: ingest_batch(c, [_receipt("read", "wamid.another")]))
    assert store.read(lambda c: c.execute("SELECT platform_message_id FROM early_receipts").fetchall()) == [
        ("wamid.another",)]
