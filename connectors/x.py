"""X (Twitter) Direct Messages connector: CRC, webhook signature, DM and read-receipt parsing, v2 DM
sends (with one uploaded image) and DM media download.

Owns the `[[x]]` configuration section. One callback URL per X app, `/webhooks/x`. Two webhook
envelopes arrive there, both signed the same way (docs.x.com/x-api/webhooks/introduction):
- the Account Activity API (AAA, being deprecated): `for_user_id`, `direct_message_events`, ...;
- the X Activity API (XAA) that supersedes it: `data.event_type` (`dm.received`, `dm.sent`, ...),
  `data.filter.user_id`, and `data.payload` carrying the same `direct_message_events` and `users`.
The business account is `for_user_id`, or the XAA filter's user id. A DM the business account sent
(`dm.sent`, or an AAA event whose sender is the account) is an echo: it becomes the business's own
comment on the customer's ticket (`business_origin`), and the warehouse recognizes the echoes of our
own sends by their DM event id and changes nothing for them.

The CRC answer is computed with the FIRST configured account's consumer secret, because X's CRC
request does not say which account it is for: configure accounts of one X app on one SocialDesk
(accounts of a second app would need their own callback URL). It is the same HMAC X puts on webhook
bodies, so it is only ever computed for tokens shaped as X sends them (issue 13): never a signing
oracle for a forged body.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from connectors import base
from warehouse.channels import Channel, DemoProfile, DemoUserIds
from warehouse.model import Attachment, InboundMessage, StatusUpdate, from_unix_ms

log = logging.getLogger(__name__)

SECTION = "x"
API_URL = "https://api.x.com"
KEYS = ("name", "user_id", "screen_name", "consumer_secret", "access_token", "api_url")
# The one-shot v2 upload takes these image types; videos and GIFs need the chunked upload, and
# X DMs carry no other files.
UPLOADABLE = {"image/jpeg", "image/png", "image/webp", "image/bmp", "image/pjpeg", "image/tiff"}
MEDIA_TYPES = {"photo": "image", "video": "video", "animated_gif": "video"}
MEDIA_HOSTS = ("ton.twitter.com", "ton.x.com", "pbs.twimg.com", "video.twimg.com")
PROFILE_KEYS = ("name", "screen_name", "location", "description", "verified", "protected",
                "followers_count", "profile_image_url_https")
# X's crc_token is a random value: docs.x.com/x-api/webhooks/quickstart shows `crc_token=challenge_string`,
# and real requests carry the base64 of a UUID (48 characters). Its HMAC is exactly the signature X puts
# on a webhook body, so a token is answered only when it is short and made of URL-safe/base64
# characters, which no JSON webhook body can be (issue 13: otherwise GET ?crc_token=<a forged body>
# hands out that body's signature).
CRC_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=.~]{1,128}")
TEXT_LIMIT = 10_000  # characters per DM (developer.x.com: "Text messages support up to 10,000 characters")
DM_EVENT_KEYS = ("direct_message_events", "direct_message_mark_read_events", "direct_message_indicate_typing_events")



# What the rest of SocialDesk knows of X (R7): tickets are tagged `twitter`; DMs have no window.
CHANNEL = Channel(
    name="x", tag="twitter", label="X", icon="🅇", abbreviation="X",
    zendesk_via=("twitter_dm", 26, "sunshine_conversations_twitter_dm", 88, "twitter", 30),
    demo=DemoProfile(accounts=(("835740314006511618", "Brand on X", 0.10),),
                     user_ids=DemoUserIds(start=9000000000), reply_hours=2.0))


@dataclass(frozen=True, slots=True)
class Account:
    """An X account the app acts for: webhooks name it by `for_user_id`; its app's consumer secret signs
    them and answers the CRC, its user token sends. Secrets stay out of repr, so no log shows them."""

    name: str
    user_id: str
    screen_name: str
    consumer_secret: str = field(repr=False)
    access_token: str = field(repr=False)
    api_url: str = API_URL

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Account:
        base.check_table(table, SECTION, KEYS, optional=())
        return cls(
            name=base.text_value(table, "name", SECTION),
            user_id=base.text_value(table, "user_id", SECTION, allow_int=True),  # TOML may hold it unquoted
            screen_name=base.text_value(table, "screen_name", SECTION).lstrip("@"),
            consumer_secret=base.text_value(table, "consumer_secret", SECTION),
            access_token=base.text_value(table, "access_token", SECTION),
            api_url=base.url_value(table, SECTION, API_URL))

    def public(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "screen_name": self.screen_name}


def signature(consumer_secret: str, data: bytes) -> str:
    """X's `sha256=` + base64 HMAC-SHA256, used for webhook bodies and CRC tokens alike."""
    return "sha256=" + base64.b64encode(base.hmac_sha256(consumer_secret, data)).decode()


