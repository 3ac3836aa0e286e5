"""LINE connector: signature, parsing against LINE-shaped fixtures, push sends against the fake.

The official line-bot-sdk (v3) is used here only, as an oracle for signature and parsing.
"""

from __future__ import annotations

import base64
import contextlib
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
from connectors.line import MARK_AS_READ_KEY, Connector, split_text
from socialdesk.fakes import line_api
from socialdesk.fakes.line_api import LineAPI
from warehouse import channels
from warehouse.model import Attachment, InboundMessage, MessageEdit, MessageWithdrawn

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


def test_issue12_follow_postback_and_unknown_events_are_answered_and_store_nothing(
        connector: Connector, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="connectors.line")
    # follow, unfollow, postback, then an unsend: only the unsend means something for a conversation.
    assert [type(p) for p in connector.parse(signed(body("unknown_events.json")))] == [MessageWithdrawn]
    assert "follow event: nothing to store" in caplog.text and "postback event: nothing to store" in caplog.text
    raw = line_api.payload(BOT, [{**line_api.event(USER, {}), "type": "greatNewFeature"}])
    assert connector.parse(signed(raw)) == []


def test_issue12_an_unknown_message_type_becomes_a_readable_placeholder(connector: Connector) -> None:
    raw = line_api.payload(BOT, [line_api.event(USER, {"id": "1", "type": "hologram"})])
    [msg] = connector.parse(signed(raw))
    assert isinstance(msg, InboundMessage)
    assert (msg.text, msg.attachments) == ("sent an unsupported message (type: hologram)", ())


def test_issue12_a_stickers_typed_text_is_the_comment_and_the_sticker_an_attachment(connector: Connector) -> None:
    msg = parse_one(connector, "sticker_with_text.json")
    assert msg.text == "Where is my parcel?"
    [sticker] = msg.attachments
    assert (sticker.type, sticker.title, sticker.caption) == ("sticker", "12287/738839",
                                                              "Anticipation, Sparkle, Straight face")


def test_issue12_unsend_marks_the_message_withdrawn(connector: Connector) -> None:
    [withdrawn] = connector.parse(signed(body("unsend.json")))
    assert withdrawn == MessageWithdrawn("line", BOT, USER, "325708",
                                         datetime(2016, 5, 7, 13, 58, 59, 859000, tzinfo=UTC))


def test_issue12_an_edited_message_is_an_edit_of_the_original(connector: Connector) -> None:
    [edit] = connector.parse(signed(body("message_edited.json")))
    assert isinstance(edit, MessageEdit)
    assert (edit.account, edit.user_id, edit.message_id, edit.text) == (
        BOT, USER, "325708", "Hello, world! My order 1243 hasn't arrived")
    assert edit.edit_id == "325708@1462629509859"  # each edit is its own event; a redelivery is the same one


def test_issue12_group_and_room_events_are_not_support_conversations(connector: Connector,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """LINE edits happen in group chats only today; like everything from groups and rooms, nothing is stored."""
    caplog.set_level("INFO", logger="connectors.line")
    assert connector.parse(signed(body("message_edited_group.json"))) == []
    assert "group chat: not a support conversation" in caplog.text


def test_issue12_one_odd_event_is_skipped_alone(connector: Connector) -> None:
    odd = {"type": "message", "source": {"type": "user", "userId": USER}, "timestamp": 1462629479859}
    location = line_api.event(USER, {"id": "2", "type": "location", "latitude": "north"})
    raw = line_api.payload(BOT, [odd, "not an event", location, line_api.event(USER, {"id": "3", "type": "text",
                                                                                     "text": "still here"})])
    parsed = connector.parse(signed(raw))
    assert [type(p).__name__ for p in parsed] == ["Skipped", "Skipped", "Skipped", "InboundMessage"]
    assert parsed[-1].text == "still here"  # type: ignore[union-attr]


def test_issue12_the_latest_mark_as_read_token_goes_into_the_tickets_channel_info(connector: Connector) -> None:
    msg = parse_one(connector, "text_mark_as_read.json")
    assert msg.channel_info == {MARK_AS_READ_KEY: "30yhdy232...fcc85"}
    assert parse_one(connector, "text.json").channel_info == {}


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
                                 b'{"events": []}'])
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
    assert channels.get(connector.channel).window is None  # no messaging window


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


