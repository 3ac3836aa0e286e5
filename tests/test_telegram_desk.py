"""Telegram through the running service: Updates posted to a bot's webhook URL with its secret token
become tickets tagged `telegram` and `messaging_support` in a real DuckDB store, agents' replies leave
through the outbox from the ticket's own bot, Telegram's refusals reach the reply, reports count the
tickets by their tag, and the bot token shows nowhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from connectors import media
from connectors.telegram import SECRET_HEADER
from socialdesk.config import Config
from socialdesk.fakes.telegram_api import TelegramAPI
from socialdesk.sandbox import ACCOUNTS, Sandbox
from socialdesk.service import CONFIG, DESK, STORE, build_app
from tests.support import eventually, sql
from warehouse import reports

FIXTURES = Path(__file__).parent / "fixtures" / "telegram"
USER = "482915377"  # the customer in the fixtures
SHOP, RETURNS = ACCOUNTS["telegram"]  # the sandbox's two bots


@pytest.fixture
async def world(tmp_path: Any, aiohttp_client: Any) -> AsyncIterator[tuple[Sandbox, Any]]:
    sandbox = await Sandbox().start()
    cfg = sandbox.configure(Config())
    cfg.store.path = str(tmp_path / "telegram.duckdb")
    cfg.server.retry_base_seconds = 0.05
    cfg.server.media_secret = "test-media-secret"
    client = await aiohttp_client(build_app(cfg))
    yield sandbox, client
    await client.close()
    await sandbox.stop()


def fake(sandbox: Sandbox) -> TelegramAPI:
    found: TelegramAPI = sandbox.fakes["telegram"]
    return found


def tokens(sandbox: Sandbox) -> list[str]:
    return [t["bot_token"] for t in sandbox.channels["telegram"]]


async def post(client: Any, sandbox: Sandbox, raw: bytes, bot: str = SHOP, **headers: str) -> Any:
    """`raw` posted to the bot's webhook URL as Telegram posts it; the customer has now written to the bot."""
    fake(sandbox).customer_wrote(bot, USER, datetime.now(UTC))
    req = sandbox.request("telegram", bot, raw)
    return await client.post(req.path, data=req.body, headers={**req.headers, **headers})


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def test_a_telegram_message_becomes_a_ticket_tagged_telegram_and_messaging_support(world: Any) -> None:
    sandbox, client = world
    resp = await post(client, sandbox, fixture("text.json"))
    assert resp.status == 200, await resp.text()
    desk = client.app[DESK]
    ticket = await desk.ticket(1)
    assert ticket["tags"] == ["telegram", "messaging_support"]
    assert (ticket["channel"], ticket["account"]) == ("telegram", SHOP)
    assert ticket["fields"]["social_messaging_channel_info"]["account_name"] == "shop"
    assert ticket["comments"][0]["body"] == "Hello! My order #5521 hasn't arrived yet."
    user = await desk.user(ticket["requester"]["id"])
    assert user["name"] == "Olena Kovalenko"
    assert user["identities"][0]["platform_user_id"] == USER
    info = json.dumps(user, default=str)
    assert "@olena_k" in info  # the username is kept with the identity


@pytest.mark.parametrize("secret", [None, "not-the-secret"])
async def test_a_missing_or_wrong_secret_token_is_refused_and_stores_nothing(world: Any, secret: str | None) -> None:
    sandbox, client = world
    req = sandbox.request("telegram", SHOP, fixture("text.json"))
    headers = {k: v for k, v in req.headers.items() if k != SECRET_HEADER}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    resp = await client.post(req.path, data=req.body, headers=headers)
    assert resp.status == 401
    other_bots = sandbox.request("telegram", RETURNS, fixture("text.json"))  # the other bot's secret, this bot's URL
    resp = await client.post(req.path, data=req.body, headers=other_bots.headers)
    assert resp.status == 401
    assert sql(client, "SELECT count(*) FROM inbox") == [(0,)]
    assert sql(client, "SELECT count(*) FROM tickets") == [(0,)]


