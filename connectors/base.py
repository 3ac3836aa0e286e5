"""The one small protocol every channel module implements, and the shapes it speaks.

A channel module exports a `Connector` class built from its configured accounts, and a `DESCRIPTION`
that says everything else about the channel once: its plain facts for the warehouse (name, tag, label,
icon, messaging window: `warehouse.channels.Channel`), how its webhooks are routed, and where its fake
lives. `registry.py` lists the modules, one line each. The generic webhook handler (webhooks.py) and
the outbox sender (outbox.py) only ever talk to this protocol.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Generic, Literal, Protocol, Self, TypeVar

import aiohttp
from aiohttp import web

from warehouse.channels import Channel
from warehouse.model import InboundMessage, MessageEdit, MessageWithdrawn, StatusUpdate


class ConfigError(ValueError):
    """A missing or invalid configuration key; the message names the account and the key."""


class WebhookError(Exception):
    """A request we refuse; `status` is the HTTP answer, the message is safe to log (no secrets)."""

    status: int = 400

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status


class BadSignature(WebhookError):
    status = 401


class UnknownAccount(WebhookError):
    status = 404


class MalformedPayload(WebhookError):
    status = 400


@dataclass(frozen=True, slots=True)
class Incoming:
    """One webhook request as the protocol sees it: raw body bytes, never re-serialized."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    name: str | None = None  # the account name in /webhooks/<channel>/{name}
    # What verify() decoded (the JSON, the decrypted XML), kept for parse() on this request only
    # (`decode_once`): each body is parsed and decrypted once, and nothing is shared between requests.
    decoded: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


T = TypeVar("T")


def decode_once(request: Incoming, what: str, decode: Callable[[], T]) -> T:
    """`decode()` the first time `what` is asked of this request, its result after that."""
    if what not in request.decoded:
        request.decoded[what] = decode()
    result: T = request.decoded[what]
    return result


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """The body as a JSON object, else MalformedPayload saying what `what` (e.g. "LINE webhook body") is not."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayload(f"{what} is not JSON") from None
    if not isinstance(data, dict):
        raise MalformedPayload(f"{what} is not a JSON object")
    return data


@dataclass(frozen=True, slots=True)
class OutboundFile:
    filename: str
    mime_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Template:
    """A WhatsApp message template, which the platform delivers outside the 24-hour window (B1)."""

    name: str
    language: str = "en_US"
    parameters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OutboundReply:
    outbox_id: int
    channel: str
    account: str  # the business account's platform id: the reply leaves from here (R2, R20)
    to: str  # the end user's platform id
    text: str = ""
    file: OutboundFile | None = None
    template: Template | None = None
    # Stable per outbox row, so a retried send is recognized by platforms that dedupe (LINE).
    retry_key: str = ""
    # When the end user last wrote on this ticket (naive UTC): a channel whose messaging type depends
    # on the window (Messenger's HUMAN_AGENT tag after 24 hours) reads it here.
    customer_wrote_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """What one send attempt came to.

    `sent`: the platform took it (`platform_message_id` set). `retry`: a transient failure
    (connection error, timeout, 429, 5xx), try again later, after `retry_after` seconds if the
    platform said so. `failed`: permanent; `window_closed` when the platform refused because the
    messaging window is closed (WhatsApp 131047, Messenger code 10, WeChat 45015).
    """

    state: Literal["sent", "retry", "failed"]
    platform_message_id: str | None = None
    reason: str = ""
    retry_after: float | None = None
    window_closed: bool = False

    @classmethod
    def sent(cls, platform_message_id: str) -> DeliveryResult:
        return cls("sent", platform_message_id=platform_message_id)

    @classmethod
    def retry(cls, reason: str, retry_after: float | None = None) -> DeliveryResult:
        return cls("retry", reason=reason, retry_after=retry_after)

    @classmethod
    def failed(cls, reason: str, window_closed: bool = False) -> DeliveryResult:
        return cls("failed", reason=reason, window_closed=window_closed)


@dataclass(frozen=True, slots=True)
class Skipped:
    """A payload entry the parser did not understand. It is skipped alone, logged and counted in
    /metrics; everything else the webhook carried is stored and the platform gets its 200 (a 4xx
    would make the platform retry the whole body for days)."""

    what: str  # safe to log: what kind of entry it was, never its content


Parsed = InboundMessage | StatusUpdate | MessageEdit | MessageWithdrawn | Skipped


@dataclass(frozen=True, slots=True)
class Media:
    data: bytes
    mime_type: str
    filename: str | None = None


class Connector(Protocol):
    channel: ClassVar[str]  # its Description's channel name

    def account_ids(self) -> list[str]:
        """The platform ids of the configured business accounts."""
        ...

    def account_info(self, account_id: str) -> dict[str, Any]:
        """What agents should know about the business account (R8), no secrets."""
        ...

    def handshake(self, request: Incoming) -> web.Response | None:
        """The platform's verification request (GET), answered; None if this is not one."""
        ...

    def verify(self, request: Incoming) -> None:
        """Raise BadSignature / UnknownAccount unless the request is authentic. Constant-time."""
        ...

    def parse(self, request: Incoming) -> list[Parsed]:
        """Pure: the verified request's messages, receipts, edits and withdrawals, and a `Skipped` for
        each entry it does not understand. Raise MalformedPayload only when the body as a whole is
        unreadable."""
        ...

    def acknowledge(self, request: Incoming) -> web.Response:
        """The 200 answer once what the request carried is stored."""
        ...

    def simulate(self, account_id: str, body: bytes) -> tuple[dict[str, str], dict[str, str], bytes]:
        """The request the platform would send us with `body` for this account: (headers, query, body),
        signed (and encrypted) as the platform does. For the sandbox, the demo and the tests."""
        ...

    async def send(self, session: aiohttp.ClientSession, reply: OutboundReply) -> DeliveryResult:
        ...

    async def fetch_media(self, session: aiohttp.ClientSession, account_id: str, media_id: str) -> Media:
        ...


