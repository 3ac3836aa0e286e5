"""What WhatsApp and Messenger share because both are Meta apps on the Graph API.

Owns: the `hub.challenge` verification handshake, the `X-Hub-Signature-256` check and signing
(the one implementation both `verify()` and `simulate()` use), reading webhook JSON, reading Graph
API error bodies into safe reasons, splitting a text too long for one message and sending a reply
in parts, account-table checks, and media downloads. Channel specifics (payload shapes, send
formats, error codes) stay in whatsapp.py and messenger.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from aiohttp import web

from connectors.base import (
    SEND_TIMEOUT,
    BadSignature,
    DeliveryResult,
    HttpAnswer,
    Incoming,
    MalformedPayload,
    Media,
    header,
    hmac_sha256,
    same,
    url_value,
)
from warehouse.model import from_unix, from_unix_ms

GRAPH_API_URL = "https://graph.facebook.com/v21.0"
SIGNATURE_HEADER = "X-Hub-Signature-256"
MAX_MEDIA_BYTES = 100 * 1024 * 1024  # WhatsApp documents go up to 100 MB, Messenger files to 25 MB


# Webhook side ---------------------------------------------------------------------------------

def handshake(request: Incoming, verify_tokens: Iterable[str]) -> web.Response | None:
    """Meta's subscription check: echo `hub.challenge` when the verify token is one of ours."""
    if not any(key.startswith("hub.") for key in request.query):
        return None
    mode = request.query.get("hub.mode", "")
    token = request.query.get("hub.verify_token", "")
    # Compare against every token so the time taken does not reveal which one (or none) matched.
    matched = [same(token, candidate) for candidate in verify_tokens]
    if mode == "subscribe" and token and any(matched):
        return web.Response(status=200, text=request.query.get("hub.challenge", ""), content_type="text/plain")
    return web.Response(status=403, text="verification refused")


