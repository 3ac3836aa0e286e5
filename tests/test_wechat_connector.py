"""WeChat Official Account connector: handshake, signatures, safe mode, parsing, sending, media.

wechatpy is the oracle for the signature and the safe-mode envelope (tests only).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st
from wechatpy.crypto import PrpCrypto, WeChatCrypto
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.utils import check_signature

from connectors import wechat_crypto
from connectors.base import (
    BadSignature,
    ConfigError,
    Incoming,
    MalformedPayload,
    OutboundFile,
    OutboundReply,
    UnknownAccount,
)
from connectors.wechat import DEFAULT_API_URL, Connector
from socialdesk.fakes.wechat_api import FakeWeChatAPI, event_payload, image_payload, message_payload, xml_message
from warehouse import channels, clock
from warehouse.channels import Window
from warehouse.model import Attachment, InboundMessage

FIXTURES = Path(__file__).parent / "fixtures" / "wechat"
GH = "gh_97417a04a28d"
OPENID = "o9AgO5Kd5ggOC-bXrbNODIiE3bGY"
# WeChat's own sample credentials; the safe-mode fixture was sealed with them by wechatpy.
SAMPLE_TOKEN, SAMPLE_KEY, SAMPLE_APPID = "spamtest", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx2c2769f8efd9abc2"
PLAIN = {"name": "shop", "original_id": GH, "app_id": "wx_shop", "app_secret": "shop-secret-123",
         "token": "shop-token"}
SAFE = {"name": "secure", "original_id": GH, "app_id": SAMPLE_APPID, "app_secret": "secure-secret-456",
        "token": SAMPLE_TOKEN, "encoding_aes_key": SAMPLE_KEY}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def wechat_signature(token: str, timestamp: str, nonce: str) -> str:
    """Computed the way WeChat documents it, independently of the code under test."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def signed(body: bytes, name: str = "shop", token: str = "shop-token", **extra: str) -> Incoming:
    query = {"signature": wechat_signature(token, "1409735669", "1320562132"), "timestamp": "1409735669",
             "nonce": "1320562132", **extra}
    return Incoming(headers={"Content-Type": "text/xml"}, query=query, body=body, name=name)


def sealed_by_wechatpy(message: bytes, app_id: str = SAMPLE_APPID, timestamp: str = "1409735669",
                       nonce: str = "1320562132") -> Incoming:
    """A safe-mode request as WeChat sends it, the envelope made by wechatpy."""
    encrypted = PrpCrypto(base64.b64decode(SAMPLE_KEY + "=")).encrypt(message.decode(), app_id).decode()
    body = f"<xml><ToUserName><![CDATA[{GH}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    query = {"signature": wechat_signature(SAMPLE_TOKEN, timestamp, nonce), "timestamp": timestamp,
             "nonce": nonce, "openid": OPENID, "encrypt_type": "aes",
             "msg_signature": hashlib.sha1("".join(sorted([SAMPLE_TOKEN, timestamp, nonce, encrypted])).encode()
                                           ).hexdigest()}
    return Incoming(headers={}, query=query, body=body.encode(), name="secure")


def with_encrypt(encrypted: str) -> Incoming:
    """A safe-mode request carrying an arbitrary Encrypt value under a valid msg_signature."""
    ts, nonce = "1409735669", "1320562132"
    body = f"<xml><ToUserName><![CDATA[{GH}]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    query = {"signature": wechat_signature(SAMPLE_TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce,
             "encrypt_type": "aes", "msg_signature": wechat_crypto.signature(SAMPLE_TOKEN, ts, nonce, encrypted)}
    return Incoming(headers={}, query=query, body=body.encode(), name="secure")


SIGNED_AT = 1409735669  # the time WeChat's own sample was signed; our fixtures use it too


def at(seconds: float) -> Callable[[], float]:
    return lambda: seconds


@pytest.fixture
def plain() -> Connector:
    return Connector.from_config([PLAIN], clock=at(SIGNED_AT))


@pytest.fixture
def safe() -> Connector:
    return Connector.from_config([SAFE], clock=at(SIGNED_AT))


# Configuration ----------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["name", "original_id", "app_id", "app_secret", "token"])
def test_from_config_names_the_account_and_the_missing_key(key: str) -> None:
    table = {k: v for k, v in PLAIN.items() if k != key}
    with pytest.raises(ConfigError) as err:
        Connector.from_config([table])
    assert "[[wechat]]" in str(err.value) and repr(key) in str(err.value)
    if key != "name":
        assert "'shop'" in str(err.value)


@pytest.mark.parametrize("bad_key", ["tooshort", "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!",
                                     "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"])
def test_from_config_rejects_an_encoding_aes_key_that_is_not_43_base64_chars(bad_key: str) -> None:
    with pytest.raises(ConfigError) as err:
        Connector.from_config([{**SAFE, "encoding_aes_key": bad_key}])
    assert "'secure'" in str(err.value) and "'encoding_aes_key'" in str(err.value)
    assert bad_key not in str(err.value)


def test_from_config_rejects_an_original_id_that_is_not_gh() -> None:
    with pytest.raises(ConfigError, match="original_id"):
        Connector.from_config([{**PLAIN, "original_id": "wx_shop"}])


