"""Messenger connector: handshake, signature, parsing of Meta-shaped fixtures, sends against the fake.

Signatures in these tests are computed independently, the way Meta documents them
(hex HMAC-SHA256 of the raw body keyed by the App Secret), not with connectors.meta.sign.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from connectors.base import (
    BadSignature,
    ConfigError,
    Incoming,
    MalformedPayload,
    OutboundFile,
    OutboundReply,
    Skipped,
    Template,
    UnknownAccount,
)
from connectors.messenger import Connector
from socialdesk.fakes import meta_api
from socialdesk.fakes.meta_api import MetaGraphAPI
from warehouse import clock
from warehouse.model import Attachment, InboundMessage, MessageEdit, StatusUpdate

FIXTURES = Path(__file__).parent / "fixtures" / "messenger"
PAGE = "682498302938465"
OTHER_PAGE = "682498302938466"
PSID = "1254459154682919"


def tables(api_url: str = "https://graph.facebook.com/v21.0") -> list[dict[str, Any]]:
    return [
        {"name": "shop-page", "page_id": PAGE, "page_name": "Acme Shop", "app_secret": "app-secret-shop",
         "verify_token": "verify-shop", "page_access_token": "EAAB-page-token-shop", "api_url": api_url},
        {"name": "help-page", "page_id": OTHER_PAGE, "page_name": "Acme Help", "app_secret": "app-secret-shop",
         "verify_token": "verify-shop", "page_access_token": "EAAB-page-token-help", "api_url": api_url},
    ]


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def signed(body: bytes, secret: str = "app-secret-shop") -> Incoming:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return Incoming({"X-Hub-Signature-256": signature, "Content-Type": "application/json"}, {}, body)


def parse(name: str) -> list[Any]:
    return Connector.from_config(tables()).parse(signed(fixture(name)))


def parse_body(body: bytes) -> list[Any]:
    return Connector.from_config(tables()).parse(signed(body))


def only_message(name: str) -> InboundMessage:
    [item] = parse(name)
    assert isinstance(item, InboundMessage)
    return item


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


@pytest.fixture
def connector() -> Connector:
    return Connector.from_config(tables())


@pytest.fixture
async def fake() -> AsyncIterator[MetaGraphAPI]:
    api = MetaGraphAPI(pages={PAGE: "EAAB-page-token-shop", OTHER_PAGE: "EAAB-page-token-help"})
    await api.start()
    for page in (PAGE, OTHER_PAGE):  # the customer wrote a minute ago: the 24-hour window is open
        api.customer_wrote(page, PSID, datetime.now(UTC) - timedelta(minutes=1))
    yield api
    await api.stop()


@pytest.fixture
async def live(fake: MetaGraphAPI) -> Connector:
    return Connector.from_config(tables(fake.url + "/v21.0"))


def reply(text: str = "Your order ships today.", account: str = PAGE, **kw: Any) -> OutboundReply:
    return OutboundReply(outbox_id=7, channel="messenger", account=account, to=PSID, text=text, **kw)


# Handshake -------------------------------------------------------------------------------------

def test_handshake_echoes_the_challenge(connector: Connector) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "verify-shop", "hub.challenge": "CHALLENGE_ACCEPTED"}
    response = connector.handshake(Incoming({}, query, b""))
    assert response is not None and (response.status, response.text) == (200, "CHALLENGE_ACCEPTED")


def test_handshake_refuses_a_wrong_verify_token(connector: Connector) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "CHALLENGE_ACCEPTED"}
    response = connector.handshake(Incoming({}, query, b""))
    assert response is not None and response.status == 403


def test_a_get_without_hub_parameters_is_not_a_handshake(connector: Connector) -> None:
    assert connector.handshake(Incoming({}, {}, b"")) is None


# Signature and routing (R1, R20) ---------------------------------------------------------------

def test_a_correctly_signed_payload_is_accepted(connector: Connector) -> None:
    connector.verify(signed(fixture("text")))


def test_a_wrong_signature_is_refused(connector: Connector) -> None:
    with pytest.raises(BadSignature):
        connector.verify(signed(fixture("text"), "other-secret"))


def test_a_missing_signature_is_refused(connector: Connector) -> None:
    with pytest.raises(BadSignature):
        connector.verify(Incoming({"Content-Type": "application/json"}, {}, fixture("text")))


def test_a_payload_for_an_unconfigured_page_is_unknown_account(connector: Connector) -> None:
    body = meta_api.messenger_message_payload("111", PSID, "hi", "m_x")
    with pytest.raises(UnknownAccount):
        connector.verify(signed(body))


def test_pages_of_different_apps_each_need_their_own_apps_signature() -> None:
    second = {**tables()[1], "app_secret": "app-secret-help"}
    connector = Connector.from_config([tables()[0], second])
    body = meta_api.messenger_message_payload(OTHER_PAGE, PSID, "hi", "m_x")
    connector.verify(signed(body, "app-secret-help"))
    with pytest.raises(BadSignature):
        connector.verify(signed(body, "app-secret-shop"))


def test_verify_rejects_an_unreadable_signed_body_as_malformed(connector: Connector) -> None:
    with pytest.raises(MalformedPayload):
        connector.verify(signed(b'{"object":"page","entry":"x"}'))


# Parsing (R1, R6, B2) -----------------------------------------------------------------------------

def test_text_message_is_normalized_with_the_psid_profile() -> None:
    assert only_message("text") == InboundMessage(
        "messenger", PAGE, PSID,
        "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P",
        ms(1458692752478), "hello, world!", (), {"psid": PSID})


def test_image_file_audio_and_video_attachments_keep_their_urls() -> None:
    for name, kind in (("image", "image"), ("file", "file"), ("audio", "audio"), ("video", "video")):
        [attachment] = only_message(name).attachments
        assert attachment.type == kind and attachment.url and attachment.url.startswith("https://"), name


def test_text_and_attachment_in_one_message_are_kept_together() -> None:
    message = only_message("video")
    assert message.text == "see this" and len(message.attachments) == 1


def test_a_sticker_is_an_image_with_a_sticker_id() -> None:
    [attachment] = only_message("sticker").attachments
    assert attachment.type == "sticker" and attachment.url


def test_location_carries_its_coordinates() -> None:
    assert only_message("location").attachments == (Attachment(
        "location", url="https://l.facebook.com/l.php?u=https%3A%2F%2Fwww.bing.com%2Fmaps%2Fdefault.aspx",
        latitude=52.5200066, longitude=13.404954, title="Pinned Location"),)


def test_our_own_echoes_are_skipped_by_the_metadata_we_send() -> None:
    assert parse("echo") == []


def test_delivery_with_mids_marks_each_message_delivered() -> None:
    at = ms(1458668856253)
    assert parse("delivery") == [StatusUpdate("messenger", PAGE, PSID, "delivered", at, message_id="m_sent1"),
                                 StatusUpdate("messenger", PAGE, PSID, "delivered", at, message_id="m_sent2")]


def test_delivery_without_mids_is_a_watermark_for_the_user() -> None:
    assert parse("delivery_watermark") == [
        StatusUpdate("messenger", PAGE, PSID, "delivered", ms(1458668856253), watermark=ms(1458668856253))]


def test_read_is_a_watermark() -> None:
    assert parse("read") == [
        StatusUpdate("messenger", PAGE, PSID, "read", ms(1458668856463), watermark=ms(1458668856253))]


def test_a_postback_becomes_a_text_message_with_its_title() -> None:
    message = only_message("postback")
    assert (message.message_id, message.text) == ("m_postback1", "Track my order")


def test_a_postback_without_mid_gets_a_stable_id() -> None:
    first, second = only_message("postback_without_mid"), only_message("postback_without_mid")
    assert first.message_id == second.message_id and PSID in first.message_id
    assert first.text == "Get Started"


def test_every_event_of_every_entry_counts_with_its_own_page() -> None:
    items = parse("multiple_entries")
    assert [(m.account, m.user_id, m.text) for m in items if isinstance(m, InboundMessage)] == [
        (PAGE, PSID, "first"), (PAGE, "2345678901234567", "second, other customer"),
        (OTHER_PAGE, "3456789012345678", "third, other page")]


def test_a_reaction_names_the_message_it_reacts_to() -> None:
    message = only_message("reaction")
    assert (message.text, message.reaction, message.reply_to) == ("", "❤️", "m_sent1")
    assert message.message_id == only_message("reaction").message_id  # stable across Meta's retries


@pytest.mark.parametrize("body", [
    b"", b"{]", b'{"object":"whatsapp_business_account","entry":[]}', b'{"object":"page","entry":{}}',
    b'{"object":"page","entry":[{"id":"1","messaging":{}}]}',
])
def test_malformed_bodies_raise_malformed_payload(connector: Connector, body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        connector.parse(signed(body))


def test_simulated_requests_pass_verify_and_parse(connector: Connector) -> None:
    body = meta_api.messenger_message_payload(OTHER_PAGE, PSID, "hello help", "m_sim")
    headers, query, sent = connector.simulate(OTHER_PAGE, body)
    request = Incoming(headers, query, sent)
    connector.verify(request)
    [message] = connector.parse(request)
    assert isinstance(message, InboundMessage) and (message.account, message.message_id) == (OTHER_PAGE, "m_sim")


def test_fake_receipt_builders_parse_to_status_updates(connector: Connector) -> None:
    delivered = connector.parse(signed(meta_api.messenger_delivery_payload(PAGE, PSID, ["m_1"], 1700000000000)))
    read = connector.parse(signed(meta_api.messenger_read_payload(PAGE, PSID, 1700000000000)))
    assert [s.status for s in delivered + read] == ["delivered", "read"]


# Every customer message kept, odd entries skipped alone (issue 12) ----------------------------------

def event(body: dict[str, Any], *, page: str = PAGE, key: str = "messaging") -> bytes:
    return json.dumps({"object": "page", "entry": [{"id": page, "time": 1459991487970, key: [body]}]}).encode()


def from_customer(**kw: Any) -> dict[str, Any]:
    return {"sender": {"id": PSID}, "recipient": {"id": PAGE}, "timestamp": 1459991487970, **kw}


def attached(*items: dict[str, Any], text: str | None = None) -> InboundMessage:
    message: dict[str, Any] = {"mid": "m_att", "attachments": list(items)}
    if text:
        message["text"] = text
    [found] = parse_body(event(from_customer(message=message)))
    assert isinstance(found, InboundMessage)
    return found


def test_a_shared_link_reads_as_its_title_and_url() -> None:
    """courier's `fallback`; Meta also puts title and url beside a null payload."""
    assert attached({"type": "fallback", "payload": {"url": "My Documents/foo.doc", "title": "Foo"}}).text == \
        "shared a link: Foo — My Documents/foo.doc"
    assert attached({"type": "fallback", "title": "Sale", "url": "https://shop.example/sale", "payload": None},
                    text="look").text == "look\nshared a link: Sale — https://shop.example/sale"


