"""WhatsApp Cloud API: the `[[whatsapp]]` business numbers, their webhook and their send API.

Owns: the account configuration, routing by `metadata.phone_number_id` on the one
`/webhooks/whatsapp` URL, turning `messages[]`, `message_echoes[]` and `statuses[]` into the
warehouse's items (every customer message kept: media, locations, contacts, orders, reactions,
edits, unsent messages, button and Flow replies, a readable placeholder for the rest), who a customer
is (the business-scoped user id when WhatsApp sends one, else the phone number), sending text (split
when longer than one message allows), one image or document (uploaded first) and templates to the id
the customer writes from, mapping Graph errors (131047 window closed, 130429/131056 rate limits), and
the two-step media download.
Shared Meta pieces (handshake, signature, errors, parts) live in connectors/meta.py.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from connectors import base, meta
from warehouse.channels import Channel, DemoProfile, DemoUserIds, Window
from warehouse.model import Attachment, DeliveryState, InboundMessage, MessageEdit, MessageWithdrawn, StatusUpdate

log = logging.getLogger(__name__)

SECTION = "whatsapp"
OBJECT = "whatsapp_business_account"
KEYS = ("phone_number_id", "display_phone_number", "app_secret", "verify_token", "access_token")
MEDIA_TYPES = {"image": "image", "document": "file", "audio": "audio", "video": "video", "sticker": "sticker"}
STATUSES: tuple[DeliveryState, ...] = ("sent", "delivered", "read", "played", "failed")
# The changes that carry conversations: customers' messages and receipts, and (coexistence) what the
# business sent from the WhatsApp Business app on the same number.
FIELDS = ("messages", "smb_message_echoes")
APP_ORIGIN = "the WhatsApp Business app"
WINDOW_CLOSED = 131047  # "Re-engagement message": more than 24 h since the customer wrote
RATE_LIMITED = {130429, 131056, 2}  # throughput, pair rate limit, Graph "service temporarily unavailable"
TEXT_LIMIT = 4096  # characters in one text message's body (channels.md 1e)
CAPTION_LIMIT = 1024
IMAGE_TYPES = ("image/jpeg", "image/png")  # anything else goes as a document, which takes any type
MEDIA_ID = re.compile(r"[0-9A-Za-z_-]+")
# A business-scoped user id: ISO country code, a dot, up to 128 alphanumerics; a parent BSUID has
# `ENT.` in the middle (channels.md 7). Everything else we send to is a phone number.
BSUID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")
# What agents should read for the errors a reply meets most; Meta's own words follow in the reason.
EXPLAINED = {
    WINDOW_CLOSED: "the customer's last message is more than 24 hours old, so WhatsApp delivers only an "
                   "approved template to them",
    130429: "the number sent more messages per second than WhatsApp allows; it will be tried again",
    131056: "too many messages to this customer in a short time; it will be tried again",
    131026: "WhatsApp could not deliver it to this customer (not on WhatsApp, or blocked the business)",
    131062: "this message cannot go to a business-scoped user id; it needs the customer's phone number",
    132000: "the template's parameters do not match what the approved template expects",
    132001: "no approved template has this name in this language",
    131009: "WhatsApp refused one of the message's values",
}

# What our sends carry in `biz_opaque_callback_data` (up to 512 characters, echoed in the message's
# status webhooks; channels.md 7): the outbox row they come from.
OPAQUE_PREFIX = "socialdesk:outbox:"
OPAQUE = re.compile(re.escape(OPAQUE_PREFIX) + r"\d{1,18}")


# What the rest of SocialDesk knows of WhatsApp (R7, R22, B1): templates still go out after 24 hours, and
# status webhooks say what each reply cost.
CHANNEL = Channel(
    name="whatsapp", tag="whatsapp", label="WhatsApp", icon="🅆", abbreviation="WA",
    window=Window(24, templates=True), zendesk_via=("whatsapp", 74), priced_replies=True,
    demo=DemoProfile(accounts=(("106540352242922", "Paris support", 0.25), ("106540352242923", "Lyon support", 0.15)),
                     user_ids=DemoUserIds(prefix="336", start=10000000, width=8), message_id_prefix="wamid.demo",
                     reply_hours=0.8, phones=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class Account(meta.AppAccount):
    """A WhatsApp Business phone number: webhooks name it by `metadata.phone_number_id`, replies go out from
    it."""

    phone_number_id: str
    display_phone_number: str

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Account:
        base.check_table(table, SECTION, KEYS)
        return cls(phone_number_id=base.text_value(table, "phone_number_id", SECTION, allow_int=True),
                   display_phone_number=base.text_value(table, "display_phone_number", SECTION, allow_int=True),
                   api_url=meta.api_url_value(table, SECTION), **meta.AppAccount.secrets(table, SECTION))

    def public(self) -> dict[str, Any]:
        return {"phone_number_id": self.phone_number_id, "display_phone_number": self.display_phone_number}

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


class Connector(base.WithAccounts[Account]):
    channel: ClassVar[str] = CHANNEL.name
    account_type = Account
    id_key: ClassVar[str] = "phone_number_id"

    # Webhook ----------------------------------------------------------------------------------

    def handshake(self, request: base.Incoming) -> web.Response | None:
        return meta.handshake(request, (a.verify_token for a in self.accounts.by_id.values()))

    def verify(self, request: base.Incoming) -> None:
        matched = meta.matching_secrets(request, (a.app_secret for a in self.accounts.by_id.values()))
        for phone_number_id in _routing_ids(request):
            account = self.account(phone_number_id)
            # One app's secret must not vouch for another app's numbers.
            if account.app_secret not in matched:
                raise base.BadSignature(f"signature is not from the app of account {account.name!r}")

    def parse(self, request: base.Incoming) -> list[base.Parsed]:
        data = meta.load_json(request, OBJECT)
        out: list[base.Parsed] = []
        for entry in data["entry"]:
            for change in meta.as_list(meta.as_dict(entry, "entry").get("changes"), "entry.changes"):
                change = meta.as_dict(change, "change")
                if change.get("field") not in FIELDS:
                    log.info("whatsapp: skipping a %r change", change.get("field"))
                    continue
                out.extend(_parse_value(meta.as_dict(change.get("value"), "change value")))
        return out

    def simulate(self, account_id: str, body: bytes) -> tuple[dict[str, str], dict[str, str], bytes]:
        """The request Meta would send us with `body` for this number: JSON, signed with its app secret."""
        account = self.account(account_id)
        headers = {"Content-Type": "application/json", meta.SIGNATURE_HEADER: meta.sign(account.app_secret, body)}
        return headers, {}, body

    # Send -------------------------------------------------------------------------------------

    async def send(self, session: aiohttp.ClientSession, reply: base.OutboundReply) -> base.DeliveryResult:
        account = self.sender(reply)
        if isinstance(account, base.DeliveryResult):
            return account
        address = _address(reply.to)
        if reply.template is not None:
            template: dict[str, Any] = {"name": reply.template.name, "language": {"code": reply.template.language}}
            if reply.template.parameters:
                template["components"] = [{"type": "body", "parameters": [
                    {"type": "text", "text": p} for p in reply.template.parameters]}]
            return await self._post(session, account, {"messaging_product": "whatsapp", **address,
                                                       "type": "template", "template": template})
        if not reply.text and reply.file is None:
            return base.DeliveryResult.failed("the reply has neither text nor a file")
        texts = base.split_text(reply.text, TEXT_LIMIT) if reply.text else []
        messages = [_text_message(address, t) for t in texts]
        if reply.file is not None:
            # Upload before anything is sent, so a failed upload leaves the customer with nothing half-sent.
            media_id = await self._upload(session, account, reply.file)
            if isinstance(media_id, base.DeliveryResult):
                return media_id
            caption = reply.text if len(reply.text) <= CAPTION_LIMIT else ""
            if caption:
                messages = []  # the text goes as the file's caption
            messages.append(_media_message(address, reply.file, media_id, caption))
        # The last message carries the outbox row: WhatsApp echoes it in the message's statuses, so a
        # status for a send that timed out after WhatsApp took it marks the reply sent instead of the
        # outbox sending it again (the earlier parts of a split reply are not tagged: a status for one
        # of them must not stop the rest).
        messages[-1] = {**messages[-1], "biz_opaque_callback_data": f"{OPAQUE_PREFIX}{reply.outbox_id}"}
        names = [_part_name(n, len(texts)) for n in range(len(texts))][:len(messages)]
        names += ["the file"] * (len(messages) - len(names))
        return await base.send_in_parts([(name, self._sender(session, account, m))
                                         for name, m in zip(names, messages, strict=True)])

    def _sender(self, session: aiohttp.ClientSession, account: Account, payload: dict[str, Any]) -> Any:
        return lambda: self._post(session, account, payload)

    async def _post(self, session: aiohttp.ClientSession, account: Account,
                    payload: dict[str, Any]) -> base.DeliveryResult:
        answer = await base.call_api(session, "POST", f"{account.api_url}/{account.phone_number_id}/messages",
                                     json=payload, headers=account.auth)
        if isinstance(answer, base.DeliveryResult):
            return answer
        if answer.status == 200 and isinstance(answer.body, dict):
            messages = answer.body.get("messages")
            if isinstance(messages, list) and messages and isinstance(messages[0], dict) and messages[0].get("id"):
                return base.DeliveryResult.sent(str(messages[0]["id"]))
        return _error(answer, account)

    async def _upload(self, session: aiohttp.ClientSession, account: Account,
                      file: base.OutboundFile) -> str | base.DeliveryResult:
        form = aiohttp.FormData()
        form.add_field("messaging_product", "whatsapp")
        form.add_field("type", file.mime_type)
        form.add_field("file", file.data, filename=file.filename, content_type=file.mime_type)
        answer = await base.call_api(session, "POST", f"{account.api_url}/{account.phone_number_id}/media",
                                     data=form, headers=account.auth)
        if isinstance(answer, base.DeliveryResult):
            return answer
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("id"):
            return str(answer.body["id"])
        result = _error(answer, account)
        return base.DeliveryResult(result.state, reason=f"uploading {file.filename}: {result.reason}",
                                   retry_after=result.retry_after)

    async def fetch_media(self, session: aiohttp.ClientSession, account_id: str, media_id: str) -> base.Media:
        """Media ids from webhooks last 7 days: look the id up for a short-lived URL, then GET it."""
        account = self.accounts.by_id.get(account_id)
        if account is None:
            raise LookupError(f"no whatsapp account with phone_number_id {account_id!r} is configured")
        if not MEDIA_ID.fullmatch(media_id):
            raise LookupError(f"{media_id!r} is not a WhatsApp media id")
        what = f"WhatsApp media {media_id}"
        answer = await base.call_api(session, "GET", f"{account.api_url}/{media_id}", headers=account.auth)
        if isinstance(answer, base.DeliveryResult):
            raise LookupError(f"{what}: {answer.reason}")
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status != 200 or not isinstance(body.get("url"), str):
            raise LookupError(f"{what}: {_error(answer, account).reason}")
        mime_type = body.get("mime_type") if isinstance(body.get("mime_type"), str) else None
        return await base.download(session, body["url"], headers=account.auth, what=what, mime_type=mime_type)


# Parsing ----------------------------------------------------------------------------------------

def _routing_ids(request: base.Incoming) -> set[str]:
    """The phone_number_ids a payload speaks for (changes without metadata name none)."""
    data = meta.load_json(request, OBJECT)
    ids: set[str] = set()
    for entry in data["entry"]:
        for change in meta.as_list(meta.as_dict(entry, "entry").get("changes"), "entry.changes"):
            value = meta.as_dict(change, "change").get("value")
            metadata = value.get("metadata") if isinstance(value, dict) else None
            if isinstance(metadata, dict):
                ids.add(meta.text_field(metadata, "phone_number_id", "metadata"))
    return ids


@dataclass(frozen=True, slots=True)
class _Who:
    """An end user as the platform names them: the id they are known by, their other ids, their profile."""

    user_id: str
    aliases: tuple[str, ...]
    profile: dict[str, Any]


def _digits(value: Any) -> str:
    return re.sub(r"\D", "", str(value or ""))


def _who(bsuid: str, phone: str, parent: str, contacts: list[dict[str, Any]]) -> _Who:
    """The business-scoped user id when WhatsApp sends one (from April 2026 it always does), else the
    phone number; the phone, when both came, is another id of the same user (channels.md 7)."""
    contact = next((c for c in contacts if (bsuid and c.get("user_id") == bsuid)
                    or (phone and str(c.get("wa_id") or "") == phone)), {})
    bsuid = bsuid or str(contact.get("user_id") or "")
    if not bsuid and not phone:
        raise base.MalformedPayload("message has neither from nor from_user_id")
    given = base.obj(contact.get("profile"))
    profile: dict[str, Any] = {k: given[k] for k in ("name", "username") if given.get(k)}
    if phone and _digits(phone) == phone:
        profile["phone"] = f"+{phone}"
    parent = parent or str(contact.get("parent_user_id") or "")
    if parent:
        profile["parent_user_id"] = parent
    if bsuid and phone:
        return _Who(bsuid, (phone,), profile)
    return _Who(bsuid or phone, (), profile)


def _parse_value(value: dict[str, Any]) -> list[base.Parsed]:
    metadata = meta.as_dict(value.get("metadata"), "value.metadata")
    account = meta.text_field(metadata, "phone_number_id", "metadata")
    contacts = [c for c in meta.as_list(value.get("contacts"), "value.contacts") if isinstance(c, dict)]
    out: list[base.Parsed] = []
    for message in meta.as_list(value.get("messages"), "value.messages"):
        out.extend(_one(lambda m=message: _parse_message(account, meta.as_dict(m, "message"), contacts),
                        "message", message))
    for echo in meta.as_list(value.get("message_echoes"), "value.message_echoes"):
        out.extend(_one(lambda e=echo: _parse_echo(account, _digits(metadata.get("display_phone_number")),
                                                   meta.as_dict(e, "message echo"), contacts), "echo", echo))
    for status in meta.as_list(value.get("statuses"), "value.statuses"):
        out.extend(_one(lambda s=status: _parse_status(account, meta.as_dict(s, "status")), "status", status))
    for error in meta.as_list(value.get("errors"), "value.errors"):
        # Meta reports problems with our app or number here (an expired token, a rate limit): they
        # concern whoever runs the service, not a conversation.
        if isinstance(error, dict):
            log.warning("whatsapp: Meta reports error %s (%s) for number %s", error.get("code"),
                        error.get("title") or error.get("message"), account)
    return out


def _one(parse: Any, what: str, raw: Any) -> list[base.Parsed]:
    """One entry parsed alone: if it cannot be read, it is skipped and the others are kept."""
    try:
        return list(parse())
    except base.MalformedPayload as exc:
        kind = str(base.obj(raw).get("type") or "unknown")
        return [base.Skipped(f"whatsapp {kind[:40]} {what}: {exc}"[:200])]  # logged: bounded, never content


def _parse_message(account: str, message: dict[str, Any], contacts: list[dict[str, Any]]) -> list[base.Parsed]:
    kind = str(message.get("type") or "")
    message_id = meta.text_field(message, "id", "message")
    at = meta.timestamp(message.get("timestamp"), f"message {message_id}")
    if kind == "system":
        # A user changed number or security code: news about the contact, not a message to answer.
        log.info("whatsapp: system event %r on %s is not a customer message",
                 meta.as_dict(message.get("system"), "system").get("type"), account)
        return []
    who = _who(str(message.get("from_user_id") or ""), str(message.get("from") or ""),
               str(message.get("from_parent_user_id") or ""), contacts)
    if kind == "edit":
        edit = meta.as_dict(message.get("edit"), "edit message")
        original = meta.text_field(edit, "original_message_id", "edit message")
        new = meta.as_dict(edit.get("message"), "edited message")
        text, attachments = _content(str(new.get("type") or ""), new)
        return [MessageEdit("whatsapp", account, who.user_id, original, message_id, at, text, attachments)]
    if kind == "revoke":
        revoke = meta.as_dict(message.get("revoke"), "revoke message")
        original = meta.text_field(revoke, "original_message_id", "revoke message")
        return [MessageWithdrawn("whatsapp", account, who.user_id, original, at)]
    context = base.obj(message.get("context"))
    referral = message.get("referral")
    info = {"referral": referral} if isinstance(referral, dict) and referral else {}
    if kind == "reaction":
        reaction = meta.as_dict(message.get("reaction"), "reaction message")
        return [InboundMessage("whatsapp", account, who.user_id, message_id, at, "", (), who.profile, who.aliases,
                               reply_to=str(reaction.get("message_id") or "") or None,
                               reaction=str(reaction.get("emoji") or ""), channel_info=info)]
    text, attachments = _content(kind, message)
    return [InboundMessage("whatsapp", account, who.user_id, message_id, at, text, attachments, who.profile,
                           who.aliases, reply_to=str(context.get("id") or "") or None, channel_info=info)]


def _parse_echo(account: str, display_number: str, echo: dict[str, Any],
                contacts: list[dict[str, Any]]) -> list[base.Parsed]:
    """A message the business sent from the WhatsApp Business app (coexistence): the business's comment."""
    kind = str(echo.get("type") or "")
    message_id = meta.text_field(echo, "id", "message echo")
    at = meta.timestamp(echo.get("timestamp"), f"message echo {message_id}")
    sender, recipient = str(echo.get("from") or ""), str(echo.get("to") or "")
    # The customer is `to`; some senders put the business in `to` and the customer in `from`.
    phone = sender if display_number and _digits(recipient) == display_number else recipient
    who = _who(str(echo.get("to_user_id") or ""), phone, str(echo.get("to_parent_user_id") or ""), contacts)
    if kind == "edit":
        edit = meta.as_dict(echo.get("edit"), "edit echo")
        new = meta.as_dict(edit.get("message"), "edited message")
        text, attachments = _content(str(new.get("type") or ""), new)
        text = f"✏️ edited a message: {text}" if text else "✏️ edited a message"
    elif kind == "revoke":
        text, attachments = "🗑️ deleted a message for everyone", ()
    else:
        text, attachments = _content(kind, echo)
    return [InboundMessage("whatsapp", account, who.user_id, message_id, at, text, attachments, who.profile,
                           who.aliases, business_origin=APP_ORIGIN)]