async def test_issue12_text_is_split_as_line_counts_it_emoji_are_two(live: Connector, fake: LineAPI,
                                                                     session: aiohttp.ClientSession) -> None:
    """LINE counts UTF-16 code units: 2,600 🍎 are 5,200 and must not go out as one message."""
    result = await live.send(session, reply(text="🍎" * 2600))
    assert result.state == "sent", result.reason
    texts = [m["text"] for m in fake.sent("/push")[0].json["messages"]]
    assert "".join(texts) == "🍎" * 2600 and [line_api.utf16_length(t) for t in texts] == [5000, 200]


async def test_issue12_a_long_reply_is_cut_between_words(live: Connector, fake: LineAPI,
                                                         session: aiohttp.ClientSession) -> None:
    text = "\n".join(f"Line {i}: your parcel left the warehouse and is on its way" for i in range(200))
    assert (await live.send(session, reply(text=text))).state == "sent"
    texts = [m["text"] for m in fake.sent("/push")[0].json["messages"]]
    assert "".join(texts) == text and all(t.endswith("\n") for t in texts[:-1])


async def test_issue12_a_reply_longer_than_five_messages_fails_plainly_before_any_call(
        live: Connector, fake: LineAPI, session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply(text="🍎" * 12_501))  # 25,002 units: six messages
    assert result.state == "failed" and "5 messages" in result.reason and "shorten it" in result.reason
    assert fake.requests == []


@pytest.mark.parametrize("text", ["", "a", "a b", "é" * 5000, "🍎" * 2500 + "a", "x" * 12_345, "🍎a" * 4000,
                                  "word " * 3000])
def test_split_text_keeps_everything_within_lines_limit(text: str) -> None:
    pieces = split_text(text)
    assert "".join(pieces) == text
    assert all(0 < line_api.utf16_length(p) <= 5000 for p in pieces)


# -- the strict fake answers as LINE does (issue 12) -------------------------------------------------

PUSH_BODIES = {
    "text": {"to": USER, "messages": [{"type": "text", "text": "hi"}]},
    "five": {"to": USER, "messages": [{"type": "text", "text": "hi"}] * 5},
    "six": {"to": USER, "messages": [{"type": "text", "text": "hi"}] * 6},
    "none": {"to": USER, "messages": []},
    "no to": {"messages": [{"type": "text", "text": "hi"}]},
    "to a number": {"to": 5, "messages": [{"type": "text", "text": "hi"}]},
    "messages an object": {"to": USER, "messages": {"type": "text", "text": "hi"}},
    "message without type": {"to": USER, "messages": [{"text": "hi"}]},
    "unknown type": {"to": USER, "messages": [{"type": "hologram"}]},
    "text not text": {"to": USER, "messages": [{"type": "text", "text": 5}]},
    "text missing": {"to": USER, "messages": [{"type": "text"}]},
    "image without preview": {"to": USER, "messages": [{"type": "image", "originalContentUrl": "https://a/b.jpg"}]},
    "image": {"to": USER, "messages": [{"type": "image", "originalContentUrl": "https://a/b.jpg",
                                        "previewImageUrl": "https://a/c.jpg"}]},
    "sticker": {"to": USER, "messages": [{"type": "sticker", "packageId": "446", "stickerId": "1988"}]},
    "sticker without id": {"to": USER, "messages": [{"type": "sticker", "packageId": "446"}]},
    "message a string": {"to": USER, "messages": ["hi"]},
    "notification not bool": {"to": USER, "messages": [{"type": "text", "text": "hi"}], "notificationDisabled": "no"},
    "location": {"to": USER, "messages": [{"type": "location", "title": "Shop", "address": "Tokyo",
                                           "latitude": 35.6, "longitude": 139.7}]},
    "location without latitude": {"to": USER, "messages": [{"type": "location", "title": "Shop", "address": "Tokyo",
                                                            "longitude": 139.7}]},
    "audio without duration": {"to": USER, "messages": [{"type": "audio", "originalContentUrl": "https://a/b.m4a"}]},
    "quote token not text": {"to": USER, "messages": [{"type": "text", "text": "hi", "quoteToken": 5}]},
    "unknown fields": {"to": USER, "messages": [{"type": "text", "text": "hi", "foo": 1}], "bar": 2},
}


