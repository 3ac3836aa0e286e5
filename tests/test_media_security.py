"""Inbound media links cannot be turned against the service (issue 13): a URL in a webhook is the
customer's word, so the media route fetches only from the platforms' hosts, never from private or
loopback addresses (after DNS, and on every redirect), and serves what comes back as a download.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from connectors import media
from socialdesk.config import Config
from socialdesk.fakes.meta_api import MESSENGER_PAGE, messenger_message_payload
from socialdesk.sandbox import Sandbox
from socialdesk.service import CONFIG, STORE, build_app

PSID = "1254459154682919"


class Internal:
    """Something on loopback the service must never be made to fetch (its /metrics, Quack, ...)."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.url = ""

    async def start(self) -> None:
        async def anything(request: web.Request) -> web.Response:
            self.hits.append(request.path)
            return web.Response(text="<script>steal()</script>", content_type="text/html")
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", anything)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


@pytest.fixture
async def world(tmp_path: Any, aiohttp_client: Any) -> AsyncIterator[tuple[Sandbox, Any, Internal]]:
    sandbox = await Sandbox().start()
    internal = Internal()
    await internal.start()
    cfg = sandbox.configure(Config())
    cfg.store.path = str(tmp_path / "media.duckdb")
    cfg.server.media_secret = "media-test-secret"
    client = await aiohttp_client(build_app(cfg))
    yield sandbox, client, internal
    await client.close()
    await internal.runner.cleanup()
    await sandbox.stop()


async def open_attachment(sandbox: Sandbox, client: Any, url: str, message_id: str = "m_1",
                          kind: str = "file") -> Any:
    """A Messenger message whose attachment names `url`, then the agent's signed link to it."""
    body = messenger_message_payload(MESSENGER_PAGE, PSID, message_id=message_id,
                                     attachments=[{"type": kind, "payload": {"url": url}}])
    req = sandbox.request("messenger", MESSENGER_PAGE, body)
    assert (await client.post(req.path, data=req.body, headers=req.headers)).status == 200
    [(comment_id,)] = client.app[STORE].read(lambda c: c.execute(
        "SELECT id FROM comments WHERE platform_message_id = ?", [message_id]).fetchall())
    return await client.get(media.sign_link(client.app[CONFIG].server.media_secret, "", comment_id, 0))


async def test_an_attachment_url_on_loopback_is_never_fetched(world: Any) -> None:
    sandbox, client, internal = world
    resp = await open_attachment(sandbox, client, internal.url + "/metrics")
    assert resp.status == 502 and internal.hits == []


async def test_a_platform_host_that_redirects_to_loopback_is_not_followed(world: Any) -> None:
    sandbox, client, internal = world
    url = sandbox.fakes["messenger"].add_cdn_file(b"never served", "image/png")
    sandbox.fakes["messenger"].fail_next(1, 302, "", headers={"Location": internal.url + "/metrics"},
                                         path_contains="/messenger-cdn/")
    resp = await open_attachment(sandbox, client, url)
    assert resp.status == 502 and internal.hits == []


async def test_a_platform_file_is_served_as_a_download_that_browsers_do_not_render(world: Any) -> None:
    sandbox, client, _ = world
    url = sandbox.fakes["messenger"].add_cdn_file(b"<html><script>steal()</script></html>", "text/html")
    resp = await open_attachment(sandbox, client, url)
    assert resp.status == 200
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


def test_a_filename_with_line_breaks_and_quotes_cannot_break_the_response() -> None:
    header = media._disposition('inv"oice\r\nSet-Cookie: a=b.pdf')
    assert "\r" not in header and "\n" not in header
    assert header.startswith('attachment; filename="inv_oice__Set-Cookie_ a_b.pdf"; filename*=UTF-8\'\'')


class Rebinding(AbstractResolver):
    """A platform's name that an attacker's DNS points at loopback."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": 0}]

    async def close(self) -> None:
        return None


async def test_a_platform_name_resolving_to_loopback_is_refused_after_dns() -> None:
    async with media.guarded_session(set(), resolver=Rebinding()) as session:
        with pytest.raises(aiohttp.ClientConnectionError, match="private or loopback"):
            await session.get("http://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1")


async def test_hosts_that_are_not_the_platforms_are_refused_before_any_connection() -> None:
    async with media.guarded_session(set(), resolver=Rebinding()) as session:
        for url in ("http://evil.example/x", "http://127.0.0.1:9494/quack", "http://[::1]/x",
                    "http://10.0.0.1.fbcdn.net.evil.example/x", "file:///etc/passwd"):
            with pytest.raises((aiohttp.ClientConnectionError, aiohttp.NonHttpUrlClientError)):
                await session.get(url)


async def test_a_media_id_that_is_a_path_is_refused(world: Any) -> None:
    """A LINE id `123%2F..%2F..%2Fx` once sent the channel token to another path."""
    sandbox, client, _ = world
    from socialdesk.fakes import line_api
    from socialdesk.fakes.line_api import DEMO_BOT_USER_ID as LINE_BOT
    body = line_api.image_payload(LINE_BOT, "U206d25c2ea6bd87c17655609a1c37cb8", "123%2F..%2F..%2Fx")
    req = sandbox.request("line", LINE_BOT, body)
    assert (await client.post(req.path, data=req.body, headers=req.headers)).status == 200
    [(comment_id, attachments)] = client.app[STORE].read(lambda c: c.execute(
        "SELECT id, attachments FROM comments").fetchall())
    assert "123%2F" in attachments
    sandbox.fakes["line"].requests.clear()
    resp = await client.get(media.sign_link(client.app[CONFIG].server.media_secret, "", comment_id, 0))
    assert resp.status == 404 and sandbox.fakes["line"].requests == []
