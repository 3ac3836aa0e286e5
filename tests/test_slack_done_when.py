"""The Slack issue's "done when", through signed Slack requests alone (R5, R10-R17, R20-R25, B1-B5):
an agent sees a new WhatsApp ticket under Unassigned with the red dot; claims it and sees it move to
Assigned to you; replies with a file and a macro-free text and sees the delivery events; a second
reply after 24 hours is refused in the modal and offered a template; merges the requester into an
older Messenger account; finds the user by phone; and a non-agent can do none of it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests import test_slack_harness as harness
from tests.test_slack_harness import AGENT, STRANGER, TRIAGE, World, text_of
from warehouse import clock
from warehouse.ingest import Delivery
from warehouse.model import InboundMessage, StatusUpdate

NOW = datetime(2026, 11, 24, 10, 0)

world = harness.world  # the fixture


def whatsapp(text: str, mid: str, at: datetime) -> InboundMessage:
    return InboundMessage("whatsapp", "PN1", "33612345678", mid, at, text, (),
                          {"name": "Amélie Dupont", "phone": "+33612345678"})


def messenger(text: str, mid: str, at: datetime) -> InboundMessage:
    return InboundMessage("messenger", "PAGE1", "1254459154682919", mid, at, text, (), {"name": "Amélie D."})


def rows(view: dict[str, Any]) -> list[str]:
    return [b["block_id"] for b in view["blocks"] if b.get("block_id", "").startswith("row-")]


async def test_an_agent_works_a_whatsapp_ticket_from_slack_end_to_end(world: World) -> None:
    now = [NOW]
    clock.set_clock(lambda: now[0])
    try:
        await run_scenario(world, now)
    finally:
        clock.set_clock(None)


async def run_scenario(world: World, now: list[datetime]) -> None:
    # An older Messenger account exists for the same person (R4: one account per business account).
    await world.ingest(messenger("Bonjour", "fb1", NOW - timedelta(days=30)))
    old_user = (await world.desk.search("Amélie D."))["users"][0]
    world.api.clear()

    # A new WhatsApp ticket: a card in triage, and it waits under Unassigned with the red dot (R12, R15).
    await world.ingest(whatsapp("My order never came", "wa1", NOW))
    ticket_id = (await world.desk.search("+33612345678"))["users"][0]["ticket_ids"][-1]
    [card] = world.posts(thread=False)
    assert f"#{ticket_id}" in card["text"] and "WhatsApp" in text_of(card["blocks"])
    assert "My order never came" in text_of(card["blocks"])  # B3: the customer's words on the card
    _, card_ts = await world.slack_message(ticket_id)

    await world.event({"type": "app_home_opened", "user": AGENT, "channel": "D0AGENT", "tab": "home"})
    await world.click(AGENT, "home_tab_unassigned", "unassigned")
    home = world.home()
    assert "🔴" in home["blocks"][0]["text"]["text"]
    assert f"row-{ticket_id}" in rows(home)
    assert "Started a new chat" in text_of(home)

    # Claim it: it leaves Unassigned and shows under Assigned to you (R10, R11).
    await world.click(AGENT, "claim", str(ticket_id), channel=TRIAGE, message_ts=card_ts)
    await world.notify()
    assert f"row-{ticket_id}" not in rows(world.home())
    await world.click(AGENT, "home_tab_assigned", "assigned")
    assert f"row-{ticket_id}" in rows(world.home())
    assert "Alice Agent" in text_of(world.last("chat.update", channel=TRIAGE)["blocks"]) or \
        f"<@{AGENT}>" in text_of(world.last("chat.update", channel=TRIAGE)["blocks"])

    # Reply with a macro and a file: the modal shows the time left (B1) and the rules at work (R24);
    # the macro fills text and status (R21); "sent to channel" shows in the thread (R23).
    await world.click(AGENT, "reply", str(ticket_id), channel=TRIAGE)
    modal = world.last_modal()
    assert "left in the 24-hour window" in text_of(modal) and "Business rules on this ticket" in text_of(modal)
    [macro] = [o for b in modal["blocks"] if b.get("block_id") == "macro" for o in b["elements"][0]["options"]
               if o["text"]["text"] == "Ask for the order number"]
    await world.click(AGENT, "reply_macro", view=modal, action={"type": "static_select", "selected_option": macro})
    modal = world.last_modal()
    assert "could you send me your order number" in text_of(modal)
    world.api.add_file("F0PHOTO", "receipt.png", "image/png", b"\x89PNG fake")
    text = "Hello Amélie, could you send me your order number? Here is the receipt we have."
    values = {"text-1": {"reply_text": {"type": "plain_text_input", "value": text}},
              "file": {"reply_file": {"type": "file_input", "files": [{"id": "F0PHOTO", "name": "receipt.png"}]}},
              "status-1": {"reply_status": {"type": "static_select", "selected_option": {"value": "pending"}}}}
    await world.submit(AGENT, modal, values)
    assert world.api.called("files.info")[-1]["file"] == "F0PHOTO"
    ticket = await world.desk.ticket(ticket_id)
    reply = ticket["comments"][-1]
    assert reply["body"] == text and reply["attachments"][0]["filename"] == "receipt.png"
    assert "awaiting_order_number" in ticket["tags"] and ticket["status"] == "pending"
    await world.notify()
    sent = world.posts(thread=True)[-1]
    assert "Here is the receipt" in text_of(sent) and "Sent to channel" in text_of(sent)

    # The channel reports delivery (B2): the reply's thread message says so.
    outbox_id = reply["delivery"]["outbox_id"]
    await world.desk.write(lambda con: con.execute(
        "UPDATE outbox SET state = 'sent', platform_message_id = 'wamid.1', sent_at = ? WHERE id = ?",
        [now[0], outbox_id]))
    await world.desk.ingest(Delivery([StatusUpdate("whatsapp", "PN1", "33612345678", "delivered", now[0],
                                                   message_id="wamid.1")]))
    await world.notify()
    _, reply_ts = await world.slack_message(ticket_id, "reply", outbox_id)
    assert "Delivered" in text_of(world.last("chat.update", ts=reply_ts))

    # 25 hours later the window is closed: the modal refuses free text and offers a template (R22, B1).
    now[0] = NOW + timedelta(hours=25)
    await world.click(AGENT, "reply", str(ticket_id), channel=TRIAGE)
    modal = world.last_modal()
    assert "will not be delivered" in text_of(modal) and "follow_up" in text_of(modal)
    assert "reply_text" not in text_of(modal)
    await world.submit(AGENT, modal, {
        "template": {"reply_template": {"type": "static_select", "selected_option": {"value": "0"}}},
        "params": {"reply_params": {"type": "plain_text_input", "value": "Amélie"}},
        "status-0": {"reply_status": {"type": "static_select", "selected_option": {"value": "pending"}}}})
    row = await world.desk.read(lambda con: con.execute(
        "SELECT template, state FROM outbox ORDER BY id DESC LIMIT 1").fetchone())
    assert '"follow_up"' in row[0] and row[1] == "queued"

    # Merge the WhatsApp requester into the older Messenger account (R5), found by name.
    await world.click(AGENT, "merge", str(ticket_id), channel=TRIAGE)
    merge = world.last_modal()
    await world.click(AGENT, "merge_search", view=merge,
                      action={"type": "plain_text_input", "value": "Amélie D."})
    assert f'"value": "{old_user["id"]}"' in text_of(world.last_modal())
    await world.click(AGENT, "merge_pick", str(old_user["id"]), view=world.last_modal())
    confirm = world.last_modal()
    assert "1 ticket(s)" in text_of(confirm)
    await world.submit(AGENT, confirm, {})
    assert (await world.desk.ticket(ticket_id))["requester"]["id"] == old_user["id"]

    # Find the user by phone: one account, both tickets (R25).
    await world.command(AGENT, "search +33 6 12 34 56 78")
    found = text_of(world.response())
    assert f"user #{old_user['id']}" in found and f"#{ticket_id}" in found

    # A non-agent can do none of it.
    world.api.clear()
    await world.command(STRANGER, "")
    assert "only support agents" in world.response()["text"]
    await world.click(STRANGER, "claim", str(ticket_id), channel=TRIAGE)
    await world.click(STRANGER, "reply", str(ticket_id), channel=TRIAGE)
    await world.submit(STRANGER, modal, {"template": {"reply_template": {"selected_option": {"value": "0"}}}})
    await world.event({"type": "reaction_added", "user": STRANGER, "reaction": "white_check_mark",
                       "item": {"type": "message", "channel": TRIAGE, "ts": card_ts}})
    assert not world.api.called("views.open")
    # Refused in the channel where they clicked, or by direct message for a modal (no channel).
    refusals = world.api.called("chat.postEphemeral") + world.posts(thread=False)
    assert [r.get("channel") for r in refusals] == [TRIAGE, TRIAGE, TRIAGE, STRANGER]
    assert all("only support agents" in r["text"] for r in refusals)
    assert (await world.desk.ticket(ticket_id))["status"] == "pending"