def sdk_refuses(body: dict) -> bool:
    from linebot.v3.messaging import PushMessageRequest
    try:
        PushMessageRequest.from_dict(body)
    except Exception:  # the models raise ValidationError, KeyError, TypeError or ValueError
        return True
    return False


async def push(fake: LineAPI, session: aiohttp.ClientSession, body: object, **headers: str) -> tuple[int, dict]:
    async with session.post(f"{fake.url}/v2/bot/message/push", json=body,
                            headers={"Authorization": "Bearer token-shop", **headers}) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("name", sorted(PUSH_BODIES))
async def test_issue12_the_fake_refuses_exactly_the_push_bodies_line_bot_sdk_refuses(
        fake: LineAPI, session: aiohttp.ClientSession, name: str) -> None:
    """line-bot-sdk v3's models are the oracle for the shape of a push request."""
    status, answer = await push(fake, session, PUSH_BODIES[name])
    assert (status == 400) == sdk_refuses(PUSH_BODIES[name]), answer
    if status == 400:
        assert isinstance(answer["message"], str)
        assert all(set(d) == {"message", "property"} for d in answer.get("details", []))


async def test_issue12_the_fake_refuses_more_than_5_messages_with_lines_error(fake: LineAPI,
                                                                             session: aiohttp.ClientSession) -> None:
    status, answer = await push(fake, session, PUSH_BODIES["six"])
    assert (status, answer) == (400, {"message": "The request body has 1 error(s)", "details": [
        {"message": "Size must be between 1 and 5", "property": "messages"}]})


@pytest.mark.parametrize(("text", "refused"), [("a" * 5000, False), ("a" * 5001, True), ("🍎" * 2500, False),
                                               ("🍎" * 2500 + "a", True), ("", True)])
async def test_issue12_the_fake_counts_text_as_line_does(fake: LineAPI, session: aiohttp.ClientSession,
                                                         text: str, refused: bool) -> None:
    """Up to 5,000 UTF-16 code units; the models let any length and an empty text through, LINE does not."""
    status, answer = await push(fake, session, {"to": USER, "messages": [{"type": "text", "text": text}]})
    assert status == (400 if refused else 200), answer
    if refused:
        [detail] = answer["details"]
        assert detail["property"] == "messages[0].text"
        assert detail["message"] in ("Length must be between 0 and 5000", "May not be empty")


async def test_issue12_the_fake_refuses_a_retry_key_that_is_not_a_uuid(fake: LineAPI,
                                                                      session: aiohttp.ClientSession) -> None:
    status, _ = await push(fake, session, PUSH_BODIES["text"], **{"X-Line-Retry-Key": "outbox-7"})
    assert status == 400


async def test_issue12_a_retry_key_seen_before_is_lines_409_with_the_first_answer(
        fake: LineAPI, session: aiohttp.ClientSession) -> None:
    key = {"X-Line-Retry-Key": "123e4567-e89b-12d3-a456-426614174000"}
    first_status, first = await push(fake, session, PUSH_BODIES["text"], **key)
    async with session.post(f"{fake.url}/v2/bot/message/push", json=PUSH_BODIES["text"],
                            headers={"Authorization": "Bearer token-shop", **key}) as resp:
        again = await resp.json()
        assert resp.status == 409 and resp.headers["x-line-accepted-request-id"]
    assert first_status == 200 and again["sentMessages"] == first["sentMessages"]
    assert again["message"] == "The retry key is already accepted"


async def test_issue12_a_refusal_reaches_the_agent_as_a_permanent_failure_with_lines_details(
        live: Connector, fake: LineAPI, session: aiohttp.ClientSession) -> None:
    """R22: whatever LINE refuses is a failure the agent reads, never retried."""
    fake.fail_next(1, 400, {"message": "The request body has 1 error(s)", "details": [
        {"message": "Length must be between 0 and 5000", "property": "messages[0].text"}]})
    result = await live.send(session, reply())
    assert result.state == "failed" and "Length must be between 0 and 5000" in result.reason
    assert "messages[0].text" in result.reason


