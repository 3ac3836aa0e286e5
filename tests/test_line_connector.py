"""LINE connector: signature, parsing against LINE-shaped fixtures, push sends against the fake.

The official line-bot-sdk (v3) is used here only, as an oracle for signature and parsing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from linebot.v3 import WebhookParser
from linebot.v3.webhook import SignatureValidator

from connectors.base import (
    BadSignature,
    ConfigError,
    Incoming,
    MalformedPayload,
    OutboundFile,
    OutboundReply,
    UnknownAccount,
)
from connectors.line import Connector
from socialdesk.fakes import line_api
from socialdesk.fakes.line_api import LineAPI
from warehouse.model import Attachment, InboundMessage

FIXTURES = Path(__file__).parent / "fixtures" / "line"
BOT = "Ub1a2c3d4e5f60718293a4b5c6d7e8f90"
OTHER_BOT = "U0f9e8d7c6b5a4938271605f4e3d2c1b0"
USER = "U206d25c2ea6bd87c17655609a1c37cb8"
SECRET = "8c570fa6dd201bb328f1c1eac23a96d8"


def tables(api_url: str = "https://api.line.me") -> list[dict[str, str]]:
    return [
        {"name": "shop", "bot_user_id": BOT, "channel_secret": SECRET, "channel_access_token": "token-shop",
         "api_url": api_url, "data_api_url": api_url},
        {"name": "support", "bot_user_id": OTHER_BOT, "channel_secret": "another-secret",
         "channel_access_token": "token-support", "api_url": api_url, "data_api_url": api_url},
    ]


@pytest.fixture
def connector() -> Connector:
    return Connector.from_config(tables())


@pytest.fixture
async def fake() -> AsyncIterator[LineAPI]:
    api = LineAPI(tokens=("token-shop", "token-support"))
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def live(fake: LineAPI) -> Connector:
    return Connector.from_config(tables(fake.url))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def line_signature(secret: str, raw: bytes) -> str:
    """Computed independently, as LINE documents it."""
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


def signed(raw: bytes, name: str = "shop", secret: str = SECRET) -> Incoming:
    return Incoming({"X-Line-Signature": line_signature(secret, raw)}, {}, raw, name=name)


def parse_one(connector: Connector, fixture: str) -> InboundMessage:
    [msg] = connector.parse(signed(body(fixture)))
    assert isinstance(msg, InboundMessage)
    return msg


def reply(**kw: object) -> OutboundReply:
    base: dict[str, object] = {"outbox_id": 7, "channel": "line", "account": BOT, "to": USER, "text": "Hi there",
                               "retry_key": "123e4567-e89b-12d3-a456-426614174000"}
    base.update(kw)
    return OutboundReply(**base)  # type: ignore[arg-type]


# -- handshake and signature ---------------------------------------------------------------------

def test_line_has_no_get_handshake(connector: Connector) -> None:
    """R1: LINE sends no GET challenge, so nothing is answered as one."""
    assert connector.handshake(Incoming({}, {}, b"", name="shop")) is None


def test_console_verify_request_is_accepted_and_parses_to_nothing(connector: Connector) -> None:
    """R1: the console's Verify button POSTs a signed, empty event list and must get a 200."""
    request = signed(body("verify.json"))
    connector.verify(request)
    assert connector.parse(request) == []
    assert connector.acknowledge(request).status == 200


def test_signature_as_line_computes_it_is_accepted(connector: Connector) -> None:
    """R6: base64 HMAC-SHA256 of the raw body with the channel secret."""
    connector.verify(signed(body("text.json")))


def test_signature_agrees_with_official_sdk(connector: Connector) -> None:
    raw = body("text.json")
    headers, _, sent = connector.simulate(BOT, raw)
    assert SignatureValidator(SECRET).validate(sent.decode(), headers["x-line-signature"])


def test_wrong_signature_is_refused(connector: Connector) -> None:
    """R6"""
    with pytest.raises(BadSignature):
        connector.verify(signed(body("text.json"), secret="not-the-secret"))


def test_signature_over_a_modified_body_is_refused(connector: Connector) -> None:
    raw = body("text.json")
    request = Incoming({"x-line-signature": line_signature(SECRET, raw)}, {}, raw.replace(b"Hello", b"Jello"), "shop")
    with pytest.raises(BadSignature):
        connector.verify(request)


def test_missing_signature_is_refused(connector: Connector) -> None:
    with pytest.raises(BadSignature):
        connector.verify(Incoming({}, {}, body("text.json"), name="shop"))


