"""Telegram Bot API connector: the webhook's secret token, update parsing, sends and file downloads.

Owns the `[[telegram]]` configuration section. One webhook URL per bot, `/webhooks/telegram/{name}`
(the URL given to `setWebhook`): an update does not say which bot it is for, so the account is chosen
by the configured name. Telegram does not sign updates; `setWebhook`'s `secret_token` comes back in the
`X-Telegram-Bot-Api-Secret-Token` header of every request, compared in constant time. There is no GET
challenge, no messaging window (a bot may answer a private chat at any time) and no delivery or read
receipt for a bot's messages, so replies stay `sent`.

The account id is the bot's numeric id (`bot_id`, else the part of its token before `:`: what Telegram
calls the bot's user id). The bot token is a secret that Telegram puts in every API URL (`/bot<token>/<method>`), so no
URL, and therefore no token, ever reaches an error, a log line or a stored failure.

What `parse` makes of an `Update` from a private chat:
- `message` becomes a comment keyed `<chat id>:<message id>` (the same on a redelivery): its text or
  caption, the largest size of a photo, a document with its name, a voice note, audio, video or
  animation by `file_id`, a sticker with its emoji, a location or venue, a contact (the customer's own
  number becomes their phone, R4/R25), and a readable placeholder for a kind we do not render;
- `edited_message` is an edit of that comment, keyed by its `edit_date`;
- the customer's name, username and language go into the identity's profile.
Groups, supergroups and channels are not support conversations (a reply would reach every member), and
updates of other kinds (callback queries, membership changes, channel posts...) are answered 200 and
store nothing.

Replies go out with `sendMessage` (a text over 4,096 characters is split), a file with `sendPhoto` or
`sendDocument` (uploaded, the text as its caption when it fits in 1,024 characters).
"""

from __future__ import annotations

import functools
import logging
import mimetypes
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import quote

import aiohttp

from connectors import base
from warehouse.channels import Channel, DemoProfile, DemoUserIds
from warehouse.model import Attachment, InboundMessage, MessageEdit, from_unix

log = logging.getLogger(__name__)

SECTION = "telegram"
KEYS = ("bot_token", "secret_token")
OPTIONAL = ("bot_id", "api_url", "username")
API_URL = "https://api.telegram.org"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# setWebhook's secret_token: "1-256 characters. Only characters A-Z, a-z, 0-9, _ and - are allowed".
SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")
# A bot token is "<bot id>:<secret>" as @BotFather hands it out.
BOT_TOKEN = re.compile(r"([0-9]{1,20}):[A-Za-z0-9_-]{10,128}")
TEXT_LIMIT = 4096  # characters of one message's text, after entity parsing (we send plain text)
CAPTION_LIMIT = 1024
# Files are uploaded: sendPhoto takes photos up to 10 MB, sendDocument anything up to 50 MB.
PHOTO_TYPES = ("image/jpeg", "image/png", "image/webp")
MAX_PHOTO_BYTES = 10 * 1024 * 1024
# Message fields that say something about the message rather than being its content: what is left
# once these are set aside names the kind of a message we do not render.
ABOUT = frozenset({
    "message_id", "message_thread_id", "from", "sender_chat", "sender_boost_count", "sender_business_bot",
    "date", "business_connection_id", "chat", "forward_origin", "forward_from", "forward_from_chat",
    "forward_from_message_id", "forward_signature", "forward_sender_name", "forward_date", "is_topic_message",
    "is_automatic_forward", "reply_to_message", "external_reply", "quote", "reply_to_story", "via_bot",
    "edit_date", "has_protected_content", "is_from_offline", "media_group_id", "author_signature", "text",
    "entities", "caption", "caption_entities", "link_preview_options", "effect_id", "has_media_spoiler",
    "show_caption_above_media", "reply_markup", "paid_star_count",
})
# Media Telegram keeps and serves by file_id; `animation` comes with a `document` copy, so it is read first.
MEDIA_KINDS = (("animation", "video"), ("video", "video"), ("video_note", "video"), ("voice", "audio"),
               ("audio", "audio"), ("document", "file"))


