"""Messenger's window for human agents, end to end through the running service (issue 12, B1, R22).

Issue 12, "done when": a Messenger reply at 30 hours goes end to end: ticket, reply out through the
strict fake with the HUMAN_AGENT tag, receipt. The desk keeps such a Page's window open
for 7 days (warehouse/tickets.py `window_state`), the connector tags the reply, the strict fake checks it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from socialdesk.config import Config
from socialdesk.fakes import meta_api
from socialdesk.fakes.meta_api import MESSENGER_PAGE
from socialdesk.sandbox import Sandbox
from socialdesk.service import DESK, build_app
from tests.support import eventually, sql

PSID = "1254459154682919"


@pytest.fixture
async def world(tmp_path: Any, aiohttp_client: Any) -> AsyncIterator[tuple[Sandbox, Any]]:
    sandbox = await Sandbox().start()
    cfg = sandbox.configure(Config())
    cfg.channels["messenger"][0]["human_agent_tag"] = True  # the Page says it may answer for 7 days
    sandbox.fakes["messenger"].human_agent_pages.add(MESSENGER_PAGE)  # and Meta granted it the Human Agent permission
    cfg.store.path = str(tmp_path / "human-agent.duckdb")
    cfg.server.retry_base_seconds = 0.05
    client = await aiohttp_client(build_app(cfg))
    yield sandbox, client
    await client.close()
    await sandbox.stop()


async def customer_wrote(sandbox: Sandbox, client: Any, hours_ago: float) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_ago)
    req = sandbox.request("messenger", MESSENGER_PAGE,
                          sandbox.message("messenger", MESSENGER_PAGE, PSID, "Still waiting for my refund", "m_1", at))
    assert (await client.post(req.path, data=req.body, headers=req.headers)).status == 200




async def test_b1_a_messenger_reply_at_30_hours_goes_out_with_the_human_agent_tag_and_its_receipt_comes_back(
        world: tuple[Sandbox, Any]) -> None:
    sandbox, client = world
    await customer_wrote(sandbox, client, 30)
    desk = client.app[DESK]
    result = await desk.reply(1, await desk.agent("U1", "Ada"), "Sorry for the wait: the refund left today")
    assert result["state"] == "queued", result["reason"]
    [(mid,)] = await eventually(lambda: sql(client, "SELECT platform_message_id FROM outbox WHERE id = ? "
                                            "AND state = 'sent'", result["outbox_id"]))
    [sent] = sandbox.fakes["messenger"].sent(f"/{MESSENGER_PAGE}/messages")
    assert (sent.json["messaging_type"], sent.json["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    receipt = sandbox.request("messenger", MESSENGER_PAGE, meta_api.messenger_delivery_payload(
        MESSENGER_PAGE, PSID, [mid], int(datetime.now(UTC).timestamp() * 1000)))
    assert (await client.post(receipt.path, data=receipt.body, headers=receipt.headers)).status == 200
    assert sql(client, "SELECT state FROM outbox WHERE id = ?", result["outbox_id"]) == [("delivered",)]


async def test_r22_after_7_days_even_a_page_with_the_tag_is_refused_before_anything_is_sent(
        world: tuple[Sandbox, Any]) -> None:
    sandbox, client = world
    await customer_wrote(sandbox, client, 8 * 24)
    desk = client.app[DESK]
    result = await desk.reply(1, await desk.agent("U1", "Ada"), "Hello?")
    assert result["state"] == "failed" and "window closed" in result["reason"]
    await asyncio.sleep(0.3)  # the outbox would have picked it up by now
    assert sandbox.fakes["messenger"].sent(f"/{MESSENGER_PAGE}/messages") == []


async def test_our_own_echo_arriving_before_the_send_is_recorded_changes_nothing(world: tuple[Sandbox, Any]) -> None:
    """The echo of a reply can beat the outbox's record of its id: the metadata we send recognizes it."""
    sandbox, client = world
    await customer_wrote(sandbox, client, 1)
    echo = sandbox.request("messenger", MESSENGER_PAGE, meta_api.messenger_echo_payload(
        MESSENGER_PAGE, PSID, "On it", "m_not_recorded_yet", app_id=1, metadata="socialdesk:outbox:1"))
    assert (await client.post(echo.path, data=echo.body, headers=echo.headers)).status == 200
    assert sql(client, "SELECT count(*) FROM comments") == [(1,)]


async def test_a_message_typed_in_the_page_inbox_joins_the_customers_ticket(world: tuple[Sandbox, Any]) -> None:
    sandbox, client = world
    await customer_wrote(sandbox, client, 1)
    echo = sandbox.request("messenger", MESSENGER_PAGE, meta_api.messenger_echo_payload(
        MESSENGER_PAGE, PSID, "Answered from the inbox", "m_inbox"))
    assert (await client.post(echo.path, data=echo.body, headers=echo.headers)).status == 200
    assert sql(client, "SELECT t.id, c.body, c.origin FROM comments c JOIN tickets t ON t.id = c.ticket_id "
                       "ORDER BY c.id") == [(1, "Still waiting for my refund", None),
                                            (1, "Answered from the inbox", "the Facebook Page inbox")]


def test_b1_the_reply_modal_says_which_window_applies() -> None:
    from bot.blocks.common import window_text
    from warehouse.tickets import window_state
    now = datetime(2026, 11, 24, 12, 0)
    ticket = {"channel": "messenger", "channel_info": '{"human_agent_tag": true}',
              "last_end_user_message_at": now - timedelta(hours=30)}
    assert "HUMAN_AGENT" in window_text(window_state(ticket, now))
    assert window_text(window_state(ticket, now)).startswith("⏳ Messenger's 24 hours are over: 5 d 18 h left")
    assert "7 days for human agents are over" in window_text(window_state(ticket, now + timedelta(days=7)))
    assert window_text(window_state(ticket, now + timedelta(days=7))) == (
        "⛔ Messenger's 7 days for human agents are over: the Page can no longer answer this customer.")
    plain = {**ticket, "channel_info": "{}"}
    assert window_text(window_state(plain, now)) == "⛔ The 24-hour messaging window is closed."
