"""The notifier in the App Home tab and `/social` (R10-R17, R25-R27)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from bot.blocks.common import BlockLimitError, checked, section
from bot.blocks.home import home_view
from tests import test_slack_harness as harness
from tests.conftest import msg
from tests.test_slack_harness import (
    AGENT,
    GROUP_AGENT,
    TRIAGE,
    World,
    assert_slack_took_everything,
    make_world,
    text_of,
)
from warehouse.ingest import Delivery
from warehouse.store import Store
from warehouse.tickets import Actor

world = harness.world  # the fixture


def rows(view: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in view["blocks"] if b.get("block_id", "").startswith("row-")]


async def open_home(world: World, tab: str = "unassigned") -> dict[str, Any]:
    await world.event({"type": "app_home_opened", "user": AGENT, "channel": "D0A", "tab": "home"})
    if tab != "assigned":
        await world.click(AGENT, f"home_tab_{tab}", tab)
    return world.home()


async def test_the_home_tab_opens_on_assigned_to_you(world: World) -> None:
    """R10."""
    home = await open_home(world, "assigned")
    tabs = next(b for b in home["blocks"] if b.get("block_id") == "tabs")
    assert [e["text"]["text"] for e in tabs["elements"]] == ["Assigned to you", "Unassigned"]
    assert tabs["elements"][0].get("style") == "primary"


async def test_a_row_shows_status_name_conversation_status_channel_and_number(world: World,
                                                                              frozen_clock: Any) -> None:
    """R13: status icon left, name with "Started a new chat" under it, channel icon and number right; and
    what it is about, how long the customer has waited, the window's time left (B1)."""
    await world.ingest(msg(text="Where is my parcel?", at=frozen_clock[0] - timedelta(minutes=12)))
    [row] = rows(await open_home(world))
    assert row["text"]["text"] == ("🟡  *Amélie Dupont*\nStarted a new chat\n"
                                   "“Where is my parcel?” · waiting 12 min · ⏳ 23 h 48 min left")
    assert row["accessory"]["text"]["text"] == "🅆 WhatsApp  #1"


async def test_the_red_dot_shows_only_while_new_unassigned_tickets_wait(world: World) -> None:
    """R15."""
    assert "🔴" not in text_of((await open_home(world))["blocks"][0])
    await world.ingest(msg(text="Hi"))
    assert "🔴" in text_of(world.home()["blocks"][0])  # the notifier refreshed the open home tab


async def test_load_more_appears_only_beyond_20_and_opens_the_view_with_paging(world: World) -> None:
    """R16: 20 rows; "Load more tickets" opens "Unassigned social messaging tickets"; pages follow."""
    await world.desk.ingest(Delivery([msg(user=f"3361234{n:04d}", text="Hi") for n in range(20)]))
    home = await open_home(world)
    assert len(rows(home)) == 20 and "Load more tickets" not in text_of(home)
    await world.ingest(msg(user="33699990000", text="One more"))
    home = world.home()
    assert len(rows(home)) == 20 and "Load more tickets" in text_of(home)
    await world.click(AGENT, "load_more", "unassigned")
    page = world.last_modal()
    assert "Unassigned social messaging tickets" in text_of(page) and len(rows(page)) == 20
    await world.click(AGENT, "view_page_next", "2", view=page)
    page2 = world.last("views.update", view_id=page["id"])["view"]
    assert len(rows(page2)) == 1 and "Previous page" in text_of(page2)


async def test_clicking_a_row_opens_the_ticket(world: World) -> None:
    """R17: from the home tab a modal opens; from a view's modal the ticket replaces the list."""
    await world.ingest(msg(text="Where is my parcel?"))
    await world.click(AGENT, "open_ticket", "1")
    opened = world.last("views.open")["view"]
    assert opened["title"]["text"] == "Ticket #1" and "Where is my parcel?" in text_of(opened)
    await world.click(AGENT, "load_more", "unassigned")
    listing = world.last_modal()
    await world.click(AGENT, "open_ticket", "1", view=listing)
    assert world.last("views.update", view_id=listing["id"])["view"]["title"]["text"] == "Ticket #1"


async def test_when_publishes_are_short_the_longest_unrefreshed_home_goes_first(store: Store,
                                                                                 aiohttp_client: Any) -> None:
    """views.publish's budget is shared by every agent: the agent refreshed longest ago is next, whatever
    their name (sorted by name, the first agents took every turn of a busy desk)."""
    w, client = await make_world(store, aiohttp_client, homes_per_pass=1)
    try:
        await w.notify()  # the start-up pass is over
        for user in (AGENT, GROUP_AGENT):
            await w.event({"type": "app_home_opened", "user": user, "channel": "D0A", "tab": "home"})
        before = len(w.api.called("views.publish"))
        w.bot.notifier.request_homes({AGENT, GROUP_AGENT})  # AGENT (U0AGENT1) sorts first
        w.bot.notifier._published_at.update({AGENT: 10.0, GROUP_AGENT: 5.0})
        w.bot.notifier.kick_homes()
        await w.bot.notifier.settle()
        assert [c["user_id"] for c in w.api.called("views.publish")[before:]] == [GROUP_AGENT]
    finally:
        await client.close()
        await w.api.stop()
    assert_slack_took_everything(w.api)


async def test_a_home_asked_for_while_its_refused_publish_was_on_its_way_is_not_published(world: World) -> None:
    """The pass may ask for an agent's home while the publish Slack is about to refuse is in flight."""
    await world.notify()
    world.bot.notifier._unreachable.add(GROUP_AGENT)
    world.bot.notifier._pending_homes.add(GROUP_AGENT)
    world.bot.notifier.kick_homes()
    await world.bot.notifier.settle()
    assert GROUP_AGENT not in [c["user_id"] for c in world.api.called("views.publish")]
    assert not world.bot.notifier._pending_homes