def test_signature_of_another_account_is_refused(connector: Connector) -> None:
    """R2: each LINE channel signs with its own secret."""
    with pytest.raises(BadSignature):
        connector.verify(signed(body("text.json"), name="support"))


def test_unknown_account_name_is_404(connector: Connector) -> None:
    with pytest.raises(UnknownAccount) as err:
        connector.verify(signed(body("text.json"), name="nobody"))
    assert err.value.status == 404


def test_destination_of_another_bot_is_unknown_account(connector: Connector) -> None:
    """R2: a body for bot B posted to account A's URL is refused even when signed with A's secret."""
    raw = body("text.json").replace(BOT.encode(), b"Uffffffffffffffffffffffffffffffff")
    with pytest.raises(UnknownAccount):
        connector.verify(signed(raw))


def test_error_messages_never_carry_the_secret(connector: Connector) -> None:
    with pytest.raises(BadSignature) as err:
        connector.verify(signed(body("text.json"), secret="wrong"))
    assert SECRET not in str(err.value)
    assert SECRET not in repr(connector.account(BOT))


def test_simulate_output_passes_verify(connector: Connector) -> None:
    raw = line_api.message_payload(OTHER_BOT, USER, "hello", "9001")
    headers, query, sent = connector.simulate(OTHER_BOT, raw)
    name = connector.account_info(OTHER_BOT)["account_name"]
    request = Incoming(headers, query, sent, name=name)
    connector.verify(request)
    [msg] = connector.parse(request)
    assert isinstance(msg, InboundMessage) and (msg.account, msg.text, msg.message_id) == (OTHER_BOT, "hello", "9001")


# -- parsing --------------------------------------------------------------------------------------

def test_text_message_is_normalized(connector: Connector) -> None:
    """R7, R22"""
    msg = parse_one(connector, "text.json")
    assert msg == InboundMessage(channel="line", account=BOT, user_id=USER, message_id="325708",
                                 sent_at=datetime(2016, 5, 7, 13, 57, 59, 859000, tzinfo=UTC),
                                 text="Hello, world! My order hasn't arrived", profile={"line_user_id": USER})


def test_redelivery_keeps_the_message_id_for_dedupe(connector: Connector) -> None:
    """R22: a redelivered event carries the same message.id, the dedupe key."""
    assert parse_one(connector, "redelivery.json").message_id == parse_one(connector, "text.json").message_id


def test_image_is_fetched_by_message_id(connector: Connector) -> None:
    msg = parse_one(connector, "image.json")
    assert msg.attachments == (Attachment(type="image", media_id="354718705033693859"),)
    assert msg.text == ""


def test_external_image_keeps_its_url(connector: Connector) -> None:
    msg = parse_one(connector, "image_external.json")
    assert msg.attachments == (Attachment(type="image", url="https://example.com/original.jpg"),)


def test_video_and_audio_become_attachments(connector: Connector) -> None:
    assert parse_one(connector, "video.json").attachments == (Attachment(type="video", media_id="325708123"),)
    assert parse_one(connector, "audio.json").attachments == (Attachment(type="audio", media_id="325708124"),)


def test_file_keeps_its_name(connector: Connector) -> None:
    msg = parse_one(connector, "file.json")
    assert msg.attachments == (Attachment(type="file", media_id="325708125", filename="receipt-2024-05.pdf"),)


def test_sticker_names_package_and_sticker(connector: Connector) -> None:
    [att] = parse_one(connector, "sticker.json").attachments
    assert (att.type, att.title) == ("sticker", "11537/52002734")
    assert att.caption and "cony" in att.caption


def test_location_has_coordinates_title_and_address(connector: Connector) -> None:
    [att] = parse_one(connector, "location.json").attachments
    assert att == Attachment(type="location", title="my location", latitude=35.67966, longitude=139.73669,
                             caption="1-3 Kioicho, Chiyoda-ku, Tokyo, 102-8282, Japan")


def test_several_events_in_one_request_all_count(connector: Connector) -> None:
    """R22"""
    messages = connector.parse(signed(body("multiple.json")))
    assert [m.message_id for m in messages] == ["325708201", "325708202", "325708203"]
    assert {m.user_id for m in messages} == {USER, "U4c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f"}


def test_group_and_room_messages_are_not_tickets(connector: Connector) -> None:
    assert connector.parse(signed(body("group.json"))) == []


