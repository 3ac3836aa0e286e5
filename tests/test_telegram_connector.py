"""Telegram connector: the secret token, parsing of Telegram-shaped Updates, sends and downloads against
the strict fake. The desk end to end (tickets, replies from Slack's side, reports) is in test_telegram_desk.py.
"""

from __future__ import annotations

import logging
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
from connectors.telegram import SECRET_HEADER, Connector
from socialdesk.fakes import telegram_api
from socialdesk.fakes.telegram_api import TelegramAPI
from warehouse import channels
from warehouse.model import Attachment, InboundMessage, MessageEdit

FIXTURES = Path(__file__).parent / "fixtures" / "telegram"
BOT, OTHER_BOT = "7061234501", "7061234502"
TOKEN, OTHER_TOKEN = f"{BOT}:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", f"{OTHER_BOT}:AAF0uVl3nW2zKq9rYbXcD4eG5hJ6iK7lM8n"
SECRET, OTHER_SECRET = "s3cr3t_Token-for-the-shop", "another_secret_token"
USER = "482915377"
AT = datetime(2024, 12, 10, 14, 0, tzinfo=UTC)


def tables(api_url: str = "https://api.telegram.org") -> list[dict[str, str]]:
    return [{"name": "shop", "bot_token": TOKEN, "secret_token": SECRET, "username": "shop_bot", "api_url": api_url},
            {"name": "returns", "bot_token": OTHER_TOKEN, "secret_token": OTHER_SECRET, "api_url": api_url}]


@pytest.fixture
def connector() -> Connector:
    return Connector.from_config(tables())


@pytest.fixture
async def fake() -> AsyncIterator[TelegramAPI]:
    api = TelegramAPI()
    await api.start()
    api.add_bot(TOKEN, "shop_bot")
    api.add_bot(OTHER_TOKEN, "returns_bot")
    api.customer_wrote(BOT, USER, AT)
    api.customer_wrote(OTHER_BOT, USER, AT)
    yield api
    await api.stop()


@pytest.fixture
async def live(fake: TelegramAPI) -> Connector:
    return Connector.from_config(tables(fake.url))


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def posted(raw: bytes, name: str = "shop", secret: str | None = SECRET) -> Incoming:
    return Incoming({SECRET_HEADER: secret} if secret is not None else {}, {}, raw, name=name)


def parse_one(connector: Connector, fixture: str) -> InboundMessage:
    [msg] = connector.parse(posted(body(fixture)))
    assert isinstance(msg, InboundMessage)
    return msg


def reply(**kw: object) -> OutboundReply:
    base: dict[str, object] = {"outbox_id": 7, "channel": "telegram", "account": BOT, "to": USER, "text": "Hi there"}
    base.update(kw)
    return OutboundReply(**base)  # type: ignore[arg-type]


# -- the secret token ---------------------------------------------------------------------------

def test_telegram_has_no_get_handshake(connector: Connector) -> None:
    assert connector.handshake(Incoming({}, {}, b"", name="shop")) is None


def test_the_secret_token_setwebhook_was_given_is_accepted(connector: Connector) -> None:
    connector.verify(posted(body("text.json")))
    connector.verify(Incoming({"x-telegram-bot-api-secret-token": SECRET}, {}, body("text.json"), name="shop"))


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET[:-1], OTHER_SECRET])
def test_a_missing_or_wrong_secret_token_is_refused(connector: Connector, secret: str | None) -> None:
    with pytest.raises(BadSignature) as err:
        connector.verify(posted(body("text.json"), secret=secret))
    assert err.value.status == 401
    assert SECRET not in str(err.value) and OTHER_SECRET not in str(err.value)


def test_each_bot_has_its_own_url_and_secret(connector: Connector) -> None:
    connector.verify(posted(body("text.json"), name="returns", secret=OTHER_SECRET))
    with pytest.raises(UnknownAccount) as err:
        connector.verify(posted(body("text.json"), name="nobody"))
    assert err.value.status == 404


