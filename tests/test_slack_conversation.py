"""What the channels now report besides plain messages, as agents see it in Slack (issue 12): the
business's messages from elsewhere, edits and unsent messages, in the card's thread and the ticket."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from tests import test_slack_harness as harness
from tests.conftest import msg
from tests.test_slack_harness import AGENT, TRIAGE, World, text_of
from warehouse.model import MessageEdit, MessageWithdrawn

world = harness.world  # the fixture
AT = datetime(2026, 11, 24, 9, 0)


def thread_text(world: World) -> str:
    return text_of([p.get("blocks") for p in world.posts(thread=True)])


async def opened(world: World) -> int:
    result = await world.ingest(msg(text="My order is 1234", message_id="wamid.1", at=AT))
    return int(result.created_tickets[0])


async def test_a_message_the_business_sent_from_the_app_shows_in_the_thread_as_sent_from_there(world: World) -> None:
    await opened(world)
    await world.ingest(replace(msg(text="We are on it", message_id="wamid.echo", at=AT + timedelta(minutes=5)),
                               business_origin="the WhatsApp Business app"))
    shown = thread_text(world)
    assert "We are on it" in shown and "sent from the WhatsApp Business app" in shown


async def test_an_edit_shows_in_the_thread_with_what_it_replaces(world: World) -> None:
    await opened(world)
    await world.ingest(MessageEdit("whatsapp", "PN1", "33612345678", "wamid.1", "e1", AT + timedelta(minutes=1),
                                   "My order is 1243"))
    shown = thread_text(world)
    assert "edited a message" in shown and "My order is 1243" in shown and "My order is 1234" in shown


async def test_an_unsent_message_is_said_in_the_thread_and_the_ticket_keeps_it(world: World) -> None:
    tid = await opened(world)
    await world.ingest(MessageWithdrawn("whatsapp", "PN1", "33612345678", "wamid.1", AT + timedelta(minutes=1)))
    assert "unsent a message" in thread_text(world)
    await world.click(AGENT, "open_ticket", str(tid), channel=TRIAGE)
    modal = text_of(world.last_modal())
    assert "My order is 1234" in modal and "Unsent by the customer" in modal