def test_from_config_rejects_duplicate_names_and_original_ids() -> None:
    with pytest.raises(ConfigError, match="'name'"):
        Connector.from_config([PLAIN, {**PLAIN, "original_id": "gh_other"}])
    with pytest.raises(ConfigError, match="'original_id'"):
        Connector.from_config([PLAIN, {**PLAIN, "name": "other"}])


def test_account_defaults_and_info_carry_no_secrets(plain: Connector) -> None:
    """R8: agents see the account's identity, never its secret or token."""
    assert plain.channel == "wechat" and channels.get("wechat").window == Window(48)
    assert plain.account_ids() == [GH]
    info = plain.account_info(GH)
    assert info == {"channel": "wechat", "account_name": "shop", "original_id": GH, "app_id": "wx_shop"}
    account = plain.account(GH)
    assert account.api_url == DEFAULT_API_URL == "https://api.weixin.qq.com"
    assert "shop-secret-123" not in repr(account) and "shop-token" not in repr(account)


# Handshake ------------------------------------------------------------------------------------

def test_handshake_echoes_echostr_when_the_signature_is_valid(plain: Connector) -> None:
    resp = plain.handshake(signed(b"", echostr="5837397749350405853"))
    assert resp is not None and resp.status == 200 and resp.text == "5837397749350405853"


def test_handshake_with_a_bad_signature_is_refused_with_403(plain: Connector) -> None:
    request = signed(b"", token="wrong-token", echostr="5837397749350405853")
    resp = plain.handshake(request)
    assert resp is not None and resp.status == 403 and "5837397749350405853" not in (resp.text or "")


def test_handshake_without_a_signature_is_refused_with_403(plain: Connector) -> None:
    resp = plain.handshake(Incoming(headers={}, query={"echostr": "x"}, body=b"", name="shop"))
    assert resp is not None and resp.status == 403


def test_get_without_echostr_is_not_a_handshake(plain: Connector) -> None:
    assert plain.handshake(signed(b"")) is None


def test_handshake_query_helper_is_accepted(plain: Connector) -> None:
    query = plain.handshake_query(GH, "hello")
    resp = plain.handshake(Incoming(headers={}, query=query, body=b"", name="shop"))
    assert resp is not None and resp.text == "hello"


def test_handshake_for_an_unknown_account_name_is_unknown_account(plain: Connector) -> None:
    with pytest.raises(UnknownAccount):
        plain.handshake(signed(b"", name="nobody", echostr="x"))


# Signature ------------------------------------------------------------------------------------

def test_verify_accepts_the_signature_as_wechat_computes_it(plain: Connector) -> None:
    """R22: sha1 of sorted [token, timestamp, nonce]; wechatpy agrees on the same value."""
    request = signed(fixture("text.xml"))
    check_signature("shop-token", request.query["signature"], "1409735669", "1320562132")
    plain.verify(request)


def test_our_signature_agrees_with_wechatpy() -> None:
    sig = wechat_crypto.signature("shop-token", "1700000000", "42")
    check_signature("shop-token", sig, "1700000000", "42")
    with pytest.raises(InvalidSignatureException):
        check_signature("other-token", sig, "1700000000", "42")


def test_verify_rejects_a_wrong_signature(plain: Connector) -> None:
    with pytest.raises(BadSignature) as err:
        plain.verify(signed(fixture("text.xml"), token="wrong-token"))
    assert err.value.status == 401 and "shop-token" not in str(err.value)


@pytest.mark.parametrize("missing", ["signature", "timestamp", "nonce"])
def test_verify_rejects_a_missing_signature_part(plain: Connector, missing: str) -> None:
    request = signed(fixture("text.xml"))
    query = {k: v for k, v in request.query.items() if k != missing}
    with pytest.raises(BadSignature):
        plain.verify(Incoming(headers={}, query=query, body=request.body, name="shop"))


def test_verify_for_an_unknown_account_name_is_unknown_account(plain: Connector) -> None:
    with pytest.raises(UnknownAccount) as err:
        plain.verify(signed(fixture("text.xml"), name="nobody"))
    assert err.value.status == 404


def test_a_message_addressed_to_another_original_id_is_unknown_account(plain: Connector) -> None:
    with pytest.raises(UnknownAccount):
        plain.verify(signed(fixture("other_account.xml")))


# Safe mode ------------------------------------------------------------------------------------

def test_safe_mode_fixture_sealed_by_wechatpy_verifies_and_parses(safe: Connector) -> None:
    query = json.loads(fixture("safe_mode_text.query.json"))["query"]
    request = Incoming(headers={}, query=query, body=fixture("safe_mode_text.xml"), name="secure")
    safe.verify(request)
    [msg] = safe.parse(request)
    assert isinstance(msg, InboundMessage)
    assert (msg.account, msg.user_id, msg.message_id, msg.text) == (GH, OPENID, "1234567890123456",
                                                                     "你好, is this a test?")


def test_wechatpy_encrypts_and_we_decrypt(safe: Connector) -> None:
    request = sealed_by_wechatpy(message_payload(GH, OPENID, "加密的消息", 99, create_time=1700000000))
    safe.verify(request)
    [msg] = safe.parse(request)
    assert isinstance(msg, InboundMessage) and msg.text == "加密的消息" and msg.message_id == "99"


