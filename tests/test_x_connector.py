"""X (Twitter) DM connector: CRC, signature, Account Activity parsing, v2 DM sends against the fake."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from connectors.base import (
    BadSignature,
    ConfigError,
    Incoming,
    MalformedPayload,
    OutboundFile,
    OutboundReply,
    Skipped,
    UnknownAccount,
)
from connectors.x import Connector
from socialdesk.fakes import x_api
from socialdesk.fakes.x_api import XAPI
from warehouse import channels
from warehouse.model import Attachment, InboundMessage, StatusUpdate

FIXTURES = Path(__file__).parent / "fixtures" / "x"
ME = "835740314006511618"
OTHER = "1529398240126005248"
USER = "272953809"
SECRET = "consumer-secret-of-the-app"


def tables(api_url: str = "https://api.x.com", other_secret: str = SECRET) -> list[dict[str, str]]:
    return [
        {"name": "resistbot", "user_id": ME, "screen_name": "resistbot", "consumer_secret": SECRET,
         "access_token": "token-resistbot", "api_url": api_url},
        {"name": "help", "user_id": OTHER, "screen_name": "@acme_help", "consumer_secret": other_secret,
         "access_token": "token-help", "api_url": api_url},
    ]


@pytest.fixture
def connector() -> Connector:
    return Connector.from_config(tables())


@pytest.fixture
async def fake() -> AsyncIterator[XAPI]:
    api = XAPI({"token-resistbot": ME, "token-help": OTHER})
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def live(fake: XAPI) -> Connector:
    return Connector.from_config(tables(fake.url))


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def x_signature(secret: str, data: bytes) -> str:
    """Computed independently, as X documents it."""
    return "sha256=" + base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()).decode()


def signed(raw: bytes, secret: str = SECRET) -> Incoming:
    return Incoming({"X-Twitter-Webhooks-Signature": x_signature(secret, raw)}, {}, raw)


def reply(**kw: object) -> OutboundReply:
    base: dict[str, object] = {"outbox_id": 3, "channel": "x", "account": ME, "to": USER, "text": "On its way!"}
    base.update(kw)
    return OutboundReply(**base)  # type: ignore[arg-type]


# -- CRC and signature ----------------------------------------------------------------------------

def test_crc_answers_with_the_hmac_of_the_token(connector: Connector) -> None:
    """R1: response_token = sha256= + base64 HMAC-SHA256(consumer secret, crc_token)."""
    response = connector.handshake(Incoming({}, {"crc_token": "challenge-123"}, b""))
    assert response is not None and response.status == 200
    assert json.loads(response.text) == {"response_token": x_signature(SECRET, b"challenge-123")}


def test_get_without_crc_token_is_not_a_handshake(connector: Connector) -> None:
    assert connector.handshake(Incoming({}, {}, b"")) is None
    assert connector.handshake(Incoming({}, {"crc_token": ""}, b"")) is None


def test_crc_without_accounts_is_refused() -> None:
    response = Connector.from_config([]).handshake(Incoming({}, {"crc_token": "t"}, b""))
    assert response is not None and response.status == 404


def test_signature_as_x_computes_it_is_accepted(connector: Connector) -> None:
    """R6"""
    connector.verify(signed(body("text.json")))


def test_wrong_signature_is_refused(connector: Connector) -> None:
    with pytest.raises(BadSignature):
        connector.verify(signed(body("text.json"), secret="not-the-secret"))


def test_missing_signature_is_refused(connector: Connector) -> None:
    with pytest.raises(BadSignature):
        connector.verify(Incoming({}, {}, body("text.json")))


def test_signature_of_a_modified_body_is_refused(connector: Connector) -> None:
    raw = body("text.json")
    tampered = Incoming({"x-twitter-webhooks-signature": x_signature(SECRET, raw)}, {},
                        raw.replace(b"Hello", b"Jello"))
    with pytest.raises(BadSignature):
        connector.verify(tampered)


def test_unconfigured_for_user_id_is_unknown_account(connector: Connector) -> None:
    """R2: signed by our app, but for a user we do not serve."""
    raw = body("text.json").replace(ME.encode(), b"999")
    with pytest.raises(UnknownAccount) as err:
        connector.verify(signed(raw))
    assert err.value.status == 404


def test_event_for_one_app_signed_by_another_app_is_refused() -> None:
    """Accounts of two apps: a body for app A's user must carry app A's signature."""
    two_apps = Connector.from_config(tables(other_secret="second-app-secret"))
    with pytest.raises(BadSignature):
        two_apps.verify(signed(body("text.json"), secret="second-app-secret"))


def test_secrets_never_appear_in_errors_or_reprs(connector: Connector) -> None:
    with pytest.raises(BadSignature) as err:
        connector.verify(signed(body("text.json"), secret="wrong"))
    assert SECRET not in str(err.value)
    assert SECRET not in repr(connector.account(ME)) and "token-resistbot" not in repr(connector.account(ME))


def test_simulate_output_passes_verify(connector: Connector) -> None:
    raw = x_api.message_payload(OTHER, USER, "hello there", "1001")
    headers, query, sent = connector.simulate(OTHER, raw)
    request = Incoming(headers, query, sent)
    connector.verify(request)
    [msg] = connector.parse(request)
    assert isinstance(msg, InboundMessage) and (msg.account, msg.text) == (OTHER, "hello there")


# -- parsing --------------------------------------------------------------------------------------

def test_text_dm_is_normalized_with_profile(connector: Connector) -> None:
    """R7, R22"""
    [msg] = connector.parse(signed(body("text.json")))
    assert isinstance(msg, InboundMessage)
    assert (msg.channel, msg.account, msg.user_id, msg.message_id, msg.text) == (
        "x", ME, USER, "958501034212564996", "Hello World")
    assert msg.sent_at == datetime(2018, 1, 31, 0, 43, 49, 301000, tzinfo=UTC)
    assert msg.profile["name"] == "Nicolas Pottier" and msg.profile["screen_name"] == "nicpottier"


def test_photo_becomes_an_image_and_its_link_leaves_the_text(connector: Connector) -> None:
    [msg] = connector.parse(signed(body("image.json")))
    assert isinstance(msg, InboundMessage)
    assert msg.text == "Broken box"
    assert msg.attachments == (Attachment(
        type="image", media_id="958501022123452417",
        url="https://ton.twitter.com/1.1/ton/data/dm/958501034212564996/958501022123452417/xWnPCz7K.jpg"),)


def test_video_points_at_the_best_mp4(connector: Connector) -> None:
    [msg] = connector.parse(signed(body("video.json")))
    assert isinstance(msg, InboundMessage) and msg.text == ""
    [att] = msg.attachments
    assert (att.type, att.mime_type) == ("video", "video/mp4")
    assert att.url is not None and att.url.endswith("/1280x720/high.mp4")


def test_issue12_a_dm_the_account_sent_is_the_businesss_message_to_that_customer(connector: Connector) -> None:
    """Issue 12: the business's DMs (x.com, another app, or our own sends) join the customer's ticket as the
    business's comment, named by the app that sent them; the warehouse drops the echoes of our own sends."""
    [echo] = connector.parse(signed(body("echo.json")))
    assert isinstance(echo, InboundMessage)
    assert (echo.user_id, echo.message_id, echo.text, echo.business_origin) == (
        USER, "958501034212565000", "Thanks, we're on it", "SocialDesk")
    assert echo.profile == {}  # what X says about the business is not the customer's profile