async def test_malformed_json_and_an_unknown_bot_get_clear_4xx(world: Any) -> None:
    sandbox, client = world
    resp = await post(client, sandbox, b"{not json")
    assert resp.status == 400 and "not JSON" in await resp.text()
    resp = await post(client, sandbox, b'{"message": {}}')
    assert resp.status == 400 and "update_id" in await resp.text()
    assert (await client.post("/webhooks/telegram/nobody", data=b"{}")).status == 404
    assert sql(client, "SELECT count(*) FROM tickets") == [(0,)]


async def test_a_redelivered_update_makes_one_comment(world: Any) -> None:
    """Telegram retries an update until it gets a 2xx: the same update three times is one comment."""
    sandbox, client = world
    for _ in range(3):
        assert (await post(client, sandbox, fixture("text.json"))).status == 200
    assert sql(client, "SELECT count(*) FROM comments") == [(1,)]
    assert sql(client, "SELECT count(*) FROM tickets") == [(1,)]


async def test_an_edit_is_recorded_on_the_comment_it_edits(world: Any) -> None:
    sandbox, client = world
    await post(client, sandbox, fixture("text.json"))
    for _ in range(2):  # a redelivered edit changes nothing more
        assert (await post(client, sandbox, fixture("edited.json"))).status == 200
    ticket = await client.app[DESK].ticket(1)
    edits = [e["data"] for e in ticket["events"] if e["kind"] == "comment_edited"]
    assert [e["text"] for e in edits] == ["Hello! My order #5522 hasn't arrived yet."]
    assert [c["body"] for c in ticket["comments"]] == ["Hello! My order #5521 hasn't arrived yet."]


async def test_a_photo_is_an_attachment_agents_open_through_a_signed_link(world: Any) -> None:
    sandbox, client = world
    fake(sandbox).add_file("AgACAgIAAxkBAAIBbWdYphoto1280", b"\xff\xd8 parcel", "photos/file_7.jpg")
    assert (await post(client, sandbox, fixture("photo.json"))).status == 200
    assert (await post(client, sandbox, fixture("document.json"))).status == 200
    [photo, document] = (await client.app[DESK].ticket(1))["comments"]
    assert photo["body"] == "The parcel arrived like this"
    assert photo["attachments"] == [{"type": "image", "media_id": "AgACAgIAAxkBAAIBbWdYphoto1280"}]
    assert document["attachments"] == [{"type": "file", "media_id": "BQACAgIAAxkBAAIBbmdYdocument",
                                         "mime_type": "application/pdf", "filename": "invoice-5521.pdf"}]
    link = media.sign_link(client.app[CONFIG].server.media_secret, "", photo["id"], 0)
    resp = await client.get(link)
    assert (resp.status, resp.content_type, await resp.read()) == (200, "image/jpeg", b"\xff\xd8 parcel")
    gone = await client.get(media.sign_link(client.app[CONFIG].server.media_secret, "", document["id"], 0))
    said = await gone.text()  # the document was never added to the fake: Telegram has no such file
    assert gone.status == 502 and not any(t in said for t in tokens(sandbox))


async def test_a_shared_contact_gives_the_customer_a_phone_found_by_phone_search(world: Any) -> None:
    """R4, R25: the customer's own number, shared with Telegram's button, is searchable in any format."""
    sandbox, client = world
    await post(client, sandbox, fixture("text.json"))
    await post(client, sandbox, fixture("contact_own.json"))
    found = await client.app[DESK].search("+33 6 12 34 56 78")
    assert [u["name"] for u in found["users"]] == ["Olena Kovalenko"]
    assert found["users"][0]["phone"] == "+33612345678"


async def test_group_channel_and_button_updates_make_no_ticket(world: Any) -> None:
    sandbox, client = world
    for name in ("group.json", "channel_post.json", "callback_query.json"):
        assert (await post(client, sandbox, fixture(name))).status == 200
    assert sql(client, "SELECT count(*) FROM tickets") == [(0,)]