def test_simulate_output_passes_verify_and_parses(connector: Connector) -> None:
    raw = telegram_api.text_update(USER, "hello", 9001)
    headers, query, sent = connector.simulate(OTHER_BOT, raw)
    request = Incoming(headers, query, sent, name=connector.account_info(OTHER_BOT)["account_name"])
    connector.verify(request)
    [msg] = connector.parse(request)
    assert isinstance(msg, InboundMessage)
    assert (msg.account, msg.user_id, msg.message_id, msg.text) == (OTHER_BOT, USER, f"{USER}:9001", "hello")


# -- parsing --------------------------------------------------------------------------------------

def test_a_text_message_is_normalized_with_the_customers_profile(connector: Connector) -> None:
    assert parse_one(connector, "text.json") == InboundMessage(
        channel="telegram", account=BOT, user_id=USER, message_id=f"{USER}:1731", sent_at=AT,
        text="Hello! My order #5521 hasn't arrived yet.",
        profile={"telegram_user_id": USER, "name": "Olena Kovalenko", "username": "@olena_k", "language_code": "uk"})


def test_the_same_update_twice_keeps_its_message_id_for_dedupe(connector: Connector) -> None:
    assert parse_one(connector, "text.json").message_id == parse_one(connector, "text.json").message_id
    other_chat = body("text.json").replace(b"482915377", b"482915378")
    [msg] = connector.parse(posted(other_chat))
    assert isinstance(msg, InboundMessage) and msg.message_id == "482915378:1731"  # ids count per chat


def test_an_edit_is_an_edit_of_the_original_message(connector: Connector) -> None:
    [edit] = connector.parse(posted(body("edited.json")))
    assert edit == MessageEdit("telegram", BOT, USER, f"{USER}:1731", f"{USER}:1731@1733839260",
                               datetime(2024, 12, 10, 14, 1, tzinfo=UTC), "Hello! My order #5522 hasn't arrived yet.")


def test_a_photo_is_its_largest_size_and_its_caption_the_text(connector: Connector) -> None:
    msg = parse_one(connector, "photo.json")
    assert msg.text == "The parcel arrived like this"
    assert msg.attachments == (Attachment(type="image", media_id="AgACAgIAAxkBAAIBbWdYphoto1280"),)


def test_a_document_keeps_its_name_and_type(connector: Connector) -> None:
    assert parse_one(connector, "document.json").attachments == (
        Attachment(type="file", media_id="BQACAgIAAxkBAAIBbmdYdocument", mime_type="application/pdf",
                   filename="invoice-5521.pdf"),)


def test_voice_sticker_location_and_venue_become_attachments(connector: Connector) -> None:
    assert parse_one(connector, "voice.json").attachments == (
        Attachment(type="audio", media_id="AwACAgIAAxkBAAIBb2dYvoice", mime_type="audio/ogg"),)
    assert parse_one(connector, "sticker.json").attachments == (
        Attachment(type="sticker", media_id="CAACAgIAAxkBAAIBcGdYsticker", title="HotCherry", caption="👍"),)
    assert parse_one(connector, "location.json").attachments == (
        Attachment(type="location", latitude=50.450001, longitude=30.523333),)
    assert parse_one(connector, "venue.json").attachments == (
        Attachment(type="location", latitude=48.85837, longitude=2.294481, title="Eiffel Tower",
                   caption="Champ de Mars, 5 Av. Anatole France, 75007 Paris"),)


def test_the_customers_own_contact_gives_them_a_phone(connector: Connector) -> None:
    msg = parse_one(connector, "contact_own.json")
    assert msg.profile["phone"] == "33612345678"
    assert msg.text == "shared their phone number: Olena Kovalenko, 33612345678"


def test_someone_elses_contact_is_text_and_no_phone_of_the_customer(connector: Connector) -> None:
    msg = parse_one(connector, "contact_other.json")
    assert "phone" not in msg.profile and msg.text == "shared a contact: Sam, +44 7911 123456"


def test_a_kind_we_do_not_render_is_a_readable_placeholder(connector: Connector) -> None:
    assert parse_one(connector, "poll.json").text == "sent an unsupported message (type: poll)"
    assert parse_one(connector, "start_command.json").text == "/start"


@pytest.mark.parametrize("fixture", ["group.json", "channel_post.json", "callback_query.json"])
def test_groups_channels_and_other_updates_store_nothing(connector: Connector, fixture: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="connectors.telegram")
    assert connector.parse(posted(body(fixture))) == []
    assert "nothing" in caplog.text


