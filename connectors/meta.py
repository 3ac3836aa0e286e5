"""What Meta's channels share because all are Meta apps on the Graph API.

Owns: the `hub.challenge` verification handshake, the `X-Hub-Signature-256` check and signing
(the one implementation both `verify()` and `simulate()` use), reading webhook JSON, reading Graph
API error bodies into safe reasons, splitting a text too long for one message and sending a reply
in parts, account-table checks, and media downloads.

And the Messenger Platform, which serves more than one channel: `MessagingConnector` reads its
`entry[].messaging[]` events (messages with every kind of attachment readable, story replies and
mentions, shared posts and reels, postbacks, reactions, edits, deletions, delivery and read receipts,
the business's own messages from elsewhere), sends with the messaging type the window calls for
(RESPONSE within 24 hours, the HUMAN_AGENT tag for 7 days where permitted) and maps its errors. A
channel on it declares a `Platform` (what differs: names, limits, subcodes) and its account table.
Channel specifics (payload shapes, send formats, error codes) stay in the channels' modules.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self, TypeVar

import aiohttp
from aiohttp import web

from connectors import base
from warehouse import clock
from warehouse.model import (
    Attachment,
    InboundMessage,
    MessageEdit,
    MessageWithdrawn,
    StatusUpdate,
    from_unix,
    from_unix_ms,
)

log = logging.getLogger(__name__)

GRAPH_API_URL = "https://graph.facebook.com/v21.0"
SIGNATURE_HEADER = "X-Hub-Signature-256"


# Webhook side ---------------------------------------------------------------------------------

def handshake(request: base.Incoming, verify_tokens: Iterable[str]) -> web.Response | None:
    """Meta's subscription check: echo `hub.challenge` when the verify token is one of ours."""
    if not any(key.startswith("hub.") for key in request.query):
        return None
    mode = request.query.get("hub.mode", "")
    token = request.query.get("hub.verify_token", "")
    # Compare against every token so the time taken does not reveal which one (or none) matched.
    matched = [base.same(token, candidate) for candidate in verify_tokens]
    if mode == "subscribe" and token and any(matched):
        return web.Response(status=200, text=request.query.get("hub.challenge", ""), content_type="text/plain")
    return web.Response(status=403, text="verification refused")


def sign(app_secret: str, body: bytes) -> str:
    """The `X-Hub-Signature-256` value Meta sends for `body`."""
    return "sha256=" + base.hmac_sha256(app_secret, body).hex()


def matching_secrets(request: base.Incoming, app_secrets: Iterable[str]) -> set[str]:
    """The app secrets whose signature matches the raw body; BadSignature when there are none."""
    given = base.header(request, SIGNATURE_HEADER).strip()
    if not given:
        raise base.BadSignature(f"missing {SIGNATURE_HEADER} header")
    # Meta sends lowercase hex; accept an uppercase digest too, the prefix must be exact.
    if given.startswith("sha256="):
        given = "sha256=" + given[len("sha256="):].lower()
    matched = {secret for secret in set(app_secrets) if base.same(given, sign(secret, request.body))}
    if not matched:
        raise base.BadSignature(f"{SIGNATURE_HEADER} does not match")
    return matched


def load_json(request: base.Incoming, expected_object: str) -> dict[str, Any]:
    """The webhook JSON with `object` == expected and `entry` a list, else MalformedPayload; read once
    per request (verify() and parse() both ask for it)."""
    return base.decode_once(request, "json", lambda: _load_json(request.body, expected_object))


def _load_json(body: bytes, expected_object: str) -> dict[str, Any]:
    data = base.json_object(body, "body")
    if data.get("object") != expected_object:
        raise base.MalformedPayload(f"object is not {expected_object!r}")
    if not isinstance(data.get("entry"), list):
        raise base.MalformedPayload("entry is not a list")
    return data


