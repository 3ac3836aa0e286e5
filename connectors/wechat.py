"""WeChat Official Accounts (公众号): the `[[wechat]]` accounts, their webhooks and customer-service sends.

Owns: the `echostr` handshake, the SHA-1 query signature on every request, safe mode (AES, via
wechat_crypto), parsing the pushed XML (with defusedxml only) into InboundMessages, the `success`
acknowledgement, the access-token cache, customer-service text/image sends, and media download.
One webhook URL per account, `/webhooks/wechat/{name}`: the configured name picks the account.

Freshness (issue 13): WeChat's query signature covers only token, timestamp and nonce, never the
body in plain mode, and nothing in it expires. So a request is refused when its timestamp is more
than 5 minutes from our clock, and when its (timestamp, nonce) was already used, within those
minutes, for a different body. The same body again under the same nonce is WeChat retrying (it
retries a slow answer 3 times): it is let through, and the store's dedupe keeps it once.
Customer messages become comments; a message type we do not render becomes a readable placeholder
("sent an unsupported message (type: X)"), never nothing. Events (follows, menu clicks, scans)
create no ticket.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
import defusedxml.ElementTree as DET
from aiohttp import web
from defusedxml import DefusedXmlException

from connectors import base, wechat_crypto
from warehouse.channels import Channel, DemoProfile, DemoUserIds, Window
from warehouse.model import Attachment, InboundMessage, from_unix

log = logging.getLogger(__name__)

SECTION = "wechat"
DEFAULT_API_URL = "https://api.weixin.qq.com"
TOKEN_ERRORS = (40001, 40014, 42001)  # invalid / not latest / expired access_token: fetch a new one once
WINDOW_CLOSED = 45015
QUOTA_REACHED = 45047
SYSTEM_BUSY = -1
IMAGE_TYPES = {"image/jpeg": "jpg", "image/jpg": "jpg", "image/png": "png", "image/gif": "gif"}
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # temporary image media limit
VOICE_MIME = {"amr": "audio/amr", "speex": "audio/speex", "mp3": "audio/mpeg"}
TEXT_TOO_LONG = 45002  # "content size out of limit"
INVALID_MEDIA = 40007
# A signed request is good for this long either side of our clock (issue 13): WeChat signs with the
# current time, and answers within 5 s or retries, so real traffic is seconds old.
FRESHNESS_SECONDS = 300
# Bound on the nonces remembered per process; only authentic requests are remembered, so reaching it
# means over 300 genuine requests a second, and the oldest are forgotten first.
MAX_NONCES = 100_000
PLAIN_MODE_WARNING = (
    "WeChat account {name!r} runs in plain mode (no encoding_aes_key). In plain mode WeChat signs only "
    "the token, timestamp and nonce, not the message: whoever sees one signed request can put any message "
    "under its signature. SocialDesk refuses signatures older than 5 minutes and nonces reused for another "
    "message, but inside those minutes a request intercepted before it reached us can still carry a forged "
    "message. Safe mode (安全模式) encrypts every message with the EncodingAESKey and signs the ciphertext: "
    "switch the account to safe mode in the WeChat console and set encoding_aes_key.")



# What the rest of SocialDesk knows of WeChat (R7, B1): customer-service messages for 48 hours.
CHANNEL = Channel(
    name="wechat", tag="wechat", label="WeChat", icon="🆆", abbreviation="WC", window=Window(48),
    zendesk_via=("wechat", 73),
    demo=DemoProfile(accounts=(("gh_97417a04a28d", "China", 0.15),),
                     user_ids=DemoUserIds(prefix="o", hashed=27, salt="w"), reply_hours=3.0))


@dataclass(frozen=True, slots=True)
class Account:
    """One configured Official Account. Secrets stay out of repr so they never reach a log."""

    name: str
    original_id: str  # gh_...: ToUserName of every message, our routing key
    app_id: str
    app_secret: str = field(repr=False)
    token: str = field(repr=False)
    encoding_aes_key: str | None = field(default=None, repr=False)  # set only for safe/compatibility mode
    api_url: str = DEFAULT_API_URL

    @property
    def aes_key(self) -> bytes | None:
        return wechat_crypto.aes_key(self.encoding_aes_key) if self.encoding_aes_key else None

    @classmethod
    def from_table(cls, table: Mapping[str, Any]) -> Account:
        base.check_table(table, SECTION, ("original_id", "app_id", "app_secret", "token"),
                         ("encoding_aes_key", "api_url"))
        name = base.text_value(table, "name", SECTION)
        values = {key: base.text_value(table, key, SECTION) for key in ("original_id", "app_id", "app_secret", "token")}
        if not values["original_id"].startswith("gh_"):
            raise base.ConfigError(f"[[{SECTION}]] account {name!r}: key 'original_id' must be the gh_... original ID")
        key = table.get("encoding_aes_key") or None
        if key is not None:
            try:
                wechat_crypto.aes_key(str(key))
            except ValueError as exc:
                # The reason says what is wrong with the key, never the key itself.
                raise base.ConfigError(f"[[{SECTION}]] account {name!r}: invalid key 'encoding_aes_key' "
                                       f"({exc})") from None
        return cls(name=name, encoding_aes_key=None if key is None else str(key),
                   api_url=base.url_value(table, SECTION, DEFAULT_API_URL), **values)

    def public(self) -> dict[str, Any]:
        return {"original_id": self.original_id, "app_id": self.app_id}


def _text(root: ET.Element, tag: str) -> str:
    return (root.findtext(tag) or "").strip()


def _xml(body: bytes) -> ET.Element:
    """A WeChat `<xml>` document; DTDs, entities and external references are refused."""
    try:
        root = DET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError) as exc:
        raise base.MalformedPayload(f"body is not acceptable XML: {type(exc).__name__}") from None
    if root.tag != "xml":
        raise base.MalformedPayload("body is not a WeChat <xml> document")
    return root


def _scrub(text: str, *secrets_: str) -> str:
    for secret in secrets_:
        if secret:
            text = text.replace(secret, "***")
    return text


class Connector(base.WithAccounts[Account]):
    channel: ClassVar[str] = CHANNEL.name
    account_type = Account
    id_key: ClassVar[str] = "original_id"

    def __init__(self, accounts: list[Account], clock: Callable[[], float] = time.time) -> None:
        """`clock`: unix seconds now, for the freshness check (tests post WeChat's own samples at their time)."""
        super().__init__(accounts)
        self._tokens: dict[str, tuple[str, float]] = {}  # original_id -> (access_token, refresh after)
        self._locks = {a.original_id: asyncio.Lock() for a in accounts}
        self.clock = clock
        # (account name, timestamp, nonce) -> (forget after, digest of the body it signed).
        self._nonces: OrderedDict[tuple[str, str, str], tuple[float, bytes]] = OrderedDict()

    @classmethod
    def from_config(cls, tables: list[dict[str, Any]], clock: Callable[[], float] = time.time) -> Connector:
        return cls([Account.from_table(table) for table in tables], clock)

    def warnings(self) -> list[str]:
        """What start-up should tell the operator about these accounts: each one in plain mode."""
        return [PLAIN_MODE_WARNING.format(name=a.name) for a in self.accounts.all() if a.encoding_aes_key is None]

    # Webhooks ---------------------------------------------------------------------------------

    def _query_signed(self, account: Account, request: base.Incoming) -> bool:
        sig, ts, nonce = (request.query.get(k, "") for k in ("signature", "timestamp", "nonce"))
        if not (sig and ts and nonce):
            raise base.BadSignature("WeChat request without signature, timestamp or nonce")
        return base.same(wechat_crypto.signature(account.token, ts, nonce), sig)

    def handshake(self, request: base.Incoming) -> web.Response | None:
        if "echostr" not in request.query:
            return None
        account = self.named(request)
        try:
            ok = self._query_signed(account, request)
        except base.BadSignature:
            ok = False
        if not ok:
            log.warning("wechat: refused the handshake for account %r (bad signature)", account.name)
            return web.Response(status=403, text="forbidden")
        return web.Response(text=request.query["echostr"], content_type="text/plain")

    def verify(self, request: base.Incoming) -> None:
        account = self.named(request)
        if not self._query_signed(account, request):
            raise base.BadSignature(f"WeChat signature mismatch for account {account.name!r}")
        now = self.clock()
        self._check_fresh(account, request, now)
        # msg_signature, decryption, appid and ToUserName; parse() reads the XML decrypted here
        base.decode_once(request, "xml", lambda: self._open(account, request))
        self._check_nonce(account, request, now)

    def _check_fresh(self, account: Account, request: base.Incoming, now: float) -> None:
        """Refuse a signature made more than FRESHNESS_SECONDS away from now (a captured one, replayed)."""
        try:
            timestamp = int(request.query.get("timestamp", ""))
        except ValueError:
            raise base.BadSignature("WeChat request timestamp is not a unix time") from None
        age = int(now - timestamp)
        if abs(age) > FRESHNESS_SECONDS:
            when = f"{age} s ago" if age > 0 else f"{-age} s in the future"
            raise base.BadSignature(f"WeChat request for account {account.name!r} was signed {when} (more than "
                                    f"{FRESHNESS_SECONDS} s from our clock): refused as a possible replay")

    def _check_nonce(self, account: Account, request: base.Incoming, now: float) -> None:
        """Refuse a (timestamp, nonce) already used for another body; remember this one.

        Called only once the request proved authentic, so forged requests never fill the memory.
        """
        while self._nonces:
            key, (forget_after, _) = next(iter(self._nonces.items()))
            if forget_after >= now and len(self._nonces) < MAX_NONCES:
                break
            del self._nonces[key]
        key = (account.name, request.query.get("timestamp", ""), request.query.get("nonce", ""))
        digest = hashlib.sha256(request.body).digest()
        seen = self._nonces.get(key)
        if seen is not None and not base.same(seen[1], digest):
            raise base.BadSignature(f"WeChat nonce already used for another message to account {account.name!r}: "
                                    "refused as a replay")
        if seen is None:
            self._nonces[key] = (int(key[1]) + FRESHNESS_SECONDS, digest)

    def _open(self, account: Account, request: base.Incoming) -> ET.Element:
        """The message XML this request carries, decrypted when it came in safe mode."""
        safe = request.query.get("encrypt_type", "") == "aes"
        key = account.aes_key
        if safe and key is None:
            raise base.MalformedPayload(f"account {account.name!r} has no encoding_aes_key but got an encrypted "
                                        "message")
        if key is not None and not safe:
            # A keyed account only takes signed ciphertext: plain-mode signatures do not cover the body.
            raise base.BadSignature(f"account {account.name!r} expects safe mode but the message is not encrypted")
        root = _xml(request.body)
        if key is not None:
            encrypted = _text(root, "Encrypt")  # in compatibility mode the plaintext copy is ignored
            msg_sig = request.query.get("msg_signature", "")
            if not (encrypted and msg_sig):
                raise base.BadSignature("WeChat safe-mode request without Encrypt or msg_signature")
            expected = wechat_crypto.signature(account.token, request.query.get("timestamp", ""),
                                               request.query.get("nonce", ""), encrypted)
            if not base.same(expected, msg_sig):
                raise base.BadSignature(f"WeChat msg_signature mismatch for account {account.name!r}")
            try:
                root = _xml(wechat_crypto.decrypt(key, account.app_id, encrypted))
            except wechat_crypto.WrongAppId:
                raise base.BadSignature(f"WeChat message for account {account.name!r} was sealed for another app"
                                        ) from None
            except wechat_crypto.BadCiphertext as exc:
                raise base.MalformedPayload(f"WeChat Encrypt field: {exc}") from None
        if _text(root, "ToUserName") != account.original_id:
            raise base.UnknownAccount(f"WeChat message is not addressed to account {account.name!r}")
        return root

    def parse(self, request: base.Incoming) -> list[base.Parsed]:
        account = self.named(request)
        root = base.decode_once(request, "xml", lambda: self._open(account, request))
        msg_type, user, created = _text(root, "MsgType"), _text(root, "FromUserName"), _text(root, "CreateTime")
        if not (msg_type and user and created):
            raise base.MalformedPayload("WeChat message without MsgType, FromUserName or CreateTime")
        try:
            sent_at = from_unix(created)
        except (ValueError, OverflowError, OSError):
            raise base.MalformedPayload("WeChat CreateTime is not a unix time") from None
        if msg_type == "event":
            log.info("wechat: skipped %s event for account %s", _text(root, "Event") or "?", account.original_id)
            return []
        try:
            text, attachments = _content(root, msg_type)
        except KeyError:
            # A kind we do not render still reaches the agent, named, so nothing a customer sends is lost.
            log.info("wechat: unsupported MsgType %r for account %s kept as a placeholder", msg_type[:40],
                     account.original_id)
            text, attachments = unsupported(msg_type), []
        except ValueError:
            raise base.MalformedPayload(f"WeChat {msg_type} message with unreadable fields") from None
        message_id = _text(root, "MsgId") or f"{user}:{created}"
        return [InboundMessage(channel=self.channel, account=account.original_id, user_id=user,
                               message_id=message_id, sent_at=sent_at, text=text,
                               attachments=tuple(attachments), profile={"openid": user})]

    def acknowledge(self, request: base.Incoming) -> web.Response:
        # WeChat wants the literal `success`; anything else (even JSON) shows the user an error.
        return web.Response(text="success", content_type="text/plain")

    def simulate(self, account_id: str, body: bytes) -> tuple[dict[str, str], dict[str, str], bytes]:
        """(headers, query, body) as WeChat would POST `body` (a message XML) to this account's URL."""
        account = self.account(account_id)
        timestamp, nonce = str(int(self.clock())), str(secrets.randbelow(10**10))
        query = {"signature": wechat_crypto.signature(account.token, timestamp, nonce),
                 "timestamp": timestamp, "nonce": nonce}
        key = account.aes_key
        if key is not None:
            encrypted = wechat_crypto.encrypt(key, account.app_id, body)
            query |= {"openid": _text(_xml(body), "FromUserName"), "encrypt_type": "aes",
                      "msg_signature": wechat_crypto.signature(account.token, timestamp, nonce, encrypted)}
            body = (f"<xml><ToUserName><![CDATA[{account.original_id}]]></ToUserName>"
                    f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>").encode()
        return {"Content-Type": "text/xml"}, query, body

    def handshake_query(self, account_id: str, echostr: str) -> dict[str, str]:
        """The query of WeChat's verification GET for this account (for the demo and tests)."""
        account = self.account(account_id)
        timestamp, nonce = str(int(self.clock())), str(secrets.randbelow(10**10))
        return {"signature": wechat_crypto.signature(account.token, timestamp, nonce), "timestamp": timestamp,
                "nonce": nonce, "echostr": echostr}

    # Sending ----------------------------------------------------------------------------------

    async def _token(self, session: aiohttp.ClientSession, account: Account) -> str | base.DeliveryResult:
        """A cached access token, fetched once however many sends ask at the same moment."""
        async with self._locks[account.original_id]:
            cached = self._tokens.get(account.original_id)
            if cached and time.monotonic() < cached[1]:
                return cached[0]
            params = {"grant_type": "client_credential", "appid": account.app_id, "secret": account.app_secret}
            answer = await base.call_api(session, "GET", f"{account.api_url}/cgi-bin/token", params=params)
            if isinstance(answer, base.DeliveryResult):
                return answer
            body = answer.body if isinstance(answer.body, dict) else {}
            token = body.get("access_token")
            if not isinstance(token, str) or not token:
                code, errmsg = self._error(account, body)
                if code == SYSTEM_BUSY:
                    return base.DeliveryResult.retry("WeChat is busy (errcode -1)")
                detail = f"errcode {code}: {errmsg}" if code else f"HTTP {answer.status}, no access_token"
                return base.DeliveryResult.failed(f"WeChat refused the app credentials of {account.name!r} ({detail})")
            try:
                expires_in = float(body.get("expires_in", 7200))
            except (TypeError, ValueError):
                expires_in = 7200.0
            # Refresh a little early so a token never expires between our check and WeChat's.
            self._tokens[account.original_id] = (token, time.monotonic() + expires_in - min(300.0, expires_in / 2))
            return token

    def _drop_token(self, account: Account, token: str) -> None:
        # Only if still current: a concurrent send may already have fetched a fresh one.
        cached = self._tokens.get(account.original_id)
        if cached and cached[0] == token:
            del self._tokens[account.original_id]

    async def _call(self, session: aiohttp.ClientSession, account: Account, method: str, path: str,
                    params: dict[str, str],
                    make_kwargs: Callable[[], dict[str, Any]]) -> base.HttpAnswer | base.DeliveryResult:
        """One API call with the account's token; a rejected token is replaced and the call made once more."""
        for attempt in range(2):
            token = await self._token(session, account)
            if isinstance(token, base.DeliveryResult):
                return token
            answer = await base.call_api(session, method, f"{account.api_url}{path}",
                                         params={**params, "access_token": token}, **make_kwargs())
            if (attempt == 0 and isinstance(answer, base.HttpAnswer) and isinstance(answer.body, dict)
                    and answer.body.get("errcode") in TOKEN_ERRORS):
                self._drop_token(account, token)
                continue
            return answer
        raise AssertionError("unreachable")

    def _error(self, account: Account, body: dict[str, Any]) -> tuple[int, str]:
        """WeChat's (errcode, errmsg), the message cut short and scrubbed of our credentials."""
        try:
            code = int(body.get("errcode", 0))
        except (TypeError, ValueError):
            code = 0
        cached = self._tokens.get(account.original_id)
        return code, _scrub(str(body.get("errmsg", ""))[:200], account.app_secret, cached[0] if cached else "")

    def _problem(self, account: Account, answer: base.HttpAnswer) -> base.DeliveryResult | None:
        """WeChat's error in an answer, as a delivery result; None when the call succeeded."""
        if not isinstance(answer.body, dict):
            return base.DeliveryResult.failed(f"WeChat answered HTTP {answer.status} without a JSON body")
        code, errmsg = self._error(account, answer.body)
        if code == 0:
            return None if answer.status == 200 else base.DeliveryResult.failed(f"WeChat answered HTTP {answer.status}")
        if code == WINDOW_CLOSED:
            return base.DeliveryResult.failed("WeChat refused: the customer last wrote more than 48 hours ago, or has "
                                              "unfollowed the account (errcode 45015)", window_closed=True)
        if code == TEXT_TOO_LONG:
            return base.DeliveryResult.failed("WeChat refused the text as too long (errcode 45002): WeChat takes about "
                                              "2,000 bytes a message (some 680 Chinese characters); shorten the reply "
                                              "or send the rest as another reply")
        if code == INVALID_MEDIA:
            return base.DeliveryResult.failed("WeChat does not know the media id, or it expired (errcode 40007; "
                                              "temporary media last 3 days)")
        if code == QUOTA_REACHED:
            return base.DeliveryResult.failed("WeChat refused: at most 5 replies are allowed per customer message "
                                              "within 48 hours; wait for the customer to write again (errcode 45047)")
        if code == SYSTEM_BUSY:
            return base.DeliveryResult.retry("WeChat is busy (errcode -1)")
        if code in TOKEN_ERRORS:
            return base.DeliveryResult.failed(f"WeChat rejected the access token twice (errcode {code})")
        return base.DeliveryResult.failed(f"WeChat error {code}: {errmsg}" if errmsg else f"WeChat error {code}")

    async def send(self, session: aiohttp.ClientSession, reply: base.OutboundReply) -> base.DeliveryResult:
        account = self.sender(reply)
        if isinstance(account, base.DeliveryResult):
            return account
        if reply.file is not None:
            # Checked before anything leaves, so a refused file never follows a delivered text.
            if reply.file.mime_type.lower() not in IMAGE_TYPES:
                return base.DeliveryResult.failed(
                    f"WeChat customer-service messages can carry only JPEG, PNG or GIF images, not "
                    f"{reply.file.mime_type or 'this file type'}; share the file as a link in the text instead")
            if len(reply.file.data) > MAX_IMAGE_BYTES:
                return base.DeliveryResult.failed("WeChat accepts images up to 10 MB; this one is larger")
        sent_text = False
        if reply.text:
            result = await self._send_message(session, account, {"touser": reply.to, "msgtype": "text",
                                                                 "text": {"content": reply.text}})
            if result is not None:
                return result
            sent_text = True
        if reply.file is not None:
            result = await self._send_image(session, account, reply)
            if result is not None:
                if sent_text:
                    # Retrying would send the text again and spend another of the 5 allowed replies.
                    return base.DeliveryResult.failed(f"the text was delivered but the image was not "
                                                      f"({result.reason}); send the image again",
                                                      window_closed=result.window_closed)
                return result
        return base.DeliveryResult.sent(f"wechat:{reply.outbox_id}")

    async def _send_message(self, session: aiohttp.ClientSession, account: Account,
                            payload: dict[str, Any]) -> base.DeliveryResult | None:
        data = json.dumps(payload, ensure_ascii=False).encode()  # WeChat shows \u escapes literally
        answer = await self._call(session, account, "POST", "/cgi-bin/message/custom/send", {},
                                  lambda: {"data": data,
                                           "headers": {"Content-Type": "application/json; charset=utf-8"}})
        return answer if isinstance(answer, base.DeliveryResult) else self._problem(account, answer)

    async def _send_image(self, session: aiohttp.ClientSession, account: Account,
                          reply: base.OutboundReply) -> base.DeliveryResult | None:
        file = reply.file
        assert file is not None

        def form() -> dict[str, Any]:
            data = aiohttp.FormData()
            data.add_field("media", file.data, filename=file.filename or f"image.{IMAGE_TYPES[file.mime_type.lower()]}",
                           content_type=file.mime_type)
            return {"data": data}

        answer = await self._call(session, account, "POST", "/cgi-bin/media/upload", {"type": "image"}, form)
        if isinstance(answer, base.DeliveryResult):
            return answer
        problem = self._problem(account, answer)
        if problem is not None:
            return problem
        media_id = answer.body.get("media_id") if isinstance(answer.body, dict) else None
        if not media_id:
            return base.DeliveryResult.failed("WeChat accepted the image upload but returned no media_id")
        return await self._send_message(session, account, {"touser": reply.to, "msgtype": "image",
                                                           "image": {"media_id": media_id}})

    # Media ------------------------------------------------------------------------------------

    async def fetch_media(self, session: aiohttp.ClientSession, account_id: str, media_id: str) -> base.Media:
        account = self.accounts.by_id.get(account_id)
        if account is None:
            raise LookupError(f"no WeChat account with original ID {account_id!r} is configured")
        for attempt in range(2):
            token = await self._token(session, account)
            if isinstance(token, base.DeliveryResult):
                raise LookupError(f"cannot download WeChat media: {token.reason}")
            media, error = await self._download(session, f"{account.api_url}/cgi-bin/media/get",
                                                {"access_token": token, "media_id": media_id})
            if media is not None:
                return media
            assert error is not None
            if attempt == 0 and error.get("errcode") in TOKEN_ERRORS:
                self._drop_token(account, token)
                continue
            if isinstance(error.get("video_url"), str):
                # Video media answer with a download address instead of the bytes.
                media, _ = await self._download(session, error["video_url"], {})
                if media is not None:
                    return base.Media(media.data, media.mime_type or "video/mp4", media.filename)
                raise LookupError("WeChat gave a video address that could not be downloaded")
            answer = base.HttpAnswer(200, error)
            problem = self._problem(account, answer)
            reason = problem.reason if problem else "WeChat returned no media"
            raise LookupError(f"cannot download WeChat media {media_id!r}: {reason}")
        raise AssertionError("unreachable")

    async def _download(self, session: aiohttp.ClientSession, url: str,
                        params: dict[str, str]) -> tuple[base.Media | None, dict[str, Any] | None]:
        """The bytes at url, or the JSON WeChat answered instead. Errors never echo the URL (token)."""
        try:
            async with session.get(url, params=params, timeout=base.SEND_TIMEOUT) as resp:
                data = await resp.read()
                ctype = resp.content_type or "application/octet-stream"
                if resp.status != 200:
                    raise LookupError(f"WeChat answered HTTP {resp.status} for the media")
                if ctype in ("application/json", "text/plain") or data[:1] == b"{":
                    try:
                        parsed = json.loads(data)
                    except ValueError:
                        parsed = None
                    if isinstance(parsed, dict):
                        return None, parsed
                filename = resp.content_disposition.filename if resp.content_disposition else None
                return base.Media(data, ctype, filename), None
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise LookupError(f"could not reach WeChat: {type(exc).__name__}") from None


def _content(root: ET.Element, msg_type: str) -> tuple[str, list[Attachment]]:
    """Text and attachments of one message; KeyError for a type we do not know, ValueError for bad fields."""
    media_id = _text(root, "MediaId") or None
    if msg_type == "text":
        return root.findtext("Content") or "", []
    if msg_type == "image":
        return "", [Attachment(type="image", media_id=media_id, url=_text(root, "PicUrl") or None)]
    if msg_type == "voice":
        fmt = _text(root, "Format").lower()
        mime = VOICE_MIME.get(fmt, f"audio/{fmt}" if fmt else None)
        return _text(root, "Recognition"), [Attachment(type="audio", media_id=media_id, mime_type=mime)]
    if msg_type in ("video", "shortvideo"):
        attachments = [Attachment(type="video", media_id=media_id)]
        thumb = _text(root, "ThumbMediaId")
        if thumb:
            attachments.append(Attachment(type="image", media_id=thumb, caption="video thumbnail"))
        return "", attachments
    if msg_type == "location":
        location = Attachment(type="location", latitude=float(_text(root, "Location_X")),
                              longitude=float(_text(root, "Location_Y")), title=_text(root, "Label") or None)
        return "", [location]
    if msg_type == "link":
        parts = (_text(root, "Title"), _text(root, "Description"), _text(root, "Url"))
        # Shared links often repeat the title as the description: say it once.
        return "\n".join(dict.fromkeys(p for p in parts if p)), []
    raise KeyError(msg_type)


def unsupported(msg_type: str) -> str:
    """The comment for a message kind we do not render: what came, in words an agent reads."""
    return f"sent an unsupported message (type: {msg_type[:40]})"


# WeChat's webhooks are verified in the store process: it refuses a nonce seen before, and only one
# process can remember them all (its traffic is small).
DESCRIPTION = base.Description(CHANNEL, lambda tables: Connector.from_config(tables), route="account",
                               store_process_only=True,
                               simulation="socialdesk.fakes.wechat_api:WECHAT",
                               media_domains=("qq.com", "qpic.cn"))
