"""Operations: /healthz, /metrics in Prometheus' format, JSON logs without secrets."""

from __future__ import annotations

import json
import logging
from typing import Any

from socialdesk.config import Config
from socialdesk.logs import JsonFormatter
from socialdesk.sandbox import Sandbox
from socialdesk.service import build_app


async def test_metrics_count_webhooks_by_channel_and_answer(tmp_path: Any, aiohttp_client: Any) -> None:
    sandbox = await Sandbox().start()
    try:
        cfg = sandbox.configure(Config())
        cfg.store.path = str(tmp_path / "m.duckdb")
        client = await aiohttp_client(build_app(cfg))
        account = "106540352242922"
        from datetime import UTC, datetime
        req = sandbox.request("whatsapp", account, sandbox.message("whatsapp", account, "331", "hi", "m1",
                                                                   datetime.now(UTC)))
        assert (await client.post(req.path, data=req.body, headers=req.headers)).status == 200
        assert (await client.post(req.path, data=req.body + b" ", headers=req.headers)).status == 401
        assert (await client.get("/healthz")).status == 200
        text = await (await client.get("/metrics")).text()
        assert 'socialdesk_webhooks_total{channel="whatsapp",status="200"} 1.0' in text
        assert 'socialdesk_webhooks_total{channel="whatsapp",status="401"} 1.0' in text
        assert "socialdesk_outbox_depth 0.0" in text and "socialdesk_store_bytes" in text
        assert "socialdesk_webhook_seconds_bucket" in text
    finally:
        await sandbox.stop()


def test_json_logs_are_one_object_a_line() -> None:
    record = logging.LogRecord("connectors.webhooks", logging.WARNING, __file__, 1, "whatsapp webhook refused (%d)",
                               (401,), None)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line)["message"] == "whatsapp webhook refused (401)"


async def test_a_refused_webhook_logs_no_secret(tmp_path: Any, aiohttp_client: Any, caplog: Any) -> None:
    sandbox = await Sandbox().start()
    try:
        cfg = sandbox.configure(Config())
        cfg.store.path = str(tmp_path / "s.duckdb")
        client = await aiohttp_client(build_app(cfg))
        secrets = [v for tables in sandbox.channels.values() for t in tables for k, v in t.items()
                   if k in ("app_secret", "verify_token", "access_token", "page_access_token", "channel_secret",
                            "token", "encoding_aes_key", "consumer_secret", "app_secret")]
        with caplog.at_level(logging.DEBUG):
            for path in ("/webhooks/whatsapp", "/webhooks/messenger", "/webhooks/x", "/webhooks/line/jp",
                         "/webhooks/wechat/cn"):
                await client.post(path, data=b'{"object":"page"}', headers={"X-Hub-Signature-256": "sha256=00"})
        assert caplog.text and not any(s in caplog.text for s in secrets)
    finally:
        await sandbox.stop()