@dataclass(frozen=True, slots=True)
class Description:
    """One channel, declared once in its module (`DESCRIPTION`) and listed by the registry."""

    channel: Channel  # the plain facts the warehouse, Slack, the CLI and the reports read
    build: Callable[[list[dict[str, Any]]], Connector]  # the Connector from the channel's configured accounts
    # "app": one webhook URL for every account, /webhooks/<channel> (the account is in the payload);
    # "account": one URL per account, /webhooks/<channel>/<account name>.
    route: Literal["app", "account"]
    # Where the sandbox finds the channel's strict fake and how to drive it ("module:attribute", a
    # `socialdesk.fakes.recorder.Simulation`): named, not imported, since fakes live above connectors.
    simulation: str
    # Its webhooks are verified in the store process, never in a webhook worker (WeChat remembers
    # every nonce it saw, and only one process can).
    store_process_only: bool = False
    # Where the platform serves customers' files beside its configured API (its CDNs): media links in
    # payloads are followed to these domains, at public addresses only.
    media_domains: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.channel.name

    def path(self) -> str:
        """The webhook route, as aiohttp matches it."""
        return f"/webhooks/{self.name}/{{name}}" if self.route == "account" else f"/webhooks/{self.name}"


# Helpers the channel modules share -----------------------------------------------------------

def hmac_sha256(key: str | bytes, msg: bytes) -> bytes:
    return hmac.new(key.encode() if isinstance(key, str) else key, msg, hashlib.sha256).digest()


def obj(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: for optional parts of a payload."""
    return value if isinstance(value, dict) else {}


def same(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison of two signatures."""
    a = a.encode() if isinstance(a, str) else a
    b = b.encode() if isinstance(b, str) else b
    return hmac.compare_digest(a, b)


def header(request: Incoming, name: str) -> str:
    """A header, case-insensitively (tests may hand in a plain dict)."""
    value = request.headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in request.headers.items() if k.lower() == lowered), "")
    return value