@dataclass(frozen=True, slots=True)
class Envelope:
    """One webhook body, AAA or XAA, as the events it carries for the business account `me`."""

    me: str
    events: dict[str, Any]  # direct_message_events, ..., users, apps: the AAA shape
    event_type: str | None = None  # XAA's data.event_type; None for AAA


def _load(body: bytes) -> Envelope:
    payload = base.json_object(body, "X webhook body")
    if isinstance(payload.get("for_user_id"), str):
        envelope = Envelope(payload["for_user_id"], payload)
    elif isinstance(payload.get("data"), dict) and "event_type" in payload["data"]:
        data = payload["data"]
        user = (data.get("filter") or {}).get("user_id") if isinstance(data.get("filter"), dict) else None
        if not isinstance(user, str | int) or isinstance(user, bool) or not str(user):
            raise base.MalformedPayload("X Activity event without filter.user_id")
        inner = data.get("payload")
        envelope = Envelope(str(user), inner if isinstance(inner, dict) else {}, str(data.get("event_type")))
    else:
        raise base.MalformedPayload("X webhook body has neither 'for_user_id' nor an X Activity 'data.event_type'")
    for key in DM_EVENT_KEYS:
        if not isinstance(envelope.events.get(key, []), list):
            raise base.MalformedPayload(f"X webhook {key!r} is not a list")
    return envelope


def _profile(user: Any) -> dict[str, Any]:
    """What X says about a user: an AAA user object, or XAA's `{"data": <v2 user>}`."""
    if not isinstance(user, dict):
        return {}
    if isinstance(user.get("data"), dict):
        user = user["data"]
    merged = {**user, "screen_name": user.get("screen_name") or user.get("username")}
    metrics = user.get("public_metrics")
    if merged.get("followers_count") is None and isinstance(metrics, dict):
        merged["followers_count"] = metrics.get("followers_count")
    if merged.get("profile_image_url_https") is None:
        merged["profile_image_url_https"] = user.get("profile_image_url")
    return {k: merged[k] for k in PROFILE_KEYS if merged.get(k) is not None}