def test_several_dms_in_one_request_all_count(connector: Connector) -> None:
    messages = connector.parse(signed(body("multiple.json")))
    assert [(m.message_id, m.user_id, m.business_origin) for m in messages] == [  # type: ignore[union-attr]
        ("958501034212565001", USER, None), ("958501034212565002", "1093845021746688001", None),
        ("958501034212565003", USER, "X")]
    assert messages[1].profile["screen_name"] == "aiko_t"  # type: ignore[union-attr]


def test_read_event_is_a_read_receipt_up_to_then(connector: Connector) -> None:
    """B2: the user read our DMs up to last_read_event_id; our own read marker is skipped."""
    [receipt] = connector.parse(signed(body("read.json")))
    at = datetime(2018, 1, 31, 0, 44, 59, 301000, tzinfo=UTC)
    assert receipt == StatusUpdate(channel="x", account=ME, user_id=USER, status="read", at=at,
                                   message_id="958501034212565000", watermark=at)


def test_typing_and_other_events_are_skipped(connector: Connector, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="connectors.x")
    assert connector.parse(signed(body("typing.json"))) == []
    assert connector.parse(signed(body("unknown_events.json"))) == []
    assert "favorite_events" in caplog.text


@pytest.mark.parametrize("raw", [b"not json", b"[]", b"{}", b'{"for_user_id": 5}',
                                 b'{"for_user_id": "1", "direct_message_events": {}}'])
