"""Resilience against the real server on loopback (issue 7): a crash loses nothing that was
acknowledged (issue 15: a webhook is acknowledged once it is in the log, and after a crash the log
alone gives every acknowledged message as a ticket's comment, exactly once), and no malformed or
forged request causes a 5xx or stores anything (B4)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import duckdb
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from socialdesk.config import Config
from socialdesk.fakes.meta_api import WHATSAPP_PARIS
from socialdesk.sandbox import ACCOUNTS, Sandbox
from socialdesk.service import STORE, build_app
from warehouse import owner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml(channels: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for channel, tables in channels.items():
        for table in tables:
            lines.append(f"[[{channel}]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


class Live:
    """The service and the fakes running in a background thread's event loop, for synchronous tests."""

    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.tmp = tmp

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)

    async def start(self) -> None:
        self.sandbox = await Sandbox().start()
        cfg = self.sandbox.configure(Config())
        cfg.store.path = str(self.tmp / "live.duckdb")
        cfg.server.max_body_bytes = 32 * 1024
        self.app = build_app(cfg)
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        port = _free_port()
        await web.TCPSite(self.runner, "127.0.0.1", port).start()
        self.url = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession()

    async def stop(self) -> None:
        await self.session.close()
        await self.runner.cleanup()
        await self.sandbox.stop()

    async def post(self, path: str, body: bytes, headers: dict[str, str], query: dict[str, str]) -> int:
        async with self.session.post(self.url + path, data=body, headers=headers, params=query) as resp:
            await resp.read()
            return resp.status


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    service = Live(tmp_path_factory.mktemp("live"))
    service.call(service.start())
    yield service
    service.call(service.stop())
    service.loop.call_soon_threadsafe(service.loop.stop)


ROUTES = ["/webhooks/whatsapp", "/webhooks/messenger", "/webhooks/x", "/webhooks/line/jp", "/webhooks/wechat/cn",
          "/webhooks/line/nobody", "/slack/events"]
HEADER_NAMES = ["X-Hub-Signature-256", "x-line-signature", "x-twitter-webhooks-signature", "Content-Type",
                "X-Slack-Signature", "X-Slack-Request-Timestamp"]
QUERY_NAMES = ["signature", "timestamp", "nonce", "encrypt_type", "msg_signature", "hub.mode", "crc_token"]
bodies = st.one_of(st.binary(max_size=2048), st.text(max_size=500).map(str.encode),
                   st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                                lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=10), kids,
                                                                                         max_size=4),
                                max_leaves=20).map(lambda v: json.dumps(v).encode()),
                   st.just(b"<xml><ToUserName>gh_97417a04a28d</ToUserName><Encrypt>AAAA</Encrypt></xml>"),
                   st.just(b'<!DOCTYPE x [<!ENTITY a "aaaa">]><xml>&a;</xml>'))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=st.sampled_from(ROUTES), body=bodies,
       headers=st.dictionaries(st.sampled_from(HEADER_NAMES), st.text(alphabet=st.characters(
           min_codepoint=32, max_codepoint=126), max_size=80), max_size=4),
       query=st.dictionaries(st.sampled_from(QUERY_NAMES), st.text(max_size=40), max_size=5))
def test_no_request_causes_a_5xx_or_stores_anything_without_a_valid_signature(live: Live, route: str, body: bytes,
                                                                              headers: dict[str, str],
                                                                              query: dict[str, str]) -> None:
    status = live.call(live.post(route, body, headers, query))
    assert status < 500
    stored = live.app[STORE].read(lambda c: c.execute("SELECT count(*) FROM inbox").fetchone()[0])
    assert stored == 0


@pytest.mark.parametrize("channel", ["whatsapp", "messenger", "line", "wechat", "x"])
def test_a_signed_request_with_a_broken_body_is_a_4xx(live: Live, channel: str) -> None:
    account = ACCOUNTS[channel][0]
    valid = live.sandbox.request(channel, account, live.sandbox.message(channel, account, "u1", "hi", "m1",
                                                                        datetime.now(UTC)))
    for junk in (b"", b"null", b"[]", b'{"entry": 5}', b"<xml>", "\u00e9t\u00e9".encode("latin-1")):
        # WeChat signs the query, not the body (safe mode signs the Encrypt element), so junk rides a valid query.
        req = valid if channel == "wechat" else live.sandbox.request(channel, account, junk)
        status = live.call(live.post(req.path, junk, req.headers, req.query))
        assert 400 <= status < 500