# What the rest of SocialDesk knows of Telegram (R7): a bot may write to a private chat at any time.
CHANNEL = Channel(
    name="telegram", tag="telegram", label="Telegram", icon="🅃", abbreviation="TG", account_noun="bot",
    zendesk_via=("telegram", 79),
    demo=DemoProfile(accounts=(("7061234501", "Shop bot", 0.08),),
                     user_ids=DemoUserIds(start=480000000), reply_hours=1.5))


@dataclass(frozen=True, slots=True)
class Account:
    """A Telegram bot: one webhook URL per bot, proven by its secret token; its bot token (which is in
    every Bot API URL) sends. Secrets stay out of repr, so no log shows them."""

    name: str
    bot_id: str
    bot_token: str = field(repr=False)
    secret_token: str = field(repr=False)
    username: str = ""
    api_url: str = API_URL

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Account:
        base.check_table(table, SECTION, KEYS, optional=OPTIONAL)
        name = base.text_value(table, "name", SECTION)
        token = base.text_value(table, "bot_token", SECTION)
        secret = base.text_value(table, "secret_token", SECTION)
        if not SECRET_TOKEN.fullmatch(secret):
            raise base.ConfigError(f"[[{SECTION}]] account {name!r}: key 'secret_token' must be 1 to 256 characters "
                                   "among A-Z, a-z, 0-9, _ and - (what setWebhook accepts)")
        username = table.get("username", "")
        if not isinstance(username, str):
            raise base.ConfigError(f"[[{SECTION}]] account {name!r}: key 'username' must be text")
        return cls(name=name, bot_id=_bot_id(table, name, token), bot_token=token, secret_token=secret,
                   username=username.strip().lstrip("@"), api_url=base.url_value(table, SECTION, API_URL))

    def public(self) -> dict[str, Any]:
        return {"bot_id": self.bot_id, "username": "@" + self.username if self.username else ""}

    def method_url(self, method: str) -> str:
        """A Bot API method's URL: it carries the token, so it is never logged nor shown."""
        return f"{self.api_url}/bot{self.bot_token}/{method}"