def test_malformed_body_is_refused(connector: Connector, raw: bytes) -> None:
    with pytest.raises(MalformedPayload):
        connector.parse(Incoming({}, {}, raw))


def test_issue12_one_odd_event_is_skipped_alone_and_the_rest_is_kept(connector: Connector) -> None:
    """An entry we cannot read never costs the body its 200 (X would retry it, and the good DMs with it)."""
    good = json.loads(body("text.json"))
    good["direct_message_events"] = [{"type": "message_create"}, "not an event",
                                     {"type": "message_create", "id": "1", "created_timestamp": "soon",
                                      "message_create": {"sender_id": USER}},
                                     {**good["direct_message_events"][0],
                                      "message_create": {**good["direct_message_events"][0]["message_create"],
                                                         "message_data": {"attachment": ["odd"]}}},
                                     *good["direct_message_events"]]
    good["direct_message_mark_read_events"] = [{}]
    parsed = connector.parse(signed(json.dumps(good).encode()))
    assert [type(p).__name__ for p in parsed] == ["Skipped"] * 4 + ["InboundMessage", "Skipped"]
    assert parsed[4].text == "Hello World"  # type: ignore[union-attr]
    assert all("Hello" not in p.what for p in parsed if isinstance(p, Skipped))


# -- the X Activity API (issue 12) -----------------------------------------------------------------

def test_issue12_an_x_activity_api_dm_received_is_a_customer_message_routed_by_the_filter(
        connector: Connector) -> None:
    raw = x_api.activity_message_payload(OTHER, USER, OTHER, "hello from XAA", "2080765901528535096",
                                         created_ms=1_784_928_224_372, name="Other User", screen_name="OtherUser")
    request = signed(raw)
    connector.verify(request)
    [msg] = connector.parse(request)
    assert isinstance(msg, InboundMessage)
    assert (msg.account, msg.user_id, msg.message_id, msg.text, msg.business_origin) == (
        OTHER, USER, "2080765901528535096", "hello from XAA", None)
    assert msg.profile["screen_name"] == "OtherUser" and msg.profile["name"] == "Other User"
    assert msg.profile["followers_count"] == 12


def test_issue12_an_x_activity_api_dm_sent_by_the_business_is_an_echo(connector: Connector) -> None:
    raw = x_api.activity_message_payload(ME, ME, USER, "Thanks for the update!", "2080763914820927863")
    [echo] = connector.parse(signed(raw))
    assert isinstance(echo, InboundMessage)
    assert (echo.user_id, echo.business_origin, echo.text) == (USER, "X", "Thanks for the update!")


def test_issue12_an_x_activity_event_for_an_unconfigured_user_is_unknown_account(connector: Connector) -> None:
    raw = x_api.activity_message_payload("999", USER, "999", "hi", "1")
    with pytest.raises(UnknownAccount):
        connector.verify(signed(raw))


def test_issue12_an_x_activity_event_signed_by_another_app_is_refused() -> None:
    two_apps = Connector.from_config(tables(other_secret="second-app-secret"))
    raw = x_api.activity_message_payload(ME, USER, ME, "hi", "1")
    with pytest.raises(BadSignature):
        two_apps.verify(signed(raw, secret="second-app-secret"))