def _serve(tmp: Path, config: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PORT": str(port), "SOCIALDESK_CONFIG": str(config), "SOCIALDESK_DB": str(tmp / "c.duckdb")}
    return subprocess.Popen([sys.executable, "-m", "socialdesk.cli", "serve"], cwd=tmp, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_up(port: int, proc: subprocess.Popen[bytes], store: Path) -> None:
    """Until the public port and the store's admin socket both answer: aiohttp opens the port first, so
    an admin call made as soon as the port answers can find no socket yet."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the service died"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if owner.is_running(store):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("the service did not start")


async def _send_all(port: int, requests: list[Any], acked: list[str], stop_after: float | None) -> None:
    async with aiohttp.ClientSession() as http:
        sem = asyncio.Semaphore(16)

        async def one(mid: str, req: Any) -> None:
            async with sem:
                try:
                    async with http.post(f"http://127.0.0.1:{port}{req.path}", data=req.body,
                                         headers=req.headers) as resp:
                        if resp.status == 200:
                            acked.append(mid)
                except aiohttp.ClientError:
                    pass
        tasks = [asyncio.create_task(one(mid, req)) for mid, req in requests]
        if stop_after is None:
            await asyncio.gather(*tasks)
        else:
            await asyncio.wait(tasks, timeout=stop_after)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def crash_requests(prefix: str, count: int = 3000) -> tuple[Sandbox, list[Any]]:
    """(sandbox, [(message id, signed WhatsApp request)]) from a few dozen customers."""
    async def prepare() -> tuple[Sandbox, list[Any]]:
        sandbox = await Sandbox().start()
        await sandbox.stop()  # only the accounts and the signing are needed here
        now = datetime.now(UTC)
        return sandbox, [(f"wamid.{prefix}.{i}", sandbox.request("whatsapp", WHATSAPP_PARIS, sandbox.message(
            "whatsapp", WHATSAPP_PARIS, f"3361{i % 97:07d}", f"message {i}", f"wamid.{prefix}.{i}", now)))
            for i in range(count)]
    return asyncio.run(prepare())


def kill_9_mid_load(proc: subprocess.Popen[bytes], port: int, requests: list[Any]) -> list[str]:
    """Send everything with 16 clients, kill -9 the service a second in; the ids answered 200."""
    acked: list[str] = []

    def killer() -> None:
        time.sleep(1.0)
        os.kill(proc.pid, signal.SIGKILL)
    threading.Thread(target=killer).start()
    asyncio.run(_send_all(port, requests, acked, stop_after=20))
    proc.wait(10)
    assert 0 < len(acked) < len(requests), "the kill should land mid-load"
    return acked


def _stored(tmp: Path) -> dict[str, int]:
    con = duckdb.connect(str(tmp / "c.duckdb"), read_only=True)
    try:
        return dict(con.execute("SELECT platform_message_id, count(*) FROM comments GROUP BY 1").fetchall())
    finally:
        con.close()


def _caught_up(tmp: Path) -> None:
    """Wait until the restarted service has turned everything in its log into tickets (issue 15)."""
    deadline = time.monotonic() + 60
    while True:
        status, answer = owner.call(tmp / "c.duckdb", "/admin/ops/log_status", {})
        if status == 200 and answer["waiting"] == 0:
            return
        assert time.monotonic() < deadline, f"the log was not processed after the restart: {answer}"
        time.sleep(0.2)


def assert_redelivery_stores_each_once(tmp: Path, config: Path, port: int, requests: list[Any],
                                       acked: list[str]) -> None:
    """Restart: every acknowledged message is a ticket's comment exactly once, from the log alone (issue 15).
    Restart again and redeliver everything: every message, acknowledged or not, is stored exactly once."""
    proc = _serve(tmp, config, port)
    _wait_up(port, proc, tmp / "c.duckdb")
    try:
        _caught_up(tmp)
    finally:
        proc.terminate()
        proc.wait(20)
    stored = _stored(tmp)
    assert all(stored.get(mid) == 1 for mid in acked), "an acknowledged message was lost or duplicated"
    proc = _serve(tmp, config, port)
    _wait_up(port, proc, tmp / "c.duckdb")
    try:
        redelivered: list[str] = []
        asyncio.run(_send_all(port, requests, redelivered, stop_after=None))
        assert len(redelivered) == len(requests)
    finally:
        proc.terminate()
        proc.wait(20)
    stored = _stored(tmp)
    assert all(stored.get(mid) == 1 for mid in acked), "an acknowledged message was lost or duplicated"
    assert len(stored) == len(requests) and set(stored.values()) == {1}


def test_kill_9_under_load_loses_no_acknowledged_message_and_redelivery_adds_nothing(tmp_path: Path) -> None:
    sandbox, requests = crash_requests("crash")
    config = tmp_path / "c.toml"
    config.write_text(_toml(sandbox.channels))
    port = _free_port()
    proc = _serve(tmp_path, config, port)
    _wait_up(port, proc, tmp_path / "c.duckdb")
    acked = kill_9_mid_load(proc, port, requests)
    assert_redelivery_stores_each_once(tmp_path, config, port, requests, acked)
