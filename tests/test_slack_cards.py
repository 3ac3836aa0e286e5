"""Ticket cards and their threads (B3), reactions, rules' notifications, and the modals (R5, R20-R24, B1, B5)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests import test_slack_harness as harness
from tests.conftest import msg
from tests.test_slack_harness import AGENT, TRIAGE, World, text_of
from warehouse.tickets import Actor

world = harness.world  # the fixture
NOW = datetime(2026, 11, 24, 10, 0)


async def new_ticket(world: World, text: str = "Hello", **kw: Any) -> int:
    result = await world.ingest(msg(text=text, at=kw.pop("at", NOW), **kw))
    return result.created_tickets[0]


async def test_one_card_per_ticket_though_both_the_event_and_the_triage_trigger_announce_it(world: World) -> None:
    """The shipped trigger's slack_notification to "triage" and ticket_created name the same ticket."""
    tid = await new_ticket(world)
    kinds = await world.desk.read(lambda con: [r[0] for r in con.execute(
        "SELECT kind FROM events WHERE ticket_id = ? ORDER BY id", [tid]).fetchall()])
    assert "slack_notification" in kinds and "ticket_created" in kinds
    assert len(world.posts(thread=False)) == 1


async def test_the_card_shows_status_account_requester_tags_window_and_actions(world: World, frozen: Any) -> None:
    """R20 (the business account), R6, R7, B1, the priority and the seven actions."""
    await new_ticket(world)
    [card] = world.posts(thread=False)
    shown = text_of(card["blocks"])
    for expected in ("New", "WhatsApp", "Paris support · +33 1 23 45 67 89", "Amélie Dupont", "📞 +33612345678",
                     "`messaging_support`", "`whatsapp`", "left in the 24-hour window", "*Priority*\\nNone"):
        assert expected in shown, expected
    [buttons] = [b for b in card["blocks"] if b["type"] == "actions"]
    assert [e.get("action_id") for e in buttons["elements"]] == ["claim", "reply", "note", "merge", "status",
                                                                 "fields", "events"]


async def test_the_card_is_updated_on_every_change(world: World) -> None:
    tid = await new_ticket(world)
    agent = await world.desk.agent(AGENT, "Alice Agent")
    await world.desk.change_tags(tid, ["vip"], [], Actor.agent(agent))
    await world.notify()
    _, ts = await world.slack_message(tid)
    assert "`vip`" in text_of(world.last("chat.update", ts=ts)["blocks"])


async def test_the_card_shows_the_opening_message_and_the_thread_continues_the_conversation(world: World) -> None:
    """B3: the customer's first words are on the card in the triage channel; what follows is in its thread."""
    tid = await new_ticket(world, "First")
    await world.ingest(msg(text="Second, with more detail"))
    channel, ts = await world.slack_message(tid)
    [card] = world.api.in_channel(channel)
    assert "First" in text_of(card.blocks) and "First" in card.text
    assert ["Second, with more detail" in t for t in world.thread_texts(channel, ts)] == [True]


async def test_what_agents_write_in_the_thread_is_an_internal_note_never_sent(world: World) -> None:
    tid = await new_ticket(world)
    channel, ts = await world.slack_message(tid)
    await world.event({"type": "message", "channel": channel, "user": AGENT, "text": "Customer is a VIP",
                       "ts": "1800000000.000001", "thread_ts": ts})
    await world.notify()
    ticket = await world.desk.ticket(tid)
    note = ticket["comments"][-1]
    assert note["body"] == "Customer is a VIP" and note["public"] is False and note["delivery"] is None
    assert not [p for p in world.posts(thread=True) if "Customer is a VIP" in text_of(p)]  # not echoed back


async def test_eyes_claims_and_white_check_mark_solves(world: World) -> None:
    tid = await new_ticket(world)
    channel, ts = await world.slack_message(tid)
    await world.event({"type": "reaction_added", "user": AGENT, "reaction": "eyes",
                       "item": {"type": "message", "channel": channel, "ts": ts}})
    ticket = await world.desk.ticket(tid)
    assert ticket["assignee"]["slack_user_id"] == AGENT and ticket["status"] == "open"
    await world.event({"type": "reaction_added", "user": AGENT, "reaction": "white_check_mark",
                       "item": {"type": "message", "channel": channel, "ts": ts}})
    assert (await world.desk.ticket(tid))["status"] == "solved"


async def test_the_status_menu_on_the_card_changes_the_status(world: World) -> None:
    tid = await new_ticket(world)
    await world.click(AGENT, "status", channel=TRIAGE, action={
        "type": "static_select", "block_id": f"card-{tid}", "selected_option": {"value": "hold"}})
    assert (await world.desk.ticket(tid))["status"] == "hold"


async def test_rule_notifications_go_to_a_channel_or_to_the_assignee(world: World) -> None:
    world.api.add_channel("C0WHATSAPP", "whatsapp-support")
    tid = await new_ticket(world)
    agent = await world.desk.agent(AGENT, "Alice Agent")
    await world.desk.claim(tid, agent)

    def notify(target: str) -> Any:
        from warehouse.rows import event, record_events
        return lambda con: record_events(con, [event(tid, "slack_notification", "rule", "trigger:x", target=target,
                                                     text=f"to {target}", assignee_slack_id=AGENT)])
    await world.desk.write(notify("#whatsapp-support"))
    await world.desk.write(notify("assignee"))
    await world.notify()
    assert "to #whatsapp-support" in world.last("chat.postMessage", channel="#whatsapp-support")["text"]
    assert "to assignee" in world.last("chat.postMessage", channel=AGENT)["text"]