def test_simulate_encrypts_and_wechatpy_decrypts(safe: Connector) -> None:
    body = message_payload(GH, OPENID, "round trip ✓", 7)
    headers, query, sealed = safe.simulate(GH, body)
    assert query["encrypt_type"] == "aes" and query["openid"] == OPENID
    crypto = WeChatCrypto(SAMPLE_TOKEN, SAMPLE_KEY, SAMPLE_APPID)
    opened = crypto.decrypt_message(sealed.decode(), query["msg_signature"], query["timestamp"], query["nonce"])
    assert opened.encode() == body
    check_signature(SAMPLE_TOKEN, query["signature"], query["timestamp"], query["nonce"])


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=200))
def test_envelope_round_trips_with_wechatpy_for_any_length(text: str) -> None:
    """Covers every padding length 1..32, including the full block for aligned plaintexts."""
    key = base64.b64decode(SAMPLE_KEY + "=")
    ours = wechat_crypto.encrypt(key, SAMPLE_APPID, text.encode())
    assert PrpCrypto(key).decrypt(ours, SAMPLE_APPID) == text
    theirs = PrpCrypto(key).encrypt(text, SAMPLE_APPID)
    assert wechat_crypto.decrypt(key, SAMPLE_APPID, theirs.decode()) == text.encode()


def test_padding_is_a_full_32_byte_block_when_the_plaintext_is_aligned() -> None:
    key = base64.b64decode(SAMPLE_KEY + "=")
    message = b"x" * (64 - 20 - len(SAMPLE_APPID))  # 16 + 4 + message + appid == 64
    raw = base64.b64decode(wechat_crypto.encrypt(key, SAMPLE_APPID, message))
    dec = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain_bytes = dec.update(raw) + dec.finalize()
    assert len(plain_bytes) == 96 and plain_bytes[-32:] == bytes([32]) * 32
    assert struct.unpack(">I", plain_bytes[16:20])[0] == len(message)


def test_safe_mode_with_a_wrong_msg_signature_is_bad_signature(safe: Connector) -> None:
    request = sealed_by_wechatpy(fixture("text.xml"))
    query = {**request.query, "msg_signature": "0" * 40}
    with pytest.raises(BadSignature):
        safe.verify(Incoming(headers={}, query=query, body=request.body, name="secure"))


def test_safe_mode_without_msg_signature_is_bad_signature(safe: Connector) -> None:
    request = sealed_by_wechatpy(fixture("text.xml"))
    query = {k: v for k, v in request.query.items() if k != "msg_signature"}
    with pytest.raises(BadSignature):
        safe.verify(Incoming(headers={}, query=query, body=request.body, name="secure"))


def test_safe_mode_message_sealed_for_another_app_is_bad_signature(safe: Connector) -> None:
    with pytest.raises(BadSignature):
        safe.verify(sealed_by_wechatpy(fixture("text.xml"), app_id="wx_someone_else"))


def _aes(plaintext: bytes) -> str:
    key = base64.b64decode(SAMPLE_KEY + "=")
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plaintext) + enc.finalize()).decode()


@pytest.mark.parametrize("encrypted", [
    "not base64 at all!!",
    base64.b64encode(b"12345").decode(),  # not whole AES blocks
    _aes(b"A" * 31 + b"\x00"),  # padding byte 0
    _aes(b"A" * 30 + b"\x01\x02"),  # inconsistent padding
    _aes(b"A" * 16 + bytes([16]) * 16),  # too short for random16 + length
    _aes(b"R" * 16 + struct.pack(">I", 9999) + b"short" + bytes([7]) * 7),  # length beyond the plaintext
])
def test_safe_mode_garbage_ciphertext_is_refused_cleanly(safe: Connector, encrypted: str) -> None:
    with pytest.raises((MalformedPayload, BadSignature)):
        safe.verify(with_encrypt(encrypted))
    with pytest.raises((MalformedPayload, BadSignature)):
        safe.parse(with_encrypt(encrypted))


def test_plain_mode_account_receiving_an_encrypted_message_answers_400(plain: Connector) -> None:
    request = signed(fixture("safe_mode_text.xml"), encrypt_type="aes", msg_signature="0" * 40)
    with pytest.raises(MalformedPayload) as err:
        plain.verify(request)
    assert err.value.status == 400


def test_safe_mode_account_refuses_an_unencrypted_message(safe: Connector) -> None:
    """Plain-mode signatures do not cover the body, so a keyed account only takes ciphertext."""
    with pytest.raises(BadSignature):
        safe.verify(signed(fixture("text.xml"), name="secure", token=SAMPLE_TOKEN))


def test_compatibility_mode_uses_the_encrypted_part(safe: Connector) -> None:
    sealed = sealed_by_wechatpy(message_payload(GH, OPENID, "from the ciphertext", 5, create_time=1700000000))
    inner = sealed.body.decode().removeprefix("<xml>").removesuffix("</xml>")
    decoy = (f"<xml><FromUserName><![CDATA[oDecoy]]></FromUserName><CreateTime>1</CreateTime>"
             f"<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[from the plaintext]]></Content>"
             f"<MsgId>6</MsgId>{inner}</xml>")
    request = Incoming(headers={}, query=sealed.query, body=decoy.encode(), name="secure")
    safe.verify(request)
    [msg] = safe.parse(request)
    assert isinstance(msg, InboundMessage)
    assert (msg.text, msg.user_id, msg.message_id) == ("from the ciphertext", OPENID, "5")


