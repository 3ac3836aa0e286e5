"""LINE Messaging API connector: webhook signature, event parsing, push sends, mark-as-read and content
download.

Owns the `[[line]]` configuration section. One webhook URL per LINE channel, `/webhooks/line/{name}`,
so the account is chosen by the configured name; the payload's `destination` must be that account's
bot user id. LINE has no GET challenge (the console's Verify button POSTs an empty, signed event list),
so `handshake` always answers None. LINE sends no delivery or read receipts for normal chats.

What `parse` makes of LINE's events, from one-to-one chats:
- a message becomes a comment: its text (a sticker's typed text too, beside the sticker), media by
  message id, a file with its name, a location; a kind we do not render a readable placeholder;
- `unsend` marks the message withdrawn, `messageEdited` records the new text as an edit;
- the message's `markAsReadToken` (chat mode) goes into the ticket's channel info, under
  MARK_AS_READ_KEY, for `mark_as_read` when `[[line]] mark_as_read = true`;
- follows, postbacks, beacons and event kinds we do not know are answered 200 and store nothing.
Group and room chats are not support conversations (a reply would be pushed to every member), so
everything from them is answered 200 and stores nothing, logged as such.

Replies go out as push messages (there is no messaging window), with an `X-Line-Retry-Key` so a
retried push is never delivered twice. A long text is split into at most 5 messages of one push,
measured in UTF-16 code units as LINE counts them.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from connectors import base
from warehouse.channels import Channel, DemoProfile, DemoUserIds
from warehouse.model import Attachment, InboundMessage, MessageEdit, MessageWithdrawn, from_unix_ms

log = logging.getLogger(__name__)

SECTION = "line"
KEYS = ("name", "bot_user_id", "channel_secret", "channel_access_token", "api_url", "data_api_url",
        "mark_as_read")
API_URL = "https://api.line.me"
DATA_API_URL = "https://api-data.line.me"  # binary content lives on its own host
# UTF-16 code units per text message: LINE counts 🍎 as 2 (developers.line.biz/en/docs/messaging-api/
# text-character-count), so a split by Python characters could still be refused.
TEXT_LIMIT = 5000
MESSAGES_PER_PUSH = 5
# Where the latest markAsReadToken of a conversation is kept, in the ticket's channel info.
MARK_AS_READ_KEY = "line_mark_as_read_token"
MEDIA_TYPES = {"image", "video", "audio"}
# Retry keys derive from the outbox row when the caller gave none, so retries of one row share a key.
RETRY_KEY_NAMESPACE = uuid.UUID("9b4c1f7e-2d6a-4f0e-8a51-6c3d2b7e1a90")
FILE_REASON = ("LINE only sends images and files from a public HTTPS URL, which SocialDesk does not host; "
               "share a link to the file in the text instead")



# What the rest of SocialDesk knows of LINE (R7): push messages have no conversation window.
CHANNEL = Channel(
    name="line", tag="line", label="LINE", icon="🄻", abbreviation="LINE", zendesk_via=("line", 72),
    demo=DemoProfile(accounts=(("U1234567890abcdef1234567890abcdef", "Japan", 0.09),
                               ("U2234567890abcdef1234567890abcdef", "Thailand", 0.06)),
                     user_ids=DemoUserIds(prefix="U", hashed=32), reply_hours=1.2))


@dataclass(frozen=True, slots=True)
class Account:
    """A LINE Official Account's channel: one webhook URL per channel, signed with its channel secret;
    its channel access token sends. Secrets stay out of repr, so no log shows them."""

    name: str
    bot_user_id: str
    channel_secret: str = field(repr=False)
    channel_access_token: str = field(repr=False)
    api_url: str = API_URL
    data_api_url: str = DATA_API_URL
    mark_as_read: bool = False  # mark the customer's messages read when an agent opens the ticket (chat mode)

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Account:
        base.check_table(table, SECTION, KEYS, optional=())
        return cls(
            name=base.text_value(table, "name", SECTION),
            bot_user_id=base.text_value(table, "bot_user_id", SECTION),
            channel_secret=base.text_value(table, "channel_secret", SECTION),
            channel_access_token=base.text_value(table, "channel_access_token", SECTION),
            api_url=base.url_value(table, SECTION, API_URL),
            data_api_url=base.url_value(table, SECTION, DATA_API_URL, "data_api_url"),
            mark_as_read=_flag(table, "mark_as_read"),
        )

    def public(self) -> dict[str, Any]:
        return {"bot_user_id": self.bot_user_id}


def signature(channel_secret: str, body: bytes) -> str:
    """The `x-line-signature` LINE puts on a webhook body: base64 HMAC-SHA256, no prefix."""
    return base64.b64encode(base.hmac_sha256(channel_secret, body)).decode()


def _load(body: bytes) -> dict[str, Any]:
    """The webhook body: the bot it is for (`destination`) and its `events`, else MalformedPayload."""
    payload = base.json_object(body, "LINE webhook body")
    if not isinstance(payload.get("events"), list):
        raise base.MalformedPayload("LINE webhook body has no 'events' list")
    if not isinstance(payload.get("destination"), str):
        raise base.MalformedPayload("LINE webhook body has no 'destination'")
    return payload


class Connector(base.WithAccounts[Account]):
    channel: ClassVar[str] = CHANNEL.name
    account_type = Account
    id_key: ClassVar[str] = "bot_user_id"

    # -- webhooks -------------------------------------------------------------------------------

    # LINE never sends a GET challenge (no `handshake`): its Verify button is an ordinary signed POST.

    def verify(self, request: base.Incoming) -> None:
        account = self.named(request)
        given = base.header(request, "x-line-signature")
        if not given:
            raise base.BadSignature("LINE webhook without x-line-signature")
        if not base.same(given, signature(account.channel_secret, request.body)):
            raise base.BadSignature(f"LINE signature mismatch for account {account.name!r}")
        destination = base.decode_once(request, "json", lambda: _load(request.body))["destination"]
        if destination != account.bot_user_id:
            raise base.UnknownAccount(f"LINE webhook for account {account.name!r} names another bot ({destination!r})")

    def parse(self, request: base.Incoming) -> list[base.Parsed]:
        payload = base.decode_once(request, "json", lambda: _load(request.body))
        bot = payload["destination"]
        out: list[base.Parsed] = []
        for event in payload["events"]:
            if not isinstance(event, dict):
                out.append(base.Skipped("LINE event that is not an object"))
                continue
            item = self._event(bot, event)
            if item is not None:
                out.append(item)
        return out

    def _event(self, bot: str, event: dict[str, Any]) -> base.Parsed | None:
        kind = event.get("type")
        if kind not in ("message", "unsend", "messageEdited"):
            log.info("LINE %s event: nothing to store", str(kind)[:40])
            return None
        source = base.obj(event.get("source"))
        if source.get("type") != "user":
            # Group and room chats are not support conversations: a push would reach every member.
            log.info("LINE %s event from a %s chat: not a support conversation, nothing stored", kind,
                     str(source.get("type"))[:40])
            return None
        try:
            user_id = str(source["userId"])
            at = from_unix_ms(event["timestamp"])
            if kind == "unsend":
                return MessageWithdrawn(self.channel, bot, user_id, str(event["unsend"]["messageId"]), at)
            msg = event["message"]
            message_id = str(msg["id"])  # the same on a redelivery, so it is the dedupe key
            mtype = str(msg["type"])
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            return base.Skipped(f"LINE {kind} event without its user, time or message id")
        try:
            text, attachments = _content(msg, mtype, message_id)
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            return base.Skipped(f"LINE {mtype[:40]} message with unreadable fields")
        if kind == "messageEdited":
            # Edits may arrive out of order; each is its own event, keyed by when it happened.
            return MessageEdit(self.channel, bot, user_id, message_id, f"{message_id}@{event['timestamp']}", at,
                               text, attachments)
        token = msg.get("markAsReadToken")
        return InboundMessage(channel=self.channel, account=bot, user_id=user_id, message_id=message_id,
                              sent_at=at, text=text, attachments=attachments, profile={"line_user_id": user_id},
                              channel_info={MARK_AS_READ_KEY: token} if isinstance(token, str) and token else {})

    def simulate(self, account_id: str, body: bytes) -> tuple[dict[str, str], dict[str, str], bytes]:
        """What LINE would send us for this body; post it to /webhooks/line/{account_info()['account_name']}."""
        account = self.account(account_id)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   "x-line-signature": signature(account.channel_secret, body)}
        return headers, {}, body

    # -- sending --------------------------------------------------------------------------------

    async def send(self, session: aiohttp.ClientSession, reply: base.OutboundReply) -> base.DeliveryResult:
        account = self.sender(reply)
        if isinstance(account, base.DeliveryResult):
            return account
        if not reply.text:
            if reply.file is not None:
                return base.DeliveryResult.failed(FILE_REASON)
            return base.DeliveryResult.failed("nothing to send: LINE replies need text")
        chunks = split_text(reply.text)
        if len(chunks) > MESSAGES_PER_PUSH:
            return base.DeliveryResult.failed(
                f"message too long for LINE: one reply is at most {MESSAGES_PER_PUSH} messages of {TEXT_LIMIT:,} "
                f"characters (LINE counts an emoji as 2); this one needs {len(chunks)}: shorten it")
        retry_key = reply.retry_key or str(uuid.uuid5(RETRY_KEY_NAMESPACE, f"outbox:{reply.outbox_id}"))
        answer = await base.call_api(
            session, "POST", f"{account.api_url}/v2/bot/message/push",
            headers={"Authorization": f"Bearer {account.channel_access_token}", "X-Line-Retry-Key": retry_key},
            json={"to": reply.to, "messages": [{"type": "text", "text": c} for c in chunks]},
        )
        if isinstance(answer, base.DeliveryResult):
            return answer
        result = _read_push(answer, retry_key)
        if result.state == "sent" and reply.file is not None:
            return base.DeliveryResult.failed(f"the text was sent; the file was not: {FILE_REASON}")
        return result

    async def fetch_media(self, session: aiohttp.ClientSession, account_id: str, media_id: str) -> base.Media:
        """The content of an image, video, audio or file message, by LINE message id."""
        account = self.account(account_id)
        # The id comes from a webhook: quoted, it names one message's content and nothing beside it.
        url = f"{account.data_api_url}/v2/bot/message/{quote(media_id, safe='')}/content"
        headers = {"Authorization": f"Bearer {account.channel_access_token}"}
        # LINE keeps a message's content for a while only, and never content from an external provider.
        return await base.download(session, url, headers=headers, what=f"LINE content of message {media_id}")

    async def ticket_opened(self, session: aiohttp.ClientSession, ticket: dict[str, Any]) -> None:
        """An agent opened this LINE ticket: with `mark_as_read = true`, the customer sees their messages read."""
        info = (ticket.get("fields") or {}).get("social_messaging_channel_info") or {}
        result = await self.mark_as_read(session, str(ticket["account"]), info.get(MARK_AS_READ_KEY))
        if result is not None and result.state != "sent":
            log.info("LINE mark-as-read for ticket %s: %s", ticket.get("id"), result.reason)

    def marks_as_read(self, account_id: str) -> bool:
        """Whether this account is configured to mark customers' messages read (`mark_as_read = true`)."""
        account = self.accounts.by_id.get(account_id)
        return bool(account and account.mark_as_read)

    async def mark_as_read(self, session: aiohttp.ClientSession, account_id: str,
                           token: str | None) -> base.DeliveryResult | None:
        """Mark the customer's messages read up to the message that carried `token` (LINE's 2025
        mark-as-read API: `POST /v2/bot/chat/markAsRead` with `{"markAsReadToken": ...}`, as line-bot-sdk
        v3's `mark_messages_as_read_by_token` calls it; it needs chat mode on).

        For when an agent opens a LINE ticket: `token` is the ticket's channel info at MARK_AS_READ_KEY.
        None when there is nothing to do (the account's `mark_as_read` is off, or no token yet); else
        `sent` (LINE took it), `retry` or `failed` with a plain reason. Never raises.
        """
        account = self.accounts.by_id.get(account_id)
        if account is None or not account.mark_as_read or not token:
            return None
        answer = await base.call_api(session, "POST", f"{account.api_url}/v2/bot/chat/markAsRead",
                                     headers={"Authorization": f"Bearer {account.channel_access_token}"},
                                     json={"markAsReadToken": token})
        if isinstance(answer, base.DeliveryResult):
            return answer
        if answer.status == 200:
            return base.DeliveryResult.sent("")
        if answer.status == 401:
            return base.DeliveryResult.failed("LINE rejected the channel access token (HTTP 401)")
        body = answer.body if isinstance(answer.body, dict) else {}
        return base.DeliveryResult.failed(f"LINE did not mark the messages read: "
                                          f"{body.get('message') or answer.status} (is chat mode on for this channel?)")