def as_list(value: Any, what: str) -> list[Any]:
    """An optional list field: absent means empty, anything else but a list is malformed."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise base.MalformedPayload(f"{what} is not a list")
    return value


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise base.MalformedPayload(f"{what} is not an object")
    return value


def text_field(fields: Mapping[str, Any], key: str, what: str) -> str:
    """A required id-like field as text (Meta sends some ids as numbers)."""
    value = fields.get(key)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise base.MalformedPayload(f"{what} has no {key}")
    return str(value)


# Configuration --------------------------------------------------------------------------------

def api_url_value(table: Mapping[str, Any], section: str) -> str:
    return base.url_value(table, section, GRAPH_API_URL)


# Send side ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GraphError:
    status: int
    code: int | None
    subcode: int | None
    message: str
    details: str = ""  # `error_data.details`: WhatsApp says there what exactly was wrong


def graph_error(answer: base.HttpAnswer) -> GraphError:
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


def timestamp(value: Any, what: str, *, ms: bool = False) -> datetime:
    """A unix time (seconds, or milliseconds for Messenger) as an aware UTC datetime."""
    try:
        return from_unix_ms(value) if ms else from_unix(value)
    except (TypeError, ValueError, OverflowError, OSError):
        raise base.MalformedPayload(f"{what} has no valid timestamp") from None


def number(value: Any, what: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise base.MalformedPayload(f"{what} is not a number") from None


# The Messenger Platform, which more than one channel speaks ------------------------------------------
#
# Its channels share the same `entry[].messaging[]` events, the same Send API body, the
# same window (24 hours, the HUMAN_AGENT tag for 7 days) and the same error codes. What differs between
# them is data (`Platform`) and a few hooks on `MessagingConnector` (how an account authenticates, how a
# file goes out, what agents see of an account); each channel's module supplies those.

STANDARD_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
# Our clock and Meta's differ by a little: a reply written in the last minutes of the 24 hours goes
# with the tag already (where the account may use it), so it is not refused at the boundary.
TAG_MARGIN = timedelta(minutes=5)
WINDOW_CLOSED_CODE = 10  # "(#10) This message is sent outside of allowed window"
RATE_LIMITED = {4, 32, 613, 2}  # app, account and send rate limits; 2 is "service temporarily unavailable"
# `message.metadata` comes back in the echo of what we send (Send API, "custom string that is
# delivered as a message echo"): our own echoes are recognized before the send is even recorded.
METADATA_PREFIX = "socialdesk:outbox:"
# The events that are not messages and need no ticket: entry points, opt-ins, handover.
NOT_MESSAGES = ("referral", "optin", "account_linking", "pass_thread_control", "take_thread_control",
                "request_thread_control", "app_roles", "policy_enforcement", "messaging_feedback", "game_play")
REACTIONS = {"like": "👍", "love": "❤️", "smile": "😆", "wow": "😮", "sad": "😢", "angry": "😡"}
MEDIA_TYPES = ("image", "video", "audio", "file")


@dataclass(frozen=True, slots=True)
class Platform:
    """What tells one product of the Messenger Platform from another."""

    channel: str  # the channel name its items carry
    object: str  # the webhook body's `object`
    label: str  # how reasons agents read name it
    account_noun: str  # what one business account is called ("Page")
    user_key: str  # the end user's id in the profile ("psid")
    inbox: str  # where the business typed a message we did not send: the origin of its echo
    text_limit: int  # the Send API's longest text
    window_closed_subcode: int  # the subcode of code 10 that means "outside the window"
    metadata: bool = True  # the Send API takes `message.metadata` and echoes it back


@dataclass(frozen=True, slots=True, kw_only=True)
class AppAccount(ABC):
    """A business account of a Meta app (a WhatsApp number, a Facebook Page, an Instagram account): the app's
    secret signs its webhooks, the verify token answers Meta's subscription check, the access token sends.
    Secrets stay out of repr, so no log shows them. Each product's `Account` adds its ids and reads its own
    configuration keys (`from_table`)."""

    name: str
    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    access_token: str = field(repr=False)
    api_url: str = GRAPH_API_URL

    @classmethod
    @abstractmethod
    def from_table(cls, table: Mapping[str, Any]) -> Self:
        """The product's account from its `[[section]]` table (`base.NamedAccount`)."""

    @abstractmethod
    def public(self) -> dict[str, Any]:
        """What agents may know of it beside its name (`base.NamedAccount`)."""

    @staticmethod
    def secrets(table: Mapping[str, Any], section: str, token_key: str = "access_token") -> dict[str, str]:
        """The name and the three secrets of an account's table, as keyword arguments."""
        return {"name": base.text_value(table, "name", section),
                "app_secret": base.text_value(table, "app_secret", section),
                "verify_token": base.text_value(table, "verify_token", section),
                "access_token": base.text_value(table, token_key, section)}