def test_reels_story_mentions_templates_and_unknown_attachments_are_readable() -> None:
    assert attached({"type": "ig_reel", "payload": {"url": "/reel/123/", "reel_video_id": 123}}).text == \
        "shared a reel: /reel/123/"
    assert attached({"type": "story_mention", "payload": {"url": "https://cdn.example/s"}}).text == \
        "mentioned the Page in their story: https://cdn.example/s"
    assert attached({"type": "template", "payload": {"template_type": "media"}}).text == "sent a media template"
    assert attached({"type": "hologram", "payload": {}}).text == \
        "sent an attachment SocialDesk cannot show yet (type: hologram)"


def test_an_event_without_a_sender_is_skipped_alone_and_the_rest_is_kept() -> None:
    """botman's opt-in with only `user_ref`: nobody to write to."""
    odd = {"recipient": {"id": PAGE}, "timestamp": 1480279487147, "optin": {"ref": "optin", "user_ref": "1234"}}
    body = json.dumps({"object": "page", "entry": [{"id": PAGE, "time": 1, "messaging": [
        odd, from_customer(message={"mid": "m_ok", "text": "kept"})]}]}).encode()
    skipped, kept = parse_body(body)
    assert skipped == Skipped("messenger optin event: sender is not an object")
    assert isinstance(kept, InboundMessage) and kept.text == "kept"


