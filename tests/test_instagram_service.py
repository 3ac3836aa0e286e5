"""Instagram direct messages through the running service: signed webhooks into a real DuckDB store through
the real aiohttp routes, and agents' replies out through the desk and the outbox to the strict fake
(issue 14, "the proof").

Two Instagram accounts are configured, so a reply is seen leaving from the ticket's own account (R20).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors import registry
from socialdesk.config import Config
from socialdesk.fakes import instagram_api
from socialdesk.fakes.instagram_api import INSTAGRAM_ACCOUNT, InstagramAPI
from socialdesk.sandbox import Sandbox
from socialdesk.service import DESK, build_app
from tests.support import eventually, sql

SECOND = "17841405793187299"
IGSID = "6543210987654321"
FIXTURES = Path(__file__).parent / "fixtures" / "instagram"
FIXTURE_ACCOUNT = "17841405793187218"  # the fixtures' entry[].id, the demo account's


async def running(tmp_path: Any, aiohttp_client: Any, *, flagged: bool) -> AsyncIterator[Any]:
    sandbox = await Sandbox().start()
    cfg = sandbox.configure(Config())
    first = {**cfg.channels["instagram"][0], "human_agent_tag": flagged}
    # A second professional account of the same app, with a token of its own.
    cfg.channels["instagram"] = [first, {**first, "name": "help-instagram", "account_id": SECOND,
                                         "access_token": "IGAAT-second-token", "human_agent_tag": False}]
    api: InstagramAPI = sandbox.fakes["instagram"]
    api.page_tokens[SECOND] = "IGAAT-second-token"
    if flagged:
        api.human_agent_pages.add(INSTAGRAM_ACCOUNT)  # Meta granted it the Human Agent permission
    sandbox.registry["instagram"] = registry.build({"instagram": cfg.channels["instagram"]})["instagram"]
    cfg.store.path = str(tmp_path / "instagram.duckdb")
    cfg.server.retry_base_seconds = 0.05
    client = await aiohttp_client(build_app(cfg))
    yield sandbox, client, first["access_token"]
    await client.close()
    await sandbox.stop()


@pytest.fixture
async def world(tmp_path: Any, aiohttp_client: Any) -> AsyncIterator[Any]:
    async for found in running(tmp_path, aiohttp_client, flagged=False):
        yield found


@pytest.fixture
async def flagged_world(tmp_path: Any, aiohttp_client: Any) -> AsyncIterator[Any]:
    """The first account says it has Meta's Human Agent permission (`human_agent_tag = true`), and has it."""
    async for found in running(tmp_path, aiohttp_client, flagged=True):
        yield found


async def post(sandbox: Sandbox, client: Any, body: bytes, account: str = INSTAGRAM_ACCOUNT) -> Any:
    req = sandbox.request("instagram", account, body)
    return await client.post(req.path, data=req.body, headers=req.headers)


async def customer_wrote(sandbox: Sandbox, client: Any, hours_ago: float, account: str = INSTAGRAM_ACCOUNT,
                         text: str = "Is the linen shirt still available?", mid: str = "m_1") -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=hours_ago)
    body = sandbox.message("instagram", account, IGSID, text, mid, at)
    assert (await post(sandbox, client, body, account)).status == 200


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


async def reply(client: Any, ticket: int, text: str) -> dict[str, Any]:
    desk = client.app[DESK]
    result: dict[str, Any] = await desk.reply(ticket, await desk.agent("U1", "Ada"), text)
    return result


async def test_a_dm_becomes_a_ticket_tagged_instagram(world: Any) -> None:
    sandbox, client, _ = world
    await customer_wrote(sandbox, client, 0)
    ticket = await client.app[DESK].ticket(1)
    assert ticket["tags"] == ["instagram", "messaging_support"]
    assert (ticket["channel"], ticket["account"]) == ("instagram", INSTAGRAM_ACCOUNT)
    assert ticket["fields"]["social_messaging_channel_info"]["account_name"] == "brand-instagram"
    assert ticket["comments"][0]["body"] == "Is the linen shirt still available?"


async def test_a_bad_signature_is_refused_and_nothing_is_stored(world: Any) -> None:
    sandbox, client, _ = world
    req = sandbox.request("instagram", INSTAGRAM_ACCOUNT, fixture("text"))
    resp = await client.post(req.path, data=req.body.replace(b"Belgium", b"France"), headers=req.headers)
    assert resp.status == 401
    assert sql(client, "SELECT count(*) FROM inbox") == [(0,)]
    assert sql(client, "SELECT count(*) FROM tickets") == [(0,)]


async def test_malformed_json_is_a_4xx(world: Any) -> None:
    sandbox, client, _ = world
    resp = await post(sandbox, client, b'{"object": "instagram", "entry": [')
    assert 400 <= resp.status < 500
    assert sql(client, "SELECT count(*) FROM tickets") == [(0,)]


