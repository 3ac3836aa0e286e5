"""Each channel against the running service: signed webhooks in, replies out through the real outbox.

Issue 3's "done when", for every registered channel (a new channel is tested here by its registry line
and its simulation): a signed webhook becomes a ticket with the right tags,
fields and requester (R1, R2, R7, R8); a reply reaches the fake platform from the right account
(R20); outside the window it fails with an event and never reaches it (R22, R23, B1); an outage
delays a reply without losing or duplicating it (B4); forged, replayed, malformed and oversized
requests get clear answers and the service keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors import registry
from socialdesk.config import Config
from socialdesk.fakes.meta_api import WHATSAPP_LYON, WHATSAPP_PARIS
from socialdesk.sandbox import ACCOUNTS, SIMULATIONS, Sandbox
from socialdesk.service import CONFIG, DESK, build_app
from tests.support import eventually, sql
from warehouse import channels

CHANNELS = registry.names()
# The channels whose platform signs the body (the others prove themselves with a secret in a header).
SIGNED = [name for name in CHANNELS if SIMULATIONS[name].signs_body]
USERS = {name: simulation.customer for name, simulation in SIMULATIONS.items()}
# Each channel with a messaging window, and an hour past it.
LATE = [(c.name, c.window.hours + 1) for c in channels.every() if c.window]


@pytest.fixture
async def world(tmp_path: Any, aiohttp_client: Any) -> AsyncIterator[tuple[Sandbox, Any]]:
    sandbox = await Sandbox().start()
    cfg = sandbox.configure(Config())
    cfg.store.path = str(tmp_path / "e2e.duckdb")
    cfg.server.retry_base_seconds = 0.05
    cfg.server.max_body_bytes = 64 * 1024
    cfg.server.media_secret = "test-media-secret"
    client = await aiohttp_client(build_app(cfg))
    yield sandbox, client
    await client.close()
    await sandbox.stop()


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def post(client: Any, sandbox: Sandbox, channel: str, text: str = "Hello", *, message_id: str = "m1",
               account: str | None = None, at: datetime | None = None, name: str = "Amélie Dupont") -> Any:
    account = account or ACCOUNTS[channel][0]
    body = sandbox.message(channel, account, USERS[channel], text, message_id, at or now(), name)
    req = sandbox.request(channel, account, body)
    return await client.post(req.path, data=req.body, headers=req.headers, params=req.query)




def sends(sandbox: Sandbox, channel: str) -> list[Any]:
    """What the channel's fake took from us: (account, recipient, text) each."""
    return sandbox.replies(channel)


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_signed_webhook_becomes_a_ticket_with_tags_fields_and_requester(world, channel: str) -> None:
    sandbox, client = world
    resp = await post(client, sandbox, channel, "Where is my parcel?")
    assert resp.status == 200, await resp.text()
    ticket = await client.app[DESK].ticket(1)
    assert ticket["tags"] == [channels.get(channel).tag, "messaging_support"]
    assert (ticket["channel"], ticket["account"], ticket["status"]) == (channel, ACCOUNTS[channel][0], "new")
    info = ticket["fields"]["social_messaging_channel_info"]
    assert info["channel"] == channel and info["account_name"]
    assert ticket["comments"][0]["body"] == "Where is my parcel?"
    user = await client.app[DESK].user(ticket["requester"]["id"])
    assert user["identities"][0]["platform_user_id"] == USERS[channel]


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_reply_reaches_the_platform_from_the_tickets_account(world, channel: str) -> None:
    sandbox, client = world
    await post(client, sandbox, channel)
    desk = client.app[DESK]
    agent = await desk.agent("U1", "Ada")
    result = await desk.reply(1, agent, "It ships today")
    assert result["state"] == "queued"
    await eventually(lambda: sql(client, "SELECT state FROM outbox WHERE id = ?", result["outbox_id"]) == [("sent",)])
    [sent] = sends(sandbox, channel)
    assert (sent.account, sent.recipient, sent.text) == (ACCOUNTS[channel][0], USERS[channel], "It ships today")
    kinds = [e["kind"] for e in (await desk.ticket(1))["events"]]
    assert "sent_to_channel" in kinds and "reply_sent" in kinds