@dataclass(frozen=True, slots=True, kw_only=True)
class MessagingAccount(AppAccount):
    """A business account of the Messenger Platform (a Page, an Instagram account), as the shared code reads it."""

    account_id: str  # `entry[].id` in its webhooks and the Send API's path
    # Meta's Human Agent permission: a human may answer up to 7 days after the customer's last message, with
    # the HUMAN_AGENT tag.
    human_agent_tag: bool = False

    @abstractmethod
    def auth(self) -> dict[str, Any]:
        """How a request authenticates: `call_api` keyword arguments (`params` or `headers`)."""


A = TypeVar("A", bound=MessagingAccount)


class MessagingConnector(base.WithAccounts[A]):
    """The `Connector` of a Messenger Platform product; subclasses say which (`platform`), build their
    accounts from configuration and describe them (`account_info`)."""

    platform: ClassVar[Platform]
    id_key: ClassVar[str] = "account_id"

    # Webhook ----------------------------------------------------------------------------------

    def handshake(self, request: base.Incoming) -> web.Response | None:
        return handshake(request, (a.verify_token for a in self.accounts.by_id.values()))

    def verify(self, request: base.Incoming) -> None:
        matched = matching_secrets(request, (a.app_secret for a in self.accounts.by_id.values()))
        data = load_json(request, self.platform.object)
        for entry in data["entry"]:
            account = self.account(text_field(as_dict(entry, "entry"), "id", "entry"))
            # One app's secret must not vouch for another app's accounts.
            if account.app_secret not in matched:
                raise base.BadSignature(f"signature is not from the app of account {account.name!r}")

    def parse(self, request: base.Incoming) -> list[base.Parsed]:
        platform = self.platform
        data = load_json(request, platform.object)
        out: list[base.Parsed] = []
        for entry in data["entry"]:
            entry = as_dict(entry, "entry")
            account = text_field(entry, "id", "entry")
            # `standby` carries the events of conversations another app controls (handover protocol).
            lists = [key for key in ("messaging", "standby") if key in entry]
            if not lists:
                if "changes" in entry:  # a feed or comments subscription: not conversations
                    log.info("%s: skipping an entry of changes (%s)", platform.channel, account)
                else:
                    out.append(base.Skipped(f"{platform.channel} entry without messaging events"))
                continue
            for key in lists:
                for event in as_list(entry[key], f"entry.{key}"):
                    out.extend(_one(platform, account, event))
        return out

    def simulate(self, account_id: str, body: bytes) -> tuple[dict[str, str], dict[str, str], bytes]:
        """The request Meta would send us with `body` for this account: JSON, signed with its app secret."""
        account = self.account(account_id)
        return {"Content-Type": "application/json", SIGNATURE_HEADER: sign(account.app_secret, body)}, {}, body

    # Send -------------------------------------------------------------------------------------

    async def send(self, session: aiohttp.ClientSession, reply: base.OutboundReply) -> base.DeliveryResult:
        account = self.sender(reply)
        if isinstance(account, base.DeliveryResult):
            return account
        if reply.template is not None:
            return base.DeliveryResult.failed(f"message templates are a WhatsApp feature; {self.platform.label} "
                                              "cannot send one")
        if not reply.text and reply.file is None:
            return base.DeliveryResult.failed("the reply has neither text nor a file")
        kind = messaging_type(account, reply)
        texts = base.split_text(reply.text, self.platform.text_limit) if reply.text else []
        parts: list[base.Part] = [
            ("the text" if len(texts) == 1 else f"part {n + 1} of {len(texts)} of the text",
             self._sender(session, account, reply, kind, {"text": text})) for n, text in enumerate(texts)]
        if reply.file is not None:
            # Prepared before anything is sent, so a file that cannot go leaves nothing half-sent.
            attachment = await self.attachment(session, account, reply.file)
            if isinstance(attachment, base.DeliveryResult):
                return attachment
            parts.append(("the file", self._sender(session, account, reply, kind, attachment)))
        return await base.send_in_parts(parts)

    async def attachment(self, session: aiohttp.ClientSession, account: A,
                         file: base.OutboundFile) -> dict[str, Any] | base.DeliveryResult:
        """The `message` that sends `file`, or why it cannot be sent."""
        return base.DeliveryResult.failed(f"{self.platform.label} cannot send files from SocialDesk yet")

    def _sender(self, session: aiohttp.ClientSession, account: A, reply: base.OutboundReply,
                kind: dict[str, str], message: dict[str, Any]) -> Callable[[], Awaitable[base.DeliveryResult]]:
        return lambda: self._post(session, account, reply, kind, message)

    async def _post(self, session: aiohttp.ClientSession, account: A, reply: base.OutboundReply,
                    kind: dict[str, str], message: dict[str, Any]) -> base.DeliveryResult:
        if self.platform.metadata:
            message = {**message, "metadata": f"{METADATA_PREFIX}{reply.outbox_id}"}
        body = {"recipient": {"id": reply.to}, **kind, "message": message}
        answer = await base.call_api(session, "POST", f"{account.api_url}/{account.account_id}/messages",
                                     json=body, **account.auth())
        if isinstance(answer, base.DeliveryResult):
            return answer
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("message_id"):
            return base.DeliveryResult.sent(str(answer.body["message_id"]))
        return send_error(self.platform, answer, account, reply, kind)

    async def fetch_media(self, session: aiohttp.ClientSession, account_id: str, media_id: str) -> base.Media:
        """Attachments carry their own (signed CDN) URL: `media_id` is that URL."""
        if account_id not in self.accounts.by_id:
            raise LookupError(self.accounts.unknown(account_id) + " is configured")
        return await base.download(session, media_id, what=f"{self.platform.label} attachment")


