"""Inbound media for agents: signed links, and the route that fetches the file from the platform on demand.

Platforms keep what customers send (WhatsApp and WeChat media ids, LINE message content, Messenger and
X URLs); we store only its metadata. A link in the Slack thread names a comment's attachment and is
signed with `[server] media_secret` and an expiry, so only links we handed out open anything.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from connectors.base import Connector
from warehouse.store import Store

log = logging.getLogger(__name__)
TTL = 7 * 24 * 3600  # WhatsApp media ids live 7 days: a link need not outlive them


def _signature(secret: str, comment_id: int, index: int, expires: int) -> str:
    return hmac.new(secret.encode(), f"{comment_id}:{index}:{expires}".encode(), hashlib.sha256).hexdigest()


def sign_link(secret: str, base_url: str, comment_id: int, index: int, *, ttl: int = TTL,
              now: float | None = None) -> str:
    """A link to attachment `index` of comment `comment_id`, valid for `ttl` seconds."""
    expires = int((now or time.time()) + ttl)
    query = urlencode({"exp": expires, "sig": _signature(secret, comment_id, index, expires)})
    return f"{base_url.rstrip('/')}/media/{comment_id}/{index}?{query}"


def handler(registry: dict[str, Connector], store: Store, secret: str,
            session: Callable[[], aiohttp.ClientSession]) -> Callable[[web.Request], object]:
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
        row = await store.aread(lambda con: con.execute(
            "SELECT c.attachments, t.channel, t.account FROM comments c JOIN tickets t ON t.id = c.ticket_id "
            "WHERE c.id = ?", [comment_id]).fetchone())
        attachments = json.loads(row[0]) if row else []
        if not 0 <= index < len(attachments):
            return web.Response(status=404, text="no such attachment")
        attachment, channel, account = attachments[index], row[1], row[2]
        connector = registry.get(channel)
        key = attachment.get("media_id") or attachment.get("url")
        if connector is None or not key:
            return web.Response(status=404, text="this attachment cannot be fetched from its channel")
        try:
            got = await connector.fetch_media(session(), account, key)
        except LookupError as exc:
            log.info("media for comment %s not fetched: %s", comment_id, exc)
            return web.Response(status=502, text=f"the channel did not return the file: {exc}")
        headers = {"Content-Disposition": f'inline; filename="{attachment.get("filename") or got.filename or "file"}"'}
        return web.Response(body=got.data, content_type=got.mime_type.split(";")[0], headers=headers)

    return media
