"""Facebook Messenger Platform: the `[[messenger]]` Pages, their webhook and the Send API.

Owns: the page configuration (with `human_agent_tag` for Pages that have Meta's Human Agent
permission), routing by page id (`entry[].id`) on the one `/webhooks/messenger` URL, turning
`messaging[]` and `standby[]` events into the warehouse's items (messages with every kind of
attachment readable, postbacks, reactions, edits, delivery and read watermarks, ad referrals into the
ticket's channel info, and what the Page sent from another app or its inbox as the business's
comment), sending text (split past 2,000 characters) and one file (uploaded through the Attachment
Upload API first) with the messaging type the window calls for (RESPONSE within 24 hours, the
HUMAN_AGENT tag for 7 days where permitted), mapping Graph errors (code 10 window closed, 4/32/613
rate limits) into reasons an agent can act on, and downloading attachments by their URL.
Shared Meta pieces (handshake, signature, errors, parts) live in connectors/meta.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar

import aiohttp
from aiohttp import web

from connectors import meta
from connectors.base import (
    BadSignature,
    ConfigError,
    DeliveryResult,
    Description,
    HttpAnswer,
    Incoming,
    MalformedPayload,
    Media,
    OutboundFile,
    OutboundReply,
    Parsed,
    Skipped,
    UnknownAccount,
    call_api,
    check_table,
    check_unique,
    obj,
    text_value,
)
from warehouse import clock
from warehouse.channels import Channel, DemoProfile, DemoUserIds, Window
from warehouse.model import Attachment, InboundMessage, MessageEdit, StatusUpdate

log = logging.getLogger(__name__)

SECTION = "messenger"
OBJECT = "page"
KEYS = ("page_id", "page_name", "app_secret", "verify_token", "page_access_token")
OPTIONAL = ("api_url", "human_agent_tag")
MEDIA_TYPES = ("image", "video", "audio", "file")
WINDOW_CLOSED_CODE = 10  # "(#10) This message is sent outside of allowed window"
WINDOW_CLOSED_SUBCODE = 2018278
RATE_LIMITED = {4, 32, 613, 2}  # app, page and send rate limits; 2 is "service temporarily unavailable"
TEXT_LIMIT = 2000  # "(#100) Length of param message[text] must be less than or equal to 2000"
# 24 hours after the customer's last message; with the HUMAN_AGENT tag a human may answer for 7 days
# (channels.md 7), on Pages with Meta's Human Agent permission (`human_agent_tag`, which account_info
# copies into the ticket's channel info for the desk's window check).
WINDOW = Window(24, tag="HUMAN_AGENT", tagged_hours=7 * 24, flag="human_agent_tag")
STANDARD_WINDOW = timedelta(hours=WINDOW.hours)
HUMAN_AGENT_WINDOW = timedelta(hours=WINDOW.tagged_hours)
# Our clock and Meta's differ by a little: a reply written in the last minutes of the 24 hours goes
# with the tag already (where the Page may use it), so it is not refused at the boundary.
TAG_MARGIN = timedelta(minutes=5)
# `message.metadata` comes back in the echo of what we send (Send API, "custom string that is
# delivered as a message echo"): our own echoes are recognized before the send is even recorded.
METADATA_PREFIX = "socialdesk:outbox:"
# The events that are not messages and need no ticket: entry points, opt-ins, handover.
NOT_MESSAGES = ("referral", "optin", "account_linking", "pass_thread_control", "take_thread_control",
                "request_thread_control", "app_roles", "policy_enforcement", "messaging_feedback", "game_play")
REACTIONS = {"like": "👍", "love": "❤️", "smile": "😆", "wow": "😮", "sad": "😢", "angry": "😡"}



# What the rest of SocialDesk knows of Messenger (R7, B1): tickets are tagged `facebook`.
CHANNEL = Channel(
    name="messenger", tag="facebook", label="Messenger", icon="🄼", abbreviation="FB", account_noun="Page",
    window=WINDOW,
    zendesk_via=("facebook_message", 41, "sunshine_conversations_facebook_messenger", 78, "facebook"),
    demo=DemoProfile(accounts=(("682498302938465", "Brand page", 0.20),),
                     user_ids=DemoUserIds(start=7000000000000000), reply_hours=1.5))


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    page_id: str
    page_name: str
    app_secret: str = field(repr=False)
    verify_token: str = field(repr=False)
    page_access_token: str = field(repr=False)
    api_url: str = meta.GRAPH_API_URL
    # The Page has Meta's Human Agent permission: a human may answer up to 7 days after the
    # customer's last message, with the HUMAN_AGENT tag.
    human_agent_tag: bool = False

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Account:
        check_table(table, SECTION, KEYS, OPTIONAL)
        tag = table.get("human_agent_tag", False)
        if not isinstance(tag, bool):
            raise ConfigError(f"[[{SECTION}]] account {table.get('name', '?')!r}: key 'human_agent_tag' must be "
                              "true or false")
        return cls(
            name=text_value(table, "name", SECTION),
            page_id=text_value(table, "page_id", SECTION, allow_int=True),
            page_name=text_value(table, "page_name", SECTION),
            app_secret=text_value(table, "app_secret", SECTION),
            verify_token=text_value(table, "verify_token", SECTION),
            page_access_token=text_value(table, "page_access_token", SECTION),
            api_url=meta.api_url_value(table, SECTION),
            human_agent_tag=tag,
        )

    @property
    def token_param(self) -> dict[str, str]:
        # Meta documents the page token as a query parameter; never log or echo the URL it ends up in.
        return {"access_token": self.page_access_token}


class Connector:
    channel: ClassVar[str] = CHANNEL.name

    def __init__(self, accounts: Iterable[Account]) -> None:
        accounts = list(accounts)
        check_unique(SECTION, [(a.name, a.page_id) for a in accounts], "page_id")
        self._accounts = {a.page_id: a for a in accounts}

    @classmethod
    def from_config(cls, tables: list[dict[str, Any]]) -> Connector:
        return cls(Account.from_table(table) for table in tables)

    def account_ids(self) -> list[str]:
        return list(self._accounts)

    def account(self, account_id: str) -> Account:
        try:
            return self._accounts[account_id]
        except KeyError:
            raise UnknownAccount(f"no messenger account with page_id {account_id!r}") from None

    def account_info(self, account_id: str) -> dict[str, Any]:
        account = self.account(account_id)
        info: dict[str, Any] = {"channel": self.channel, "account_name": account.name, "page_id": account.page_id,
                                "page_name": account.page_name}
        if account.human_agent_tag:  # agents (and the desk's window) should know a 7-day window applies
            info["human_agent_tag"] = True
        return info

    # Webhook ----------------------------------------------------------------------------------

    def handshake(self, request: Incoming) -> web.Response | None:
        return meta.handshake(request, (a.verify_token for a in self._accounts.values()))

    def verify(self, request: Incoming) -> None:
        matched = meta.matching_secrets(request, (a.app_secret for a in self._accounts.values()))
        data = meta.load_json(request.body, OBJECT)
        for entry in data["entry"]:
            account = self.account(meta.text_field(meta.as_dict(entry, "entry"), "id", "entry"))
            # One app's secret must not vouch for another app's pages.
            if account.app_secret not in matched:
                raise BadSignature(f"signature is not from the app of account {account.name!r}")

    def parse(self, request: Incoming) -> list[Parsed]:
        data = meta.load_json(request.body, OBJECT)
        out: list[Parsed] = []
        for entry in data["entry"]:
            entry = meta.as_dict(entry, "entry")
            page = meta.text_field(entry, "id", "entry")
            # `standby` carries the events of conversations another app controls (handover protocol).
            lists = [key for key in ("messaging", "standby") if key in entry]
            if not lists:
                if "changes" in entry:  # a Page feed subscription: not conversations
                    log.info("messenger: skipping an entry of page changes (%s)", page)
                else:
                    out.append(Skipped("messenger entry without messaging events"))
                continue
            for key in lists:
                for event in meta.as_list(entry[key], f"entry.{key}"):
                    out.extend(_one(page, event))
        return out

    def acknowledge(self, request: Incoming) -> web.Response:
        return web.Response(text="OK")

    def simulate(self, account_id: str, body: bytes) -> tuple[dict[str, str], dict[str, str], bytes]:
        """The request Meta would send us with `body` for this page: JSON, signed with its app secret."""
        account = self.account(account_id)
        headers = {"Content-Type": "application/json", meta.SIGNATURE_HEADER: meta.sign(account.app_secret, body)}
        return headers, {}, body

    # Send -------------------------------------------------------------------------------------

    async def send(self, session: aiohttp.ClientSession, reply: OutboundReply) -> DeliveryResult:
        account = self._accounts.get(reply.account)
        if account is None:
            return DeliveryResult.failed(f"no messenger account with page_id {reply.account!r} is configured")
        if reply.template is not None:
            return DeliveryResult.failed("message templates are a WhatsApp feature; Messenger cannot send one")
        if not reply.text and reply.file is None:
            return DeliveryResult.failed("the reply has neither text nor a file")
        kind = _messaging_type(account, reply)
        texts = meta.split_text(reply.text, TEXT_LIMIT) if reply.text else []
        parts: list[meta.Part] = [
            ("the text" if len(texts) == 1 else f"part {n + 1} of {len(texts)} of the text",
             self._sender(session, account, reply, kind, {"text": text})) for n, text in enumerate(texts)]
        if reply.file is not None:
            # Upload before anything is sent, so a failed upload leaves the customer with nothing half-sent.
            uploaded = await self._upload(session, account, reply.file)
            if isinstance(uploaded, DeliveryResult):
                return uploaded
            attachment = {"attachment": {"type": _kind(reply.file), "payload": {"attachment_id": uploaded}}}
            parts.append(("the file", self._sender(session, account, reply, kind, attachment)))
        return await meta.send_in_parts(parts)

    def _sender(self, session: aiohttp.ClientSession, account: Account, reply: OutboundReply,
                kind: dict[str, str], message: dict[str, Any]) -> Callable[[], Awaitable[DeliveryResult]]:
        return lambda: self._post(session, account, reply, kind, message)

    async def _post(self, session: aiohttp.ClientSession, account: Account, reply: OutboundReply,
                    kind: dict[str, str], message: dict[str, Any]) -> DeliveryResult:
        body = {"recipient": {"id": reply.to}, **kind,
                "message": {**message, "metadata": f"{METADATA_PREFIX}{reply.outbox_id}"}}
        answer = await call_api(session, "POST", f"{account.api_url}/{account.page_id}/messages",
                                params=account.token_param, json=body)
        if isinstance(answer, DeliveryResult):
            return answer
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("message_id"):
            return DeliveryResult.sent(str(answer.body["message_id"]))
        return _error(answer, account, reply, kind)

    async def _upload(self, session: aiohttp.ClientSession, account: Account,
                      file: OutboundFile) -> str | DeliveryResult:
        form = aiohttp.FormData()
        form.add_field("message", json.dumps({"attachment": {"type": _kind(file), "payload": {"is_reusable": True}}}))
        form.add_field("filedata", file.data, filename=file.filename, content_type=file.mime_type)
        answer = await call_api(session, "POST", f"{account.api_url}/{account.page_id}/message_attachments",
                                params=account.token_param, data=form)
        if isinstance(answer, DeliveryResult):
            return answer
        if answer.status == 200 and isinstance(answer.body, dict) and answer.body.get("attachment_id"):
            return str(answer.body["attachment_id"])
        result = _error(answer, account, None, {})
        return DeliveryResult(result.state, reason=f"uploading {file.filename}: {result.reason}",
                              retry_after=result.retry_after)

    async def fetch_media(self, session: aiohttp.ClientSession, account_id: str, media_id: str) -> Media:
        """Messenger attachments carry their own (signed CDN) URL: `media_id` is that URL."""
        if account_id not in self._accounts:
            raise LookupError(f"no messenger account with page_id {account_id!r} is configured")
        return await meta.download(session, media_id, what="Messenger attachment")


# Parsing ----------------------------------------------------------------------------------------

def _one(page: str, event: Any) -> list[Parsed]:
    """One event parsed alone: if it cannot be read, it is skipped and the others are kept."""
    kinds = sorted(set(event) - {"sender", "recipient", "timestamp"}) if isinstance(event, dict) else []
    try:
        return _parse_event(page, meta.as_dict(event, "messaging event"))
    except MalformedPayload as exc:
        return [Skipped(f"messenger {'/'.join(kinds)[:60] or 'empty'} event: {exc}"[:200])]  # logged: bounded


def _sender(event: dict[str, Any]) -> str:
    return meta.text_field(meta.as_dict(event.get("sender"), "sender"), "id", "sender")


def _parse_event(page: str, event: dict[str, Any]) -> list[Parsed]:
    if "message" in event:
        message = meta.as_dict(event["message"], "message")
        if message.get("is_echo"):
            return _parse_echo(page, event, message)
        return _parse_message(page, _sender(event), event, message)
    if "postback" in event:
        sender = _sender(event)
        postback = meta.as_dict(event["postback"], "postback")
        at = meta.timestamp(event.get("timestamp"), "postback", ms=True)
        # Older postbacks carry no mid; sender + time is stable across Meta's retries.
        message_id = str(postback.get("mid") or f"postback-{sender}-{event.get('timestamp')}")
        text = str(postback.get("title") or postback.get("payload") or "")
        return [InboundMessage("messenger", page, sender, message_id, at, text, (), {"psid": sender},
                               channel_info=_referral(postback.get("referral")))]
    if "delivery" in event:
        sender = _sender(event)
        delivery = meta.as_dict(event["delivery"], "delivery")
        watermark = meta.timestamp(delivery.get("watermark"), "delivery watermark", ms=True)
        at = meta.timestamp(event["timestamp"], "delivery", ms=True) if "timestamp" in event else watermark
        mids = meta.as_list(delivery.get("mids"), "delivery.mids")
        if mids:
            return [StatusUpdate("messenger", page, sender, "delivered", at, message_id=str(mid)) for mid in mids]
        return [StatusUpdate("messenger", page, sender, "delivered", at, watermark=watermark)]
    if "read" in event:
        sender = _sender(event)
        read = meta.as_dict(event["read"], "read")
        watermark = meta.timestamp(read.get("watermark"), "read watermark", ms=True)
        at = meta.timestamp(event["timestamp"], "read", ms=True) if "timestamp" in event else watermark
        return [StatusUpdate("messenger", page, sender, "read", at, watermark=watermark)]
    if "reaction" in event:
        return _parse_reaction(page, _sender(event), event, meta.as_dict(event["reaction"], "reaction"))
    if "message_edit" in event:
        sender = _sender(event)
        edit = meta.as_dict(event["message_edit"], "message_edit")
        mid = meta.text_field(edit, "mid", "message_edit")
        at = meta.timestamp(event.get("timestamp"), "message_edit", ms=True)
        return [MessageEdit("messenger", page, sender, mid, f"{mid}#{edit.get('num_edit', 1)}", at,
                            str(edit.get("text") or ""))]
    known = [kind for kind in NOT_MESSAGES if kind in event]
    if known:
        # An opt-in with only a `user_ref` names nobody we can write to: it cannot be read at all.
        _sender(event)
        log.info("messenger: a %s event for page %s is not a message", "/".join(known), page)
        return []
    raise MalformedPayload("no message, postback, receipt or other event we know")


def _parse_message(page: str, sender: str, event: dict[str, Any], message: dict[str, Any]) -> list[Parsed]:
    message_id = meta.text_field(message, "mid", "message")
    at = meta.timestamp(event.get("timestamp"), f"message {message_id}", ms=True)
    text, attachments = _content(message)
    if not text and not attachments:
        text = "sent an empty message"  # never silently nothing: the agent sees something came
    reply_to = obj(message.get("reply_to"))
    # Ads that open a conversation put their referral on the message (or beside it).
    info = _referral(message.get("referral")) or _referral(event.get("referral"))
    return [InboundMessage("messenger", page, sender, message_id, at, text, attachments, {"psid": sender},
                           reply_to=str(reply_to.get("mid") or "") or None, channel_info=info)]


def _parse_echo(page: str, event: dict[str, Any], message: dict[str, Any]) -> list[Parsed]:
    """What the Page itself sent: ours (dropped here by its metadata, or by the store by its id), or
    sent from another app or the Page inbox, which becomes the business's comment on the ticket."""
    if str(message.get("metadata") or "").startswith(METADATA_PREFIX):
        return []
    message_id = meta.text_field(message, "mid", "message echo")
    at = meta.timestamp(event.get("timestamp"), f"message echo {message_id}", ms=True)
    sender = meta.as_dict(event.get("sender"), "sender").get("id")
    recipient = meta.as_dict(event.get("recipient"), "recipient").get("id")
    # Meta sends echoes from the Page to the customer; some SDK fixtures have them the other way round.
    customer = str(sender if str(recipient) == page else recipient or "")
    if not customer:
        raise MalformedPayload("message echo names no customer")
    text, attachments = _content(message)
    if not text and not attachments:
        log.info("messenger: an echo with nothing to show for page %s", page)
        return []
    app_id = message.get("app_id")
    origin = f"another Messenger app (app {app_id})" if app_id else "the Facebook Page inbox"
    return [InboundMessage("messenger", page, customer, message_id, at, text, attachments,
                           business_origin=origin)]