# Parsing ----------------------------------------------------------------------------------------

def _one(platform: Platform, account: str, event: Any) -> list[base.Parsed]:
    """One event parsed alone: if it cannot be read, it is skipped and the others are kept."""
    kinds = sorted(set(event) - {"sender", "recipient", "timestamp"}) if isinstance(event, dict) else []
    try:
        return _parse_event(platform, account, as_dict(event, "messaging event"))
    except base.MalformedPayload as exc:
        # Logged: bounded, and only the event's kinds, never its content.
        return [base.Skipped(f"{platform.channel} {'/'.join(kinds)[:60] or 'empty'} event: {exc}"[:200])]


def _sender(event: dict[str, Any]) -> str:
    return text_field(as_dict(event.get("sender"), "sender"), "id", "sender")


def _parse_event(platform: Platform, account: str, event: dict[str, Any]) -> list[base.Parsed]:
    channel = platform.channel
    if "message" in event:
        message = as_dict(event["message"], "message")
        if message.get("is_echo"):
            return _parse_echo(platform, account, event, message)
        if message.get("is_deleted"):  # the customer unsent it
            return [MessageWithdrawn(channel, account, _sender(event), text_field(message, "mid", "message"),
                                     timestamp(event.get("timestamp"), "deleted message", ms=True))]
        return _parse_message(platform, account, _sender(event), event, message)
    if "postback" in event:
        sender = _sender(event)
        postback = as_dict(event["postback"], "postback")
        at = timestamp(event.get("timestamp"), "postback", ms=True)
        # Older postbacks carry no mid; sender + time is stable across Meta's retries.
        message_id = str(postback.get("mid") or f"postback-{sender}-{event.get('timestamp')}")
        text = str(postback.get("title") or postback.get("payload") or "")
        return [InboundMessage(channel, account, sender, message_id, at, text, (), {platform.user_key: sender},
                               channel_info=_referral(postback.get("referral")))]
    if "delivery" in event:
        sender = _sender(event)
        delivery = as_dict(event["delivery"], "delivery")
        watermark = timestamp(delivery.get("watermark"), "delivery watermark", ms=True)
        at = timestamp(event["timestamp"], "delivery", ms=True) if "timestamp" in event else watermark
        mids = as_list(delivery.get("mids"), "delivery.mids")
        if mids:
            return [StatusUpdate(channel, account, sender, "delivered", at, message_id=str(mid)) for mid in mids]
        return [StatusUpdate(channel, account, sender, "delivered", at, watermark=watermark)]
    if "read" in event:
        sender = _sender(event)
        read = as_dict(event["read"], "read")
        if "mid" in read:  # a read receipt naming one message, not a watermark
            at = timestamp(event.get("timestamp"), "read", ms=True)
            return [StatusUpdate(channel, account, sender, "read", at, message_id=text_field(read, "mid", "read"))]
        watermark = timestamp(read.get("watermark"), "read watermark", ms=True)
        at = timestamp(event["timestamp"], "read", ms=True) if "timestamp" in event else watermark
        return [StatusUpdate(channel, account, sender, "read", at, watermark=watermark)]
    if "reaction" in event:
        return _parse_reaction(platform, account, _sender(event), event, as_dict(event["reaction"], "reaction"))
    if "message_edit" in event:
        sender = _sender(event)
        edit = as_dict(event["message_edit"], "message_edit")
        mid = text_field(edit, "mid", "message_edit")
        at = timestamp(event.get("timestamp"), "message_edit", ms=True)
        return [MessageEdit(channel, account, sender, mid, f"{mid}#{edit.get('num_edit', 1)}", at,
                            str(edit.get("text") or ""))]
    known = [kind for kind in NOT_MESSAGES if kind in event]
    if known:
        # An opt-in with only a `user_ref` names nobody we can write to: it cannot be read at all.
        _sender(event)
        log.info("%s: a %s event for account %s is not a message", channel, "/".join(known), account)
        return []
    raise base.MalformedPayload("no message, postback, receipt or other event we know")


