"""What the strict fake of Slack showed, each fixed: Slack takes every surface the app sends (issue 11).

Each test goes through signed Slack requests and the real notifier; the harness fails it on any
refusal (invalid_blocks, invalid_arguments, view_too_large, ...) it did not declare.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests import test_slack_harness as harness
from tests.conftest import msg
from tests.test_slack_harness import AGENT, TRIAGE, World, text_of
from warehouse.ingest import Delivery
from warehouse.rows import event, record_events
from warehouse.rules import load_rules

world = harness.world  # the fixture
NOW = datetime(2026, 11, 24, 10, 0)


async def new_ticket(world: World, text: str = "Hello", **kw: Any) -> int:
    result = await world.ingest(msg(text=text, at=kw.pop("at", NOW), **kw))
    return result.created_tickets[0]


def action_ids(block: dict[str, Any]) -> list[str]:
    return [e["action_id"] for e in block.get("elements", [])]


async def test_the_home_tabs_buttons_have_their_own_action_ids_and_slack_takes_the_home(world: World) -> None:
    """Both tab buttons shared `home_tab` in one block: Slack refused every views.publish (an empty Home)."""
    await world.event({"type": "app_home_opened", "user": AGENT, "channel": "D0A", "tab": "home"})
    home = world.home()
    tabs = next(b for b in home["blocks"] if b.get("block_id") == "tabs")
    assert len(set(action_ids(tabs))) == 2
    await world.click(AGENT, action_ids(tabs)[1], "unassigned")
    assert world.home()["private_metadata"] == '{"tab":"unassigned"}'


async def test_the_reply_and_note_modals_open(world: World, frozen: Any) -> None:
    """max_length 4096 and 4000 made Slack refuse views.open: no agent could reply or note from Slack."""
    tid = await new_ticket(world)
    await world.click(AGENT, "reply", str(tid), channel=TRIAGE)
    reply = world.last_modal()
    assert reply["callback_id"] == "reply_submit"
    await world.click(AGENT, "note", str(tid), channel=TRIAGE)
    assert world.last_modal()["callback_id"] == "note_submit"
    inputs = [b["element"] for v in (reply, world.last_modal()) for b in v["blocks"] if b["type"] == "input"
              and b["element"]["type"] == "plain_text_input"]
    assert inputs and all(1 <= e["max_length"] <= 3000 for e in inputs)


async def test_a_views_third_page_has_previous_and_next(world: World) -> None:
    """Previous and Next shared `view_page`: Slack refused every page past the first of 40 tickets."""
    await world.desk.ingest(Delivery([msg(user=f"3361234{n:04d}", text=f"Message {n}") for n in range(65)]))
    await world.notify()
    await world.click(AGENT, "load_more", "unassigned")
    page = world.last_modal()
    for number in (2, 3):
        await world.click(AGENT, "view_page_next", str(number), view=page)
        page = world.last_modal()
    paging = next(b for b in page["blocks"] if b.get("block_id") == "paging")
    assert "Page 3" in text_of(page) and len(set(action_ids(paging))) == 2
    await world.click(AGENT, "view_page_next", "4", view=page)
    assert "Page 4" in text_of(world.last_modal()) and "Previous page" in text_of(world.last_modal())


async def test_the_events_of_a_long_lived_ticket_are_paged(world: World) -> None:
    """About 3,000 events were over a view's size (view_too_large): the modal shows the newest page and
    every older one is a click away, each far under Slack's limit."""
    tid = await new_ticket(world)
    await world.desk.write(lambda con: record_events(con, [
        event(tid, "sent_to_channel", "agent", 17, outbox_id=100_000 + n, channel="whatsapp",
              account="106540352242922") for n in range(3000)]))
    await world.click(AGENT, "events", str(tid), channel=TRIAGE)
    first = world.last_modal()
    assert "outbox_id=102999" in text_of(first) and "outbox_id=100000," not in text_of(first)
    seen, sizes = text_of(first), [len(json.dumps(first).encode())]
    for _ in range(30):
        page = world.last_modal()
        if "events_page_older" not in text_of(page):
            break
        older = json.loads(page["private_metadata"])["page"] + 1
        await world.click(AGENT, "events_page_older", str(older), view=page)
        seen += text_of(world.last_modal())
        sizes.append(len(json.dumps(world.last_modal()).encode()))
    assert all(f"outbox_id={100_000 + n}," in seen for n in (0, 1, 1500, 2998))
    assert len(sizes) > 1 and max(sizes) < 250_000


@pytest.mark.parametrize("length", [3_001, 5_000, 40_000, 200_000])
async def test_a_long_customer_message_is_readable_whole_in_slack(world: World, length: int) -> None:
    """Cut at 3,000 characters everywhere before: now split across sections, and posts where needed."""
    words = ("Lorem ipsum dolor sit amet, élan & <vite> 😀 ") * (length // 40 + 1)
    text = words[:length]
    tid = await new_ticket(world, "Hi")
    await world.ingest(msg(text=text))
    channel, ts = await world.slack_message(tid)
    shown = "".join(b["text"]["text"] for m in world.api.thread(channel, ts) for b in m.blocks
                    if b["type"] == "section" and "text" in b)
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert "".join(escaped.split()) in "".join(shown.split())  # every word, in order


async def test_a_long_opening_message_is_whole_on_the_card(world: World) -> None:
    text = "x" * 2000 + " " + "y" * 3000
    await new_ticket(world, text)
    [card] = world.api.in_channel(TRIAGE)
    assert "x" * 2000 in text_of(card.blocks) and "y" * 2999 in text_of(card.blocks)


async def test_macros_are_picked_by_id_even_when_titles_are_long_and_alike(world: World, tmp_path: Path,
                                                                           frozen: Any) -> None:
    """Option values came from titles cut to 75 characters: 30 macros alike collided."""
    common = "Answer about the delivery delay of an order placed during the winter sales, variant "
    macros = [{"title": f"{common}{n:02d}", "actions": [{"field": "comment_value", "value": f"Answer number {n}"}]}
              for n in range(30)]
    (tmp_path / "macros.json").write_text(json.dumps({"macros": macros}))
    world.desk.rules = load_rules(tmp_path)
    tid = await new_ticket(world)
    await world.click(AGENT, "reply", str(tid), channel=TRIAGE)
    modal = world.last_modal()
    options = next(b for b in modal["blocks"] if b.get("block_id") == "macro")["elements"][0]["options"]
    assert len(options) == 32 and len({o["value"] for o in options}) == 32
    assert len({o["text"]["text"] for o in options}) == 32  # the end of a long title stays readable
    picked = next(o for o in options if o["text"]["text"].endswith("variant 17"))
    await world.click(AGENT, "reply_macro", view=modal, action={"type": "static_select", "selected_option": picked})
    assert "Answer number 17" in text_of(world.last_modal())


async def test_names_with_emoji_and_right_to_left_scripts(world: World, frozen: Any) -> None:
    await world.ingest(msg(user="966500000001", text="مرحبا، أين طلبي؟", name="فاطمة 🌸 الزهراء",
                           phone="+966500000001", at=NOW - timedelta(minutes=3)))
    [card] = world.api.in_channel(TRIAGE)
    assert "فاطمة 🌸 الزهراء" in text_of(card.blocks) and "مرحبا" in card.text
    await world.event({"type": "app_home_opened", "user": AGENT, "channel": "D0A", "tab": "home"})
    await world.click(AGENT, "home_tab_unassigned", "unassigned")
    assert "فاطمة 🌸 الزهراء" in text_of(world.home())