def _content(kind: str, message: dict[str, Any]) -> tuple[str, tuple[Attachment, ...]]:
    """What a message of type `kind` says, as text and attachments; a readable placeholder when there is
    nothing we can show, so no customer message is ever silently empty."""
    if kind == "text":
        return str(meta.as_dict(message.get("text"), "text message").get("body") or ""), ()
    if kind in MEDIA_TYPES:
        media = meta.as_dict(message.get(kind), f"{kind} message")
        return "", (Attachment(MEDIA_TYPES[kind], media_id=meta.text_field(media, "id", f"{kind} message"),
                               mime_type=media.get("mime_type"), filename=media.get("filename"),
                               caption=media.get("caption")),)
    if kind == "location":
        place = meta.as_dict(message.get("location"), "location message")
        title = ", ".join(str(place[k]) for k in ("name", "address") if place.get(k)) or None
        return "", (Attachment("location", latitude=meta.number(place.get("latitude"), "latitude"),
                               longitude=meta.number(place.get("longitude"), "longitude"), title=title,
                               url=place.get("url")),)
    if kind == "interactive":
        return _interactive(message), ()
    if kind == "button":  # a tap on a template's quick-reply button
        return str(meta.as_dict(message.get("button"), "button message").get("text") or ""), ()
    if kind == "contacts":
        return _contacts(meta.as_list(message.get("contacts"), "contacts message")), ()
    if kind == "order":
        return _order(meta.as_dict(message.get("order"), "order message")), ()
    if kind == "unsupported":
        return _unsupported(message), ()
    log.info("whatsapp: a %r message is kept as a placeholder", kind)
    return f"sent a {kind or 'new kind of'} message, which SocialDesk cannot show yet", ()


