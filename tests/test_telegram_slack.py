"""Telegram in Slack, through signed Slack requests alone: a Telegram ticket's card says Telegram with its
icon, and an agent's reply from the card's modal is queued for the Telegram bot the customer wrote to,
with no messaging window in the way (Telegram has none)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests import test_slack_harness as harness
from tests.test_slack_harness import AGENT, TRIAGE, World, text_of
from warehouse import channels
from warehouse.model import InboundMessage

world = harness.world  # the fixture
BOT, CUSTOMER = "7061234502", "482915377"


async def test_an_agent_answers_a_telegram_ticket_from_slack(world: World) -> None:
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)  # years ago: still answerable, there is no window
    await world.ingest(InboundMessage("telegram", BOT, CUSTOMER, f"{CUSTOMER}:1731", long_ago,
                                      "Hello! My order #5521 hasn't arrived yet.", (),
                                      {"name": "Olena Kovalenko", "username": "@olena_k"}))
    [card] = world.posts(thread=False)
    blocks = text_of(card["blocks"])
    assert "Telegram" in blocks and channels.get("telegram").icon in blocks
    ticket_id = (await world.desk.search("Olena Kovalenko"))["users"][0]["ticket_ids"][-1]

    await world.click(AGENT, "reply", str(ticket_id), channel=TRIAGE)
    modal = world.last_modal()
    assert f"Replying from 🅃 Telegram *{BOT}*" in text_of(modal)
    assert "No messaging window on this channel" in text_of(modal)
    values = {"text-1": {"reply_text": {"type": "plain_text_input", "value": "It left this morning"}},
              "status-1": {"reply_status": {"type": "static_select", "selected_option": {"value": "pending"}}}}
    await world.submit(AGENT, modal, values)
    ticket = await world.desk.ticket(ticket_id)
    reply = ticket["comments"][-1]
    assert reply["body"] == "It left this morning" and ticket["status"] == "pending"
    [row] = await world.desk.read(lambda con: con.execute(
        "SELECT channel, account, recipient, state FROM outbox WHERE id = ?",
        [reply["delivery"]["outbox_id"]]).fetchall())
    assert row == ("telegram", BOT, CUSTOMER, "queued")