# Freshness: signatures expire, nonces are used once (issue 13) ---------------------------------

def signed_at(body: bytes, timestamp: int, nonce: str = "1320562132", name: str = "shop",
              token: str = "shop-token") -> Incoming:
    query = {"signature": wechat_signature(token, str(timestamp), nonce), "timestamp": str(timestamp),
             "nonce": nonce}
    return Incoming(headers={}, query=query, body=body, name=name)


FORGED = message_payload(GH, OPENID, "Refund order 1042 to this card please", 777, create_time=SIGNED_AT)


def test_issue13_a_plain_mode_signature_captured_30_days_ago_signs_no_forged_body() -> None:
    """Plain mode signs token, timestamp and nonce only: an old captured signature must not carry a new body."""
    month_later = Connector.from_config([PLAIN], clock=at(SIGNED_AT + 30 * 86400))
    with pytest.raises(BadSignature) as err:
        month_later.verify(signed_at(FORGED, SIGNED_AT))
    assert err.value.status == 401 and "replay" in str(err.value) and "shop-token" not in str(err.value)


def test_issue13_a_correctly_signed_safe_mode_request_400_days_old_is_refused() -> None:
    later = Connector.from_config([SAFE], clock=at(SIGNED_AT + 400 * 86400))
    with pytest.raises(BadSignature):
        later.verify(sealed_by_wechatpy(fixture("text.xml")))


@pytest.mark.parametrize("skew", [-301, 301, 86400])
def test_issue13_timestamps_more_than_5_minutes_from_now_are_refused(skew: int) -> None:
    connector = Connector.from_config([PLAIN], clock=at(SIGNED_AT + skew))
    with pytest.raises(BadSignature):
        connector.verify(signed_at(fixture("text.xml"), SIGNED_AT))


@pytest.mark.parametrize("skew", [-300, 0, 299])
def test_issue13_timestamps_within_5_minutes_are_accepted(skew: int) -> None:
    Connector.from_config([PLAIN], clock=at(SIGNED_AT + skew)).verify(signed_at(fixture("text.xml"), SIGNED_AT))


def test_issue13_a_timestamp_that_is_not_a_number_is_refused(plain: Connector) -> None:
    query = {"signature": wechat_signature("shop-token", "soon", "1"), "timestamp": "soon", "nonce": "1"}
    with pytest.raises(BadSignature):
        plain.verify(Incoming(headers={}, query=query, body=fixture("text.xml"), name="shop"))


def test_issue13_a_nonce_seen_within_the_window_is_refused_for_another_body(plain: Connector) -> None:
    plain.verify(signed_at(fixture("text.xml"), SIGNED_AT))
    with pytest.raises(BadSignature) as err:
        plain.verify(signed_at(FORGED, SIGNED_AT))
    assert "nonce" in str(err.value)


def test_issue13_the_same_body_under_the_same_nonce_is_wechat_retrying(plain: Connector) -> None:
    """WeChat retries a slow answer with the same request: accepted, and the store keeps it once."""
    for _ in range(3):
        plain.verify(signed_at(fixture("text.xml"), SIGNED_AT))


def test_issue13_a_nonce_is_forgotten_once_its_timestamp_expired() -> None:
    now = [float(SIGNED_AT)]
    connector = Connector.from_config([PLAIN], clock=lambda: now[0])
    connector.verify(signed_at(fixture("text.xml"), SIGNED_AT))
    now[0] += 400
    connector.verify(signed_at(fixture("image.xml"), SIGNED_AT + 400, nonce="2"))
    assert len(connector._nonces) == 1  # the first expired and went; memory stays bounded by the window


def test_issue13_a_forged_request_is_not_remembered(plain: Connector) -> None:
    with pytest.raises(BadSignature):
        plain.verify(signed_at(FORGED, SIGNED_AT, token="not-the-token"))
    plain.verify(signed_at(fixture("text.xml"), SIGNED_AT))  # its nonce was never spent


def test_issue13_safe_mode_replays_with_another_ciphertext_are_refused(safe: Connector) -> None:
    first = sealed_by_wechatpy(message_payload(GH, OPENID, "one", 1, create_time=SIGNED_AT))
    safe.verify(first)
    # A second message sealed and signed under the same timestamp and nonce: the nonce is spent.
    second = sealed_by_wechatpy(message_payload(GH, OPENID, "two", 2, create_time=SIGNED_AT))
    with pytest.raises(BadSignature):
        safe.verify(second)


def test_issue13_start_up_warns_about_each_plain_mode_account_and_says_why() -> None:
    connector = Connector.from_config([PLAIN, {**SAFE, "name": "secure", "original_id": "gh_safe00000001"}])
    [warning] = connector.warnings()
    assert "'shop'" in warning and "plain mode" in warning and "safe mode" in warning.lower()
    assert "not the message" in warning and "encoding_aes_key" in warning
    assert "shop-token" not in warning and "shop-secret-123" not in warning
    assert Connector.from_config([SAFE]).warnings() == []