def test_an_odd_message_is_skipped_alone(connector: Connector) -> None:
    raw = telegram_api.update("message", {"chat": {"id": 5, "type": "private"}, "text": "no id nor date"})
    [skipped] = connector.parse(posted(raw))
    assert isinstance(skipped, Skipped)
    assert isinstance(connector.parse(posted(telegram_api.update("message", "not an object")))[0], Skipped)  # type: ignore[arg-type]


@pytest.mark.parametrize("raw", [b"not json", b"[]", b"{}", b'{"update_id": "1"}', b"\xff\xfe"])
def test_a_body_that_is_not_an_update_is_malformed(connector: Connector, raw: bytes) -> None:
    with pytest.raises(MalformedPayload):
        connector.parse(posted(raw))


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.json")))
def test_every_fixture_is_an_update_we_read_without_error(connector: Connector, fixture: str) -> None:
    for item in connector.parse(posted(body(fixture))):
        assert not isinstance(item, Skipped)


# -- configuration --------------------------------------------------------------------------------

def test_the_bot_id_is_the_tokens_prefix_and_the_api_defaults_to_telegram() -> None:
    account = Connector.from_config([{k: v for k, v in tables()[0].items() if k != "api_url"}]).account(BOT)
    assert (account.bot_id, account.api_url) == (BOT, "https://api.telegram.org")


@pytest.mark.parametrize("key", ["bot_token", "secret_token"])
def test_a_missing_key_names_the_account_and_the_key(key: str) -> None:
    table = dict(tables()[0])
    del table[key]
    with pytest.raises(ConfigError, match=rf"\[\[telegram\]\].*'shop'.*'{key}'"):
        Connector.from_config([table])


def test_a_token_that_is_not_a_bot_token_is_refused_without_repeating_it() -> None:
    with pytest.raises(ConfigError, match="bot_token") as err:
        Connector.from_config([{**tables()[0], "bot_token": "not-a-token-at-all"}])
    assert "not-a-token-at-all" not in str(err.value)
    with pytest.raises(ConfigError, match="bot_id") as err:
        Connector.from_config([{**tables()[0], "bot_id": "7061234599"}])
    assert TOKEN not in str(err.value)
    with pytest.raises(ConfigError, match="bot_id"):
        Connector.from_config([{**tables()[0], "bot_id": "shop_bot"}])


def test_the_bot_id_may_be_given_beside_its_token() -> None:
    """As the example configuration does: the id in the file, the token from the environment."""
    named = Connector.from_config([{**tables()[0], "bot_id": 7061234501}, {**tables()[1], "bot_id": OTHER_BOT}])
    assert named.account_ids() == [BOT, OTHER_BOT]
    opaque = Connector.from_config([{**tables()[0], "bot_id": BOT, "bot_token": "from-a-vault"}])
    assert opaque.account(BOT).bot_token == "from-a-vault"


@pytest.mark.parametrize("secret", ["has space", "é", "x" * 257])
def test_a_secret_token_telegram_would_refuse_is_refused(secret: str) -> None:
    with pytest.raises(ConfigError, match="secret_token") as err:
        Connector.from_config([{**tables()[0], "secret_token": secret}])
    assert secret not in str(err.value)


def test_unknown_and_duplicate_keys_are_errors() -> None:
    first, second = tables()
    with pytest.raises(ConfigError, match="'shop'.*'bot_tokn'"):
        Connector.from_config([{**first, "bot_tokn": "x"}])
    with pytest.raises(ConfigError, match="duplicate key .name."):
        Connector.from_config([first, {**second, "name": "shop"}])
    with pytest.raises(ConfigError, match="bot_token"):
        Connector.from_config([first, {**second, "bot_token": TOKEN}])


def test_account_info_has_no_secrets_and_telegram_has_no_window(connector: Connector) -> None:
    """R8; a bot may answer a private chat at any time."""
    assert connector.account_info(BOT) == {"channel": "telegram", "account_name": "shop", "bot_id": BOT,
                                           "username": "@shop_bot"}
    assert connector.account_info(OTHER_BOT) == {"channel": "telegram", "account_name": "returns", "bot_id": OTHER_BOT}
    assert connector.account_ids() == [BOT, OTHER_BOT]
    assert channels.get("telegram").window is None and channels.get("telegram").tag == "telegram"
    assert TOKEN not in repr(connector.account(BOT)) and SECRET not in repr(connector.account(BOT))