def test_issue12_other_x_activity_events_are_answered_and_store_nothing(connector: Connector) -> None:
    raw = x_api.activity_payload(ME, "post.create", {"id": "2080761390344937796", "text": "Hello"})
    connector.verify(signed(raw))
    assert connector.parse(signed(raw)) == []


def test_issue12_an_encrypted_x_chat_message_is_kept_as_a_placeholder(connector: Connector) -> None:
    """XChat is end-to-end encrypted: the agent still learns that the customer wrote, and where to read it."""
    raw = x_api.activity_payload(ME, "chat.received", {"id": "e4f4d3fc", "sender_id": USER,
                                                       "created_at_msec": "1784841183370",
                                                       "encoded_event": "CwABAAAAEzIw"})
    [msg] = connector.parse(signed(raw))
    assert isinstance(msg, InboundMessage) and msg.user_id == USER and "encrypted X Chat message" in msg.text
    ours = x_api.activity_payload(ME, "chat.received", {"id": "e5", "sender_id": ME,
                                                        "created_at_msec": "1784841183370"})
    assert connector.parse(signed(ours)) == []


@pytest.mark.parametrize("raw", [b'{"data": {"event_type": "dm.received"}}',
                                 b'{"data": {"event_type": "dm.received", "filter": {"keyword": "x"}}}',
                                 b'{"data": {"event_type": "dm.received", "filter": {"user_id": true}}}',
                                 b'{"data": {"event_type": "dm.received", "filter": {"user_id": "1"}, '
                                 b'"payload": {"direct_message_events": {}}}}'])
def test_issue12_a_malformed_x_activity_body_is_refused(connector: Connector, raw: bytes) -> None:
    with pytest.raises(MalformedPayload):
        connector.parse(Incoming({}, {}, raw))


# -- the CRC is not a signing oracle (issue 13) -----------------------------------------------------

def test_issue13_crc_answers_a_token_shaped_as_x_sends_it(connector: Connector) -> None:
    token = base64.b64encode(b"3dd82dfc-b9db-46d8-940e-3bcc903d8244").decode()  # as seen from X: 48 chars
    response = connector.handshake(Incoming({}, {"crc_token": token, "nonce": "MTc2OTUxODI5MjkxNA"}, b""))
    assert response is not None and response.status == 200
    assert json.loads(response.text) == {"response_token": x_signature(SECRET, token.encode())}


@pytest.mark.parametrize("token", [
    body("text.json").decode(),  # a whole webhook body
    '{"for_user_id":"835740314006511618"}',
    "a" * 129,  # longer than any token X sends
    "has space", "line\nbreak", "quote\"d", "12345", "true", "null", "é",
])
def test_issue13_crc_refuses_anything_that_could_be_a_webhook_body(connector: Connector, token: str) -> None:
    response = connector.handshake(Incoming({}, {"crc_token": token}, b""))
    assert response is not None and response.status == 400
    assert "response_token" not in (response.text or "")


# -- configuration --------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["user_id", "screen_name", "consumer_secret", "access_token"])
def test_missing_key_names_account_and_key(key: str) -> None:
    table = dict(tables()[0])
    del table[key]
    with pytest.raises(ConfigError, match=rf"\[\[x\]\].*'resistbot'.*'{key}'"):
        Connector.from_config([table])


def test_duplicates_and_unknown_keys_are_errors() -> None:
    first, second = tables()
    with pytest.raises(ConfigError, match="'user_id'"):
        Connector.from_config([first, {**second, "user_id": ME}])
    with pytest.raises(ConfigError, match="duplicate key .name."):
        Connector.from_config([first, {**second, "name": "resistbot"}])
    with pytest.raises(ConfigError, match="unknown key 'bearer'"):
        Connector.from_config([{**first, "bearer": "x"}])


def test_numeric_user_id_is_accepted_as_text() -> None:
    connector = Connector.from_config([{**tables()[0], "user_id": int(ME)}])
    assert connector.account_ids() == [ME]