# Parsing --------------------------------------------------------------------------------------

PARSED = {
    "text.xml": ("1234567890123456", 1348831860, "你好, is this a test?", ()),
    "image.xml": ("1234567890123457", 1348831860, "", (
        Attachment(type="image", media_id="8U_LU1gmvNbOGqDIsLzy6k2XS1SI-IMAGE",
                   url="http://mmbiz.qpic.cn/mmbiz_jpg/Q3auHgzwzM5example/0"),)),
    "voice.xml": ("1234567890123458", 1357290913, "", (
        Attachment(type="audio", media_id="gyci5oxxeGQoBLkKAbXr6MCKEPYOLg-VOICE", mime_type="audio/amr"),)),
    "voice_recognition.xml": ("1234567890123459", 1357290913, "腾讯微信团队", (
        Attachment(type="audio", media_id="gyci5oxxeGQoBLkKAbXr6MCKEPYOLg-VOICE2", mime_type="audio/speex"),)),
    "video.xml": ("1234567890123460", 1357290913, "", (
        Attachment(type="video", media_id="vMediaId-VIDEO"),
        Attachment(type="image", media_id="vThumbMediaId-VIDEO", caption="video thumbnail"))),
    "shortvideo.xml": ("1234567890123461", 1357290913, "", (
        Attachment(type="video", media_id="svMediaId-SHORT"),
        Attachment(type="image", media_id="svThumbMediaId-SHORT", caption="video thumbnail"))),
    "location.xml": ("1234567890123462", 1351776360, "", (
        Attachment(type="location", latitude=23.134521, longitude=113.358803, title="位置信息"),)),
    # The description repeats the title: said once.
    "link.xml": ("1234567890123463", 1351776360, "公众平台官网链接\nhttps://mp.weixin.qq.com/", ()),
}


@pytest.mark.parametrize("name", sorted(PARSED))
def test_each_fixture_parses_to_the_normalized_message(plain: Connector, name: str) -> None:
    """R1, R6: one WeChat message becomes one InboundMessage keyed by the gh_ original ID."""
    message_id, created, text, attachments = PARSED[name]
    [msg] = plain.parse(signed(fixture(name)))
    assert msg == InboundMessage(channel="wechat", account=GH, user_id=OPENID, message_id=message_id,
                                 sent_at=datetime.fromtimestamp(created, UTC), text=text,
                                 attachments=attachments, profile={"openid": OPENID})
    assert msg.sent_at.tzinfo is not None


@pytest.mark.parametrize("name", ["event_subscribe.xml", "event_click.xml", "event_unknown.xml"])
def test_events_are_skipped_and_logged(plain: Connector, name: str, caplog: pytest.LogCaptureFixture) -> None:
    """Events (follows, menu clicks, template receipts) are not tickets."""
    with caplog.at_level(logging.INFO, logger="connectors.wechat"):
        assert plain.parse(signed(fixture(name))) == []
    assert "skipped" in caplog.text


def test_issue12_an_unknown_msgtype_becomes_a_readable_placeholder(plain: Connector) -> None:
    """Issue 12: every customer message is kept; a kind we do not render says what came."""
    [msg] = plain.parse(signed(fixture("unknown_msgtype.xml")))
    assert isinstance(msg, InboundMessage)
    assert msg.text.startswith("sent an unsupported message (type: ") and msg.attachments == ()
    assert msg.user_id == OPENID


def test_a_message_without_msgid_is_keyed_by_openid_and_createtime(plain: Connector) -> None:
    body = xml_message({"ToUserName": GH, "FromUserName": OPENID, "CreateTime": 1700000000, "MsgType": "text",
                        "Content": "no id"})
    [msg] = plain.parse(signed(body))
    assert msg.message_id == f"{OPENID}:1700000000"