def sign(app_secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value Meta sends for `body`."""
    return "sha256=" + hmac_sha256(app_secret, body).hex()


def matching_secrets(request: Incoming, app_secrets: Iterable[str]) -> set[str]:
    """The app secrets whose signature matches the raw body; BadSignature when there are none."""
    given = header(request, SIGNATURE_HEADER).strip()
    if not given:
        raise BadSignature(f"missing {SIGNATURE_HEADER} header")
    # Meta sends lowercase hex; accept an uppercase digest too, the prefix must be exact.
    if given.startswith("sha256="):
        given = "sha256=" + given[len("sha256="):].lower()
    matched = {secret for secret in set(app_secrets) if same(given, sign(secret, request.body))}
    if not matched:
        raise BadSignature(f"{SIGNATURE_HEADER} does not match")
    return matched


_last_loaded: tuple[bytes, str, dict[str, Any]] | None = None


def load_json(body: bytes, expected_object: str) -> dict[str, Any]:
    """The webhook JSON with `object` == expected and `entry` a list, else MalformedPayload.

    verify() and parse() read the same body one after the other: the second call gets the first's
    result (callers only read it). Keyed by the body object itself, which the cache keeps alive.
    """
    global _last_loaded
    if _last_loaded is not None and _last_loaded[0] is body and _last_loaded[1] == expected_object:
        return _last_loaded[2]
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayload("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedPayload("body is not a JSON object")
    if data.get("object") != expected_object:
        raise MalformedPayload(f"object is not {expected_object!r}")
    if not isinstance(data.get("entry"), list):
        raise MalformedPayload("entry is not a list")
    _last_loaded = (body, expected_object, data)
    return data


def as_list(value: Any, what: str) -> list[Any]:
    """An optional list field: absent means empty, anything else but a list is malformed."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedPayload(f"{what} is not a list")
    return value


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedPayload(f"{what} is not an object")
    return value


def text_field(obj: Mapping[str, Any], key: str, what: str) -> str:
    """A required id-like field as text (Meta sends some ids as numbers)."""
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise MalformedPayload(f"{what} has no {key}")
    return str(value)


# Configuration --------------------------------------------------------------------------------

def api_url_value(table: Mapping[str, Any], section: str) -> str:
    return url_value(table, section, GRAPH_API_URL)


# Send side ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GraphError:
    status: int
    code: int | None
    subcode: int | None
    message: str
    details: str = ""  # `error_data.details`: WhatsApp says there what exactly was wrong


def graph_error(answer: HttpAnswer) -> GraphError:
    """The `{"error": {...}}` body the Graph API answers with, whatever shape it actually came in."""
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    if not isinstance(error, dict):
        return GraphError(answer.status, None, None, f"HTTP {answer.status}")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else data if isinstance(data, str) else None
    return GraphError(answer.status, _int(error.get("code")), _int(error.get("error_subcode")),
                      str(error.get("message") or error.get("error_user_msg") or f"HTTP {answer.status}"),
                      str(details or ""))


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def safe_reason(text: str, *secrets: str) -> str:
    """A reason fit for agents and logs: no token, no URL (Messenger URLs carry the token)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[redacted]")
    return re.sub(r"https?://\S+", "[url]", text)[:500]


def split_text(text: str, limit: int) -> list[str]:
    """`text` as consecutive parts of at most `limit` characters, cut where a reader would: at a blank
    line, else a line break, else a space, else (a run without spaces) anywhere. A cut is taken only in
    the second half of a part, so a long text never becomes a string of tiny messages."""
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = next((i + len(sep) for sep in ("\n\n", "\n", " ")
                    if (i := window.rfind(sep)) >= limit // 2), limit)
        part = rest[:cut].rstrip()
        if not part:  # nothing but spaces up to the cut: keep them rather than send an empty message
            part, cut = window, limit
        parts.append(part)
        rest = rest[cut:].lstrip("\n") if rest[cut:].strip() else ""
    if rest or not parts:
        parts.append(rest)
    return parts


Part = tuple[str, Callable[[], Awaitable[DeliveryResult]]]  # (what it is, for the agent; how to send it)


async def send_in_parts(parts: Sequence[Part]) -> DeliveryResult:
    """Send a reply's parts in order (a long text, then a file); the last part's id is the reply's.

    Until something went out, a failure is the reply's failure as it is (a retry is still safe). Once
    a part went out, retrying the reply would send that part twice: a later failure is then
    permanent, and its reason says what the customer did receive.
    """
    sent: list[tuple[str, str]] = []
    for what, send in parts:
        result = await send()
        if result.state == "sent" and result.platform_message_id:
            sent.append((what, result.platform_message_id))
            continue
        if not sent:
            return result
        received = " and ".join(w for w, _ in sent)
        ids = ", ".join(i for _, i in sent)
        verb = "was" if len(sent) == 1 else "were"
        return DeliveryResult.failed(f"{received} {verb} sent (message {ids}) but {what} was not: {result.reason}",
                                     window_closed=result.window_closed)
    return DeliveryResult.sent(sent[-1][1])


async def download(session: aiohttp.ClientSession, url: str, *, headers: Mapping[str, str] | None = None,
                   what: str, mime_type: str | None = None) -> Media:
    """GET a media file; LookupError with a safe message (no URL, no token) when it cannot be had."""
    if not url.startswith(("https://", "http://")):
        raise LookupError(f"{what}: not an http(s) media URL")
    try:
        async with session.get(url, headers=dict(headers or {}), timeout=SEND_TIMEOUT) as resp:
            if resp.status != 200:
                raise LookupError(f"{what}: the platform answered HTTP {resp.status}")
            data = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                data += chunk
                if len(data) > MAX_MEDIA_BYTES:
                    raise LookupError(f"{what}: larger than {MAX_MEDIA_BYTES} bytes")
            disposition = resp.content_disposition
            filename = disposition.filename if disposition else None
            return Media(bytes(data), mime_type or resp.content_type or "application/octet-stream", filename)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise LookupError(f"{what}: could not reach the platform ({type(exc).__name__})") from None


def timestamp(value: Any, what: str, *, ms: bool = False) -> datetime:
    """A unix time (seconds, or milliseconds for Messenger) as an aware UTC datetime."""
    try:
        return from_unix_ms(value) if ms else from_unix(value)
    except (TypeError, ValueError, OverflowError, OSError):
        raise MalformedPayload(f"{what} has no valid timestamp") from None


def number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise MalformedPayload(f"{what} is not a number") from None