def _interactive(message: dict[str, Any]) -> str:
    """A tap on one of our reply buttons or list rows (the customer "said" its title), or a Flow's answers."""
    interactive = message.get("interactive")
    if not isinstance(interactive, dict):
        # pywa's `interactive_message_with_err`: WhatsApp sent the type without its object.
        raise base.MalformedPayload("interactive message without its content")
    subtype = str(interactive.get("type") or "")
    chosen = interactive.get(subtype)
    if not isinstance(chosen, dict):
        raise base.MalformedPayload(f"interactive {subtype or 'message'} without its content")
    if subtype == "nfm_reply":
        return _flow_reply(chosen)
    title = str(chosen.get("title") or "")
    if chosen.get("description"):
        title = f"{title} ({chosen['description']})"
    return title or f"sent an interactive reply (type: {subtype})"


def _flow_reply(reply: dict[str, Any]) -> str:
    """A WhatsApp Flow's answers: its closing text, then each answer as `field: value`."""
    lines = [str(reply.get("body") or "Sent")]
    try:
        answers = json.loads(reply.get("response_json") or "{}")
    except (TypeError, ValueError):
        answers = {}
    if isinstance(answers, dict):
        # The flow token identifies our Flow session, not something the customer said.
        lines += [f"{k}: {v}" for k, v in answers.items() if k != "flow_token"]
    return "\n".join(lines)