class Connector(base.WithAccounts[Account]):
    channel: ClassVar[str] = CHANNEL.name
    account_type = Account
    id_key: ClassVar[str] = "user_id"

    def warnings(self) -> list[str]:
        """What start-up should tell the operator: accounts of a second X app, whose CRC cannot be answered."""
        if not self.accounts.all():
            return []
        first = self.accounts.all()[0]
        others = [a.name for a in self.accounts.all() if a.consumer_secret != first.consumer_secret]
        if not others:
            return []
        return [f"X accounts {', '.join(repr(n) for n in others)} belong to another X app than {first.name!r} "
                f"(another consumer_secret). X's CRC request does not say which app it is for, so /webhooks/x "
                f"answers it with {first.name!r}'s app: the other app's webhook will be marked invalid and stop "
                f"receiving events. Run one SocialDesk per X app, or keep one app's accounts here."]

    # -- webhooks -------------------------------------------------------------------------------

    def handshake(self, request: base.Incoming) -> web.Response | None:
        token = request.query.get("crc_token")
        if not token:
            return None
        if not self.accounts.all():
            return web.Response(status=404, text="no X account is configured")
        if not crc_token_ok(token):
            log.warning("X CRC refused: the token is not shaped as X sends them (%d characters)", len(token))
            return web.Response(status=400, text="not an X CRC token")
        return web.json_response({"response_token": signature(self.accounts.all()[0].consumer_secret, token.encode())})

    def verify(self, request: base.Incoming) -> None:
        given = base.header(request, "x-twitter-webhooks-signature")
        if not given:
            raise base.BadSignature("X webhook without x-twitter-webhooks-signature")
        # Check every secret (no early exit) so timing says nothing about which one matched.
        matched = {a.consumer_secret for a in self.accounts.all()
                   if base.same(given, signature(a.consumer_secret, request.body))}
        if not matched:
            raise base.BadSignature("X webhook signature matches no configured consumer secret")
        for_user_id = base.decode_once(request, "json", lambda: _load(request.body)).me
        account = self.account(for_user_id)
        if account.consumer_secret not in matched:
            raise base.BadSignature(f"X webhook for account {account.name!r} signed by another app")

    def parse(self, request: base.Incoming) -> list[base.Parsed]:
        envelope = base.decode_once(request, "json", lambda: _load(request.body))
        me, payload = envelope.me, envelope.events
        if envelope.event_type is not None and envelope.event_type not in ("dm.received", "dm.sent"):
            if envelope.event_type == "chat.received":
                return self._encrypted_chat(me, payload)
            log.info("X Activity %s event skipped", envelope.event_type[:40])
            return []
        users = base.obj(payload.get("users"))
        apps = base.obj(payload.get("apps"))
        # One event we cannot read is skipped alone (and counted); the body's other events are stored.
        out: list[base.Parsed] = []
        for event in payload.get("direct_message_events", []):
            try:
                message = self._message(me, users, apps, event)
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
                message = base.Skipped("X direct message event with unreadable fields")
            if message is not None:
                out.append(message)
        for event in payload.get("direct_message_mark_read_events", []):
            receipt = self._read(me, event)
            if receipt is not None:
                out.append(receipt)
        skipped = sorted(k for k in payload if k.endswith("_events") and k not in
                         ("direct_message_events", "direct_message_mark_read_events"))
        if skipped:
            log.info("X %s skipped", ", ".join(skipped))
        return out

    def _encrypted_chat(self, me: str, payload: dict[str, Any]) -> list[base.Parsed]:
        """An XChat message is end-to-end encrypted: the agent is told one came, and to read it on X."""
        sender, chat_id = str(payload.get("sender_id") or ""), str(payload.get("id") or "")
        if not sender or not chat_id or sender == me:
            return []
        try:
            sent_at = from_unix_ms(payload["created_at_msec"])
        except (KeyError, TypeError, ValueError):
            return [base.Skipped("X chat event without created_at_msec")]
        return [InboundMessage(channel=self.channel, account=me, user_id=sender, message_id=f"chat:{chat_id}",
                               sent_at=sent_at, text="sent an encrypted X Chat message, which SocialDesk cannot "
                               "read: open the conversation on X (type: chat.received)")]

    def _message(self, me: str, users: dict[str, Any], apps: dict[str, Any], event: Any) -> base.Parsed | None:
        if not isinstance(event, dict):
            return base.Skipped("X direct message event that is not an object")
        if event.get("type") != "message_create":
            log.info("X direct message event %s skipped", event.get("type"))
            return None
        try:
            create = event["message_create"]
            sender = str(create["sender_id"])
            data = create.get("message_data") or {}
            message_id = str(event["id"])
            sent_at = from_unix_ms(event["created_timestamp"])
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            return base.Skipped("X message_create event without its id, sender or time")
        text = str(data.get("text") or "")
        attachments: tuple[Attachment, ...] = ()
        media = (data.get("attachment") or {}).get("media")
        if isinstance(media, dict):
            attachment = _attachment(media)
            attachments = (attachment,)
            # X appends the media's t.co link to the text; it points at the attachment we already keep.
            link = media.get("url")
            if link and text.endswith(link):
                text = text[: -len(link)].rstrip()
        if sender == me:
            # The business account wrote this DM: on x.com, another app, or through SocialDesk (whose
            # sends the warehouse recognizes by this id). It joins the customer's ticket, never opens one.
            recipient = str((create.get("target") or {}).get("recipient_id") or "")
            if not recipient:
                return base.Skipped("X message_create sent by the account without target.recipient_id")
            app = apps.get(str(create.get("source_app_id"))) if create.get("source_app_id") else None
            origin = str(app["name"]) if isinstance(app, dict) and app.get("name") else "X"
            return InboundMessage(channel=self.channel, account=me, user_id=recipient, message_id=message_id,
                                  sent_at=sent_at, text=text, attachments=attachments, business_origin=origin)
        return InboundMessage(channel=self.channel, account=me, user_id=sender, message_id=message_id,
                              sent_at=sent_at, text=text, attachments=attachments, profile=_profile(users.get(sender)))

    def _read(self, me: str, event: Any) -> StatusUpdate | base.Skipped | None:
        if not isinstance(event, dict) or not event.get("sender_id"):
            return base.Skipped("X mark-read event without sender_id")
        reader = str(event["sender_id"])
        if reader == me:
            return None  # we read the user's messages on another client
        try:
            at = from_unix_ms(event["created_timestamp"])
        except (KeyError, TypeError, ValueError):
            at = datetime.now(UTC)  # the field is undocumented; the receipt still counts
        last = event.get("last_read_event_id")
        return StatusUpdate(channel=self.channel, account=me, user_id=reader, status="read", at=at,
                            message_id=str(last) if last else None, watermark=at)

    def simulate(self, account_id: str, body: bytes) -> tuple[dict[str, str], dict[str, str], bytes]:
        """What X would POST to /webhooks/x for this body."""
        account = self.account(account_id)
        return ({"Content-Type": "application/json; charset=utf-8",
                 "x-twitter-webhooks-signature": signature(account.consumer_secret, body)}, {}, body)

    # -- sending --------------------------------------------------------------------------------

    async def send(self, session: aiohttp.ClientSession, reply: base.OutboundReply) -> base.DeliveryResult:
        account = self.sender(reply)
        if isinstance(account, base.DeliveryResult):
            return account
        if len(reply.text) > TEXT_LIMIT:
            # One reply is one DM: sent in parts, a failure half-way would leave the customer half an answer.
            return base.DeliveryResult.failed(f"X direct messages take at most {TEXT_LIMIT:,} characters; this reply "
                                              f"has {len(reply.text):,}: shorten it or send it as several replies")
        auth = {"Authorization": f"Bearer {account.access_token}"}
        body: dict[str, Any] = {"text": reply.text} if reply.text else {}
        if reply.file is not None:
            if reply.file.mime_type not in UPLOADABLE:
                return base.DeliveryResult.failed(
                    f"X direct messages from SocialDesk can carry one image (JPEG, PNG, WebP, BMP or TIFF); "
                    f"{reply.file.filename} is {reply.file.mime_type}")
            form = aiohttp.FormData()
            form.add_field("media", reply.file.data, filename=reply.file.filename,
                           content_type=reply.file.mime_type)
            form.add_field("media_category", "dm_image")
            form.add_field("media_type", reply.file.mime_type)
            answer = await _call(session, "POST", f"{account.api_url}/2/media/upload", headers=auth, data=form)
            if isinstance(answer, base.DeliveryResult):
                return answer
            media_id = _data(answer).get("id")
            if answer.status not in (200, 201) or not media_id:
                return _refused(answer, "X refused the image upload")
            body["attachments"] = [{"media_id": str(media_id)}]
        answer = await _call(session, "POST", f"{account.api_url}/2/dm_conversations/with/{reply.to}/messages",
                             headers=auth, json=body)
        if isinstance(answer, base.DeliveryResult):
            return answer
        event_id = _data(answer).get("dm_event_id")
        if answer.status in (200, 201) and event_id:
            return base.DeliveryResult.sent(str(event_id))
        return _refused(answer, "X refused the message")

    async def fetch_media(self, session: aiohttp.ClientSession, account_id: str, media_id: str) -> base.Media:
        """Download DM media. X serves it by URL, so `media_id` is the attachment's `url`
        (media_url_https); the token is only ever sent to X's media hosts or the configured api_url."""
        account = self.account(account_id)
        parts = urlsplit(media_id)
        own = urlsplit(account.api_url)
        if not ((parts.scheme == "https" and parts.hostname in MEDIA_HOSTS)
                or (parts.scheme, parts.netloc) == (own.scheme, own.netloc)):
            raise LookupError("X media is downloaded by its URL (the attachment's url from ton.twitter.com), "
                              f"not by id {media_id!r}")
        headers = {"Authorization": f"Bearer {account.access_token}"}
        media = await base.download(session, media_id, headers=headers, what="X media")
        return base.Media(media.data, media.mime_type, media.filename or parts.path.rsplit("/", 1)[-1] or None)