def require(table: Mapping[str, Any], key: str, section: str, *, default: Any = None) -> Any:
    """A configuration value, or a ConfigError naming the account and the key."""
    value = table.get(key, default)
    if value is None or value == "":
        name = table.get("name", "?")
        raise ConfigError(f"[[{section}]] account {name!r}: missing key {key!r}")
    return value


def check_table(table: Any, section: str, keys: Iterable[str], optional: Iterable[str] = ("api_url",)) -> None:
    """Refuse a non-table or a key we do not know (a typo would otherwise be silently ignored)."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"[[{section}]] entries must be tables")
    known = {"name", *keys, *optional}
    for key in table:
        if key not in known:
            raise ConfigError(f"[[{section}]] account {table.get('name', '?')!r}: unknown key {key!r}")


def text_value(table: Mapping[str, Any], key: str, section: str, *, default: str | None = None,
               allow_int: bool = False) -> str:
    """A required text value; numeric ids written unquoted in TOML are accepted when `allow_int`."""
    value = require(table, key, section, default=default)
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"[[{section}]] account {table.get('name', '?')!r}: key {key!r} must be text")
    return value.strip()


def url_value(table: Mapping[str, Any], section: str, default: str, key: str = "api_url") -> str:
    url = text_value(table, key, section, default=default)
    if not url.startswith(("https://", "http://")):
        raise ConfigError(f"[[{section}]] account {table.get('name', '?')!r}: key {key!r} must be an http(s) URL")
    return url.rstrip("/")


class NamedAccount(Protocol):
    """A channel's account as its module defines it: named, and built from its `[[section]]` table."""

    @property
    def name(self) -> str: ...

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Self:
        """The account of one configuration table; ConfigError names the account and the bad key."""
        ...

    def public(self) -> dict[str, Any]:
        """What agents may know of it beside its name (R8): ids, handles, flags; never a secret."""
        ...


AccountT = TypeVar("AccountT", bound=NamedAccount)


class Accounts(Generic[AccountT]):
    """A channel's configured accounts, each found by its platform id (in payloads and replies) or its
    name (in `/webhooks/<channel>/{name}`); names and ids unique, or configuration is refused."""

    def __init__(self, section: str, accounts: Iterable[AccountT], id_key: str,
                 id_of: Callable[[AccountT], str], unknown: str) -> None:
        """`unknown`: the refusal for an id no account has, `{!r}` standing for the id."""
        found = list(accounts)
        check_unique(section, [(a.name, id_of(a)) for a in found], id_key)
        self.by_name = {a.name: a for a in found}
        self.by_id = {id_of(a): a for a in found}
        self._unknown = unknown

    def ids(self) -> list[str]:
        return list(self.by_id)

    def all(self) -> list[AccountT]:
        return list(self.by_id.values())

    def get(self, account_id: str) -> AccountT:
        found = self.by_id.get(account_id)
        if found is None:
            raise UnknownAccount(self.unknown(account_id))
        return found

    def unknown(self, account_id: str) -> str:
        """What to say of an id no account has."""
        return self._unknown.format(account_id)