def test_start_up_warns_when_accounts_of_two_x_apps_share_the_crc(connector: Connector) -> None:
    assert connector.warnings() == []
    [warning] = Connector.from_config(tables(other_secret="second-app-secret")).warnings()
    assert "'help'" in warning and "'resistbot'" in warning and "CRC" in warning
    assert "second-app-secret" not in warning and SECRET not in warning


def test_account_info_and_default_url() -> None:
    """R8"""
    table = {k: v for k, v in tables()[1].items() if k != "api_url"}
    connector = Connector.from_config([table])
    assert connector.account_info(OTHER) == {"channel": "x", "account_name": "help", "user_id": OTHER,
                                             "screen_name": "acme_help"}
    assert connector.account(OTHER).api_url == "https://api.x.com"
    assert channels.get(connector.channel).window is None  # no messaging window


# -- sending --------------------------------------------------------------------------------------

async def test_text_dm_leaves_from_the_replying_account(live: Connector, fake: XAPI,
                                                        session: aiohttp.ClientSession) -> None:
    """R2, R20"""
    result = await live.send(session, reply(account=OTHER))
    assert result.state == "sent" and result.platform_message_id
    [req] = fake.sent("/2/dm_conversations")
    assert req.path == f"/2/dm_conversations/with/{USER}/messages"
    assert req.headers["Authorization"] == "Bearer token-help"
    assert req.json == {"text": "On its way!"}


async def test_image_is_uploaded_then_attached(live: Connector, fake: XAPI, session: aiohttp.ClientSession) -> None:
    file = OutboundFile("label.png", "image/png", b"\x89PNG-bytes")
    result = await live.send(session, reply(file=file))
    assert result.state == "sent"
    upload, dm = fake.requests
    assert upload.path == "/2/media/upload" and upload.headers["Authorization"] == "Bearer token-resistbot"
    assert upload.form == {"media": b"\x89PNG-bytes", "media_category": "dm_image", "media_type": "image/png"}
    media_id = next(iter(fake.uploads))
    assert dm.json == {"text": "On its way!", "attachments": [{"media_id": media_id}]}


async def test_image_without_text_is_sent(live: Connector, fake: XAPI, session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply(text="", file=OutboundFile("a.jpg", "image/jpeg", b"jpg")))
    assert result.state == "sent"
    assert "text" not in fake.sent("/2/dm_conversations")[0].json


async def test_unsupported_file_type_is_failed_before_any_call(live: Connector, fake: XAPI,
                                                               session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply(file=OutboundFile("invoice.pdf", "application/pdf", b"%PDF")))
    assert result.state == "failed" and "invoice.pdf" in result.reason
    assert fake.requests == []


async def test_recipient_dm_settings_refusal_is_failed_plainly(live: Connector, fake: XAPI,
                                                               session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 403, {"title": "Forbidden", "type": "about:blank", "status": 403,
                            "detail": "You are not permitted to send this message."})
    result = await live.send(session, reply())
    assert result.state == "failed" and not result.window_closed
    assert "DM settings" in result.reason and "not permitted" in result.reason


async def test_rate_limit_retries_when_the_window_resets(live: Connector, fake: XAPI,
                                                         session: aiohttp.ClientSession) -> None:
    """B4: X says when to come back in x-rate-limit-reset (epoch seconds)."""
    reset = int(time.time()) + 120
    fake.fail_next(1, 429, {"title": "Too Many Requests"}, headers={"x-rate-limit-reset": str(reset)})
    result = await live.send(session, reply())
    assert result.state == "retry"
    assert result.retry_after is not None and 110 <= result.retry_after <= 121


async def test_rate_limit_with_retry_after_is_honoured(live: Connector, fake: XAPI,
                                                       session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 429, "", headers={"Retry-After": "7"})
    assert (await live.send(session, reply())).retry_after == 7.0