def _contacts(cards: list[Any]) -> str:
    lines = []
    for card in cards:
        if not isinstance(card, dict):
            continue
        name = base.obj(card.get("name"))
        full = str(name.get("formatted_name") or " ".join(
            str(name[k]) for k in ("first_name", "last_name") if name.get(k)) or "(no name)")
        numbers = [f"{p.get('phone') or p.get('wa_id')}" + (f" ({p['type']})" if p.get("type") else "")
                   for p in card.get("phones") or [] if isinstance(p, dict) and (p.get("phone") or p.get("wa_id"))]
        emails = [str(e.get("email")) for e in card.get("emails") or [] if isinstance(e, dict) and e.get("email")]
        lines.append(f"{full}: {', '.join(numbers + emails)}" if numbers or emails else full)
    return "📇 shared contacts:\n" + "\n".join(lines) if lines else "📇 shared a contact card with nothing in it"


def _order(order: dict[str, Any]) -> str:
    # Not the catalog id: agents do not need it, and 15 digits read as a card number to the store's redaction.
    lines = ["🛒 sent an order:"]
    if order.get("text"):
        lines.append(str(order["text"]))
    items = [i for i in order.get("product_items") or [] if isinstance(i, dict)]
    for item in items:
        price, currency = item.get("item_price"), item.get("currency") or ""
        lines.append(f"{item.get('quantity')} × {item.get('product_retailer_id')}"
                     + (f" at {price} {currency}".rstrip() if price is not None else ""))
    # A total only when every line has a number and a price in one currency: never a wrong one.
    priced = all(isinstance(i.get("quantity"), int | float) and isinstance(i.get("item_price"), int | float)
                 for i in items)
    if items and priced and len({i.get("currency") for i in items}) == 1:
        total = sum(i["quantity"] * i["item_price"] for i in items)
        lines.append(f"Total: {total:g} {items[0].get('currency') or ''}".rstrip())
    return "\n".join(lines)