class WithAccounts(Generic[AccountT]):
    """What every channel's `Connector` does the same way: build its accounts from its configuration
    section (`account_type.from_table`), keep them (`Accounts`), find them by platform id or by the name
    a per-account webhook URL carries; and the protocol's answers most platforms share (no GET
    handshake, a plain "OK" acknowledgement, no start-up warnings), which a channel overrides where
    its platform differs."""

    channel: ClassVar[str]
    account_type: type[AccountT]
    id_key: ClassVar[str]  # the account's platform id: its attribute and its configuration key
    id_source: ClassVar[str] = ""  # the configuration key the id comes from, when it is not `id_key`

    def __init__(self, accounts: Iterable[AccountT]) -> None:
        key = self.id_key
        self.accounts = Accounts(self.channel, accounts, self.id_source or key, lambda a: str(getattr(a, key)),
                                 f"no {self.channel} account with {key} {{!r}}")

    @classmethod
    def from_config(cls, tables: list[dict[str, Any]]) -> Self:
        return cls([cls.account_type.from_table(table) for table in tables])

    def warnings(self) -> list[str]:
        """What start-up should tell the operator about these accounts."""
        return []

    def account_ids(self) -> list[str]:
        return self.accounts.ids()

    def account(self, account_id: str) -> AccountT:
        return self.accounts.get(account_id)

    def account_info(self, account_id: str) -> dict[str, Any]:
        """The channel, the account's name and what else of it is public, unset values left out."""
        account = self.account(account_id)
        public = {key: value for key, value in account.public().items() if value not in (None, "", False)}
        return {"channel": self.channel, "account_name": account.name, **public}

    def sender(self, reply: OutboundReply) -> AccountT | DeliveryResult:
        """The account a reply goes out from, or why it cannot go (a failure the agent sees): no account with its
        id is configured any more, or it carries nothing to send (no text, file or template)."""
        account = self.accounts.by_id.get(reply.account)
        if account is None:
            return DeliveryResult.failed(self.accounts.unknown(reply.account) + " is configured")
        if not reply.text.strip() and reply.file is None and reply.template is None:
            return DeliveryResult.failed("nothing to send: the reply has no text, file or template")
        return account

    def named(self, request: Incoming) -> AccountT:
        """The account a per-account webhook URL names (`/webhooks/<channel>/{name}`)."""
        account = self.accounts.by_name.get(request.name or "")
        if account is None:
            raise UnknownAccount(f"no {self.channel} account named {request.name!r} is configured")
        return account

    def handshake(self, request: Incoming) -> web.Response | None:
        return None

    def acknowledge(self, request: Incoming) -> web.Response:
        return web.Response(text="OK")


def check_unique(section: str, accounts: Iterable[tuple[str, str]], id_key: str) -> None:
    """Refuse two accounts with one name or one platform id: routing would be ambiguous."""
    names: set[str] = set()
    ids: set[str] = set()
    for name, account_id in accounts:
        if name in names:
            raise ConfigError(f"[[{section}]] account {name!r}: duplicate key 'name'")
        if account_id in ids:
            raise ConfigError(f"[[{section}]] account {name!r}: duplicate key {id_key!r} ({account_id})")
        names.add(name)
        ids.add(account_id)


SEND_TIMEOUT = aiohttp.ClientTimeout(total=15, sock_connect=5)


@dataclass(slots=True)
class HttpAnswer:
    status: int
    body: Any = None  # parsed JSON, or text
    headers: Mapping[str, str] = field(default_factory=dict)


async def call_api(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> HttpAnswer | DeliveryResult:
    """One HTTP call to a platform API: its answer, or a `retry` result for transient failures.

    Transient: connection errors, timeouts, 429 and 5xx (with Retry-After when given). Anything
    else is returned for the channel module to read in its platform's terms.
    """
    try:
        async with session.request(method, url, timeout=SEND_TIMEOUT, **kwargs) as resp:
            try:
                body: Any = await resp.json(content_type=None)
            except ValueError:
                body = await resp.text()
            if resp.status == 429 or resp.status >= 500:
                return DeliveryResult.retry(f"HTTP {resp.status} from the platform",
                                            retry_after_seconds(resp.headers.get("Retry-After")))
            return HttpAnswer(resp.status, body, resp.headers)
    except (TimeoutError, aiohttp.ClientError) as exc:
        return DeliveryResult.retry(f"could not reach the platform: {type(exc).__name__}")


MAX_RETRY_AFTER = 3600.0  # a platform asking for more is answered again within the hour


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` in seconds (a number or an HTTP date), within 0..MAX_RETRY_AFTER; None if unreadable.

    The value comes from outside: `1e20`, `inf` or a date in the year 9999 must not overflow the
    outbox's clock or park a reply for ever."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, OverflowError):
            return None
    if math.isnan(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


MAX_MEDIA_BYTES = 100 * 1024 * 1024  # WhatsApp documents go up to 100 MB, Messenger files to 25 MB


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