def _parse_message(platform: Platform, account: str, sender: str, event: dict[str, Any],
                   message: dict[str, Any]) -> list[base.Parsed]:
    message_id = text_field(message, "mid", "message")
    at = timestamp(event.get("timestamp"), f"message {message_id}", ms=True)
    text, attachments = _content(platform, message)
    reply_to = base.obj(message.get("reply_to"))
    story = base.obj(reply_to.get("story"))
    if story:  # a reply to the business's story: the agent needs to see which one
        url = str(story.get("url") or "")
        text = "\n".join(x for x in (f"replied to your story: {url}" if url else "replied to your story", text) if x)
    if message.get("is_unsupported"):
        text = text or f"sent a message {platform.label} does not show to apps"
    if not text and not attachments:
        text = "sent an empty message"  # never silently nothing: the agent sees something came
    # Ads that open a conversation put their referral on the message (or beside it).
    info = _referral(message.get("referral")) or _referral(event.get("referral"))
    if story:
        info = {**info, "story": story}
    return [InboundMessage(platform.channel, account, sender, message_id, at, text, attachments,
                           {platform.user_key: sender}, reply_to=str(reply_to.get("mid") or "") or None,
                           channel_info=info)]


def _parse_echo(platform: Platform, account: str, event: dict[str, Any], message: dict[str, Any]) -> list[base.Parsed]:
    """What the account itself sent: ours (dropped here by its metadata, or by the store by its id), or
    sent from another app or the account's inbox, which becomes the business's comment on the ticket."""
    if str(message.get("metadata") or "").startswith(METADATA_PREFIX):
        return []
    message_id = text_field(message, "mid", "message echo")
    at = timestamp(event.get("timestamp"), f"message echo {message_id}", ms=True)
    sender = as_dict(event.get("sender"), "sender").get("id")
    recipient = as_dict(event.get("recipient"), "recipient").get("id")
    # Meta sends echoes from the account to the customer; some SDK fixtures have them the other way round.
    customer = str(sender if str(recipient) == account else recipient or "")
    if not customer:
        raise base.MalformedPayload("message echo names no customer")
    text, attachments = _content(platform, message)
    if not text and not attachments:
        log.info("%s: an echo with nothing to show for account %s", platform.channel, account)
        return []
    app_id = message.get("app_id")
    origin = f"another {platform.label} app (app {app_id})" if app_id else platform.inbox
    return [InboundMessage(platform.channel, account, customer, message_id, at, text, attachments,
                           business_origin=origin)]


