"""Who may talk to the bot: Slack's signature, a fresh timestamp, our workspace, and agents only."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.blocks import ids
from socialdesk.fakes import slack_api as fake
from socialdesk.fakes.slack_api import sign
from tests import test_slack_harness as harness
from tests.test_slack_harness import AGENT, GROUP_AGENT, STRANGER, TRIAGE, World

world = harness.world  # the fixture


async def test_a_request_with_a_bad_signature_is_refused(world: World) -> None:
    body, ctype = fake.command_body("/social", "", AGENT, response_url=world.api.response_url())
    resp = await world.post(body, ctype, headers=sign(body, "not-the-secret"))
    assert resp.status == 401
    assert not world.api.responses


async def test_a_request_older_than_five_minutes_is_refused(world: World) -> None:
    body, ctype = fake.command_body("/social", "", AGENT, response_url=world.api.response_url())
    resp = await world.post(body, ctype, headers=sign(body, ts=int(time.time()) - 301))
    assert resp.status == 401
    assert not world.api.responses


async def test_a_request_from_another_workspace_is_refused(world: World) -> None:
    resp = await world.command(AGENT, "", team_id="T0OTHER")
    assert resp.status == 403
    assert not world.api.responses


async def test_a_non_agent_gets_a_clear_refusal(world: World) -> None:
    resp = await world.command(STRANGER, "unassigned")
    assert resp.status == 200
    assert "only support agents" in world.response()["text"]
    assert world.response()["response_type"] == "ephemeral"


async def test_members_of_the_agent_group_are_agents_and_the_group_is_cached(world: World) -> None:
    await world.command(GROUP_AGENT, "help")
    await world.command(GROUP_AGENT, "unassigned")
    assert "only support agents" not in str(world.api.responses)
    assert len(world.api.called("usergroups.users.list")) == 1


async def test_a_non_agent_opening_the_app_home_sees_the_refusal(world: World) -> None:
    await world.event({"type": "app_home_opened", "user": STRANGER, "channel": "D0S", "tab": "home"})
    assert "only support agents" in str(world.home(STRANGER))


async def test_listeners_ack_before_their_slow_work(world: World) -> None:
    """Slack waits 3 seconds: the answer comes back while the search is still running."""
    release = asyncio.Event()
    search = world.desk.search

    async def slow_search(query: str) -> dict:
        await release.wait()
        return await search(query)

    world.desk.search = slow_search  # type: ignore[method-assign]
    body, ctype = fake.command_body("/social", "search Amélie", AGENT, response_url=world.api.response_url())
    resp = await asyncio.wait_for(world.client.post("/slack/events", data=body.encode(),
                                                    headers={"Content-Type": ctype, **sign(body)}), 3)
    assert resp.status == 200 and not world.api.responses
    release.set()
    await world.bot.idle()
    assert "Search: Amélie" in str(world.response())


@pytest.mark.parametrize("action_id", [ids.CLAIM, ids.REASSIGN, ids.UNASSIGN, ids.STATUS, ids.REPLY, ids.NOTE,
                                       ids.FIELDS, ids.EVENTS, ids.MERGE, f"{ids.HOME_TAB}_unassigned"])
async def test_whatever_a_non_agent_clicks_they_are_told_once_and_nothing_opens(world: World,
                                                                               action_id: str) -> None:
    """One check for every listener (Bolt middleware), not one a listener may forget."""
    await world.click(STRANGER, action_id, "1", channel=TRIAGE)
    [refusal] = world.api.called("chat.postEphemeral")
    assert refusal["user"] == STRANGER and "only support agents" in refusal["text"]
    assert not world.api.called("views.open") and not world.api.called("views.publish")