def crc_token_ok(token: str) -> bool:
    """A token X could have sent: short, URL-safe or base64 characters, never something JSON can read."""
    if not CRC_TOKEN.fullmatch(token):
        return False
    try:
        json.loads(token)
    except ValueError:
        return True
    return False  # digits, true, null...: not X's random token, and nothing to sign


async def _call(session: aiohttp.ClientSession, method: str, url: str,
                **kwargs: Any) -> base.HttpAnswer | base.DeliveryResult:
    """`call_api`, except that X's 429 says when to come back in `x-rate-limit-reset` (epoch seconds),
    a header `call_api` does not hand back."""
    try:
        async with session.request(method, url, timeout=base.SEND_TIMEOUT, **kwargs) as resp:
            if resp.status == 429 or resp.status >= 500:
                wait = _reset_in(resp.headers.get("x-rate-limit-reset")) if resp.status == 429 else None
                if wait is None:
                    wait = base.retry_after_seconds(resp.headers.get("Retry-After"))
                return base.DeliveryResult.retry(f"HTTP {resp.status} from X", wait)
            try:
                body: Any = await resp.json(content_type=None)
            except ValueError:
                body = await resp.text()
            return base.HttpAnswer(resp.status, body, resp.headers)
    except (TimeoutError, aiohttp.ClientError) as exc:
        return base.DeliveryResult.retry(f"could not reach X: {type(exc).__name__}")