async def test_a_reply_refused_by_the_window_keeps_the_modal_open_with_the_reason_and_is_logged(
        world: World, frozen: Any) -> None:
    """R22, R23: the window closed while the modal was open: Slack shows the reason on the reply field
    at once, the agent's text stays, nothing is sent, and the refusal is in the ticket's events."""
    tid = await new_ticket(world)
    await world.click(AGENT, "reply", str(tid), channel=TRIAGE)
    modal = world.last_modal()
    frozen[0] = NOW + timedelta(hours=25)
    resp = await world.submit(AGENT, modal, {"text-0": {"reply_text": {"value": "Sorry for the wait"}},
                                             "status-0": {"reply_status": {"selected_option": {"value": "open"}}}})
    answer = await resp.json()
    assert answer["response_action"] == "errors" and "24-hour messaging window has closed" in answer["errors"]["text-0"]
    ticket = await world.desk.ticket(tid)
    assert [e for e in ticket["events"] if e["kind"] == "reply_refused"][0]["data"]["window_closed"] is True
    assert not [c for c in ticket["comments"] if c["author_role"] == "agent"]  # nothing was sent


async def test_a_reply_without_text_or_file_gets_a_field_error(world: World, frozen: Any) -> None:
    tid = await new_ticket(world)
    await world.click(AGENT, "reply", str(tid), channel=TRIAGE)
    resp = await world.submit(AGENT, world.last_modal(), {"text-0": {"reply_text": {"value": ""}}})
    assert (await resp.json())["response_action"] == "errors"


async def test_without_rules_the_reply_modal_has_no_macros_and_no_rule_info(world: World) -> None:
    world.desk.rules = None
    tid = await new_ticket(world)
    await world.click(AGENT, "reply", str(tid), channel=TRIAGE)
    shown = text_of(world.last_modal())
    assert "reply_macro" not in shown and "Business rules" not in shown


async def test_outside_the_window_without_templates_the_modal_says_so(world: World, frozen: Any) -> None:
    """B1: "no approved template configured"."""
    world.desk.templates = []
    tid = await new_ticket(world)
    frozen[0] = NOW + timedelta(hours=30)
    await world.click(AGENT, "reply", str(tid), channel=TRIAGE)
    shown = text_of(world.last_modal())
    assert "will not be delivered" in shown and "No approved template configured." in shown


async def test_merge_is_suggested_when_another_account_shares_the_phone(world: World) -> None:
    """B5, R21: on the reply modal and in the merge modal."""
    tid = await new_ticket(world)
    await world.ingest(msg(account="PN2", text="Other number"))  # same person, second business account (R4)
    await world.click(AGENT, "reply", str(tid), channel=TRIAGE)
    assert "Same phone number as" in text_of(world.last_modal())
    await world.click(AGENT, "merge", str(tid), channel=TRIAGE)
    merge = world.last_modal()
    assert "Suggested: same phone number" in text_of(merge) and "merge_pick" in text_of(merge)


async def test_the_note_modal_adds_an_internal_note_shown_in_the_thread(world: World) -> None:
    tid = await new_ticket(world)
    await world.click(AGENT, "note", str(tid), channel=TRIAGE)
    await world.submit(AGENT, world.last_modal(), {"note": {"note_text": {"value": "Called the courier"}}})
    await world.notify()
    assert (await world.desk.ticket(tid))["comments"][-1]["public"] is False
    assert "Internal note by *Alice Agent*: Called the courier" in text_of(world.posts(thread=True)[-1])


async def test_the_events_button_shows_the_ticket_log(world: World) -> None:
    """R23."""
    tid = await new_ticket(world)
    await world.click(AGENT, "events", str(tid), channel=TRIAGE)
    shown = text_of(world.last_modal())
    assert "ticket created" in shown and "slack notification" in shown


async def test_actions_inside_the_ticket_modal_stack_their_modal_on_top(world: World) -> None:
    """From a ticket opened in the notifier (R17), Reply pushes the reply modal; Claim refreshes the ticket."""
    tid = await new_ticket(world)
    await world.click(AGENT, "open_ticket", str(tid))
    ticket_view = world.last_modal()
    await world.click(AGENT, "reply", str(tid), view=ticket_view)
    assert world.last("views.push")["view"]["callback_id"] == "reply_submit"
    await world.click(AGENT, "claim", str(tid), view=ticket_view)
    refreshed = world.last("views.update", view_id=ticket_view["id"])["view"]
    assert f"<@{AGENT}>" in text_of(refreshed)


async def test_the_notifier_never_announces_a_ticket_twice(world: World) -> None:
    """Its cursor is in the store: a second pass, or a restart, reads only newer events."""
    await new_ticket(world)
    await world.notify()
    await world.bot.notifier.start()  # as after a restart
    await world.notify()
    assert len(world.posts(thread=False)) == 1


def test_b3_an_end_user_attachment_in_the_thread_links_to_the_file() -> None:
    from bot.blocks.card import end_user_message
    comment = {"id": 7, "body": "the box", "attachments": [{"type": "image", "media_id": "M1", "caption": "dented"}]}
    shown = text_of(end_user_message("Amélie", comment, ["https://desk.example/media/7/0?exp=1&sig=ab"])["blocks"])
    assert "<https://desk.example/media/7/0?exp=1&sig=ab|dented>" in shown