@pytest.mark.parametrize("body", [b"not xml", b'{"json": true}', b"", b"<other><a/></other>", b"<xml><unclosed>"])
def test_a_body_that_is_not_wechat_xml_is_malformed(plain: Connector, body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        plain.parse(signed(body))


@pytest.mark.parametrize("name", ["xxe.xml", "billion_laughs.xml"])
def test_dtds_and_entities_are_refused(plain: Connector, name: str) -> None:
    """External entities and entity expansion never reach the parser's resolver."""
    with pytest.raises(MalformedPayload):
        plain.parse(signed(fixture(name)))


@pytest.mark.parametrize("drop", ["FromUserName", "CreateTime", "MsgType"])
def test_a_message_missing_a_required_field_is_malformed(plain: Connector, drop: str) -> None:
    fields: dict[str, str | int | float] = {"ToUserName": GH, "FromUserName": OPENID, "CreateTime": 1700000000,
                                            "MsgType": "text", "Content": "hi", "MsgId": 1}
    del fields[drop]
    with pytest.raises(MalformedPayload):
        plain.parse(signed(xml_message(fields)))


def test_a_location_with_unreadable_coordinates_is_malformed(plain: Connector) -> None:
    body = xml_message({"ToUserName": GH, "FromUserName": OPENID, "CreateTime": 1700000000,
                        "MsgType": "location", "Location_X": "north", "Location_Y": "1", "MsgId": 2})
    with pytest.raises(MalformedPayload):
        plain.parse(signed(body))


def test_acknowledge_is_the_literal_success(plain: Connector) -> None:
    resp = plain.acknowledge(signed(fixture("text.xml")))
    assert resp.status == 200 and resp.text == "success" and resp.content_type == "text/plain"


# simulate() and the fake's payload builders ----------------------------------------------------

def test_simulate_output_passes_verify_and_parse_in_plain_mode(plain: Connector) -> None:
    headers, query, body = plain.simulate(GH, message_payload(GH, OPENID, "hello", 123))
    request = Incoming(headers=headers, query=query, body=body, name="shop")
    plain.verify(request)
    [msg] = plain.parse(request)
    assert isinstance(msg, InboundMessage) and msg.text == "hello" and msg.message_id == "123"


def test_simulate_output_passes_verify_and_parse_in_safe_mode(safe: Connector) -> None:
    headers, query, body = safe.simulate(GH, image_payload(GH, OPENID, "media-1", 124))
    assert b"media-1" not in body  # sealed
    request = Incoming(headers=headers, query=query, body=body, name="secure")
    safe.verify(request)
    [msg] = safe.parse(request)
    assert isinstance(msg, InboundMessage) and msg.attachments[0].media_id == "media-1"


def test_event_payload_builder_is_skipped(plain: Connector) -> None:
    _, query, body = plain.simulate(GH, event_payload(GH, OPENID, "CLICK", "MENU_1"))
    assert plain.parse(Incoming(headers={}, query=query, body=body, name="shop")) == []


# Sending --------------------------------------------------------------------------------------

BRAND = "gh_b0a2c3d4e5f6"


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeChatAPI]:
    api = FakeWeChatAPI({"wx_shop": "shop-secret-123", "wx_brand": "brand-secret-789"})
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
def two(fake: FakeWeChatAPI) -> Connector:
    return Connector.from_config([
        {**PLAIN, "api_url": fake.url + "/"},
        {"name": "brand", "original_id": BRAND, "app_id": "wx_brand", "app_secret": "brand-secret-789",
         "token": "brand-token", "api_url": fake.url},
    ])


def reply(text: str = "", account: str = GH, file: OutboundFile | None = None, outbox_id: int = 1) -> OutboundReply:
    return OutboundReply(outbox_id=outbox_id, channel="wechat", account=account, to=OPENID, text=text, file=file)


def assert_clean(reason: str, fake: FakeWeChatAPI) -> None:
    assert "secret" not in reason and "access_token" not in reason
    for token in fake.issued:
        assert token not in reason


