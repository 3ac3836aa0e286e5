"""What an attacker or a misbehaving platform must not do to a running service (issue 13): bodies that
trickle in, replays that fill the disk, a Retry-After from another age, a second service on our port.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors import webhooks
from connectors.base import ConfigError, retry_after_seconds
from socialdesk.config import Config
from socialdesk.fakes.meta_api import WHATSAPP_PARIS
from socialdesk.sandbox import Sandbox
from socialdesk.service import DESK, _check_port, build_app
from tests.support import sql
from warehouse import clock

CUSTOMER = "33612345678"


@pytest.fixture
async def world(tmp_path: Any, aiohttp_client: Any) -> AsyncIterator[tuple[Sandbox, Any]]:
    sandbox = await Sandbox().start()
    cfg = sandbox.configure(Config(), slack=True)
    cfg.store.path = str(tmp_path / "hardening.duckdb")
    cfg.server.retry_base_seconds = 0.05
    client = await aiohttp_client(build_app(cfg))
    yield sandbox, client
    await client.close()
    await sandbox.stop()



async def whatsapp(client: Any, sandbox: Sandbox, text: str = "Hello", message_id: str = "wamid.1") -> Any:
    body = sandbox.message("whatsapp", WHATSAPP_PARIS, CUSTOMER, text, message_id, datetime.now(UTC))
    req = sandbox.request("whatsapp", WHATSAPP_PARIS, body)
    return await client.post(req.path, data=req.body, headers=req.headers)


async def test_a_replayed_body_is_kept_once(world: Any) -> None:
    """100 replays of a 1 MiB body once added 100-350 MiB to the inbox."""
    sandbox, client = world
    big = "x" * 600_000
    for _ in range(5):
        assert (await whatsapp(client, sandbox, big)).status == 200
    assert sql(client, "SELECT count(*), sum(octet_length(body)) > 600000 FROM inbox") == [(1, True)]


async def trickle(port: int, path: str, headers: str, body: bytes, pause: float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode())
    try:
        for byte in body:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pause)
    except ConnectionError:
        pass
    answer = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    return answer


@pytest.mark.parametrize("path", ["/webhooks/whatsapp", "/slack/events"])
async def test_a_body_sent_a_byte_at_a_time_is_cut_off(world: Any, monkeypatch: Any, path: str) -> None:
    sandbox, client = world
    monkeypatch.setattr(webhooks, "BODY_SECONDS", 0.3)
    answer = await trickle(client.port, path, "Content-Type: application/json\r\n", b'{"object": "whatsapp"}', 0.1)
    assert answer.startswith(b"HTTP/1.1 408")
    assert (await client.get("/healthz")).status == 200  # and the service keeps serving


async def test_a_retry_after_from_another_age_is_clamped_and_the_attempt_recorded(world: Any) -> None:
    sandbox, client = world
    await whatsapp(client, sandbox)
    sandbox.fakes["whatsapp"].fail_next(1, 429, {"error": {"message": "slow down", "code": 130429}},
                           headers={"Retry-After": "1e20"}, path_contains="/messages")
    desk = client.app[DESK]
    await desk.reply(1, await desk.agent("U1"), "We are on it")
    deadline = asyncio.get_running_loop().time() + 10
    while not sql(client, "SELECT attempts FROM outbox WHERE attempts > 0"):
        assert asyncio.get_running_loop().time() < deadline, "the attempt was never recorded"
        await asyncio.sleep(0.05)
    [(state, next_at)] = sql(client, "SELECT state, next_attempt_at FROM outbox")
    assert state == "queued" and next_at <= clock.now() + timedelta(hours=1, seconds=5)


@pytest.mark.parametrize(("value", "seconds"), [("1e20", 3600.0), ("inf", 3600.0), ("-5", 0.0), ("nan", None),
                                                 ("soon", None), ("Fri, 31 Dec 9999 23:59:59 GMT", 3600.0),
                                                 ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("120", 120.0)])
def test_retry_after_is_read_as_seconds_or_an_http_date_within_an_hour(value: str, seconds: float | None) -> None:
    assert retry_after_seconds(value) == seconds


def test_a_port_held_by_anything_stops_start_up_even_when_shared() -> None:
    """A second service in workers mode (SO_REUSEPORT) once started on our port and took half the webhooks."""
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(ConfigError, match="cannot be used"):
            _check_port("127.0.0.1", other.getsockname()[1])


@pytest.mark.parametrize(("reset", "seconds"), [("1e20", 3600.0), ("inf", 3600.0), ("0", 0.0), ("soon", None)])
def test_x_rate_limit_reset_is_clamped_like_retry_after(reset: str, seconds: float | None) -> None:
    from connectors.x import _reset_in
    assert _reset_in(reset) == seconds