def _unsupported(message: dict[str, Any]) -> str:
    """WhatsApp could not pass the message on (a poll, a view-once photo...): say what we know of it."""
    inner = message.get("unsupported")
    kind = inner.get("type") if isinstance(inner, dict) else None
    if kind:
        return f"sent an unsupported message (type: {kind})"
    errors = [e for e in message.get("errors") or [] if isinstance(e, dict)]
    title = next((e.get("title") or e.get("message") for e in errors if e.get("title") or e.get("message")), None)
    return f"sent an unsupported message ({title})" if title else "sent an unsupported message"


def _parse_status(account: str, status: dict[str, Any]) -> list[base.Parsed]:
    state = status.get("status")
    message_id = meta.text_field(status, "id", "status")
    if state not in STATUSES:
        log.info("whatsapp: skipping a %r status for %s", state, message_id)
        return []
    errors = [e for e in meta.as_list(status.get("errors"), "status.errors") if isinstance(e, dict)]
    error = "; ".join(f"{e.get('code')}: {e.get('title') or e.get('message') or 'unknown error'}"
                      for e in errors) or None
    pricing = status.get("pricing")
    # A status names the customer by BSUID when it has no phone number (channels.md 7).
    user = str(status.get("recipient_user_id") or status.get("recipient_id") or "")
    at: datetime = meta.timestamp(status.get("timestamp"), f"status {message_id}")
    opaque = str(status.get("biz_opaque_callback_data") or "")
    outbox_id = int(opaque.removeprefix(OPAQUE_PREFIX)) if OPAQUE.fullmatch(opaque) else None
    return [StatusUpdate("whatsapp", account, user, state, at, message_id=message_id, error=error,
                         pricing=dict(pricing) if isinstance(pricing, dict) and pricing else None,
                         outbox_id=outbox_id)]