def _attachment(media: dict[str, Any]) -> Attachment:
    kind = MEDIA_TYPES.get(str(media.get("type")), "file")
    url = media.get("media_url_https") or media.get("media_url")
    mime_type = None
    if kind == "video":
        # media_url_https is only the poster frame; the playable file is the best mp4 variant.
        variants = [v for v in (media.get("video_info") or {}).get("variants") or []
                    if isinstance(v, dict) and v.get("content_type") == "video/mp4" and v.get("url")]
        if variants:
            best = max(variants, key=lambda v: v.get("bitrate") or 0)
            url, mime_type = best["url"], "video/mp4"
    media_id = media.get("id_str") or media.get("id")
    return Attachment(type=kind, media_id=str(media_id) if media_id else None, url=url, mime_type=mime_type)


def _data(answer: base.HttpAnswer) -> dict[str, Any]:
    body = answer.body if isinstance(answer.body, dict) else {}
    data = body.get("data")
    return data if isinstance(data, dict) else {}


def _refused(answer: base.HttpAnswer, what: str) -> base.DeliveryResult:
    body = answer.body if isinstance(answer.body, dict) else {}
    errors = [str(e["message"]) for e in body.get("errors") or [] if isinstance(e, dict) and e.get("message")]
    # The errors name what was wrong; `detail` is X's generic sentence for the whole class of problem.
    detail = "; ".join(errors) or body.get("detail") or body.get("title") or f"HTTP {answer.status}"
    if answer.status == 401:
        return base.DeliveryResult.failed(f"{what}: X rejected the account's access token (HTTP 401)")
    if answer.status == 403:
        return base.DeliveryResult.failed(f"{what}: the recipient's DM settings do not accept messages from this "
                                          f"account, or it may not message them ({detail})")
    return base.DeliveryResult.failed(f"{what}: {detail} (HTTP {answer.status})")


def _reset_in(value: str | None) -> float | None:
    """Seconds until `x-rate-limit-reset` (epoch seconds), clamped like any Retry-After."""
    try:
        return base.retry_after_seconds(str(float(value) - time.time())) if value else None
    except ValueError:
        return None


DESCRIPTION = base.Description(CHANNEL, Connector.from_config, route="app", simulation="socialdesk.fakes.x_api:X",
                               media_domains=("twimg.com", "twitter.com", "x.com"))