class Connector(base.WithAccounts[Account]):
    channel: ClassVar[str] = CHANNEL.name
    account_type = Account
    id_key: ClassVar[str] = "bot_id"
    id_source: ClassVar[str] = "bot_token"  # the id is the token's prefix unless `bot_id` is given

    # -- webhooks -------------------------------------------------------------------------------

    # Telegram never sends a GET challenge (no `handshake`): setWebhook is a call we make, not one it makes.

    def verify(self, request: base.Incoming) -> None:
        account = self.named(request)
        given = base.header(request, SECRET_HEADER)
        if not given:
            raise base.BadSignature(f"Telegram webhook without {SECRET_HEADER}")
        if not base.same(given, account.secret_token):
            raise base.BadSignature(f"Telegram secret token mismatch for bot {account.name!r}")

    def parse(self, request: base.Incoming) -> list[base.Parsed]:
        update = base.decode_once(request, "json", lambda: _load(request.body))
        account = self.named(request)
        for kind in ("message", "edited_message"):
            if kind in update:
                found = _message(account.bot_id, update[kind], edited=kind == "edited_message")
                return [] if found is None else [found]
        kinds = [k for k in update if k != "update_id"]
        log.info("Telegram %s update: nothing to store", (kinds[0] if kinds else "empty")[:40])
        return []

    def simulate(self, account_id: str, body: bytes) -> tuple[dict[str, str], dict[str, str], bytes]:
        """What Telegram would send us for this body; post it to /webhooks/telegram/{account_info()['account_name']}."""
        account = self.account(account_id)
        return {"Content-Type": "application/json", SECRET_HEADER: account.secret_token}, {}, body

    # -- sending --------------------------------------------------------------------------------

    async def send(self, session: aiohttp.ClientSession, reply: base.OutboundReply) -> base.DeliveryResult:
        account = self.sender(reply)
        if isinstance(account, base.DeliveryResult):
            return account
        caption = reply.text if reply.file is not None and len(reply.text) <= CAPTION_LIMIT else ""
        texts = base.split_text(reply.text, TEXT_LIMIT) if reply.text.strip() and not caption else []
        parts: list[base.Part] = [
            (f"part {i} of the text" if len(texts) > 1 else "the text",
             functools.partial(self._post, session, account, "sendMessage", {"chat_id": reply.to, "text": text}))
            for i, text in enumerate(texts, 1)]
        if reply.file is not None:
            send_file = functools.partial(self._send_file, session, account, reply.to, reply.file, caption)
            parts.append(("the file", send_file))
        return await base.send_in_parts(parts)

    async def _send_file(self, session: aiohttp.ClientSession, account: Account, chat_id: str, file: base.OutboundFile,
                         caption: str) -> base.DeliveryResult:
        photo = file.mime_type in PHOTO_TYPES and len(file.data) <= MAX_PHOTO_BYTES
        method, kind = ("sendPhoto", "photo") if photo else ("sendDocument", "document")
        form = aiohttp.FormData()
        form.add_field("chat_id", chat_id)
        if caption:
            form.add_field("caption", caption)
        form.add_field(kind, file.data, filename=file.filename, content_type=file.mime_type)
        return await self._post(session, account, method, form)

    async def _post(self, session: aiohttp.ClientSession, account: Account, method: str,
                    payload: dict[str, Any] | aiohttp.FormData) -> base.DeliveryResult:
        """One Bot API call that sends a message: sent with its id, or Telegram's refusal read."""
        kwargs: dict[str, Any] = {"json": payload} if isinstance(payload, dict) else {"data": payload}
        try:
            async with session.post(account.method_url(method), timeout=base.SEND_TIMEOUT, **kwargs) as resp:
                status, retry_header = resp.status, resp.headers.get("Retry-After")
                try:
                    body = await resp.json(content_type=None)
                except ValueError:
                    body = None
        except (TimeoutError, aiohttp.ClientError) as exc:
            # Only the kind of error: its text may carry the URL, and the URL carries the token.
            return base.DeliveryResult.retry(f"could not reach Telegram: {type(exc).__name__}")
        return _result(account, status, base.obj(body), retry_header)

    async def fetch_media(self, session: aiohttp.ClientSession, account_id: str, media_id: str) -> base.Media:
        """A file a customer sent, by `file_id`: `getFile` says where it is, then it is downloaded, capped."""
        account = self.account(account_id)
        try:
            async with session.get(account.method_url("getFile"), params={"file_id": media_id},
                                   timeout=base.SEND_TIMEOUT) as resp:
                status = resp.status
                try:
                    body = base.obj(await resp.json(content_type=None))
                except ValueError:
                    body = {}
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise LookupError(f"Telegram file: could not reach Telegram ({type(exc).__name__})") from None
        path = base.obj(body.get("result")).get("file_path")
        if body.get("ok") is not True or not isinstance(path, str) or not path:
            reason = base.safe_reason(str(body.get("description") or f"HTTP {status}"), account.bot_token)
            raise LookupError(f"Telegram has no file for this attachment ({reason}); bots may download files "
                              "up to 20 MB")
        if ".." in path.split("/"):
            raise LookupError("Telegram file: an unexpected file path")
        guessed = mimetypes.guess_type(path)[0]
        return await base.download(session, f"{account.api_url}/file/bot{account.bot_token}/{quote(path)}",
                                   what="Telegram file", mime_type=guessed)


