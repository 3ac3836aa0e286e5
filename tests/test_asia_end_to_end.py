"""Issue 12, end to end through the running service and the strict fakes of LINE, WeChat and X: an X
Activity API DM becomes a ticket, the reply leaves through the fake, its echo changes nothing and the
read receipt moves it; the business's DM from elsewhere shows as its comment; LINE keeps the token that
marks a conversation read; what a platform refuses reaches the agent as a plain, permanent failure (R22).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from connectors.line import MARK_AS_READ_KEY
from socialdesk.config import Config
from socialdesk.fakes import line_api, x_api
from socialdesk.sandbox import ACCOUNTS, Sandbox
from socialdesk.service import DESK, REGISTRY, build_app
from tests.support import eventually, sql

X, LINE, WECHAT = ACCOUNTS["x"][0], ACCOUNTS["line"][0], ACCOUNTS["wechat"][0]
CUSTOMER = "272953809"


@pytest.fixture
async def world(tmp_path: Any, aiohttp_client: Any) -> AsyncIterator[tuple[Sandbox, Any]]:
    sandbox = await Sandbox().start()
    cfg = sandbox.configure(Config())
    cfg.channels["line"] = [{**t, "mark_as_read": True} for t in cfg.channels["line"]]
    cfg.store.path = str(tmp_path / "asia.duckdb")
    cfg.server.retry_base_seconds = 0.05
    client = await aiohttp_client(build_app(cfg))
    yield sandbox, client
    await client.close()
    await sandbox.stop()




async def deliver(client: Any, sandbox: Sandbox, channel: str, account: str, body: bytes) -> None:
    req = sandbox.request(channel, account, body)
    resp = await client.post(req.path, data=req.body, headers=req.headers, params=req.query)
    assert resp.status == 200, await resp.text()


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


async def test_issue12_an_x_activity_api_dm_goes_end_to_end(world: Any) -> None:
    """Ticket, reply out through the strict fake, its echo changing nothing, then the read receipt."""
    sandbox, client = world
    desk = client.app[DESK]
    sandbox.fakes["x"].customer_wrote(X, CUSTOMER, datetime.now(UTC))
    await deliver(client, sandbox, "x", X, x_api.activity_message_payload(
        X, CUSTOMER, X, "My code DEMO10 is refused", "2080765901528535096", created_ms=now_ms(),
        name="Nicolas Pottier", screen_name="nicpottier"))
    ticket = await desk.ticket(1)
    assert (ticket["channel"], ticket["recipient"], ticket["comments"][0]["body"]) == (
        "x", CUSTOMER, "My code DEMO10 is refused")
    assert ticket["requester"]["name"] == "Nicolas Pottier"

    result = await desk.reply(1, await desk.agent("U1", "Ada"), "Here is DEMO15")
    [(dm_id,)] = await eventually(lambda: sql(client, "SELECT platform_message_id FROM outbox WHERE id = ? "
                                              "AND state = 'sent'", result["outbox_id"]))
    [sent] = sandbox.fakes["x"].sent("/2/dm_conversations")
    assert sent.path == f"/2/dm_conversations/with/{CUSTOMER}/messages" and sent.json == {"text": "Here is DEMO15"}

    # X delivers our own DM back as dm.sent: recognized by its id, it changes nothing.
    comments = sql(client, "SELECT count(*) FROM comments")
    await deliver(client, sandbox, "x", X, x_api.activity_message_payload(X, X, CUSTOMER, "Here is DEMO15", dm_id,
                                                                          created_ms=now_ms()))
    assert sql(client, "SELECT count(*) FROM comments") == comments

    await deliver(client, sandbox, "x", X, x_api.read_payload(X, CUSTOMER, dm_id, created_ms=now_ms()))
    assert sql(client, "SELECT state FROM outbox WHERE id = ?", result["outbox_id"]) == [("read",)]
    assert "reply_read" in [e["kind"] for e in (await desk.ticket(1))["events"]]


async def test_issue12_a_dm_the_business_sent_on_x_shows_as_its_comment_never_a_ticket(world: Any) -> None:
    sandbox, client = world
    await deliver(client, sandbox, "x", X, x_api.message_payload(X, CUSTOMER, "Hello?", "901", created_ms=now_ms()))
    await deliver(client, sandbox, "x", X, x_api.activity_message_payload(X, X, CUSTOMER, "Answered from x.com",
                                                                          "902", created_ms=now_ms() + 1000))
    ticket = await client.app[DESK].ticket(1)
    assert [(c["body"], c["author_role"]) for c in ticket["comments"]] == [
        ("Hello?", "end-user"), ("Answered from x.com", "agent")]
    assert sql(client, "SELECT count(*) FROM tickets") == [(1,)]


async def test_issue12_line_keeps_the_latest_mark_as_read_token_and_marks_read_through_the_fake(world: Any) -> None:
    """What the Slack app calls when an agent opens a LINE ticket, with `[[line]] mark_as_read = true`."""
    sandbox, client = world
    user = "U206d25c2ea6bd87c17655609a1c37cb8"
    for n, token in enumerate(("token-1", "token-2")):
        await deliver(client, sandbox, "line", LINE, line_api.message_payload(
            LINE, user, f"message {n}", f"32570{n}", timestamp_ms=now_ms() + n, mark_as_read_token=token))
    info = (await client.app[DESK].ticket(1))["fields"]["social_messaging_channel_info"]
    assert info[MARK_AS_READ_KEY] == "token-2" and info["account_name"] == "jp"
    connector = client.app[REGISTRY]["line"]
    assert connector.marks_as_read(LINE)
    async with aiohttp.ClientSession() as session:
        result = await connector.mark_as_read(session, LINE, info[MARK_AS_READ_KEY])
    assert result is not None and result.state == "sent"
    assert sandbox.fakes["line"].read_tokens() == ["token-2"]


async def test_issue12_a_long_line_reply_leaves_as_several_messages_of_one_push(world: Any) -> None:
    sandbox, client = world
    user = "U206d25c2ea6bd87c17655609a1c37cb8"
    await deliver(client, sandbox, "line", LINE, line_api.message_payload(LINE, user, "Details?", "1",
                                                                          timestamp_ms=now_ms()))
    desk = client.app[DESK]
    text = "Your order, step by step. " * 300  # 7,800 characters
    result = await desk.reply(1, await desk.agent("U1"), text)
    await eventually(lambda: sql(client, "SELECT state FROM outbox WHERE id = ? AND state = 'sent'",
                                 result["outbox_id"]))
    [push] = sandbox.fakes["line"].sent("/v2/bot/message/push")
    assert len(push.json["messages"]) == 2 and "".join(m["text"] for m in push.json["messages"]) == text


async def test_issue12_r22_a_wechat_text_too_long_fails_plainly_and_the_agent_sees_why(world: Any) -> None:
    sandbox, client = world
    await deliver(client, sandbox, "wechat", WECHAT, sandbox.message("wechat", WECHAT, "oCustomer", "发票?", "77",
                                                                     datetime.now(UTC)))
    desk = client.app[DESK]
    result = await desk.reply(1, await desk.agent("U1"), "这是您的发票详情。" * 120)  # 3,240 bytes of UTF-8
    [(state, reason)] = await eventually(lambda: sql(client, "SELECT state, last_error FROM outbox WHERE id = ? "
                                                     "AND state = 'failed'", result["outbox_id"]))
    assert "45002" in reason and "shorten" in reason
    assert "reply_failed" in [e["kind"] for e in (await desk.ticket(1))["events"]]
    assert len(sandbox.fakes["wechat"].sent("custom/send")) == 1  # refused once, never retried


async def test_issue12_a_wechat_sixth_reply_is_refused_as_wechat_does(world: Any) -> None:
    sandbox, client = world
    await deliver(client, sandbox, "wechat", WECHAT, sandbox.message("wechat", WECHAT, "oCustomer", "你好", "78",
                                                                     datetime.now(UTC)))
    desk = client.app[DESK]
    agent = await desk.agent("U1")
    for n in range(6):
        await desk.reply(1, agent, f"回复 {n}")
    rows = await eventually(lambda: (rows := sql(client, "SELECT state, last_error FROM outbox"))
                            and all(s in ("sent", "failed") for s, _ in rows) and rows)
    # Replies leave side by side, so which one is the sixth is WeChat's to say: five go, one is refused.
    assert sorted(s for s, _ in rows) == ["failed"] + ["sent"] * 5
    assert "5 replies" in next(reason for s, reason in rows if s == "failed")


async def test_issue12_an_agent_opening_a_line_ticket_in_slack_marks_the_customers_messages_read(
        tmp_path: Any, aiohttp_client: Any) -> None:
    """From Slack, as agents do it: the Open button of a LINE ticket, with `[[line]] mark_as_read = true`."""
    from bot.blocks import ids
    from socialdesk.fakes import slack_api
    from socialdesk.sandbox import AGENT
    sandbox = await Sandbox().start()
    cfg = sandbox.configure(Config(), slack=True)
    cfg.channels["line"] = [{**t, "mark_as_read": True} for t in cfg.channels["line"]]
    cfg.store.path = str(tmp_path / "line-read.duckdb")
    client = await aiohttp_client(build_app(cfg))
    try:
        user = "U206d25c2ea6bd87c17655609a1c37cb8"
        await deliver(client, sandbox, "line", LINE, line_api.message_payload(
            LINE, user, "Are you there?", "325710", timestamp_ms=now_ms(), mark_as_read_token="token-latest"))
        payload = slack_api.block_actions(AGENT, {"type": "button", "action_id": ids.OPEN_TICKET, "value": "1"},
                                          api=sandbox.slack)
        body, ctype = slack_api.interaction_body(payload)
        resp = await client.post("/slack/events", data=body.encode(),
                                 headers={"Content-Type": ctype, **slack_api.sign(body)})
        assert resp.status == 200
        await eventually(lambda: sandbox.fakes["line"].read_tokens() == ["token-latest"])
    finally:
        await client.close()
        await sandbox.stop()