async def test_with_two_bots_each_ticket_is_answered_by_its_own_bot(world: Any) -> None:
    """R2, R20: the same customer writes to both bots; each reply leaves through the bot it was written to."""
    sandbox, client = world
    await post(client, sandbox, fixture("text.json"), SHOP)
    await post(client, sandbox, fixture("text.json"), RETURNS)
    desk = client.app[DESK]
    agent = await desk.agent("U1", "Ada")
    by_account = {t["account"]: t["id"] for t in [await desk.ticket(1), await desk.ticket(2)]}
    await desk.reply(by_account[SHOP], agent, "From the shop")
    await desk.reply(by_account[RETURNS], agent, "From returns")
    await eventually(lambda: len(sandbox.replies("telegram")) == 2)
    assert {(r.account, r.recipient, r.text) for r in sandbox.replies("telegram")} == {
        (SHOP, USER, "From the shop"), (RETURNS, USER, "From returns")}
    query = "SELECT platform_message_id FROM outbox WHERE state = 'sent' ORDER BY id"
    ids = await eventually(lambda: len(sql(client, query)) == 2 and sql(client, query))
    assert ids == [(f"{USER}:1001",), (f"{USER}:1001",)]  # each bot's chat numbers its own messages


async def test_a_customer_who_blocked_the_bot_makes_the_reply_fail_visibly(world: Any) -> None:
    sandbox, client = world
    await post(client, sandbox, fixture("text.json"))
    fake(sandbox).block(SHOP, USER)
    desk = client.app[DESK]
    result = await desk.reply(1, await desk.agent("U1"), "Are you there?")
    rows = await eventually(lambda: sql(client, "SELECT state, last_error FROM outbox WHERE id = ? AND state = "
                                                "'failed'", result["outbox_id"]))
    assert "Forbidden: bot was blocked by the user" in rows[0][1]
    events = (await desk.ticket(1))["events"]
    assert [e for e in events if e["kind"] == "reply_failed"]
    assert sandbox.replies("telegram") == []


async def test_flood_control_delays_a_reply_which_then_goes_once(world: Any) -> None:
    """B4: a 429 with retry_after is a retry, not a failure."""
    sandbox, client = world
    await post(client, sandbox, fixture("text.json"))
    fake(sandbox).flood(0, "sendMessage")
    desk = client.app[DESK]
    result = await desk.reply(1, await desk.agent("U1"), "Thanks for waiting")
    rows = await eventually(lambda: sql(client, "SELECT state, attempts FROM outbox WHERE id = ? AND state = 'sent'",
                                        result["outbox_id"]))
    assert rows == [("sent", 2)]
    assert [r.text for r in sandbox.replies("telegram")] == ["Thanks for waiting"]
    kinds = [e["kind"] for e in (await desk.ticket(1))["events"]]
    assert kinds.count("reply_retry") == 1 and kinds.count("reply_sent") == 1


async def test_the_bot_token_appears_in_no_log_and_no_stored_failure(world: Any,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox, client = world
    await post(client, sandbox, fixture("text.json"))
    api = fake(sandbox)
    api.fail_next(1, 400, {"ok": False, "error_code": 400, "description": f"Bad Request: {tokens(sandbox)[0]}"})
    api.fail_next(1, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    desk = client.app[DESK]
    agent = await desk.agent("U1")
    for text in ("first", "second"):
        result = await desk.reply(1, agent, text)
        await eventually(lambda r=result: sql(client, "SELECT 1 FROM outbox WHERE id = ? AND state = 'failed'",
                                              r["outbox_id"]))
    await client.post(sandbox.request("telegram", SHOP, b"").path, data=b"{", headers={SECRET_HEADER: "wrong"})
    stored = json.dumps([sql(client, "SELECT * FROM outbox"), sql(client, "SELECT * FROM events")], default=str)
    for token in tokens(sandbox):
        assert token not in stored and token not in caplog.text
        assert token.split(":")[1] not in stored and token.split(":")[1] not in caplog.text


async def test_reports_count_telegram_tickets_by_their_tag(world: Any) -> None:
    sandbox, client = world
    await post(client, sandbox, fixture("text.json"), SHOP)
    await post(client, sandbox, fixture("text.json"), RETURNS)
    day = date(2024, 12, 10)  # the fixture's message date
    df = client.app[STORE].read(lambda con: reports.volume(con, day, day, channels=["telegram"]))
    assert {(r.channel, r.account): r.tickets for r in df.itertuples()} == {("telegram", "shop"): 1,
                                                                             ("telegram", "returns"): 1}
