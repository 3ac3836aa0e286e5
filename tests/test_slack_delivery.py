"""Nothing dropped, nothing doubled (B3, B4, issue 11): Slack's 429s and 5xx, a channel the app is not
in, a restart, a burst of tickets; Events API retries, a submission delivered twice, two agents
claiming one ticket.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from bot.notify import Notifier
from socialdesk.fakes import slack_api as fake
from tests import test_slack_harness as harness
from tests.conftest import msg
from tests.test_slack_harness import AGENT, GROUP_AGENT, TRIAGE, World, text_of
from warehouse import slack_state
from warehouse.ingest import Delivery
from warehouse.tickets import Actor

world = harness.world  # the fixture
NOW = datetime(2026, 11, 24, 10, 0)


def thread_of(world: World, ts: str) -> list[str]:
    return world.thread_texts(TRIAGE, ts)


async def test_three_429s_in_a_row_do_not_skip_a_message(world: World) -> None:
    """B3: before, the third 429 skipped the message for good. Retry-After is honoured, then it goes."""
    world.api.fail_next(3, 429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "2"},
                        path_contains="chat.postMessage")
    before = world.clock()
    tid = (await world.ingest(msg(text="My parcel is lost"))).created_tickets[0]
    _, ts = await world.slack_message(tid)
    assert "My parcel is lost" in text_of(world.api.messages[(TRIAGE, ts)].blocks)
    assert world.clock() - before >= 3 * 2  # it waited as Slack asked each time
    assert world.bot.client.rate_limited["chat.postMessage"] == 3
    world.api.fail_next(3, 429, {"ok": False, "error": "ratelimited"}, headers={"Retry-After": "1"},
                        path_contains="chat.postMessage")
    await world.ingest(msg(text="Order A-1042"))
    assert ["Order A-1042" in t for t in thread_of(world, ts)] == [True]


async def test_a_slack_outage_delays_the_mirror_and_loses_nothing(world: World) -> None:
    world.api.fail_next(4, 503, {"ok": False, "error": "service_unavailable"}, path_contains="chat.")
    tid = (await world.ingest(msg(text="Hello?"))).created_tickets[0]
    await world.ingest(msg(text="Anyone there?"))
    _, ts = await world.slack_message(tid)
    assert ["Anyone there?" in t for t in thread_of(world, ts)] == [True]


async def test_the_cursor_moves_only_past_what_slack_took(world: World) -> None:
    """The app is not in the triage channel: nothing is lost while an admin invites it, and after a restart
    the notifier reads those events again; each message still goes once, in order."""
    world.api.expect("not_in_channel", times=None)
    world.api.channels[TRIAGE].bot = False
    tid = (await world.ingest(msg(text="First"))).created_tickets[0]
    await world.ingest(msg(text="Second"))
    created = await world.desk.read(lambda con: con.execute(
        "SELECT id FROM events WHERE ticket_id = ? AND kind = 'ticket_created'", [tid]).fetchone()[0])
    assert await world.desk.read(lambda con: slack_state.cursor(con, "notifier")) < created
    assert not world.api.in_channel(TRIAGE)

    old = world.bot.notifier  # a restart: a new notifier reads the cursor from the store
    world.bot.notifier = Notifier(old.desk, old.client, old.cfg, old.access, interval=3600, debounce=0,
                                  clock=world.clock)
    world.api.channels[TRIAGE].bot = True  # an admin invited the app
    await world.notify()
    [card] = world.api.in_channel(TRIAGE)
    shown = text_of(card.blocks)
    assert shown.index("First") < shown.index("Second")  # both waited: the card shows them, in order
    await world.ingest(msg(text="Third"))
    assert ["Third" in t for t in thread_of(world, card.ts)] == [True]
    end = await world.desk.read(lambda con: slack_state.cursor(con, "notifier"))
    assert end == await world.desk.read(slack_state.end_of_log)
    await old.mirror.stop()


async def test_a_resting_lane_resumes_when_the_app_is_invited(world: World) -> None:
    world.api.expect("not_in_channel", times=None)
    world.api.channels[TRIAGE].bot = False
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    assert world.bot.notifier.mirror.resting() == [TRIAGE]
    world.api.channels[TRIAGE].bot = True
    world.clock.advance(60)
    await world.notify()
    assert await world.slack_message(tid)


async def test_a_burst_of_tickets_reaches_triage_paced_and_in_order(world: World) -> None:
    """30 new tickets, then a second message from each customer while their card waits, then a third once
    it is out: every message arrives, each ticket's in order (the waiting ones on the card, the last in
    its thread), and the app caused no 429: it paced itself to about one post a second."""
    users = [f"336000{n:05d}" for n in range(30)]
    await world.desk.ingest(Delivery([msg(user=u, text=f"{u} first") for u in users]))
    await world.desk.ingest(Delivery([msg(user=u, text=f"{u} second") for u in users]))
    start = world.clock()
    await world.notify()
    await world.ingest(*[msg(user=u, text=f"{u} third") for u in users])
    cards = world.api.in_channel(TRIAGE)
    assert len(cards) == 30
    for card in cards:
        user = next(u for u in users if f"{u} first" in text_of(card.blocks))
        shown = text_of(card.blocks)
        assert shown.index(f"{user} first") < shown.index(f"{user} second")
        assert [f"{user} third" in t for t in thread_of(world, card.ts)] == [True]
    assert world.api.rate_limited == []
    assert world.clock() - start >= 59  # 60 posts to one channel, about a second each


async def test_an_event_slack_delivers_again_makes_one_note(world: World) -> None:
    """Events API retries carry the same event_id and X-Slack-Retry-Num: a thread message was 2-3 notes."""
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    channel, ts = await world.slack_message(tid)
    event = {"type": "message", "channel": channel, "user": AGENT, "text": "Checked with the courier",
             "ts": "1800000000.000100", "thread_ts": ts, "channel_type": "channel"}
    await world.event(event, event_id="Ev0RETRIED")
    for n in (1, 2):
        await world.event(event, event_id="Ev0RETRIED", headers=fake.retry_headers(n))
    await world.event(event, event_id="Ev0OTHERID")  # the same message under another event id
    notes = [c for c in (await world.desk.ticket(tid))["comments"] if not c["public"]]
    assert [n["body"] for n in notes] == ["Checked with the courier"]


async def test_a_reaction_delivered_again_acts_once(world: World) -> None:
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    channel, ts = await world.slack_message(tid)
    reaction = {"type": "reaction_added", "user": AGENT, "reaction": "eyes",
                "item": {"type": "message", "channel": channel, "ts": ts}}
    await world.event(reaction, event_id="Ev0EYES")
    await world.event(reaction, event_id="Ev0EYES", headers=fake.retry_headers(1))
    kinds = [e["kind"] for e in (await world.desk.ticket(tid))["events"]]
    assert kinds.count("assignee_changed") == 1
    assert not world.api.called("chat.postEphemeral")  # no "already yours" for the retry


async def test_the_same_submission_twice_sends_one_reply(world: World, frozen: Any) -> None:
    tid = (await world.ingest(msg(text="Hi", at=NOW))).created_tickets[0]
    await world.click(AGENT, "reply", str(tid), channel=TRIAGE)
    modal = world.last_modal()
    values = {"text-0": {"reply_text": {"value": "Hello! Let me check."}},
              "status-0": {"reply_status": {"selected_option": {"value": "pending"}}}}
    await world.submit(AGENT, modal, values)
    await world.submit(AGENT, modal, values)  # a retry, or a replay within five minutes
    replies = [c for c in (await world.desk.ticket(tid))["comments"] if c["author_role"] == "agent"]
    assert [r["body"] for r in replies] == ["Hello! Let me check."]
    count = await world.desk.read(lambda con: con.execute("SELECT count(*) FROM outbox").fetchone()[0])
    assert count == 1


async def test_a_claim_does_not_take_over_someone_elses_ticket(world: World) -> None:
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    await world.click(GROUP_AGENT, "claim", str(tid), channel=TRIAGE)
    await world.click(AGENT, "claim", str(tid), channel=TRIAGE)
    assert (await world.desk.ticket(tid))["assignee"]["slack_user_id"] == GROUP_AGENT
    told = world.last("chat.postEphemeral", user=AGENT)
    assert "already assigned to" in told["text"] and "Gabriel Group" in told["text"]
    assert '"action_id": "reassign"' in text_of(told["blocks"])  # taking over is a deliberate act


async def test_reassign_takes_it_over_on_purpose_and_tells_who_had_it(world: World) -> None:
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    await world.click(GROUP_AGENT, "claim", str(tid), channel=TRIAGE)
    await world.click(AGENT, "reassign", str(tid), channel=TRIAGE)
    assert (await world.desk.ticket(tid))["assignee"]["slack_user_id"] == AGENT
    dm = world.last("chat.postMessage", channel=GROUP_AGENT)
    assert f"Ticket #{tid} was reassigned from you to Alice Agent" in dm["text"]


async def test_two_simultaneous_claims_give_one_owner_and_one_clear_message(world: World) -> None:
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    await asyncio.gather(world.click(AGENT, "claim", str(tid), channel=TRIAGE),
                         world.click(GROUP_AGENT, "claim", str(tid), channel=TRIAGE))
    owner = (await world.desk.ticket(tid))["assignee"]["slack_user_id"]
    loser = GROUP_AGENT if owner == AGENT else AGENT
    told = world.api.called("chat.postEphemeral")
    assert [t["user"] for t in told] == [loser] and "already assigned to" in told[0]["text"]
    kinds = [e["kind"] for e in (await world.desk.ticket(tid))["events"]]
    assert kinds.count("assignee_changed") == 1


async def test_after_a_claim_the_card_offers_reassign_and_unassign(world: World) -> None:
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    channel, ts = await world.slack_message(tid)

    def buttons() -> list[str]:
        card = world.api.messages[(channel, ts)]
        return [e["action_id"] for b in card.blocks if b["type"] == "actions" for e in b["elements"]]
    assert buttons()[0] == "claim"
    await world.click(AGENT, "claim", str(tid), channel=TRIAGE)
    await world.notify()
    assert "claim" not in buttons() and buttons()[:2] == ["reassign", "unassign"]
    await world.click(AGENT, "unassign", str(tid), channel=TRIAGE)
    await world.notify()
    assert (await world.desk.ticket(tid))["assignee"] is None and buttons()[0] == "claim"


async def test_new_cards_go_before_updates_waiting_for_their_limit(world: World) -> None:
    """chat.update allows about 50 a minute: 60 cards to refresh take more than a minute, and a new ticket's
    card does not wait behind them (an update changes a message already there: nothing changes place)."""
    users = [f"336100{n:05d}" for n in range(60)]
    await world.ingest(*[msg(user=u, text="Hi") for u in users])
    agent = await world.desk.agent(AGENT, "Alice Agent")
    for tid in range(1, 61):
        await world.desk.change_tags(tid, ["vip"], [], Actor.agent(agent))
    await world.desk.ingest(Delivery([msg(user="33699999999", text="A new customer")]))
    await world.notify()
    calls = [(c.method, c.args) for c in world.api.calls if c.method in ("chat.postMessage", "chat.update")]
    new_card = next(i for i, (m, a) in enumerate(calls) if m == "chat.postMessage" and "A new customer" in a["text"])
    updates = [i for i, (m, _) in enumerate(calls) if m == "chat.update"]
    assert len(updates) == 60 and new_card < updates[10]
    assert world.api.rate_limited == []


async def test_a_new_ticket_wakes_the_notifier_at_once(store: Any, aiohttp_client: Any) -> None:
    """Its card is the agents' first sight of a ticket: it does not wait for the notifier's next poll."""
    w, client = await harness.make_world(store, aiohttp_client, wake_on_tickets=True)  # the poll: an hour away
    try:
        await w.desk.ingest(Delivery([msg(text="Hello, anyone?")]))
        deadline = asyncio.get_running_loop().time() + 5
        while not w.api.in_channel(TRIAGE):
            assert asyncio.get_running_loop().time() < deadline, "the card waited for the poll"
            await asyncio.sleep(0.02)
    finally:
        await client.close()
        await w.api.stop()
    harness.assert_slack_took_everything(w.api)