# Sending ----------------------------------------------------------------------------------------

def _address(recipient: str) -> dict[str, str]:
    """Where a message goes, in the form the Cloud API documents: `recipient` for a business-scoped user
    id, `to` for a phone number (channels.md 7)."""
    if BSUID.fullmatch(recipient):
        return {"recipient_type": "individual", "recipient": recipient}
    return {"recipient_type": "individual", "to": recipient}


def _part_name(n: int, total: int) -> str:
    return "the text" if total == 1 else f"part {n + 1} of {total} of the text"


def _text_message(address: dict[str, str], text: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", **address, "type": "text", "text": {"preview_url": False, "body": text}}


def _media_message(address: dict[str, str], file: base.OutboundFile, media_id: str, caption: str) -> dict[str, Any]:
    kind = "image" if file.mime_type in IMAGE_TYPES else "document"
    media: dict[str, Any] = {"id": media_id}
    if kind == "document":
        media["filename"] = file.filename
    if caption:
        media["caption"] = caption
    return {"messaging_product": "whatsapp", **address, "type": kind, kind: media}


def _error(answer: base.HttpAnswer, account: Account) -> base.DeliveryResult:
    error = meta.graph_error(answer)
    if error.code is None:
        reason = f"WhatsApp answered HTTP {answer.status} without a message id"
    else:
        said = error.message + (f" ({error.details})" if error.details and error.details not in error.message else "")
        reason = f"WhatsApp error {error.code}: " + (f"{EXPLAINED[error.code]}. WhatsApp said: {said}"
                                                     if error.code in EXPLAINED else said)
    reason = base.safe_reason(reason, account.access_token, account.app_secret)
    if error.code == WINDOW_CLOSED:
        return base.DeliveryResult.failed(reason, window_closed=True)
    if error.code in RATE_LIMITED:
        return base.DeliveryResult.retry(reason)
    return base.DeliveryResult.failed(reason)


DESCRIPTION = base.Description(CHANNEL, Connector.from_config, route="app",
                               simulation="socialdesk.fakes.meta_api:WHATSAPP",
                               media_domains=("whatsapp.net", "fbsbx.com", "fbcdn.net"))