# -- sending --------------------------------------------------------------------------------------

async def test_a_reply_leaves_from_the_replying_bot(live: Connector, fake: TelegramAPI,
                                                   session: aiohttp.ClientSession) -> None:
    """R2, R20: each bot's token, Telegram's sendMessage body, the sent message's id."""
    result = await live.send(session, reply(account=OTHER_BOT, text="From returns"))
    assert (result.state, result.platform_message_id) == ("sent", f"{USER}:1001")
    [call] = fake.requests
    assert call.path == f"/bot{OTHER_TOKEN}/sendMessage" and call.json == {"chat_id": USER, "text": "From returns"}
    assert fake.messages() == [(OTHER_BOT, {"chat_id": USER, "text": "From returns"})]


async def test_a_long_reply_is_split_into_telegram_sized_messages(live: Connector, fake: TelegramAPI,
                                                                  session: aiohttp.ClientSession) -> None:
    text = "\n".join(f"Line {i}: your parcel left the warehouse and is on its way" for i in range(150))
    result = await live.send(session, reply(text=text))
    assert result.state == "sent", result.reason
    texts = [params["text"] for _, params in fake.messages()]
    assert len(texts) == 3 and all(0 < len(t) <= 4096 for t in texts)
    assert "\n".join(texts) == text
    assert result.platform_message_id == f"{USER}:1003"  # the last part's


async def test_a_picture_goes_as_a_photo_with_the_text_as_its_caption(live: Connector, fake: TelegramAPI,
                                                                      session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply(text="Your label", file=OutboundFile("label.png", "image/png", b"\x89PNG")))
    assert result.state == "sent", result.reason
    [(bot, params)] = fake.messages()
    assert bot == BOT and params["caption"] == "Your label" and params["photo"] == b"\x89PNG"
    assert fake.requests[0].path == f"/bot{TOKEN}/sendPhoto"


async def test_another_file_goes_as_a_document_after_a_long_text(live: Connector, fake: TelegramAPI,
                                                                 session: aiohttp.ClientSession) -> None:
    text = "word " * 300  # longer than a caption
    result = await live.send(session, reply(text=text, file=OutboundFile("invoice.pdf", "application/pdf", b"%PDF")))
    assert result.state == "sent", result.reason
    assert [r.path.rsplit("/", 1)[1] for r in fake.requests] == ["sendMessage", "sendDocument"]
    assert fake.messages()[1][1]["document"] == b"%PDF" and "caption" not in fake.messages()[1][1]


async def test_nothing_to_send_fails_before_any_call(live: Connector, fake: TelegramAPI,
                                                    session: aiohttp.ClientSession) -> None:
    assert (await live.send(session, reply(text="  "))).state == "failed"
    assert (await live.send(session, reply(account="999"))).state == "failed"
    assert fake.requests == []


async def test_a_customer_who_blocked_the_bot_is_a_permanent_failure(live: Connector, fake: TelegramAPI,
                                                                     session: aiohttp.ClientSession) -> None:
    fake.block(BOT, USER)
    result = await live.send(session, reply())
    assert result.state == "failed" and "Forbidden: bot was blocked by the user" in result.reason


async def test_a_chat_that_never_wrote_to_the_bot_is_a_permanent_failure(live: Connector, fake: TelegramAPI,
                                                                         session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply(to="100200300"))
    assert result.state == "failed" and "Bad Request: chat not found" in result.reason


async def test_flood_control_is_retried_after_what_telegram_says(live: Connector, fake: TelegramAPI,
                                                                 session: aiohttp.ClientSession) -> None:
    """B4: Telegram says when to come back in `parameters.retry_after`."""
    fake.flood(17, "sendMessage")
    result = await live.send(session, reply())
    assert (result.state, result.retry_after) == ("retry", 17.0)
    assert "Too Many Requests: retry after 17" in result.reason
    assert (await live.send(session, reply())).state == "sent"


async def test_server_errors_and_an_unreachable_api_are_retried(live: Connector, fake: TelegramAPI,
                                                                session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 502, "Bad Gateway")
    assert (await live.send(session, reply())).state == "retry"
    gone = Connector.from_config(tables("http://127.0.0.1:9"))
    assert (await gone.send(session, reply())).state == "retry"