def test_an_entry_without_events_and_an_event_of_no_known_kind_are_skipped() -> None:
    body = json.dumps({"object": "page", "entry": [{"id": PAGE}]}).encode()
    assert parse_body(body) == [Skipped("messenger entry without messaging events")]
    [skipped] = parse_body(event(from_customer()))
    assert isinstance(skipped, Skipped)


def test_opt_ins_referrals_and_account_linking_are_not_messages() -> None:
    for kind in ({"optin": {"ref": "optin_ref"}}, {"referral": {"ref": "r", "source": "ADS", "type": "OPEN_THREAD"}},
                 {"account_linking": {"status": "linked"}}):
        assert parse_body(event(from_customer(**kind))) == []


def test_an_ad_referral_on_a_postback_or_a_message_goes_into_the_channel_info() -> None:
    referral = {"ref": "spring", "source": "ADS", "type": "OPEN_THREAD", "ad_id": "6045246247433"}
    [postback] = parse_body(event(from_customer(postback={"title": "Get Started", "payload": "GS",
                                                          "referral": referral})))
    [message] = parse_body(event(from_customer(message={"mid": "m_ad", "text": "Hi", "referral": referral})))
    assert postback.channel_info == message.channel_info == {"referral": referral}


def test_an_edit_is_a_message_edit() -> None:
    [edit] = parse_body(event(from_customer(message_edit={"mid": "m_1", "text": "fixed", "num_edit": 2})))
    assert edit == MessageEdit("messenger", PAGE, PSID, "m_1", "m_1#2", ms(1459991487970), "fixed")


