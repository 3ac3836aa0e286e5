"""Inbound media for agents: signed links, and the route that fetches the file from the platform on demand.

Platforms keep what customers send (WhatsApp and WeChat media ids, LINE message content, Messenger and
X URLs); we store only its metadata. A link in the Slack thread names a comment's attachment and is
signed with `[server] media_secret` and an expiry, so only links we handed out open anything.

A URL in a webhook is the customer's word, so fetching it is guarded (`guarded_session`): only the
platforms' own hosts (the configured API hosts and the platforms' media CDNs), only public addresses
for anything not configured, checked after DNS resolution and again on every redirect. What comes back
is served as a download that browsers neither sniff nor render on our origin.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from connectors import registry
from connectors.base import Connector
from warehouse import queries
from warehouse.store import Store

log = logging.getLogger(__name__)
TTL = 7 * 24 * 3600  # WhatsApp media ids live 7 days: a link need not outlive them
MEDIA_ID = re.compile(r"^[A-Za-z0-9_.=:-]{1,512}$")
HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'; sandbox",
           "Cache-Control": "private, no-store"}


class RefusedHost(aiohttp.ClientConnectionError):
    """A media URL that points anywhere but a platform's public host."""


def _public(address: str) -> bool:
    return ipaddress.ip_address(address.split("%", 1)[0]).is_global


Origin = tuple[str, int]  # (host, port)


def _origin(url: URL) -> Origin:
    return ((url.host or "").lower().rstrip("."), url.port or 0)


class _Guard:
    """Where media may come from: the configured API origins as they are (a fake on loopback in tests),
    the platforms' CDN domains only at public addresses."""

    def __init__(self, configured: Iterable[Origin]) -> None:
        self.configured = set(configured)
        self.domains = registry.media_domains()

    def check(self, url: URL) -> None:
        origin = _origin(url)
        if origin in self.configured:
            return
        host = origin[0]
        if url.scheme not in ("http", "https") or not any(
                host == d or host.endswith("." + d) for d in self.domains):
            raise RefusedHost(f"media is fetched from the platforms' hosts only, not {host or 'this URL'}")
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return  # a name: the resolver checks its addresses
        if not literal.is_global:
            raise RefusedHost("media is never fetched from a private or loopback address")


class _PublicResolver(AbstractResolver):
    def __init__(self, guard: _Guard, inner: AbstractResolver | None = None) -> None:
        self.guard = guard
        self.inner = inner or aiohttp.DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if (host.lower().rstrip("."), port) not in self.guard.configured and \
                not all(_public(r["host"]) for r in found):
            raise RefusedHost(f"{host} resolves to a private or loopback address")
        return found

    async def close(self) -> None:
        await self.inner.close()


def guarded_session(configured: Iterable[Origin], resolver: AbstractResolver | None = None) -> aiohttp.ClientSession:
    """The session media is fetched with: see the module's docstring."""
    guard = _Guard(configured)

    async def check(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        guard.check(params.url)

    async def check_redirect(session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any) -> None:
        location = params.response.headers.get("Location")
        if location:
            guard.check(params.response.url.join(URL(location)))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(check)
    trace.on_request_redirect.append(check_redirect)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=_PublicResolver(guard, resolver)),
                                 trace_configs=[trace])


def configured_origins(tables: dict[str, list[dict[str, Any]]]) -> set[Origin]:
    """The origins of every configured API URL (`api_url`, `data_api_url`, ...)."""
    return {_origin(URL(value)) for accounts in tables.values() for table in accounts
            for key, value in table.items() if key.endswith("_url") and isinstance(value, str)}


def _disposition(filename: str) -> str:
    """`attachment` with the file's name, safe whatever the name holds (CR/LF, quotes, non-ASCII)."""
    plain = re.sub(r'[^A-Za-z0-9._ -]', "_", filename)[:150] or "file"
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename[:150], safe='')}"


def _signature(secret: str, comment_id: int, index: int, expires: int) -> str:
    return hmac.new(secret.encode(), f"{comment_id}:{index}:{expires}".encode(), hashlib.sha256).hexdigest()


def sign_link(secret: str, base_url: str, comment_id: int, index: int, *, ttl: int = TTL,
              now: float | None = None) -> str:
    """A link to attachment `index` of comment `comment_id`, valid for `ttl` seconds."""
    expires = int((now or time.time()) + ttl)
    query = urlencode({"exp": expires, "sig": _signature(secret, comment_id, index, expires)})
    return f"{base_url.rstrip('/')}/media/{comment_id}/{index}?{query}"


def handler(registry: dict[str, Connector], store: Store, secret: str,
            session: Callable[[], aiohttp.ClientSession]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def media(request: web.Request) -> web.StreamResponse:
        try:
            comment_id, index = int(request.match_info["comment"]), int(request.match_info["index"])
            expires = int(request.query.get("exp", "0"))
        except ValueError:
            return web.Response(status=400, text="bad media link")
        given = request.query.get("sig", "")
        if not hmac.compare_digest(given, _signature(secret, comment_id, index, expires)):
            return web.Response(status=403, text="this media link is not valid")
        if expires < time.time():
            return web.Response(status=403, text="this media link has expired")
        found = await store.aread(lambda con: queries.attachment(con, comment_id, index))
        if found is None:
            return web.Response(status=404, text="no such attachment")
        attachment, channel, account = found
        connector = registry.get(channel)
        media_id, url = attachment.get("media_id"), attachment.get("url")
        key = media_id or url
        if connector is None or not key or (media_id and not MEDIA_ID.match(str(media_id))):
            return web.Response(status=404, text="this attachment cannot be fetched from its channel")
        try:
            got = await connector.fetch_media(session(), account, key)
        except (LookupError, RefusedHost) as exc:
            log.info("media for comment %s not fetched: %s", comment_id, exc)
            return web.Response(status=502, text=f"the channel did not return the file: {exc}")
        name = str(attachment.get("filename") or got.filename or "file")
        content_type = got.mime_type.split(";")[0].strip() or "application/octet-stream"
        if not re.fullmatch(r"[A-Za-z0-9.+-]+/[A-Za-z0-9.+-]+", content_type):
            content_type = "application/octet-stream"
        return web.Response(body=got.data, content_type=content_type,
                            headers={**HEADERS, "Content-Disposition": _disposition(name)})

    return media