async def test_home_refreshes_are_debounced_per_agent(store: Store, aiohttp_client: Any) -> None:
    """One refresh per agent per second at most; the held one goes out once the second has passed."""
    now = [100.0]
    w, client = await make_world(store, aiohttp_client, debounce=1.0, monotonic=lambda: now[0])
    try:
        await w.event({"type": "app_home_opened", "user": AGENT, "channel": "D0A", "tab": "home"})
        now[0] += 1.0
        await w.ingest(msg(user="33600000001"))
        published = len(w.api.called("views.publish"))
        await w.ingest(msg(user="33600000002"))
        assert len(w.api.called("views.publish")) == published
        now[0] += 1.0
        await w.notify()
        assert len(w.api.called("views.publish")) > published
    finally:
        await client.close()
        await w.api.stop()
    assert_slack_took_everything(w.api)


async def test_slash_command_wrong_argument_gets_a_one_line_usage(world: World) -> None:
    await world.command(AGENT, "ticket abc")
    answer = world.response()["text"]
    assert answer.startswith("Usage: `/social") and "\n" not in answer


@pytest.mark.parametrize("text, expected", [
    ("", "Your social messaging tickets"),
    ("unassigned", "Unassigned social messaging tickets"),
    ("view Unassigned social messaging tickets", "Amélie Dupont"),
    ("ticket 1", "#1 · WhatsApp conversation with Amélie Dupont"),
    ("search Paris support", "#1"),  # R27: tickets by their channel info
    ("help", "/social search QUERY"),
])
async def test_slash_command_answers_ephemerally(world: World, text: str, expected: str) -> None:
    await world.ingest(msg(text="Hi"))
    await world.command(AGENT, text)
    answer = world.response()
    assert answer["response_type"] == "ephemeral" and expected in text_of(answer)


async def test_search_by_social_messaging_info(world: World) -> None:
    """R26: end users by what the channels sent about them."""
    await world.ingest(msg(user="33611112222", text="Hi", name="Zoé Martin", phone="+33611112222"))
    await world.command(AGENT, "search Zoé")
    assert "Zoé Martin" in text_of(world.response())


def test_block_limits_are_enforced() -> None:
    with pytest.raises(BlockLimitError):
        checked([section("x")] * 51, "message")
    home = home_view({"tab": "assigned", "red_dot": False, "has_more": True, "page": 1,
                      "tickets": [{"id": i, "status": "open", "channel": "line", "requester": {"id": 1, "name": "N"},
                                   "conversation_status": "Replied to the conversation"} for i in range(20)]})
    assert len(home["blocks"]) <= 100


async def test_the_home_tab_follows_new_tickets_while_the_triage_channel_is_backed_up(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """R12, R15 under a burst: the triage channel takes about a post a second, so its lane fills and the
    notifier reads no further events for it; the agents' home tabs must still show each new ticket."""
    monkeypatch.setattr("bot.notify.MAX_WAITING", 1)
    world.api.expect("not_in_channel", times=None)
    world.api.channels[TRIAGE].bot = False  # the lane rests: its jobs wait
    await open_home(world)
    await world.ingest(msg(user="33611110001", text="First"))
    await world.ingest(msg(user="33611110002", text="Second"))
    assert [r["block_id"] for r in rows(world.home())] == ["row-2", "row-1"]


async def test_a_home_tab_slack_refuses_for_good_is_not_retried_every_pass(world: World) -> None:
    """An agent who left the workspace (`user_not_found`) must not spend, pass after pass, the
    views.publish budget the other agents' home tabs share (Tier 4, about 100 a minute); their next
    visit to the App Home makes them reachable again."""
    world.api.expect("user_not_found", "views.publish", times=1)
    await world.event({"type": "app_home_opened", "user": GROUP_AGENT, "channel": "D0B", "tab": "home"})
    agent = await world.desk.agent(GROUP_AGENT, "Grace")
    tid = (await world.ingest(msg(text="Hi"))).created_tickets[0]
    await world.desk.assign(tid, agent, Actor.agent(agent))
    profile = world.api.users.pop(GROUP_AGENT)  # gone from the workspace
    for n in range(3):
        await world.ingest(msg(text=f"Still there? {n}"))

    def publishes() -> int:
        return [c["user_id"] for c in world.api.called("views.publish")].count(GROUP_AGENT)
    before = publishes()
    world.api.users[GROUP_AGENT] = profile  # back, and opening the App Home
    await world.event({"type": "app_home_opened", "user": GROUP_AGENT, "channel": "D0B", "tab": "home"})
    await world.ingest(msg(text="Hello again"))
    # the visit's, the new ticket's, the refused one; then the next visit's and the next ticket's
    assert (before, publishes()) == (3, 5)


async def test_only_home_tabs_opened_since_the_start_are_refreshed_in_the_background(world: World) -> None:
    """Slack shows the App Home only when it is opened, and each opening publishes it fresh: refreshing the
    tabs of agents who never opened it would spend the budget every open tab shares."""
    await world.ingest(msg(text="Hi"))
    assert world.api.called("views.publish") == []
    home = await open_home(world)
    assert [r["block_id"] for r in rows(home)] == ["row-1"]
    await world.ingest(msg(user="33611110003", text="Another"))
    assert [r["block_id"] for r in rows(world.home())] == ["row-2", "row-1"]