PNG = OutboundFile("receipt.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)


async def test_send_text_uses_the_customer_service_api_with_a_fetched_token(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    """R2, R20: the token comes from /cgi-bin/token; the text JSON is UTF-8, not \\u-escaped."""
    result = await two.send(session, reply("您好，我们已收到", outbox_id=41))
    assert result.state == "sent" and result.platform_message_id == "wechat:41"
    [token_req] = fake.token_requests()
    assert token_req.method == "GET" and token_req.query == {
        "grant_type": "client_credential", "appid": "wx_shop", "secret": "shop-secret-123"}
    [sent] = fake.sent("/cgi-bin/message/custom/send")
    assert sent.query["access_token"] in fake.issued
    assert sent.json == {"touser": OPENID, "msgtype": "text", "text": {"content": "您好，我们已收到"}}
    assert "您好".encode() in sent.body and b"\\u" not in sent.body


async def test_send_leaves_from_the_account_named_in_the_reply(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    """R2, R20: with two accounts configured, each reply uses its own account's app credentials."""
    assert (await two.send(session, reply("from brand", account=BRAND))).state == "sent"
    assert (await two.send(session, reply("from shop", account=GH))).state == "sent"
    first, second = fake.sent("/cgi-bin/message/custom/send")
    assert (fake.app_of(first), first.json["text"]["content"]) == ("wx_brand", "from brand")
    assert (fake.app_of(second), second.json["text"]["content"]) == ("wx_shop", "from shop")


async def test_the_access_token_is_cached_between_sends(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    for i in range(3):
        assert (await two.send(session, reply(f"n{i}"))).state == "sent"
    assert len(fake.token_requests()) == 1


async def test_concurrent_sends_fetch_the_token_once(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    results = await asyncio.gather(*(two.send(session, reply(f"n{i}", outbox_id=i)) for i in range(6)))
    assert all(r.state == "sent" for r in results)
    assert len(fake.token_requests()) == 1


async def test_an_expired_token_is_replaced_and_the_send_retried_once(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    await two.send(session, reply("first"))
    fake.expire_tokens()  # the next call with the cached token answers 42001
    result = await two.send(session, reply("second"))
    assert result.state == "sent"
    assert len(fake.token_requests()) == 2
    first, refused, resent = fake.sent("custom/send")
    assert [r.json["text"]["content"] for r in (first, refused, resent)] == ["first", "second", "second"]
    assert refused.query["access_token"] == first.query["access_token"] != resent.query["access_token"]


async def test_a_token_rejected_twice_fails_without_looping(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(2, 200, {"errcode": 40001, "errmsg": "invalid credential"}, path_contains="custom/send")
    result = await two.send(session, reply("hi"))
    assert result.state == "failed" and "40001" in result.reason
    assert len(fake.sent("custom/send")) == 2 and len(fake.token_requests()) == 2
    assert_clean(result.reason, fake)


async def test_send_an_image_uploads_it_then_sends_its_media_id(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    result = await two.send(session, reply(file=PNG, outbox_id=9))
    assert result.state == "sent" and result.platform_message_id == "wechat:9"
    [upload] = fake.sent("/cgi-bin/media/upload")
    assert upload.query["type"] == "image" and upload.form["media"] == PNG.data
    assert fake.app_of(upload) == "wx_shop"
    [message] = fake.messages()
    media_id = message["image"]["media_id"]
    assert message == {"touser": OPENID, "msgtype": "image", "image": {"media_id": media_id}}
    assert fake.media[media_id].filename == "receipt.png" and fake.media[media_id].mime_type == "image/png"


async def test_send_text_and_image_sends_both_in_order(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    result = await two.send(session, reply("here is your receipt", file=PNG))
    assert result.state == "sent"
    assert [m["msgtype"] for m in fake.messages()] == ["text", "image"]


async def test_a_non_image_file_fails_with_a_plain_reason_and_sends_nothing(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    pdf = OutboundFile("invoice.pdf", "application/pdf", b"%PDF-1.7")
    result = await two.send(session, reply("invoice attached", file=pdf))
    assert result.state == "failed" and not result.window_closed
    assert "image" in result.reason and "application/pdf" in result.reason
    assert fake.requests == []


async def test_window_closed_error_45015_fails_with_window_closed(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    """B1: more than 48 hours since the customer wrote."""
    fake.fail_next(1, 200, {"errcode": 45015, "errmsg": "response out of time limit or subscription is canceled"},
                   path_contains="custom/send")
    result = await two.send(session, reply("late"))
    assert result.state == "failed" and result.window_closed and "48 hours" in result.reason


async def test_quota_error_45047_fails_with_a_plain_reason(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 200, {"errcode": 45047, "errmsg": "out of response count limit"}, path_contains="custom/send")
    result = await two.send(session, reply("sixth reply"))
    assert result.state == "failed" and not result.window_closed and "5 replies" in result.reason


async def test_system_busy_minus_one_is_retried(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 200, {"errcode": -1, "errmsg": "system error"}, path_contains="custom/send")
    assert (await two.send(session, reply("hi"))).state == "retry"


async def test_429_with_retry_after_is_retried_after_that_delay(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 429, "slow down", headers={"Retry-After": "7"}, path_contains="custom/send")
    result = await two.send(session, reply("hi"))
    assert result.state == "retry" and result.retry_after == 7.0


async def test_503_is_retried(two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 503, "unavailable", path_contains="custom/send")
    assert (await two.send(session, reply("hi"))).state == "retry"


async def test_an_unreachable_platform_is_retried(session: aiohttp.ClientSession) -> None:
    connector = Connector.from_config([{**PLAIN, "api_url": "http://127.0.0.1:9"}])
    result = await connector.send(session, reply("hi"))
    assert result.state == "retry" and "127.0.0.1" not in result.reason


async def test_a_wrong_app_secret_fails_without_revealing_it(
        fake: FakeWeChatAPI, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture) -> None:
    connector = Connector.from_config([{**PLAIN, "app_secret": "wrong-secret-000", "api_url": fake.url}])
    with caplog.at_level(logging.DEBUG):
        result = await connector.send(session, reply("hi"))
    assert result.state == "failed" and "40125" in result.reason and "'shop'" in result.reason
    assert "wrong-secret-000" not in result.reason and "wrong-secret-000" not in caplog.text


async def test_other_platform_errors_fail_with_the_code_and_no_token(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 200, {"errcode": 40003, "errmsg": "invalid openid"}, path_contains="custom/send")
    result = await two.send(session, reply("hi"))
    assert result.state == "failed" and "40003" in result.reason and "invalid openid" in result.reason
    assert_clean(result.reason, fake)


async def test_an_image_failing_after_the_text_was_sent_is_not_retried(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    """Retrying would send the text twice and spend another of the 5 allowed replies."""
    fake.fail_next(1, 503, "unavailable", path_contains="media/upload")
    result = await two.send(session, reply("text first", file=PNG))
    assert result.state == "failed" and "text was delivered" in result.reason


async def test_a_reply_from_an_unconfigured_account_fails(
        two: Connector, session: aiohttp.ClientSession) -> None:
    result = await two.send(session, reply("hi", account="gh_unknown"))
    assert result.state == "failed" and "gh_unknown" in result.reason


# The strict fake answers as WeChat does (issue 12) -----------------------------------------------

@pytest.fixture
def world_clock() -> Iterator[list[datetime]]:
    """The store's clock, which the fake reads too: moved by the test, never today's date."""
    now = [datetime(2026, 11, 24, 10, 0)]
    clock.set_clock(lambda: now[0])
    yield now
    clock.set_clock(None)


def wrote(fake: FakeWeChatAPI, hours_ago: float, now: datetime) -> None:
    fake.customer_wrote(GH, OPENID, now.replace(tzinfo=UTC) - timedelta(hours=hours_ago))


async def test_issue12_45015_more_than_48_hours_after_the_customer_wrote(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession, world_clock: list[datetime]) -> None:
    wrote(fake, 49, world_clock[0])
    result = await two.send(session, reply("late"))
    assert result.state == "failed" and result.window_closed and "48 hours" in result.reason
    [answer] = [r for r in fake.sent("custom/send")]
    assert answer.json["touser"] == OPENID
    wrote(fake, 47, world_clock[0])
    assert (await two.send(session, reply("in time"))).state == "sent"


async def test_issue12_45047_for_a_sixth_reply_since_the_customer_wrote(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession, world_clock: list[datetime]) -> None:
    wrote(fake, 1, world_clock[0])
    for n in range(5):
        assert (await two.send(session, reply(f"reply {n}"))).state == "sent"
    sixth = await two.send(session, reply("one more"))
    assert sixth.state == "failed" and "5 replies" in sixth.reason and not sixth.window_closed
    world_clock[0] += timedelta(minutes=5)
    wrote(fake, 0, world_clock[0])  # the customer writes again: five more
    assert (await two.send(session, reply("thanks"))).state == "sent"


async def test_issue12_a_text_over_wechats_limit_is_a_plain_failure(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    result = await two.send(session, reply("长" * 683))  # 2,049 bytes of UTF-8
    assert result.state == "failed" and "45002" in result.reason and "shorten" in result.reason
    assert (await two.send(session, reply("长" * 682))).state == "sent"
    assert_clean(result.reason, fake)


async def test_issue12_the_fake_answers_wechats_own_error_bodies(fake: FakeWeChatAPI, session: aiohttp.ClientSession,
                                                                 world_clock: list[datetime]) -> None:
    async with session.get(f"{fake.url}/cgi-bin/token", params={"grant_type": "client_credential",
                                                                "appid": "wx_shop", "secret": "shop-secret-123"}) as r:
        token = (await r.json())["access_token"]
    wrote(fake, 72, world_clock[0])

    async def send(body: dict) -> dict:
        async with session.post(f"{fake.url}/cgi-bin/message/custom/send", params={"access_token": token},
                                json=body) as resp:
            assert resp.status == 200  # WeChat answers errors with HTTP 200
            return await resp.json()

    late = await send({"touser": OPENID, "msgtype": "text", "text": {"content": "hi"}})
    assert late["errcode"] == 45015
    assert late["errmsg"].startswith("response out of time limit or subscription is canceled hint: [")
    assert (await send({"touser": OPENID, "msgtype": "image", "image": {"media_id": "never-issued"}}))[
        "errcode"] == 40007
    assert (await send({"touser": OPENID, "msgtype": "text", "text": {"content": "x" * 2049}}))["errcode"] == 45002


async def test_an_image_whose_media_id_wechat_does_not_know_is_a_plain_failure(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 200, {"errcode": 40007, "errmsg": "invalid media_id hint: [x]"}, path_contains="custom/send")
    result = await two.send(session, reply(file=PNG))
    assert result.state == "failed" and "40007" in result.reason and "media id" in result.reason


# Media ----------------------------------------------------------------------------------------

async def test_fetch_media_downloads_the_bytes_with_the_accounts_token(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.add_media("media-42", b"\xff\xd8jpeg-bytes", "image/jpeg", "media-42.jpg")
    media = await two.fetch_media(session, BRAND, "media-42")
    assert (media.data, media.mime_type, media.filename) == (b"\xff\xd8jpeg-bytes", "image/jpeg", "media-42.jpg")
    [get] = [r for r in fake.requests if r.path == "/cgi-bin/media/get"]
    assert get.query["media_id"] == "media-42" and fake.app_of(get) == "wx_brand"


async def test_fetch_media_follows_the_video_url(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.add_media("video-1", b"mp4-bytes", "video/mp4")
    media = await two.fetch_media(session, GH, "video-1")
    assert media.data == b"mp4-bytes" and media.mime_type == "video/mp4"


async def test_fetch_media_error_json_raises_a_plain_lookup_error(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    with pytest.raises(LookupError) as err:
        await two.fetch_media(session, GH, "expired-media")
    assert "40007" in str(err.value)
    assert_clean(str(err.value), fake)


async def test_fetch_media_replaces_an_expired_token(
        two: Connector, fake: FakeWeChatAPI, session: aiohttp.ClientSession) -> None:
    fake.add_media("media-43", b"png", "image/png")
    await two.send(session, reply("warm the token cache"))
    fake.expire_tokens()
    assert (await two.fetch_media(session, GH, "media-43")).data == b"png"
    assert len(fake.token_requests()) == 2


def test_a_safe_mode_message_is_decrypted_once_for_verify_and_parse(safe: Connector,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: verify() decrypts and parse() reads what it decrypted; nothing decrypts twice."""
    calls = []
    real = wechat_crypto.decrypt

    def counted(*args: object) -> bytes:
        calls.append(1)
        return real(*args)  # type: ignore[arg-type]
    monkeypatch.setattr(wechat_crypto, "decrypt", counted)
    request = sealed_by_wechatpy(message_payload(GH, OPENID, "一次", 98, create_time=1700000000))
    safe.verify(request)
    [message] = safe.parse(request)
    assert isinstance(message, InboundMessage) and message.text == "一次" and len(calls) == 1