async def test_a_redelivered_body_is_one_comment(world: Any) -> None:
    sandbox, client, _ = world
    for _ in range(3):
        assert (await post(sandbox, client, fixture("text"))).status == 200
    assert sql(client, "SELECT count(*) FROM comments") == [(1,)]


@pytest.mark.parametrize(("name", "expected"), [
    ("story_reply", "replied to your story: https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17986519384011234"),
    ("story_mention", "mentioned the account in their story: https://lookaside.fbsbx.com/ig_messaging_cdn/"),
    ("share", "shared a link: https://www.instagram.com/p/C1a2b3c4d5e/"),
    ("ig_post", "shared a link: Summer collection — https://www.instagram.com/p/C9z8y7x6w5v/"),
    ("reel", "shared a reel: How we pack your orders — https://lookaside.fbsbx.com/"),
])
async def test_stories_shared_posts_and_reels_are_kept_with_their_link(world: Any, name: str, expected: str) -> None:
    sandbox, client, _ = world
    assert (await post(sandbox, client, fixture(name))).status == 200
    [(body,)] = sql(client, "SELECT body FROM comments")
    assert body.startswith(expected)


async def test_an_echo_and_an_unsent_message_join_the_ticket(world: Any) -> None:
    sandbox, client, _ = world
    assert (await post(sandbox, client, fixture("text"))).status == 200
    assert (await post(sandbox, client, fixture("echo"))).status == 200
    assert (await post(sandbox, client, fixture("deleted"))).status == 200
    rows = sql(client, "SELECT body, origin, withdrawn_at IS NOT NULL FROM comments ORDER BY id")
    assert rows == [("Hi! Do you ship to Belgium?", None, True),
                    ("Answered from the Instagram app", "the Instagram app", False)]


async def test_a_reply_leaves_from_the_tickets_own_account_and_its_read_receipt_comes_back(world: Any) -> None:
    sandbox, client, token = world
    await customer_wrote(sandbox, client, 1, SECOND, "Question for the help account", "m_2")
    result = await reply(client, 1, "Hello from the help team")
    assert result["state"] == "queued", result["reason"]
    [(mid,)] = await eventually(lambda: sql(client, "SELECT platform_message_id FROM outbox WHERE id = ? "
                                            "AND state = 'sent'", result["outbox_id"]))
    [sent] = sandbox.replies("instagram")
    assert (sent.account, sent.recipient, sent.text) == (SECOND, IGSID, "Hello from the help team")
    [request] = sandbox.fakes["instagram"].sent("/messages")
    assert request.headers["Authorization"] == "Bearer IGAAT-second-token" and token not in str(request.query)
    receipt = instagram_api.read_payload(SECOND, IGSID, mid)
    assert (await post(sandbox, client, receipt, SECOND)).status == 200
    assert sql(client, "SELECT state FROM outbox WHERE id = ?", result["outbox_id"]) == [("read",)]


async def test_at_30_hours_a_flagged_account_replies_with_the_human_agent_tag(flagged_world: Any) -> None:
    sandbox, client, _ = flagged_world
    await customer_wrote(sandbox, client, 30)
    result = await reply(client, 1, "Sorry for the wait: it is back in stock")
    assert result["state"] == "queued", result["reason"]
    await eventually(lambda: sql(client, "SELECT 1 FROM outbox WHERE id = ? AND state = 'sent'",
                                 result["outbox_id"]))
    [sent] = sandbox.fakes["instagram"].sent(f"/{INSTAGRAM_ACCOUNT}/messages")
    assert (sent.json["messaging_type"], sent.json["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


async def test_at_30_hours_without_the_flag_the_reply_fails_with_the_window_and_never_leaves(world: Any) -> None:
    sandbox, client, token = world
    await customer_wrote(sandbox, client, 30)
    result = await reply(client, 1, "Hello?")
    assert result["state"] == "failed" and "window closed" in result["reason"]
    assert token not in result["reason"]
    await asyncio.sleep(0.3)  # the outbox would have picked it up by now
    assert sandbox.fakes["instagram"].sent("/messages") == []
    kinds = [e["kind"] for e in (await client.app[DESK].ticket(1))["events"]]
    assert token not in str(kinds)


async def test_a_refusal_from_instagram_reaches_the_ticket_without_the_token(world: Any) -> None:
    sandbox, client, token = world
    await customer_wrote(sandbox, client, 1)
    sandbox.fakes["instagram"].fail_next(1, 400, instagram_api.not_available(), path_contains="/messages")
    result = await reply(client, 1, "Are you there?")
    [(state, reason)] = await eventually(lambda: sql(client, "SELECT state, last_error FROM outbox WHERE id = ? "
                                                     "AND state = 'failed'", result["outbox_id"]))
    assert "Instagram error 551" in reason and token not in reason