def test_an_unreaction_removes_the_reaction() -> None:
    [message] = parse_body(event(from_customer(reaction={"mid": "m_1", "action": "unreact", "reaction": "love"})))
    assert (message.reaction, message.reply_to) == ("", "m_1")


def test_standby_events_are_read_like_messaging_events() -> None:
    [message] = parse_body(event(from_customer(message={"mid": "m_sb", "text": "while a bot has the thread"}),
                                 key="standby"))
    assert message.text == "while a bot has the thread"


# What the Page sends from elsewhere (issue 12) -------------------------------------------------------

def test_an_echo_from_another_app_is_the_business_message_to_the_customer() -> None:
    body = meta_api.messenger_echo_payload(PAGE, PSID, "Sent from our CRM", "m_crm", app_id=1517776481860111,
                                           timestamp_ms=1458692820000)
    [message] = parse_body(body)
    assert message == InboundMessage("messenger", PAGE, PSID, "m_crm", ms(1458692820000), "Sent from our CRM",
                                     business_origin="another Messenger app (app 1517776481860111)")


def test_an_echo_without_an_app_comes_from_the_page_inbox() -> None:
    [message] = parse_body(meta_api.messenger_echo_payload(PAGE, PSID, "typed in the inbox", "m_inbox"))
    assert message.business_origin == "the Facebook Page inbox" and message.user_id == PSID


# Configuration (R8) ---------------------------------------------------------------------------------