async def test_r2_r20_with_two_whatsapp_numbers_each_ticket_answers_from_its_own(world) -> None:
    sandbox, client = world
    await post(client, sandbox, "whatsapp", account=WHATSAPP_PARIS, message_id="a")
    await post(client, sandbox, "whatsapp", account=WHATSAPP_LYON, message_id="b")
    desk = client.app[DESK]
    agent = await desk.agent("U1")
    await desk.reply(1, agent, "from Paris")
    await desk.reply(2, agent, "from Lyon")
    await eventually(lambda: len(sends(sandbox, "whatsapp")) == 2)
    by_number = {r.account: r.text for r in sends(sandbox, "whatsapp")}
    assert by_number == {WHATSAPP_PARIS: "from Paris", WHATSAPP_LYON: "from Lyon"}


@pytest.mark.parametrize(("channel", "hours"), LATE)
async def test_r22_b1_a_reply_outside_the_window_fails_with_an_event_and_never_leaves(world, channel: str,
                                                                                       hours: int) -> None:
    sandbox, client = world
    await post(client, sandbox, channel, at=now() - timedelta(hours=hours))
    desk = client.app[DESK]
    result = await desk.reply(1, await desk.agent("U1"), "Sorry for the delay")
    assert result["state"] == "failed" and "window closed" in result["reason"]
    await asyncio.sleep(0.3)
    assert sends(sandbox, channel) == []
    assert "reply_failed" in [e["kind"] for e in (await desk.ticket(1))["events"]]


async def test_r22_a_window_closed_answer_from_the_platform_is_recorded_the_same_way(world) -> None:
    sandbox, client = world
    await post(client, sandbox, "whatsapp")
    from socialdesk.fakes.meta_api import whatsapp_window_closed
    sandbox.fakes["whatsapp"].fail_next(1, 400, whatsapp_window_closed(), path_contains="/messages")
    desk = client.app[DESK]
    result = await desk.reply(1, await desk.agent("U1"), "hello")
    rows = await eventually(lambda: sql(client, "SELECT state, window_closed, last_error FROM outbox WHERE id = ? "
                                        "AND state = 'failed'", result["outbox_id"]))
    assert rows[0][1] is True and rows[0][2]


async def test_b4_an_outage_delays_a_reply_without_losing_or_duplicating_it(world) -> None:
    sandbox, client = world
    await post(client, sandbox, "whatsapp")
    sandbox.fakes["whatsapp"].fail_next(3, 503, {"error": {"message": "Service unavailable", "code": 2}},
                           path_contains="/messages")
    desk = client.app[DESK]
    result = await desk.reply(1, await desk.agent("U1"), "hello after the storm")
    rows = await eventually(lambda: sql(client, "SELECT state, attempts FROM outbox WHERE id = ? AND state = 'sent'",
                                        result["outbox_id"]))
    assert rows == [("sent", 4)]
    delivered = [r for r in sandbox.fakes["whatsapp"].requests if r.path.endswith("/messages") and r.json
                 and r.json.get("text", {}).get("body") == "hello after the storm"]
    assert len(delivered) == 4  # three refused by the outage, one accepted
    kinds = [e["kind"] for e in (await desk.ticket(1))["events"]]
    assert kinds.count("reply_retry") == 3 and kinds.count("reply_sent") == 1


async def test_a_hanging_channel_api_holds_up_only_its_own_replies(world) -> None:
    sandbox, client = world
    await post(client, sandbox, "whatsapp")
    await post(client, sandbox, "line")
    sandbox.fakes["whatsapp"].hang_next(1, 4.0, path_contains="/messages")
    desk = client.app[DESK]
    agent = await desk.agent("U1")
    stuck = await desk.reply(1, agent, "through a slow WhatsApp")
    await asyncio.sleep(0.5)  # the WhatsApp send is on its way, and hangs
    quick = await desk.reply(2, agent, "through LINE")
    await eventually(lambda: sql(client, "SELECT state FROM outbox WHERE id = ? AND state = 'sent'",
                                 quick["outbox_id"]), timeout=2.5)
    assert sql(client, "SELECT state FROM outbox WHERE id = ?", stuck["outbox_id"]) == [("queued",)]
    await eventually(lambda: sql(client, "SELECT state FROM outbox WHERE id = ? AND state = 'sent'",
                                 stuck["outbox_id"]))
    assert len([r for r in sandbox.fakes["whatsapp"].requests if r.path.endswith("/messages")]) == 1  # sent once