def _parse_reaction(page: str, sender: str, event: dict[str, Any], reaction: dict[str, Any]) -> list[Parsed]:
    at = meta.timestamp(event.get("timestamp"), "reaction", ms=True)
    mid = str(reaction.get("mid") or "")
    action = str(reaction.get("action") or "react")
    emoji = str(reaction.get("emoji") or REACTIONS.get(str(reaction.get("reaction")), reaction.get("reaction") or "👍"))
    # A reaction has no id of its own; who, when and what it was to is stable across Meta's retries.
    message_id = f"reaction-{sender}-{event.get('timestamp')}-{action}-{mid}"
    return [InboundMessage("messenger", page, sender, message_id, at, "", (), {"psid": sender}, reply_to=mid or None,
                           reaction=emoji if action == "react" else "")]


def _referral(referral: Any) -> dict[str, Any]:
    return {"referral": referral} if isinstance(referral, dict) and referral else {}


def _content(message: dict[str, Any]) -> tuple[str, tuple[Attachment, ...]]:
    """The message's text with a readable line for each attachment that is not a file (a shared link, a
    reel, a template), and the file attachments."""
    lines = [message["text"]] if isinstance(message.get("text"), str) and message["text"] else []
    attachments: list[Attachment] = []
    for item in meta.as_list(message.get("attachments"), "message.attachments"):
        found = _attachment(meta.as_dict(item, "attachment"))
        if isinstance(found, Attachment):
            attachments.append(found)
        else:
            lines.append(found)
    return "\n".join(lines), tuple(attachments)