def test_follow_postback_and_other_events_are_skipped(connector: Connector, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="connectors.line")
    assert connector.parse(signed(body("unknown_events.json"))) == []
    assert "follow event skipped" in caplog.text


def test_unknown_message_type_is_skipped(connector: Connector) -> None:
    raw = line_api.payload(BOT, [line_api.event(USER, {"id": "1", "type": "hologram"})])
    assert connector.parse(signed(raw)) == []


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_parsing_agrees_with_official_sdk(connector: Connector, fixture: str) -> None:
    """Every fixture is a body the SDK accepts, and we keep exactly its one-to-one message events."""
    raw = body(fixture)
    payload = WebhookParser(SECRET).parse(raw.decode(), line_signature(SECRET, raw), as_payload=True)
    expected = [(e.message.id, e.source.user_id, e.timestamp) for e in payload.events
                if type(e).__name__ == "MessageEvent" and e.source.type == "user"]
    ours = [(m.message_id, m.user_id, int(m.sent_at.timestamp() * 1000)) for m in connector.parse(signed(raw))
            if isinstance(m, InboundMessage)]
    assert ours == expected
    assert payload.destination == BOT


@pytest.mark.parametrize("raw", [b"not json", b"[]", b'{"destination": "U1"}', b'{"destination": "U1", "events": {}}',
                                 b'{"events": []}', b'{"destination": "U1", "events": ["x"]}',
                                 b'{"destination": "U1", "events": [{"type": "message", "source": {"type": "user"}}]}'])
def test_malformed_body_is_refused(connector: Connector, raw: bytes) -> None:
    with pytest.raises(MalformedPayload):
        connector.parse(Incoming({}, {}, raw, name="shop"))


# -- configuration --------------------------------------------------------------------------------

def test_defaults_point_at_line(connector: Connector) -> None:
    account = Connector.from_config([{k: v for k, v in tables()[0].items() if "url" not in k}]).account(BOT)
    assert (account.api_url, account.data_api_url) == ("https://api.line.me", "https://api-data.line.me")


@pytest.mark.parametrize("key", ["bot_user_id", "channel_secret", "channel_access_token"])
def test_missing_key_names_account_and_key(key: str) -> None:
    table = dict(tables()[0])
    del table[key]
    with pytest.raises(ConfigError, match=rf"\[\[line\]\].*'shop'.*'{key}'"):
        Connector.from_config([table])


def test_unknown_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="'shop'.*'chanel_secret'"):
        Connector.from_config([{**tables()[0], "chanel_secret": "x"}])


def test_duplicate_name_or_bot_id_is_an_error() -> None:
    first, second = tables()
    with pytest.raises(ConfigError, match="duplicate key .name."):
        Connector.from_config([first, {**second, "name": "shop"}])
    with pytest.raises(ConfigError, match="bot_user_id"):
        Connector.from_config([first, {**second, "bot_user_id": BOT}])


def test_account_info_has_no_secrets(connector: Connector) -> None:
    """R8"""
    info = connector.account_info(BOT)
    assert info == {"channel": "line", "account_name": "shop", "bot_user_id": BOT}
    assert connector.account_ids() == [BOT, OTHER_BOT]
    assert connector.window is None


# -- sending --------------------------------------------------------------------------------------

async def test_push_text_leaves_from_the_replying_account(live: Connector, fake: LineAPI,
                                                           session: aiohttp.ClientSession) -> None:
    """R2, R20: the push uses the replying account's token, a retry key, and LINE's body shape."""
    result = await live.send(session, reply(account=OTHER_BOT))
    assert result.state == "sent" and result.platform_message_id
    [req] = fake.sent("/v2/bot/message/push")
    assert req.headers["Authorization"] == "Bearer token-support"
    assert req.headers["X-Line-Retry-Key"] == "123e4567-e89b-12d3-a456-426614174000"
    assert req.json == {"to": USER, "messages": [{"type": "text", "text": "Hi there"}]}


async def test_retry_key_is_derived_from_the_outbox_row_when_absent(live: Connector, fake: LineAPI,
                                                                    session: aiohttp.ClientSession) -> None:
    await live.send(session, reply(retry_key="", outbox_id=42))
    await live.send(session, reply(retry_key="", outbox_id=42))
    first, second = fake.sent("/push")
    assert first.headers["X-Line-Retry-Key"] == second.headers["X-Line-Retry-Key"]
    uuid.UUID(first.headers["X-Line-Retry-Key"])