def _flag(table: Mapping[str, Any], key: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise base.ConfigError(f"[[{SECTION}]] account {table.get('name', '?')!r}: key {key!r} must be true or false")
    return value


def _content(msg: dict[str, Any], mtype: str, message_id: str) -> tuple[str, tuple[Attachment, ...]]:
    """A message's text and attachments; KeyError/TypeError/ValueError when its fields are unreadable."""
    if mtype == "text":
        return str(msg.get("text") or ""), ()
    if mtype in MEDIA_TYPES:
        provider = msg.get("contentProvider") or {}
        if provider.get("type") == "external":
            # Content lives on the sender's server; LINE's content endpoint has nothing for it.
            return "", (Attachment(type=mtype, url=provider.get("originalContentUrl")),)
        return "", (Attachment(type=mtype, media_id=message_id),)
    if mtype == "file":
        return "", (Attachment(type="file", media_id=message_id, filename=msg.get("fileName")),)
    if mtype == "sticker":
        sticker = Attachment(type="sticker", title=f"{msg.get('packageId')}/{msg.get('stickerId')}",
                             caption=", ".join(str(k) for k in msg.get("keywords") or []) or None)
        # A message sticker carries the words the customer typed on it: they are the message.
        return str(msg.get("text") or ""), (sticker,)
    if mtype == "location":
        return "", (Attachment(type="location", title=msg.get("title"), caption=msg.get("address"),
                               latitude=float(msg["latitude"]), longitude=float(msg["longitude"])),)
    # A kind we do not render still reaches the agent, named, so nothing a customer sends is lost.
    return unsupported(mtype), ()


def unsupported(mtype: str) -> str:
    return f"sent an unsupported message (type: {mtype[:40]})"


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """`text` in pieces of at most `limit` UTF-16 code units, cut after a line break or a space when one is
    near the end, never inside a character."""
    pieces: list[str] = []
    while text:
        end = _fitting(text, limit)
        if end == len(text):
            pieces.append(text)
            break
        cut = end
        window = text[max(0, end - limit // 5):end]
        for mark in ("\n", " "):
            at = window.rfind(mark)
            if at >= 0:
                cut = end - len(window) + at + 1
                break
        pieces.append(text[:cut])
        text = text[cut:]
    return pieces


def _fitting(text: str, limit: int) -> int:
    """How many characters of `text` fit in `limit` UTF-16 code units."""
    units = 0
    for i, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return i
    return len(text)


def _read_push(answer: base.HttpAnswer, retry_key: str) -> base.DeliveryResult:
    body = answer.body if isinstance(answer.body, dict) else {}
    sent = body.get("sentMessages") or []
    first_id = str(sent[0].get("id")) if sent and isinstance(sent[0], dict) and sent[0].get("id") else None
    if answer.status == 200:
        return base.DeliveryResult.sent(first_id or answer.headers.get("x-line-request-id", ""))
    if answer.status == 409:
        # Same retry key already accepted: an earlier attempt went through, so this one counts as sent.
        return base.DeliveryResult.sent(first_id or answer.headers.get("x-line-accepted-request-id") or retry_key)
    if answer.status == 401:
        return base.DeliveryResult.failed("LINE rejected the channel access token (HTTP 401); check the account's "
                                          "channel_access_token")
    reason = str(body.get("message") or f"HTTP {answer.status}")
    details = [f"{d.get('property', '')}: {d.get('message', '')}".strip(": ")
               for d in body.get("details") or [] if isinstance(d, dict)]
    if details:
        reason += " (" + "; ".join(details) + ")"
    return base.DeliveryResult.failed(f"LINE refused the message: {reason}")


DESCRIPTION = base.Description(CHANNEL, Connector.from_config, route="account",
                               simulation="socialdesk.fakes.line_api:LINE",
                               media_domains=("line.me", "line-scdn.net"))