def _attachment(item: dict[str, Any]) -> Attachment | str:
    kind = str(item.get("type") or "")
    payload = obj(item.get("payload"))
    title = str(item.get("title") or payload.get("title") or "")
    url = str(item.get("url") or payload.get("url") or "")
    if kind == "image" and payload.get("sticker_id") is not None:
        return Attachment("sticker", url=payload.get("url"))
    if kind in MEDIA_TYPES:
        return Attachment(kind, url=payload.get("url"))
    if kind == "location":
        coordinates = meta.as_dict(payload.get("coordinates"), "location coordinates")
        return Attachment("location", latitude=meta.number(coordinates.get("lat"), "latitude"),
                          longitude=meta.number(coordinates.get("long"), "longitude"),
                          title=item.get("title"), url=item.get("url"))
    # Shares are not files we could fetch (their URL is a page, sometimes relative): text the agent reads.
    shared = " — ".join(x for x in (title, url) if x)
    if kind in ("fallback", "share", "ig_post"):
        return f"shared a link: {shared}" if shared else "shared a link"
    if kind in ("ig_reel", "reel"):
        return f"shared a reel: {shared}" if shared else "shared a reel"
    if kind == "story_mention":
        return f"mentioned the Page in their story: {url}" if url else "mentioned the Page in their story"
    if kind == "template":
        template = str(payload.get("template_type") or "")
        return f"sent a {template + ' ' if template else ''}template" + (f": {url}" if url else "")
    log.info("messenger: a %r attachment is kept as a placeholder", kind)
    return f"sent an attachment SocialDesk cannot show yet (type: {kind or 'unknown'})"