async def test_server_error_and_failed_upload_are_retried(live: Connector, fake: XAPI,
                                                          session: aiohttp.ClientSession) -> None:
    """B4"""
    fake.fail_next(1, 503, "Service Unavailable")
    assert (await live.send(session, reply())).state == "retry"
    fake.fail_next(1, 503, "", path_contains="/media/upload")
    result = await live.send(session, reply(file=OutboundFile("a.png", "image/png", b"png")))
    assert result.state == "retry" and len(fake.sent("/2/dm_conversations")) == 1  # only the first attempt


async def test_wrong_token_is_failed_without_the_token(fake: XAPI, session: aiohttp.ClientSession) -> None:
    bad = Connector.from_config([{**tables(fake.url)[0], "access_token": "revoked-token"}])
    result = await bad.send(session, reply())
    assert result.state == "failed" and "401" in result.reason and "revoked-token" not in result.reason


async def test_invalid_request_reason_comes_from_x(live: Connector, fake: XAPI,
                                                   session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 400, {"title": "Invalid Request", "errors": [{"message": "text is too long"}]})
    result = await live.send(session, reply())
    assert result.state == "failed" and "text is too long" in result.reason


async def test_fetch_media_downloads_by_url_with_the_account_token(live: Connector, fake: XAPI,
                                                                   session: aiohttp.ClientSession) -> None:
    url = fake.add_media("958501034212564996/958501022123452417/xWnPCz7K.jpg", b"jpeg-bytes")
    raw = x_api.message_payload(ME, USER, "look https://t.co/Sk9vN2dMcQ", "55",
                                media=x_api.photo("958501022123452417", url))
    [msg] = live.parse(Incoming({}, {}, raw))
    assert isinstance(msg, InboundMessage) and msg.text == "look"
    [att] = msg.attachments
    assert att.url == url
    media = await live.fetch_media(session, ME, att.url)
    assert (media.data, media.mime_type, media.filename) == (b"jpeg-bytes", "image/jpeg", "xWnPCz7K.jpg")
    assert fake.requests[-1].headers["Authorization"] == "Bearer token-resistbot"


async def test_fetch_media_never_sends_the_token_elsewhere(live: Connector, session: aiohttp.ClientSession) -> None:
    with pytest.raises(LookupError):
        await live.fetch_media(session, ME, "https://evil.example.com/steal.jpg")
    with pytest.raises(LookupError):
        await live.fetch_media(session, ME, "958501022123452417")


async def test_issue12_a_dm_over_10000_characters_fails_plainly_before_any_call(
        live: Connector, fake: XAPI, session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply(text="a" * 10_001))
    assert result.state == "failed" and "10,000 characters" in result.reason and "10,001" in result.reason
    assert fake.requests == []
    assert (await live.send(session, reply(text="a" * 10_000))).state == "sent"


async def test_issue12_the_strict_fake_refuses_a_dm_over_10000_characters_as_x_does(
        fake: XAPI, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{fake.url}/2/dm_conversations/with/{USER}/messages",
                            headers={"Authorization": "Bearer token-resistbot"}, json={"text": "b" * 10_001}) as resp:
        answer = await resp.json()
    assert resp.status == 400 and answer["title"] == "Invalid Request"
    assert answer["type"] == "https://api.twitter.com/2/problems/invalid-request"
    assert "10000 characters" in answer["errors"][0]["message"] and "text" in answer["errors"][0]["parameters"]


async def test_a_refusal_from_x_reaches_the_agent_with_xs_reason(live: Connector, fake: XAPI,
                                                                session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 400, {"errors": [{"message": "The `text` field must be at most 10000 characters"}],
                            "title": "Invalid Request", "detail": "One or more parameters to your request was invalid.",
                            "type": "https://api.twitter.com/2/problems/invalid-request"})
    result = await live.send(session, reply())
    assert result.state == "failed" and "10000 characters" in result.reason


def test_fake_read_payload_parses_to_a_receipt(connector: Connector) -> None:
    [receipt] = connector.parse(Incoming({}, {}, x_api.read_payload(ME, USER, "42", created_ms=1_700_000_000_000)))
    assert isinstance(receipt, StatusUpdate) and (receipt.status, receipt.message_id) == ("read", "42")