async def test_the_token_never_appears_in_a_failure_or_a_log(fake: TelegramAPI, session: aiohttp.ClientSession,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    revoked = f"{BOT}:AAHrevokedTokenRevokedToken0123456"
    stale = Connector.from_config([{**tables(fake.url)[0], "bot_token": revoked}])
    reasons = [(await stale.send(session, reply())).reason]
    assert "401" in reasons[0]
    fake.fail_next(1, 400, {"ok": False, "error_code": 400, "description": f"Bad Request: token {revoked} odd"})
    reasons.append((await stale.send(session, reply())).reason)
    gone = Connector.from_config([{**tables("http://127.0.0.1:9")[0]}])
    reasons.append((await gone.send(session, reply())).reason)
    for media in (stale, gone):
        with pytest.raises(LookupError) as err:
            await media.fetch_media(session, BOT, "AgACAgIAAxkBAAIBbWdYphoto1280")
        reasons.append(str(err.value))
    for text in [*reasons, caplog.text]:
        assert revoked not in text and TOKEN not in text and "AAH" not in text


async def test_a_customers_file_is_fetched_through_getfile(live: Connector, fake: TelegramAPI,
                                                           session: aiohttp.ClientSession) -> None:
    fake.add_file("AgACAgIAAxkBAAIBbWdYphoto1280", b"\xff\xd8jpeg", "photos/file_12.jpg")
    media = await live.fetch_media(session, BOT, "AgACAgIAAxkBAAIBbWdYphoto1280")
    assert (media.data, media.mime_type) == (b"\xff\xd8jpeg", "image/jpeg")
    assert [r.path for r in fake.requests] == [f"/bot{TOKEN}/getFile", f"/file/bot{TOKEN}/photos/file_12.jpg"]
    with pytest.raises(LookupError, match="invalid file_id"):
        await live.fetch_media(session, BOT, "gone")


# -- the strict fake answers as Telegram does ----------------------------------------------------------

async def call(fake: TelegramAPI, session: aiohttp.ClientSession, method: str, token: str = TOKEN,
               **params: object) -> tuple[int, dict]:
    async with session.post(f"{fake.url}/bot{token}/{method}", json=params) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize(("method", "params", "status", "description"), [
    ("sendMessage", {"chat_id": USER, "text": ""}, 400, "Bad Request: message text is empty"),
    ("sendMessage", {"chat_id": USER}, 400, "Bad Request: message text is empty"),
    ("sendMessage", {"chat_id": USER, "text": "a" * 4097}, 400, "Bad Request: message is too long"),
    ("sendMessage", {"chat_id": "100200300", "text": "hi"}, 400, "Bad Request: chat not found"),
    ("sendMessage", {"text": "hi"}, 400, "Bad Request: chat_id is empty"),
    ("sendPhoto", {"chat_id": USER}, 400, "Bad Request: there is no photo in the request"),
    ("getFile", {"file_id": "nope"}, 400, "Bad Request: invalid file_id"),
    ("sendSticker2", {"chat_id": USER}, 404, "Not Found"),
])
async def test_the_fake_refuses_what_telegram_refuses(fake: TelegramAPI, session: aiohttp.ClientSession, method: str,
                                                      params: dict, status: int, description: str) -> None:
    got, answer = await call(fake, session, method, **params)
    assert (got, answer) == (status, {"ok": False, "error_code": status, "description": description})


async def test_the_fake_refuses_an_unknown_token(fake: TelegramAPI, session: aiohttp.ClientSession) -> None:
    assert await call(fake, session, "sendMessage", token="1:nope", chat_id=USER, text="hi") == (
        401, {"ok": False, "error_code": 401, "description": "Unauthorized"})


async def test_the_fake_takes_4096_characters_and_answers_a_message(fake: TelegramAPI,
                                                                    session: aiohttp.ClientSession) -> None:
    status, answer = await call(fake, session, "sendMessage", chat_id=USER, text="a" * 4096)
    assert status == 200 and answer["ok"] is True
    assert answer["result"]["chat"] == {"id": int(USER), "type": "private"} and answer["result"]["message_id"] == 1001
