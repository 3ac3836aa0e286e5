"""Agents see at once what went wrong (R22, R23): refusals the desk can decide keep the modal open with
the reason on the field; a refusal by the channel after the modal closed reaches the agent by DM and
shows on the card and in the thread; an ephemeral message Slack cannot show becomes a DM.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests import test_slack_harness as harness
from tests.conftest import msg
from tests.test_slack_harness import AGENT, GROUP_AGENT, TRIAGE, World, text_of
from warehouse.outbox import Outcome, record
from warehouse.tickets import Actor

world = harness.world  # the fixture
NOW = datetime(2026, 11, 24, 10, 0)
WHATSAPP_131047 = "(#131047) Re-engagement message: more than 24 hours have passed since the customer last replied"


async def open_reply(world: World, text: str = "Hi") -> tuple[int, dict[str, Any]]:
    tid = (await world.ingest(msg(text=text, at=NOW))).created_tickets[0]
    await world.click(AGENT, "reply", str(tid), channel=TRIAGE)
    return tid, world.last_modal()


def status_values(modal: dict[str, Any]) -> list[str]:
    block = next(b for b in modal["blocks"] if b.get("block_id", "").startswith("status-"))
    return [o["value"] for o in block["element"]["options"]]


async def test_submit_as_never_offers_new(world: World, frozen: Any) -> None:
    """A ticket does not go back to New: a New ticket's reply is submitted as Open by default."""
    _, modal = await open_reply(world)
    assert "new" not in status_values(modal) and status_values(modal)[0] == "open"
    block = next(b for b in modal["blocks"] if b.get("block_id", "").startswith("status-"))
    assert block["element"]["initial_option"]["value"] == "open"


async def test_a_reply_without_text_or_file_stays_open_with_the_reason_on_the_text(world: World,
                                                                                     frozen: Any) -> None:
    tid, modal = await open_reply(world)
    resp = await world.submit(AGENT, modal, {"text-0": {"reply_text": {"value": "  "}},
                                             "status-0": {"reply_status": {"selected_option": {"value": "open"}}}})
    assert await resp.json() == {"response_action": "errors", "errors": {"text-0": "Write a reply or attach a file."}}
    assert not [c for c in (await world.desk.ticket(tid))["comments"] if c["author_role"] == "agent"]


async def test_a_reply_on_a_ticket_closed_meanwhile_names_the_status_field(world: World, frozen: Any) -> None:
    tid, modal = await open_reply(world)
    agent = await world.desk.agent(AGENT, "Alice Agent")
    await world.desk.set_status(tid, "closed", Actor.agent(agent))
    resp = await world.submit(AGENT, modal, {"text-0": {"reply_text": {"value": "Hello"}},
                                             "status-0": {"reply_status": {"selected_option": {"value": "open"}}}})
    answer = await resp.json()
    assert answer["response_action"] == "errors" and "closed" in answer["errors"]["status-0"]


async def test_a_reply_the_channel_refuses_later_reaches_the_agent_by_dm_and_shows_on_card_and_thread(
        world: World, frozen: Any) -> None:
    """R22: WhatsApp answered 131047 after the modal closed. An edit of the thread line notifies no one:
    the agent gets a DM; the card and the thread say it too."""
    tid, modal = await open_reply(world)
    await world.submit(AGENT, modal, {"text-0": {"reply_text": {"value": "Here is your refund"}},
                                      "status-0": {"reply_status": {"selected_option": {"value": "pending"}}}})
    await world.notify()
    reply = (await world.desk.ticket(tid))["comments"][-1]
    outbox_id = reply["delivery"]["outbox_id"]
    await world.desk.write(lambda con: record(con, [Outcome(outbox_id, tid, "failed", reason=WHATSAPP_131047,
                                                            window_closed=True)]))
    await world.notify()
    dm = world.last("chat.postMessage", channel=AGENT)
    assert "not delivered" in dm["text"] and "131047" in text_of(dm["blocks"])
    channel, card_ts = await world.slack_message(tid)
    assert "Last reply not delivered" in text_of(world.api.messages[(channel, card_ts)].blocks)
    _, reply_ts = await world.slack_message(tid, "reply", outbox_id)
    assert "Not delivered" in text_of(world.api.messages[(channel, reply_ts)].blocks)
    await world.notify()
    assert [c["channel"] for c in world.api.called("chat.postMessage")].count(AGENT) == 1  # told once


async def test_an_ephemeral_message_slack_cannot_show_becomes_a_dm(world: World) -> None:
    """An agent outside the channel where they acted (`user_not_in_channel`) still hears the answer."""
    world.api.expect("user_not_in_channel")
    world.api.channels[TRIAGE].members.discard(GROUP_AGENT)
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    await world.click(AGENT, "claim", str(tid), channel=TRIAGE)
    await world.click(GROUP_AGENT, "claim", str(tid), channel=TRIAGE)
    dm = world.last("chat.postMessage", channel=GROUP_AGENT)
    assert "already assigned to" in dm["text"] and "Alice Agent" in dm["text"]


async def test_a_refusal_dm_to_an_agent_slack_no_longer_knows_is_dropped_not_retried(world: World,
                                                                                     frozen: Any) -> None:
    """An agent who left the workspace cannot be DMed: the DM is dropped after Slack's first refusal (the
    card and the thread still say it), not kept resting and retried, each retry reading the store, while
    the notifier's cursor waits behind it."""
    world.api.expect("channel_not_found", "chat.postMessage", times=1)
    tid, modal = await open_reply(world)
    await world.submit(AGENT, modal, {"text-0": {"reply_text": {"value": "Here is your refund"}},
                                      "status-0": {"reply_status": {"selected_option": {"value": "pending"}}}})
    await world.notify()
    outbox_id = (await world.desk.ticket(tid))["comments"][-1]["delivery"]["outbox_id"]
    profile = world.api.users.pop(AGENT)  # gone from the workspace
    await world.desk.write(lambda con: record(con, [Outcome(outbox_id, tid, "failed", reason=WHATSAPP_131047,
                                                            window_closed=True)]))
    await world.notify()
    world.clock.advance(3600)
    await world.notify()
    assert not world.bot.notifier.mirror.resting()
    world.api.users[AGENT] = profile
    channel, card_ts = await world.slack_message(tid)
    assert "Last reply not delivered" in text_of(world.api.messages[(channel, card_ts)].blocks)
