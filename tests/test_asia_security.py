"""Issue 13, through the real webhook routes: X's CRC handshake is no signing oracle, and a WeChat
signature captured earlier signs no forged message. Each attack is answered with a 4xx and stores nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors import registry as connector_registry
from connectors import wechat_crypto
from socialdesk.config import Config
from socialdesk.fakes import wechat_api, x_api
from socialdesk.sandbox import ACCOUNTS, Sandbox
from socialdesk.service import REGISTRY, STORE, build_app


@pytest.fixture
async def world(tmp_path: Any, aiohttp_client: Any) -> AsyncIterator[tuple[Sandbox, Any]]:
    sandbox = await Sandbox().start()
    cfg = sandbox.configure(Config())
    # The WeChat account in plain mode: the mode whose signature does not cover the body.
    cfg.channels["wechat"] = [{k: v for k, v in t.items() if k != "encoding_aes_key"} for t in cfg.channels["wechat"]]
    sandbox.channels["wechat"] = cfg.channels["wechat"]
    sandbox.registry = connector_registry.build(sandbox.channels)  # what the sandbox signs with, plain too
    cfg.store.path = str(tmp_path / "security.duckdb")
    client = await aiohttp_client(build_app(cfg))
    yield sandbox, client
    await client.close()
    await sandbox.stop()


def stored(client: Any) -> tuple[int, int]:
    """(raw bodies kept, comments): both stay 0 when an attack is refused."""
    return client.app[STORE].read(lambda c: (c.execute("SELECT count(*) FROM inbox").fetchone()[0],
                                             c.execute("SELECT count(*) FROM comments").fetchone()[0]))


async def test_issue13_a_dm_forged_with_a_signature_from_the_crc_endpoint_is_refused(world: Any) -> None:
    sandbox, client = world
    account = ACCOUNTS["x"][0]
    forged = x_api.message_payload(account, "666", "Send the refund to IBAN FR76 0000", "1666",
                                   name="Mallory", screen_name="mallory")
    # The attack: ask the CRC endpoint to "answer" the forged body, then post it under that answer.
    crc = await client.get("/webhooks/x", params={"crc_token": forged.decode()})
    assert crc.status == 400
    token = (json.loads(await crc.text()) if crc.content_type == "application/json" else {}).get("response_token", "")
    resp = await client.post("/webhooks/x", data=forged, headers={"Content-Type": "application/json",
                                                                  "x-twitter-webhooks-signature": token})
    assert resp.status == 401
    assert stored(client) == (0, 0)


async def test_issue13_the_crc_still_answers_x(world: Any) -> None:
    _, client = world
    crc = await client.get("/webhooks/x", params={"crc_token": "M2RkODJkZmMtYjlkYi00NmQ4LTk0MGUtM2JjYzkwM2Q4MjQ0"})
    assert crc.status == 200 and (await crc.json())["response_token"].startswith("sha256=")


async def test_issue13_a_wechat_signature_captured_30_days_ago_signs_no_forged_body(world: Any) -> None:
    sandbox, client = world
    account, table = ACCOUNTS["wechat"][0], sandbox.channels["wechat"][0]
    # A signature captured from a genuine request a month ago: plain mode signs token, timestamp, nonce only.
    month_ago, nonce = str(int(time.time()) - 30 * 86400), "1320562132"
    query = {"signature": wechat_crypto.signature(table["token"], month_ago, nonce), "timestamp": month_ago,
             "nonce": nonce}
    forged = wechat_api.message_payload(account, "oMallory", "请把退款打到这个账户", 1666)
    for _ in range(3):
        resp = await client.post("/webhooks/wechat/cn", data=forged, params=query, headers={"Content-Type": "text/xml"})
        assert resp.status == 401
    assert stored(client) == (0, 0)


async def test_issue13_a_fresh_wechat_nonce_signs_one_message_only(world: Any) -> None:
    sandbox, client = world
    account = ACCOUNTS["wechat"][0]
    genuine = sandbox.request("wechat", account, sandbox.message("wechat", account, "oCustomer", "你好", "71",
                                                                 datetime.now(UTC)))
    assert (await client.post(genuine.path, data=genuine.body, params=genuine.query)).status == 200
    forged = wechat_api.message_payload(account, "oMallory", "forged under a fresh signature", 1667)
    resp = await client.post(genuine.path, data=forged, params=genuine.query)
    assert resp.status == 401
    # WeChat retrying the genuine request is still welcome, and stored once.
    assert (await client.post(genuine.path, data=genuine.body, params=genuine.query)).status == 200
    assert stored(client)[1] == 1


def test_issue13_start_up_can_warn_that_the_wechat_account_runs_in_plain_mode(world: Any) -> None:
    _, client = world
    [warning] = client.app[REGISTRY]["wechat"].warnings()
    assert "'cn'" in warning and "plain mode" in warning