# Sending ----------------------------------------------------------------------------------------

def _kind(file: OutboundFile) -> str:
    return "image" if file.mime_type.startswith("image/") else "file"


def _messaging_type(account: Account, reply: OutboundReply) -> dict[str, str]:
    """RESPONSE within 24 hours of the customer's last message; after that, a Page with the Human
    Agent permission answers with the HUMAN_AGENT tag (7 days, human replies only: every reply here is
    written by an agent)."""
    wrote = reply.customer_wrote_at
    if account.human_agent_tag and wrote is not None and clock.now() - wrote >= STANDARD_WINDOW - TAG_MARGIN:
        return {"messaging_type": "MESSAGE_TAG", "tag": "HUMAN_AGENT"}
    return {"messaging_type": "RESPONSE"}


def _since(reply: OutboundReply | None) -> str:
    if reply is None or reply.customer_wrote_at is None:
        return "more than 24 hours ago"
    hours = (clock.now() - reply.customer_wrote_at).total_seconds() / 3600
    return f"{hours:.0f} hours ago" if hours < 48 else f"{hours / 24:.1f} days ago"


def _error(answer: HttpAnswer, account: Account, reply: OutboundReply | None, kind: dict[str, str]) -> DeliveryResult:
    error = meta.graph_error(answer)
    if error.code is None:
        reason = f"Messenger answered HTTP {answer.status} without a message id"
    else:
        reason = f"Messenger error {error.code}" + (f"/{error.subcode}" if error.subcode else "") + f": {error.message}"
    window_closed = error.code == WINDOW_CLOSED_CODE or error.subcode == WINDOW_CLOSED_SUBCODE
    if window_closed:
        tagged = kind.get("tag") == "HUMAN_AGENT"
        if tagged and error.subcode not in (None, WINDOW_CLOSED_SUBCODE):
            why = ("the Page is not allowed to use the HUMAN_AGENT tag (it needs Meta's Human Agent permission; "
                   f"set human_agent_tag = false for page {account.name!r} until it has it)")
        elif tagged:
            why = f"the customer last wrote {_since(reply)}, beyond the 7 days a human agent may still answer"
        else:
            why = f"the customer last wrote {_since(reply)}, outside Messenger's 24-hour window" + (
                "" if account.human_agent_tag else
                " (a Page with Meta's Human Agent permission may answer for 7 days: human_agent_tag = true)")
        reason = f"Messenger refused the reply: {why}. {reason}"
    reason = meta.safe_reason(reason, account.page_access_token, account.app_secret)
    if window_closed:
        return DeliveryResult.failed(reason, window_closed=True)
    if error.code in RATE_LIMITED:
        return DeliveryResult.retry(reason)
    return DeliveryResult.failed(reason)


DESCRIPTION = Description(CHANNEL, Connector.from_config, route="app",
                          simulation="socialdesk.fakes.meta_api:MESSENGER")