def _parse_reaction(platform: Platform, account: str, sender: str, event: dict[str, Any],
                    reaction: dict[str, Any]) -> list[base.Parsed]:
    at = timestamp(event.get("timestamp"), "reaction", ms=True)
    mid = str(reaction.get("mid") or "")
    action = str(reaction.get("action") or "react")
    emoji = str(reaction.get("emoji") or REACTIONS.get(str(reaction.get("reaction")), reaction.get("reaction") or "👍"))
    # A reaction has no id of its own; who, when and what it was to is stable across Meta's retries.
    message_id = f"reaction-{sender}-{event.get('timestamp')}-{action}-{mid}"
    return [InboundMessage(platform.channel, account, sender, message_id, at, "", (), {platform.user_key: sender},
                           reply_to=mid or None, reaction=emoji if action == "react" else "")]


def _referral(referral: Any) -> dict[str, Any]:
    return {"referral": referral} if isinstance(referral, dict) and referral else {}


def _content(platform: Platform, message: dict[str, Any]) -> tuple[str, tuple[Attachment, ...]]:
    """The message's text with a readable line for each attachment that is not a file (a shared link, a
    reel, a template), and the file attachments."""
    lines = [message["text"]] if isinstance(message.get("text"), str) and message["text"] else []
    attachments: list[Attachment] = []
    for item in as_list(message.get("attachments"), "message.attachments"):
        found = _attachment(platform, as_dict(item, "attachment"))
        if isinstance(found, Attachment):
            attachments.append(found)
        else:
            lines.append(found)
    return "\n".join(lines), tuple(attachments)


def _attachment(platform: Platform, item: dict[str, Any]) -> Attachment | str:
    kind = str(item.get("type") or "")
    payload = base.obj(item.get("payload"))
    title = str(item.get("title") or payload.get("title") or "")
    url = str(item.get("url") or payload.get("url") or "")
    if kind == "image" and payload.get("sticker_id") is not None:
        return Attachment("sticker", url=payload.get("url"))
    if kind in MEDIA_TYPES:
        return Attachment(kind, url=payload.get("url"))
    if kind == "location":
        coordinates = as_dict(payload.get("coordinates"), "location coordinates")
        return Attachment("location", latitude=number(coordinates.get("lat"), "latitude"),
                          longitude=number(coordinates.get("long"), "longitude"),
                          title=item.get("title"), url=item.get("url"))
    # Shares are not files we could fetch (their URL is a page, sometimes relative, or a CDN link that
    # expires with the story): text the agent reads, link included.
    shared = " — ".join(x for x in (title, url) if x)
    if kind in ("fallback", "share", "ig_post"):
        return f"shared a link: {shared}" if shared else "shared a link"
    if kind in ("ig_reel", "reel"):
        return f"shared a reel: {shared}" if shared else "shared a reel"
    if kind == "story_mention":
        noun = platform.account_noun
        return f"mentioned the {noun} in their story: {url}" if url else f"mentioned the {noun} in their story"
    if kind == "template":
        template = str(payload.get("template_type") or "")
        return f"sent a {template + ' ' if template else ''}template" + (f": {url}" if url else "")
    log.info("%s: a %r attachment is kept as a placeholder", platform.channel, kind)
    return f"sent an attachment SocialDesk cannot show yet (type: {kind or 'unknown'})"