def test_account_info_describes_the_page(connector: Connector) -> None:
    assert connector.account_info(PAGE) == {"channel": "messenger", "account_name": "shop-page", "page_id": PAGE,
                                            "page_name": "Acme Shop"}


@pytest.mark.parametrize("key", ["page_id", "page_name", "app_secret", "verify_token", "page_access_token"])
def test_a_missing_key_names_the_account_and_the_key(key: str) -> None:
    table = {k: v for k, v in tables()[0].items() if k != key}
    with pytest.raises(ConfigError, match=rf"messenger.*shop-page.*{key}"):
        Connector.from_config([table])


def test_a_numeric_page_id_from_toml_is_accepted_as_text() -> None:
    connector = Connector.from_config([{**tables()[0], "page_id": int(PAGE)}])
    assert connector.account_ids() == [PAGE]


def test_duplicate_page_ids_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="page_id"):
        Connector.from_config([tables()[0], {**tables()[1], "page_id": PAGE}])


# Sending (R2, R20, R22, B1, B4) --------------------------------------------------------------------------

async def test_send_text_posts_the_documented_json_with_the_token_as_parameter(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply())
    assert result.state == "sent" and result.platform_message_id
    [request] = fake.sent()
    assert request.path == f"/v21.0/{PAGE}/messages"
    assert request.query == {"access_token": "EAAB-page-token-shop"}
    assert request.json == {"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                            "message": {"text": "Your order ships today.", "metadata": "socialdesk:outbox:7"}}


async def test_a_reply_leaves_from_the_page_it_names(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    """R2/R20: two pages configured; the reply goes out from the one the ticket came in on."""
    assert (await live.send(session, reply(account=OTHER_PAGE))).state == "sent"
    [request] = fake.sent()
    assert request.path == f"/v21.0/{OTHER_PAGE}/messages"
    assert request.query["access_token"] == "EAAB-page-token-help"


async def test_send_text_and_image_uploads_then_sends_two_messages_returning_the_last_id(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    file = OutboundFile("label.png", "image/png", b"\x89PNG label")
    result = await live.send(session, reply("Here is your label", file=file))
    upload, text, image = fake.sent()
    assert upload.path == f"/v21.0/{PAGE}/message_attachments"
    assert upload.query == {"access_token": "EAAB-page-token-shop"}
    assert json.loads(upload.form["message"]) == {"attachment": {"type": "image", "payload": {"is_reusable": True}}}
    assert upload.form["filedata"] == b"\x89PNG label"
    [attachment_id] = fake.attachments
    assert fake.attachments[attachment_id].filename == "label.png"
    assert text.json["message"] == {"text": "Here is your label", "metadata": "socialdesk:outbox:7"}
    assert image.json == {"recipient": {"id": PSID}, "messaging_type": "RESPONSE", "message": {
        "attachment": {"type": "image", "payload": {"attachment_id": attachment_id}},
        "metadata": "socialdesk:outbox:7"}}
    assert len(fake.message_ids) == 2
    assert result.state == "sent" and result.platform_message_id == fake.message_ids[-1]


async def test_a_pdf_is_sent_as_a_file_attachment(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply("", file=OutboundFile("invoice.pdf", "application/pdf", b"%PDF")))
    assert result.state == "sent"
    upload, message = fake.sent()
    assert json.loads(upload.form["message"])["attachment"]["type"] == "file"
    assert message.json["message"]["attachment"]["type"] == "file"


async def test_when_the_text_part_fails_the_file_is_not_sent(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 400, meta_api.messenger_window_closed(), path_contains="/messages")
    result = await live.send(session, reply("hi", file=OutboundFile("a.png", "image/png", b"png")))
    assert (result.state, result.window_closed) == ("failed", True)
    assert len(fake.sent("/messages")) == 1


async def test_when_only_the_file_part_fails_the_reply_is_not_retried_and_says_the_text_went_out(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retrying the whole reply would send the text twice, so a failed second part is final."""
    answer_text = fake._messenger_message

    def refuse_attachments(page: str, body: Any) -> web.Response:
        if "attachment" in body["message"]:
            return web.Response(status=503, text="Service Unavailable")
        return answer_text(page, body)

    monkeypatch.setattr(fake, "_messenger_message", refuse_attachments)
    result = await live.send(session, reply("hi", file=OutboundFile("a.png", "image/png", b"png")))
    assert result.state == "failed" and not result.window_closed
    assert "text was sent" in result.reason and "HTTP 503" in result.reason


async def test_window_closed_error_is_failed_with_window_closed(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    """B1: code 10 means the 24-hour standard messaging window is closed."""
    fake.fail_next(1, 400, meta_api.graph_error(10, "(#10) This message is sent outside of allowed window."))
    result = await live.send(session, reply())
    assert (result.state, result.window_closed) == ("failed", True)


async def test_subcode_2018278_is_window_closed_too(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 400, meta_api.graph_error(100, "outside window", subcode=2018278))
    assert (await live.send(session, reply())).window_closed


@pytest.mark.parametrize("code", [4, 32, 613])
async def test_rate_limit_codes_are_retried(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession, code: int) -> None:
    fake.fail_next(1, 400, meta_api.graph_error(code, "(#613) Calls to this api have exceeded the rate limit."))
    assert (await live.send(session, reply())).state == "retry"


async def test_http_429_with_retry_after_is_retried_after_that_delay(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 429, {}, headers={"Retry-After": "12"})
    result = await live.send(session, reply())
    assert (result.state, result.retry_after) == ("retry", 12.0)


async def test_http_503_is_retried(live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 503, "down")
    assert (await live.send(session, reply())).state == "retry"


async def test_a_failure_reason_never_contains_the_page_token(
        fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    connector = Connector.from_config([{**tables(fake.url)[0], "page_access_token": "EAAB-revoked"}])
    fake.fail_next(1, 400, meta_api.graph_error(
        100, f"Invalid request to {fake.url}/v21.0/{PAGE}/messages?access_token=EAAB-revoked"))
    first = await connector.send(session, reply())
    second = await connector.send(session, reply())  # the fake itself refuses the token: 401, code 190
    for result in (first, second):
        assert result.state == "failed" and "EAAB" not in result.reason and "access_token" not in result.reason
    assert "190" in second.reason


async def test_a_template_cannot_be_sent_on_messenger(live: Connector, session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply("", template=Template("order_update")))
    assert result.state == "failed" and "WhatsApp" in result.reason


# Messaging windows: 24 hours, 7 with the HUMAN_AGENT tag (issue 12, B1, R22) --------------------------

def tagged(api_url: str, tag: bool = True) -> Connector:
    return Connector.from_config([{**tables(api_url)[0], "human_agent_tag": tag}])


def wrote(fake: MetaGraphAPI, hours: float) -> OutboundReply:
    """A reply to a customer who last wrote `hours` ago (the platform knows it too)."""
    fake.customers.clear()
    fake.customer_wrote(PAGE, PSID, datetime.now(UTC) - timedelta(hours=hours))
    return reply(customer_wrote_at=clock.now() - timedelta(hours=hours))


async def test_within_24_hours_a_reply_is_a_response_even_where_the_tag_is_allowed(
        fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.human_agent_pages.add(PAGE)
    assert (await tagged(fake.url).send(session, wrote(fake, 2))).state == "sent"
    assert fake.sent()[0].json["messaging_type"] == "RESPONSE" and "tag" not in fake.sent()[0].json


async def test_at_30_hours_a_page_with_the_permission_answers_with_the_human_agent_tag(
        fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.human_agent_pages.add(PAGE)
    result = await tagged(fake.url).send(session, wrote(fake, 30))
    assert result.state == "sent"
    sent = fake.sent()[0].json
    assert (sent["messaging_type"], sent["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


async def test_at_30_hours_without_the_tag_the_platform_refuses_and_the_agent_reads_why(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    result = await live.send(session, wrote(fake, 30))
    assert (result.state, result.window_closed) == ("failed", True)
    assert result.reason.startswith("Messenger refused the reply: the customer last wrote 30 hours ago, outside "
                                    "Messenger's 24-hour window")
    assert "human_agent_tag = true" in result.reason and "2018278" in result.reason


async def test_the_tag_without_metas_permission_is_refused_as_meta_does(
        fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    result = await tagged(fake.url).send(session, wrote(fake, 30))  # configured, but Meta never granted it
    assert (result.state, result.window_closed) == ("failed", True)
    assert "Human Agent permission" in result.reason and "human_agent_tag = false" in result.reason


async def test_after_7_days_even_the_tag_is_refused(fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.human_agent_pages.add(PAGE)
    result = await tagged(fake.url).send(session, wrote(fake, 8 * 24))
    assert (result.state, result.window_closed) == ("failed", True)
    assert "8.0 days ago, beyond the 7 days" in result.reason


async def test_retired_tags_and_unknown_customers_are_refused_by_the_fake(
        fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    url = f"{fake.url}/{PAGE}/messages"
    params = {"access_token": "EAAB-page-token-shop"}
    async with session.post(url, params=params, json={"recipient": {"id": PSID}, "messaging_type": "MESSAGE_TAG",
                                                      "tag": "ACCOUNT_UPDATE", "message": {"text": "x"}}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == 100
    async with session.post(url, params=params, json={"recipient": {"id": "999"}, "messaging_type": "RESPONSE",
                                                      "message": {"text": "x"}}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["error_subcode"] == 2018001


async def test_a_text_over_2000_characters_goes_as_several_messages(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    text = "\n".join(f"Line {n}: " + "x" * 90 for n in range(50))  # 50 lines of about 100 characters
    result = await live.send(session, reply(text))
    parts = [r.json["message"]["text"] for r in fake.sent("/messages")]
    assert result.state == "sent" and len(parts) == 3 and all(len(p) <= 2000 for p in parts)
    assert "\n".join(parts) == text


async def test_the_fake_refuses_a_single_text_over_2000_characters(
        fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{fake.url}/{PAGE}/messages", params={"access_token": "EAAB-page-token-shop"},
                            json={"recipient": {"id": PSID}, "messaging_type": "RESPONSE",
                                  "message": {"text": "x" * 2001}}) as resp:
        body = await resp.json()
    assert resp.status == 400
    assert body["error"]["message"] == "(#100) Length of param message[text] must be less than or equal to 2000"


def test_human_agent_tag_is_a_boolean_and_shows_in_the_account_info() -> None:
    assert tagged("https://graph.facebook.com/v21.0").account_info(PAGE)["human_agent_tag"] is True
    with pytest.raises(ConfigError, match="human_agent_tag"):
        Connector.from_config([{**tables()[0], "human_agent_tag": "yes"}])


# Media download ------------------------------------------------------------------------------------

async def test_fetch_media_downloads_the_attachment_url(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    url = fake.add_cdn_file(b"PNGBYTES", "image/png")
    body = meta_api.messenger_message_payload(PAGE, PSID, "", "m_img",
                                              attachments=[{"type": "image", "payload": {"url": url}}])
    [message] = live.parse(signed(body))
    assert isinstance(message, InboundMessage)
    media = await live.fetch_media(session, PAGE, message.attachments[0].url or "")
    assert (media.data, media.mime_type) == (b"PNGBYTES", "image/png")


async def test_fetch_media_of_an_expired_url_is_a_lookup_error_without_the_url(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    with pytest.raises(LookupError) as caught:
        await live.fetch_media(session, PAGE, f"{fake.url}/messenger-cdn/gone?oh=secret")
    assert "secret" not in str(caught.value) and "404" in str(caught.value)