async def test_b2_delivery_and_read_receipts_become_ticket_events(world) -> None:
    sandbox, client = world
    await post(client, sandbox, "whatsapp")
    desk = client.app[DESK]
    result = await desk.reply(1, await desk.agent("U1"), "hi")
    [(wamid,)] = await eventually(lambda: sql(client, "SELECT platform_message_id FROM outbox WHERE id = ? AND "
                                              "state = 'sent'", result["outbox_id"]))
    from socialdesk.fakes.meta_api import whatsapp_status_payload
    for status in ("delivered", "read", "delivered"):  # a late duplicate changes nothing
        body = whatsapp_status_payload(WHATSAPP_PARIS, USERS["whatsapp"], wamid, status)
        req = sandbox.request("whatsapp", WHATSAPP_PARIS, body)
        assert (await client.post(req.path, data=req.body, headers=req.headers)).status == 200
    assert sql(client, "SELECT state FROM outbox") == [("read",)]
    kinds = [e["kind"] for e in (await desk.ticket(1))["events"]]
    assert kinds.count("reply_delivered") == 1 and kinds.count("reply_read") == 1


@pytest.mark.parametrize("channel", SIGNED)
async def test_a_forged_signature_is_refused_and_nothing_is_stored(world, channel: str) -> None:
    sandbox, client = world
    account = ACCOUNTS[channel][0]
    req = sandbox.request(channel, account, sandbox.message(channel, account, USERS[channel], "hi", "m1", now()))
    tampered = req.body.replace(b"hi", b"HI") if channel != "wechat" else req.body
    query = dict(req.query)
    if channel == "wechat":
        query["msg_signature"] = "0" * 40
    resp = await client.post(req.path, data=tampered, headers=req.headers, params=query)
    assert resp.status in (401, 403)
    assert sql(client, "SELECT count(*) FROM inbox") == [(0,)]


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_request_made_with_secrets_not_the_accounts_is_refused_and_nothing_is_stored(world,
                                                                                               channel: str) -> None:
    """A forger who knows the account's ids and the platform's scheme but not its secrets (signing keys,
    shared secrets, encryption keys): whatever the platform proves itself with, it is refused."""
    sandbox, client = world
    account = ACCOUNTS[channel][0]
    body = sandbox.message(channel, account, USERS[channel], "hi", "m1", now())
    others = SIMULATIONS[channel].accounts(sandbox.fakes[channel], lambda: secrets.token_hex(16))
    headers, query, forged = registry.build({channel: others})[channel].simulate(account, body)
    resp = await client.post(sandbox.request(channel, account, body).path, data=forged, headers=headers, params=query)
    assert resp.status in (401, 403)
    assert sql(client, "SELECT count(*) FROM inbox") == [(0,)]


@pytest.mark.parametrize("channel", CHANNELS)
async def test_a_replayed_webhook_changes_nothing(world, channel: str) -> None:
    sandbox, client = world
    account = ACCOUNTS[channel][0]
    req = sandbox.request(channel, account, sandbox.message(channel, account, USERS[channel], "hi", "m1", now()))
    for _ in range(3):
        assert (await client.post(req.path, data=req.body, headers=req.headers, params=req.query)).status == 200
    assert sql(client, "SELECT count(*) FROM comments") == [(1,)]
    assert sql(client, "SELECT count(*) FROM tickets") == [(1,)]


async def test_malformed_oversized_and_unknown_account_requests_get_clear_answers(world) -> None:
    sandbox, client = world
    bad = sandbox.request("whatsapp", WHATSAPP_PARIS, b"{not json")
    assert (await client.post(bad.path, data=bad.body, headers=bad.headers)).status == 400
    big = sandbox.request("whatsapp", WHATSAPP_PARIS, b'{"object":"whatsapp_business_account","x":"'
                          + b"a" * 70_000 + b'"}')
    assert (await client.post(big.path, data=big.body, headers=big.headers)).status == 413
    assert (await client.post("/webhooks/line/nobody", data=b"{}")).status == 404
    stranger = sandbox.message("whatsapp", "999999999", USERS["whatsapp"], "hi", "m1", now())
    req = sandbox.request("whatsapp", WHATSAPP_PARIS, stranger)
    assert (await client.post(req.path, data=req.body, headers=req.headers)).status == 404
    assert (await client.get("/healthz")).status == 200
    assert (await post(client, sandbox, "whatsapp")).status == 200