# Sending ----------------------------------------------------------------------------------------

def messaging_type(account: MessagingAccount, reply: base.OutboundReply) -> dict[str, str]:
    """RESPONSE within 24 hours of the customer's last message; after that, an account with the Human
    Agent permission answers with the HUMAN_AGENT tag (7 days, human replies only: every reply here is
    written by an agent)."""
    wrote = reply.customer_wrote_at
    if account.human_agent_tag and wrote is not None and clock.now() - wrote >= STANDARD_WINDOW - TAG_MARGIN:
        return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
    return {"messaging_type": "RESPONSE"}


def _since(reply: base.OutboundReply | None) -> str:
    if reply is None or reply.customer_wrote_at is None:
        return "more than 24 hours ago"
    hours = (clock.now() - reply.customer_wrote_at).total_seconds() / 3600
    return f"{hours:.0f} hours ago" if hours < 48 else f"{hours / 24:.1f} days ago"


def send_error(platform: Platform, answer: base.HttpAnswer, account: MessagingAccount, reply: base.OutboundReply | None,
               kind: dict[str, str]) -> base.DeliveryResult:
    """A refused send in terms an agent can act on: window closed, rate limited (retried), or permanent."""
    error = graph_error(answer)
    label, noun = platform.label, platform.account_noun
    if error.code is None:
        reason = f"{label} answered HTTP {answer.status} without a message id"
    else:
        reason = f"{label} error {error.code}" + (f"/{error.subcode}" if error.subcode else "") + f": {error.message}"
    window_closed = error.code == WINDOW_CLOSED_CODE or error.subcode == platform.window_closed_subcode
    if window_closed:
        tagged = kind.get("tag") == "HUMAN_AGENT"
        if tagged and error.subcode not in (None, platform.window_closed_subcode):
            why = (f"the {noun} is not allowed to use the HUMAN_AGENT tag (it needs Meta's Human Agent permission; "
                   f"set human_agent_tag = false for {noun.lower()} {account.name!r} until it has it)")
        elif tagged:
            why = f"the customer last wrote {_since(reply)}, beyond the 7 days a human agent may still answer"
        else:
            why = f"the customer last wrote {_since(reply)}, outside {label}'s 24-hour window" + (
                "" if account.human_agent_tag else
                f" ({'an' if noun[0] in 'AEIOUaeiou' else 'a'} {noun} with Meta's Human Agent permission may answer "
                "for 7 days: human_agent_tag = true)")
        reason = f"{label} refused the reply: {why}. {reason}"
    reason = base.safe_reason(reason, account.access_token, account.app_secret)
    if window_closed:
        return base.DeliveryResult.failed(reason, window_closed=True)
    if error.code in RATE_LIMITED:
        return base.DeliveryResult.retry(reason)
    return base.DeliveryResult.failed(reason)


def human_agent_value(table: Mapping[str, Any], section: str) -> bool:
    """The optional `human_agent_tag` flag of an account table."""
    tag = table.get("human_agent_tag", False)
    if not isinstance(tag, bool):
        raise base.ConfigError(f"[[{section}]] account {table.get('name', '?')!r}: key 'human_agent_tag' must be "
                               "true or false")
    return tag