def _bot_id(table: Mapping[str, Any], name: str, token: str) -> str:
    """The bot's id: `bot_id` when given, else the token's prefix; both must agree. No message repeats the token."""
    found = BOT_TOKEN.fullmatch(token)
    given = base.text_value(table, "bot_id", SECTION, allow_int=True) if table.get("bot_id") not in (None, "") else None
    if given is not None and not given.isdigit():
        raise base.ConfigError(f"[[{SECTION}]] account {name!r}: key 'bot_id' must be the bot's numeric id")
    if found is not None and given is not None and found.group(1) != given:
        raise base.ConfigError(f"[[{SECTION}]] account {name!r}: key 'bot_id' is not the id its bot_token starts with")
    if found is None and given is None:
        raise base.ConfigError(f"[[{SECTION}]] account {name!r}: key 'bot_token' is not a bot token as @BotFather "
                               "gives it (<bot id>:<secret>); give the bot's numeric id as 'bot_id'")
    return given or found.group(1)  # type: ignore[union-attr]


def _result(account: Account, status: int, body: dict[str, Any], retry_header: str | None) -> base.DeliveryResult:
    """Telegram's answer, `{"ok": true, "result": Message}` or `{"ok": false, "error_code", "description",
    "parameters"}`, as a delivery result: flood control and server errors are retried, the rest is final."""
    if status == 200 and body.get("ok") is True:
        result = base.obj(body.get("result"))
        message_id, chat = result.get("message_id"), base.obj(result.get("chat")).get("id")
        if message_id is None:
            return base.DeliveryResult.failed("Telegram took the message but did not say its id")
        # The same shape as the customers' message ids: a message id is only unique within its chat.
        return base.DeliveryResult.sent(f"{chat}:{message_id}" if chat is not None else str(message_id))
    code = body.get("error_code") if isinstance(body.get("error_code"), int) else status
    description = base.safe_reason(str(body.get("description") or f"HTTP {status}"), account.bot_token)
    if code == 429 or status == 429:
        wait = base.obj(body.get("parameters")).get("retry_after")
        after = base.retry_after_seconds(str(wait) if isinstance(wait, (int, float)) else retry_header)
        return base.DeliveryResult.retry(f"Telegram flood control: {description}", after)
    if status >= 500 or (isinstance(code, int) and code >= 500):
        return base.DeliveryResult.retry(f"Telegram answered {description}", base.retry_after_seconds(retry_header))
    if code == 401:
        return base.DeliveryResult.failed("Telegram rejected the bot token (401 Unauthorized); check the bot's "
                                          "bot_token, or whether it was revoked in @BotFather")
    if code == 403:
        return base.DeliveryResult.failed(f"Telegram will not deliver it: {description} (the customer has to "
                                          "start the bot again before it can write to them)")
    return base.DeliveryResult.failed(f"Telegram refused the message: {description}")


def _load(body: bytes) -> dict[str, Any]:
    """The webhook body: one Update (its `update_id` is what Telegram retries by), else MalformedPayload."""
    payload = base.json_object(body, "Telegram webhook body")
    if not isinstance(payload.get("update_id"), int):
        raise base.MalformedPayload("Telegram webhook body is not an Update (no 'update_id')")
    return payload


def _message(bot_id: str, msg: Any, *, edited: bool) -> base.Parsed | None:
    kind = "edited_message" if edited else "message"
    if not isinstance(msg, dict):
        return base.Skipped(f"Telegram {kind} that is not an object")
    chat, sender = base.obj(msg.get("chat")), base.obj(msg.get("from"))
    if chat.get("type") != "private":
        # Groups, supergroups and channels are not support conversations: a reply would reach everyone.
        log.info("Telegram %s from a %s chat: not a support conversation, nothing stored", kind,
                 str(chat.get("type"))[:40])
        return None
    if sender.get("is_bot") is True:
        return None  # a private chat with a bot only ever holds the customer's messages and the bot's own
    try:
        chat_id = str(int(chat["id"]))  # in a private chat, the customer's user id: where replies go
        message_id = f"{chat_id}:{int(msg['message_id'])}"  # the same on a redelivery: the dedupe key
        at = from_unix(msg["edit_date"] if edited else msg["date"])
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return base.Skipped(f"Telegram {kind} without its chat, id or date")
    try:
        text, attachments, phone = _content(msg, sender)
    except (KeyError, TypeError, ValueError, AttributeError):
        return base.Skipped(f"Telegram {kind} with unreadable fields")
    if edited:
        return MessageEdit(CHANNEL.name, bot_id, chat_id, message_id, f"{message_id}@{msg['edit_date']}", at,
                           text, attachments)
    return InboundMessage(channel=CHANNEL.name, account=bot_id, user_id=chat_id, message_id=message_id,
                          sent_at=at, text=text, attachments=attachments, profile=_profile(chat_id, sender, phone))