# -- mark as read (issue 12) -------------------------------------------------------------------------

async def test_issue12_mark_as_read_calls_line_when_the_account_asks_for_it(fake: LineAPI,
                                                                            session: aiohttp.ClientSession) -> None:
    on = Connector.from_config([{**tables(fake.url)[0], "mark_as_read": True}])
    assert on.marks_as_read(BOT)
    result = await on.mark_as_read(session, BOT, "30yhdy232...fcc85")
    assert result is not None and result.state == "sent"
    [call] = fake.sent("/v2/bot/chat/markAsRead")
    assert call.json == {"markAsReadToken": "30yhdy232...fcc85"}
    assert call.headers["Authorization"] == "Bearer token-shop"
    from linebot.v3.messaging import MarkMessagesAsReadByTokenRequest  # the SDK agrees on the body
    assert MarkMessagesAsReadByTokenRequest.from_dict(call.json).mark_as_read_token == "30yhdy232...fcc85"
    assert fake.read_tokens() == ["30yhdy232...fcc85"]


async def test_issue12_mark_as_read_does_nothing_when_off_or_without_a_token(live: Connector, fake: LineAPI,
                                                                             session: aiohttp.ClientSession) -> None:
    assert not live.marks_as_read(BOT)
    assert await live.mark_as_read(session, BOT, "30yhdy232...fcc85") is None
    on = Connector.from_config([{**tables(fake.url)[0], "mark_as_read": True}])
    assert await on.mark_as_read(session, BOT, None) is None
    assert await on.mark_as_read(session, "Unobody", "t") is None
    assert fake.requests == []


async def test_issue12_mark_as_read_refused_by_line_is_a_plain_failure(fake: LineAPI,
                                                                       session: aiohttp.ClientSession) -> None:
    on = Connector.from_config([{**tables(fake.url)[0], "mark_as_read": True, "channel_access_token": "stale"}])
    result = await on.mark_as_read(session, BOT, "t")
    assert result is not None and result.state == "failed" and "401" in result.reason and "stale" not in result.reason
    fake.fail_next(1, 400, {"message": "Invalid markAsReadToken"})
    ok_token = Connector.from_config([{**tables(fake.url)[0], "mark_as_read": True}])
    refused = await ok_token.mark_as_read(session, BOT, "t")
    assert refused is not None and refused.state == "failed" and "Invalid markAsReadToken" in refused.reason


def test_line_has_nothing_to_warn_about_at_start_up(connector: Connector) -> None:
    assert connector.warnings() == []


def test_mark_as_read_must_be_true_or_false() -> None:
    with pytest.raises(ConfigError, match="'mark_as_read' must be true or false"):
        Connector.from_config([{**tables()[0], "mark_as_read": "yes"}])


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


async def test_a_media_id_from_a_webhook_is_quoted_into_the_content_url(live: Connector, fake: LineAPI,
                                                                          session: aiohttp.ClientSession) -> None:
    """Issue 13: `123/../../x` must name one message's content, not another path of LINE's API."""
    with contextlib.suppress(LookupError):
        await live.fetch_media(session, BOT, "123/../../x")
    assert fake.requests[-1].raw_path == "/v2/bot/message/123%2F..%2F..%2Fx/content"


async def test_fetch_media_over_the_size_cap_is_lookup_error(live: Connector, fake: LineAPI,
                                                             session: aiohttp.ClientSession,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14: media is capped and its errors mapped the same way on every channel."""
    monkeypatch.setattr("connectors.base.MAX_MEDIA_BYTES", 1024)
    fake.add_content("354718705033693860", b"x" * 2048, "video/mp4")
    with pytest.raises(LookupError, match="larger than 1024 bytes"):
        await live.fetch_media(session, BOT, "354718705033693860")


async def test_fetch_media_from_an_unreachable_line_is_lookup_error(session: aiohttp.ClientSession) -> None:
    """A connection refused is the channel not returning the file (the media route's 502), not a crash."""
    unreachable = Connector.from_config(tables("http://127.0.0.1:9"))
    with pytest.raises(LookupError, match="could not reach"):
        await unreachable.fetch_media(session, BOT, "354718705033693861")