async def test_already_accepted_retry_counts_as_sent(live: Connector, fake: LineAPI,
                                                    session: aiohttp.ClientSession) -> None:
    """B4: a 409 for a reused retry key means the first attempt went through."""
    first = await live.send(session, reply())
    again = await live.send(session, reply())
    assert again.state == "sent"
    assert again.platform_message_id == first.platform_message_id


async def test_conflict_with_only_the_accepted_header_is_sent(live: Connector, fake: LineAPI,
                                                             session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 409, {"message": "The retry key is already accepted"},
                   headers={"x-line-accepted-request-id": "a5a7d5c1-accepted"})
    result = await live.send(session, reply())
    assert (result.state, result.platform_message_id) == ("sent", "a5a7d5c1-accepted")


async def test_long_text_is_split_into_line_sized_messages(live: Connector, fake: LineAPI,
                                                           session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply(text="a" * 5001))
    assert result.state == "sent"
    assert [len(m["text"]) for m in fake.sent("/push")[0].json["messages"]] == [5000, 1]


async def test_file_is_refused_plainly_after_the_text(live: Connector, fake: LineAPI,
                                                      session: aiohttp.ClientSession) -> None:
    """LINE needs hosted HTTPS URLs for media; the agent is told, and the text still goes out."""
    file = OutboundFile("label.png", "image/png", b"\x89PNG")
    result = await live.send(session, reply(file=file))
    assert result.state == "failed" and "HTTPS URL" in result.reason and "text was sent" in result.reason
    assert len(fake.sent("/push")) == 1
    only_file = await live.send(session, reply(text="", file=file))
    assert only_file.state == "failed" and len(fake.sent("/push")) == 1


async def test_line_validation_error_is_failed_with_its_details(live: Connector, fake: LineAPI,
                                                                session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 400, {"message": "The request body has 1 error(s)",
                            "details": [{"message": "Invalid user ID", "property": "to"}]})
    result = await live.send(session, reply())
    assert result.state == "failed"
    assert "Invalid user ID" in result.reason and "to" in result.reason


async def test_wrong_token_is_failed_without_the_token(fake: LineAPI, session: aiohttp.ClientSession) -> None:
    bad = Connector.from_config([{**tables(fake.url)[0], "channel_access_token": "stale-token"}])
    result = await bad.send(session, reply())
    assert result.state == "failed" and "401" in result.reason and "stale-token" not in result.reason


async def test_rate_limit_is_retried_after_retry_after(live: Connector, fake: LineAPI,
                                                       session: aiohttp.ClientSession) -> None:
    """B4"""
    fake.fail_next(1, 429, {"message": "Too Many Requests"}, headers={"Retry-After": "30"})
    result = await live.send(session, reply())
    assert (result.state, result.retry_after) == ("retry", 30.0)


async def test_server_error_is_retried(live: Connector, fake: LineAPI, session: aiohttp.ClientSession) -> None:
    """B4"""
    fake.fail_next(1, 503, "Service Unavailable")
    assert (await live.send(session, reply())).state == "retry"


async def test_unreachable_platform_is_retried(session: aiohttp.ClientSession) -> None:
    gone = Connector.from_config(tables("http://127.0.0.1:9"))
    assert (await gone.send(session, reply())).state == "retry"


async def test_reply_from_an_unconfigured_account_fails(live: Connector, session: aiohttp.ClientSession) -> None:
    assert (await live.send(session, reply(account="Unobody"))).state == "failed"


async def test_fetch_media_downloads_content_by_message_id(live: Connector, fake: LineAPI,
                                                           session: aiohttp.ClientSession) -> None:
    fake.add_content("354718705033693859", b"\xff\xd8jpeg", "image/jpeg")
    media = await live.fetch_media(session, BOT, "354718705033693859")
    assert (media.data, media.mime_type) == (b"\xff\xd8jpeg", "image/jpeg")
    [req] = fake.requests
    assert req.path == "/v2/bot/message/354718705033693859/content"
    assert req.headers["Authorization"] == "Bearer token-shop"


async def test_fetch_media_of_expired_content_is_lookup_error(live: Connector, session: aiohttp.ClientSession) -> None:
    with pytest.raises(LookupError):
        await live.fetch_media(session, BOT, "404404")


def test_fake_payload_helpers_build_line_bodies() -> None:
    data = json.loads(line_api.image_payload(BOT, USER, "77"))
    assert data["destination"] == BOT
    assert data["events"][0]["message"] == {"id": "77", "type": "image", "quoteToken": data["events"][0]["message"]
                                            ["quoteToken"], "contentProvider": {"type": "line"}}