async def test_the_handshakes_answer_through_the_service(world) -> None:
    sandbox, client = world
    token = sandbox.channels["whatsapp"][0]["verify_token"]
    resp = await client.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": token,
                                                          "hub.challenge": "1158201444"})
    assert (resp.status, await resp.text()) == (200, "1158201444")
    bad = await client.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "nope",
                                                         "hub.challenge": "1"})
    assert bad.status == 403
    query = sandbox.registry["wechat"].handshake_query(ACCOUNTS["wechat"][0], "echo123")  # type: ignore[attr-defined]
    resp = await client.get("/webhooks/wechat/cn", params=query)
    assert (resp.status, await resp.text()) == (200, "echo123")
    crc = await client.get("/webhooks/x", params={"crc_token": "abc"})
    assert crc.status == 200 and (await crc.json())["response_token"].startswith("sha256=")


async def test_agents_open_inbound_media_through_a_signed_link(world) -> None:
    """Issue 3: inbound media are fetched from the platform on demand, for agents to open."""
    sandbox, client = world
    from connectors import media
    from socialdesk.fakes.meta_api import whatsapp_message_payload
    media_id = sandbox.fakes["whatsapp"].add_media(b"\x89PNG fake", "image/png")
    body = whatsapp_message_payload(WHATSAPP_PARIS, USERS["whatsapp"], message_id="wamid.img", name="Amélie",
                                    content={"type": "image", "image": {"id": media_id, "mime_type": "image/png"}})
    req = sandbox.request("whatsapp", WHATSAPP_PARIS, body)
    assert (await client.post(req.path, data=req.body, headers=req.headers)).status == 200
    [(comment_id,)] = sql(client, "SELECT id FROM comments")
    secret = client.app[CONFIG].server.media_secret
    link = media.sign_link(secret, "", comment_id, 0)
    resp = await client.get(link)
    assert (resp.status, resp.content_type, await resp.read()) == (200, "image/png", b"\x89PNG fake")
    assert (await client.get(link.replace("sig=", "sig=0"))).status == 403
    expired = media.sign_link(secret, "", comment_id, 0, ttl=-10)
    assert (await client.get(expired)).status == 403
    assert (await client.get(media.sign_link(secret, "", comment_id, 5))).status == 404


async def test_admin_operations_never_answer_over_tcp_issue_13(world) -> None:
    """The CLI's operations answer on the store's admin socket only: not on the public port, from
    loopback or anywhere, whatever token is shown."""
    sandbox, client = world
    await post(client, sandbox, "whatsapp", "Hello")
    for path in ("/admin/ops/search", "/admin/ops/live", "/internal/ingest"):
        resp = await client.post(path, json={"query": "+33"}, headers={"Authorization": "Bearer anything"})
        assert resp.status == 404, path


async def test_a_reply_whatsapp_took_though_its_send_timed_out_is_not_sent_twice_issue_13(
        world, monkeypatch: pytest.MonkeyPatch) -> None:
    """The send times out after WhatsApp took the message; its status webhook names our outbox row
    (biz_opaque_callback_data), so the reply is marked sent and the retry never leaves."""
    import aiohttp

    from connectors import base
    from socialdesk.fakes.meta_api import whatsapp_status_payload
    from socialdesk.service import SENDER
    sandbox, client = world
    await post(client, sandbox, "whatsapp", "Where is my parcel?")
    monkeypatch.setattr(base, "SEND_TIMEOUT", aiohttp.ClientTimeout(total=0.3))
    sandbox.fakes["whatsapp"].hang_next(1, 1.0, path_contains="/messages")
    client.app[SENDER].base_delay = 30  # the retry would leave long after the status
    desk = client.app[DESK]
    await desk.reply(1, await desk.agent("U1"), "It left this morning")
    await eventually(lambda: sql(client, "SELECT attempts FROM outbox WHERE attempts = 1 AND state = 'queued'"))
    [taken] = sandbox.fakes["whatsapp"].sent(f"/{WHATSAPP_PARIS}/messages")
    opaque = taken.json["biz_opaque_callback_data"]
    body = json.loads(whatsapp_status_payload(WHATSAPP_PARIS, USERS["whatsapp"], "wamid.TAKEN", "sent"))
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"] = opaque
    req = sandbox.request("whatsapp", WHATSAPP_PARIS, json.dumps(body).encode())
    assert (await client.post(req.path, data=req.body, headers=req.headers)).status == 200
    assert sql(client, "SELECT state, platform_message_id FROM outbox") == [("sent", "wamid.TAKEN")]
    await client.app[SENDER].start_due()
    assert len(sends(sandbox, "whatsapp")) == 1