def _profile(chat_id: str, sender: dict[str, Any], phone: str | None) -> dict[str, Any]:
    """What the customer's Telegram account says about them, for the identity (R8)."""
    name = " ".join(str(sender[k]) for k in ("first_name", "last_name") if sender.get(k))
    profile: dict[str, Any] = {"telegram_user_id": chat_id}
    if name:
        profile["name"] = name
    if sender.get("username"):
        profile["username"] = "@" + str(sender["username"])
    if sender.get("language_code"):
        profile["language_code"] = str(sender["language_code"])
    if phone:
        profile["phone"] = phone
    return profile


def _area(size: dict[str, Any]) -> tuple[int, int]:
    """How large one size of a photo is: its pixels, then its bytes."""
    return int(size.get("width") or 0) * int(size.get("height") or 0), int(size.get("file_size") or 0)


def _content(msg: dict[str, Any], sender: dict[str, Any]) -> tuple[str, tuple[Attachment, ...], str | None]:
    """A message's text, attachments, and the customer's phone when they shared their own contact."""
    text = str(msg.get("text") or msg.get("caption") or "")
    if isinstance(msg.get("photo"), list) and msg["photo"]:
        largest = max((base.obj(p) for p in msg["photo"]), key=_area)
        return text, (Attachment(type="image", media_id=str(largest["file_id"])),), None
    for key, kind in MEDIA_KINDS:
        if isinstance(msg.get(key), dict):
            media = msg[key]
            return text, (Attachment(type=kind, media_id=str(media["file_id"]), mime_type=media.get("mime_type"),
                                     filename=media.get("file_name")),), None
    if isinstance(msg.get("sticker"), dict):
        sticker = msg["sticker"]
        return text, (Attachment(type="sticker", media_id=str(sticker["file_id"]), title=sticker.get("set_name"),
                                 caption=sticker.get("emoji")),), None
    if isinstance(msg.get("venue"), dict) or isinstance(msg.get("location"), dict):
        venue = base.obj(msg.get("venue"))
        place = base.obj(venue.get("location")) or msg["location"]
        return text, (Attachment(type="location", latitude=float(place["latitude"]),
                                 longitude=float(place["longitude"]), title=venue.get("title"),
                                 caption=venue.get("address")),), None
    if isinstance(msg.get("contact"), dict):
        contact = msg["contact"]
        number = str(contact["phone_number"])
        who = " ".join(str(contact[k]) for k in ("first_name", "last_name") if contact.get(k))
        # Their own number (Telegram's "share my phone number" button): the customer's phone, R4/R25.
        own = contact.get("user_id") is not None and contact.get("user_id") == sender.get("id")
        said = f"shared {'their phone number' if own else 'a contact'}: {who + ', ' if who else ''}{number}"
        return said, (), number if own else None
    if text:
        return text, (), None
    kind = next((k for k in msg if k not in ABOUT), "unknown")
    return f"sent an unsupported message (type: {kind[:40]})", (), None


DESCRIPTION = base.Description(CHANNEL, Connector.from_config, route="account",
                               simulation="socialdesk.fakes.telegram_api:TELEGRAM")
