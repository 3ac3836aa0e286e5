"""WhatsApp Cloud API connector: handshake, signature, parsing of Meta-shaped fixtures, sends against the fake.

Signatures in these tests are computed independently, the way Meta documents them
(hex HMAC-SHA256 of the raw body keyed by the App Secret), not with connectors.meta.sign.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from connectors.base import (
    BadSignature,
    ConfigError,
    Incoming,
    MalformedPayload,
    OutboundFile,
    OutboundReply,
    Template,
    UnknownAccount,
)
from connectors.whatsapp import Connector
from socialdesk.fakes import meta_api
from socialdesk.fakes.meta_api import MetaGraphAPI
from warehouse.model import Attachment, InboundMessage, StatusUpdate

FIXTURES = Path(__file__).parent / "fixtures" / "whatsapp"
PN_US = "106540352242922"
PN_BR = "106540352242923"
CUSTOMER = "16505551234"


def tables(api_url: str = "https://graph.facebook.com/v21.0") -> list[dict[str, Any]]:
    return [
        {"name": "support-us", "phone_number_id": PN_US, "display_phone_number": "15550783881",
         "app_secret": "app-secret-us", "verify_token": "verify-us", "access_token": "EAAG-token-us",
         "api_url": api_url},
        {"name": "support-br", "phone_number_id": PN_BR, "display_phone_number": "15550783882",
         "app_secret": "app-secret-br", "verify_token": "verify-br", "access_token": "EAAG-token-br",
         "api_url": api_url},
    ]


def fixture(name: str) -> bytes:
    return (FIXTURES / f"{name}.json").read_bytes()


def signed(body: bytes, secret: str = "app-secret-us") -> Incoming:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return Incoming({"X-Hub-Signature-256": signature, "Content-Type": "application/json"}, {}, body)


def parse(name: str) -> list[InboundMessage | StatusUpdate]:
    return Connector.from_config(tables()).parse(signed(fixture(name)))


def only_message(name: str) -> InboundMessage:
    [item] = parse(name)
    assert isinstance(item, InboundMessage)
    return item


@pytest.fixture
def connector() -> Connector:
    return Connector.from_config(tables())


@pytest.fixture
async def fake() -> AsyncIterator[MetaGraphAPI]:
    api = MetaGraphAPI(whatsapp={PN_US: "EAAG-token-us", PN_BR: "EAAG-token-br"})
    await api.start()
    yield api
    await api.stop()


@pytest.fixture
async def live(fake: MetaGraphAPI) -> Connector:
    return Connector.from_config(tables(fake.url + "/v21.0"))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def reply(text: str = "Yes, it comes in blue.", account: str = PN_US, **kw: Any) -> OutboundReply:
    return OutboundReply(outbox_id=1, channel="whatsapp", account=account, to=CUSTOMER, text=text, **kw)


# Handshake -------------------------------------------------------------------------------------

def test_handshake_echoes_the_challenge_for_any_configured_verify_token(connector: Connector) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "verify-br", "hub.challenge": "1158201444"}
    response = connector.handshake(Incoming({}, query, b""))
    assert response is not None and response.status == 200 and response.text == "1158201444"


def test_handshake_refuses_a_wrong_verify_token(connector: Connector) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1158201444"}
    response = connector.handshake(Incoming({}, query, b""))
    assert response is not None and response.status == 403 and "1158201444" not in (response.text or "")


def test_handshake_refuses_a_mode_other_than_subscribe(connector: Connector) -> None:
    query = {"hub.mode": "unsubscribe", "hub.verify_token": "verify-us", "hub.challenge": "1"}
    response = connector.handshake(Incoming({}, query, b""))
    assert response is not None and response.status == 403


def test_a_get_without_hub_parameters_is_not_a_handshake(connector: Connector) -> None:
    assert connector.handshake(Incoming({}, {"foo": "bar"}, b"")) is None


# Signature and routing (R1, R20) ---------------------------------------------------------------

def test_a_correctly_signed_payload_is_accepted(connector: Connector) -> None:
    connector.verify(signed(fixture("text")))


def test_the_second_account_secret_verifies_its_own_number(connector: Connector) -> None:
    body = meta_api.whatsapp_message_payload(PN_BR, "5511987654321", "Oi", "wamid.br1")
    connector.verify(signed(body, "app-secret-br"))


def test_a_wrong_signature_is_refused(connector: Connector) -> None:
    with pytest.raises(BadSignature):
        connector.verify(signed(fixture("text"), "not-the-secret"))


def test_a_signature_over_other_bytes_is_refused(connector: Connector) -> None:
    request = signed(fixture("text"))
    tampered = Incoming(request.headers, {}, request.body.replace(b"another color", b"a refund now"))
    with pytest.raises(BadSignature):
        connector.verify(tampered)


def test_a_missing_signature_is_refused(connector: Connector) -> None:
    with pytest.raises(BadSignature):
        connector.verify(Incoming({}, {}, fixture("text")))


def test_one_apps_secret_cannot_vouch_for_another_apps_number(connector: Connector) -> None:
    body = meta_api.whatsapp_message_payload(PN_BR, "5511987654321", "Oi", "wamid.br1")
    with pytest.raises(BadSignature):
        connector.verify(signed(body, "app-secret-us"))


def test_a_payload_for_an_unconfigured_number_is_unknown_account(connector: Connector) -> None:
    body = meta_api.whatsapp_message_payload("999999999999999", CUSTOMER, "hi", "wamid.x")
    with pytest.raises(UnknownAccount) as caught:
        connector.verify(signed(body))
    assert caught.value.status == 404


def test_verify_rejects_an_unreadable_signed_body_as_malformed(connector: Connector) -> None:
    with pytest.raises(MalformedPayload):
        connector.verify(signed(b"{not json"))


def test_error_messages_never_contain_the_secret(connector: Connector) -> None:
    with pytest.raises(BadSignature) as caught:
        connector.verify(signed(fixture("text"), "wrong"))
    assert "app-secret" not in str(caught.value)


# Parsing (R1, R6, B2) -----------------------------------------------------------------------------

def test_text_message_is_normalized_with_profile_name_and_phone() -> None:
    message = only_message("text")
    assert message == InboundMessage(
        "whatsapp", PN_US, CUSTOMER, "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
        datetime(2025, 6, 8, 20, 59, 43, tzinfo=UTC), "Does it come in another color?", (),
        {"name": "Sheena Nelson", "phone": "+16505551234"})


def test_sent_at_is_utc_aware() -> None:
    assert only_message("text").sent_at.utcoffset() is not None


def test_image_becomes_an_image_attachment_with_media_id_and_caption() -> None:
    assert only_message("image").attachments == (
        Attachment("image", media_id="1003383421387256", mime_type="image/jpeg", caption="This one"),)


def test_document_becomes_a_file_attachment_with_its_filename() -> None:
    assert only_message("document").attachments == (
        Attachment("file", media_id="1191324015619087", mime_type="application/pdf", filename="invoice-2291.pdf",
                   caption="My invoice"),)


def test_audio_video_and_sticker_keep_their_media_ids() -> None:
    assert only_message("audio").attachments == (
        Attachment("audio", media_id="2204155623285931", mime_type="audio/ogg; codecs=opus"),)
    assert only_message("video").attachments == (
        Attachment("video", media_id="1617312255664938", mime_type="video/mp4", caption="It rattles"),)
    assert only_message("sticker").attachments == (
        Attachment("sticker", media_id="1392870908155917", mime_type="image/webp"),)


def test_location_carries_coordinates_and_place() -> None:
    assert only_message("location").attachments == (
        Attachment("location", url="https://maps.google.com/?cid=2000000000000000000", latitude=37.4611978,
                   longitude=-122.2164385, title="Meta HQ, 1 Hacker Way, Menlo Park, CA 94025"),)


def test_reply_button_and_list_choices_become_text_messages() -> None:
    assert only_message("interactive_button").text == "Change address"
    assert only_message("interactive_list").text == "Express shipping"
    assert only_message("button").text == "Stop promotions"


def test_every_message_of_every_entry_counts_with_its_own_business_number() -> None:
    items = parse("multiple_entries")
    assert [(m.account, m.user_id, m.text, m.profile["name"]) for m in items if isinstance(m, InboundMessage)] == [
        (PN_US, CUSTOMER, "Hi, first", "Sheena Nelson"),
        (PN_US, "233241234567", "Hello from Accra", "Kofi Mensah"),
        (PN_BR, "5511987654321", "Oi, second number", "Ana Souza"),
    ]


def test_statuses_become_status_updates_for_our_message_id() -> None:
    sent_id = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI1QjJCMjY0QzQ2RjA0RjE3OEEA"
    assert parse("statuses") == [
        StatusUpdate("whatsapp", PN_US, CUSTOMER, state, datetime.fromtimestamp(ts, UTC), message_id=sent_id)
        for state, ts in (("sent", 1749416500), ("delivered", 1749416502), ("read", 1749416530))]


def test_failed_status_carries_code_and_title_as_error() -> None:
    [status] = parse("status_failed")
    assert isinstance(status, StatusUpdate)
    assert (status.status, status.error) == ("failed", "131047: Re-engagement message")


def test_unknown_message_types_are_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="connectors.whatsapp")
    assert parse("unsupported") == []
    assert parse("reaction") == []
    assert "unsupported" in caplog.text and "reaction" in caplog.text


def test_changes_other_than_messages_are_skipped() -> None:
    assert parse("template_status_update") == []


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"object":"page","entry":[]}', b'{"object":"whatsapp_business_account","entry":{}}',
    b'{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"metadata":{}}}]}]}',
])
def test_malformed_bodies_raise_malformed_payload(connector: Connector, body: bytes) -> None:
    with pytest.raises(MalformedPayload):
        connector.parse(signed(body))


def test_simulated_requests_pass_verify_and_parse(connector: Connector) -> None:
    body = meta_api.whatsapp_message_payload(PN_BR, "5511987654321", "Oi", "wamid.sim1")
    headers, query, sent = connector.simulate(PN_BR, body)
    request = Incoming(headers, query, sent)
    connector.verify(request)
    [message] = connector.parse(request)
    assert isinstance(message, InboundMessage) and (message.account, message.text) == (PN_BR, "Oi")


def test_acknowledge_answers_200(connector: Connector) -> None:
    assert connector.acknowledge(signed(fixture("text"))).status == 200


# Configuration (R8) ---------------------------------------------------------------------------------

def test_account_info_describes_the_number_without_secrets(connector: Connector) -> None:
    info = connector.account_info(PN_US)
    assert info == {"channel": "whatsapp", "account_name": "support-us", "phone_number_id": PN_US,
                    "display_phone_number": "15550783881"}
    assert connector.account_ids() == [PN_US, PN_BR]


def test_api_url_defaults_to_the_graph_api() -> None:
    table = {k: v for k, v in tables()[0].items() if k != "api_url"}
    connector = Connector.from_config([table])
    assert connector.account(PN_US).api_url == "https://graph.facebook.com/v21.0"


@pytest.mark.parametrize("key", ["phone_number_id", "display_phone_number", "app_secret", "verify_token",
                                 "access_token"])
def test_a_missing_key_names_the_account_and_the_key(key: str) -> None:
    table = {k: v for k, v in tables()[0].items() if k != key}
    with pytest.raises(ConfigError, match=rf"whatsapp.*support-us.*{key}"):
        Connector.from_config([table])


def test_an_unknown_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="acess_token"):
        Connector.from_config([{**tables()[0], "acess_token": "x"}])


def test_duplicate_names_or_numbers_are_config_errors() -> None:
    first, second = tables()
    with pytest.raises(ConfigError, match="name"):
        Connector.from_config([first, {**second, "name": first["name"]}])
    with pytest.raises(ConfigError, match="phone_number_id"):
        Connector.from_config([first, {**second, "phone_number_id": PN_US}])


def test_account_repr_hides_secrets(connector: Connector) -> None:
    assert "EAAG" not in repr(connector.account(PN_US)) and "app-secret" not in repr(connector.account(PN_US))


# Sending (R2, R20, R22, B1, B4) --------------------------------------------------------------------------

async def test_send_text_posts_the_documented_json_with_the_bearer_token(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply())
    assert result.state == "sent" and result.platform_message_id.startswith("wamid.")
    [request] = fake.sent()
    assert request.path == f"/v21.0/{PN_US}/messages"
    assert request.headers["Authorization"] == "Bearer EAAG-token-us"
    assert request.json == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": CUSTOMER,
                            "type": "text", "text": {"preview_url": False, "body": "Yes, it comes in blue."}}


async def test_a_reply_leaves_from_the_number_it_names(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    """R2/R20: two numbers configured; the reply goes out from the one the ticket came in on."""
    result = await live.send(session, reply(account=PN_BR))
    assert result.state == "sent"
    [request] = fake.sent()
    assert request.path == f"/v21.0/{PN_BR}/messages"
    assert request.headers["Authorization"] == "Bearer EAAG-token-br"


async def test_send_an_image_uploads_it_then_sends_it_by_media_id_with_the_text_as_caption(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    file = OutboundFile("blue.png", "image/png", b"\x89PNG fake")
    result = await live.send(session, reply("Here it is in blue", file=file))
    assert result.state == "sent"
    upload, message = fake.sent()
    assert upload.path == f"/v21.0/{PN_US}/media"
    assert upload.headers["Authorization"] == "Bearer EAAG-token-us"
    assert upload.form == {"messaging_product": "whatsapp", "type": "image/png", "file": b"\x89PNG fake"}
    [media_id] = fake.media
    assert fake.media[media_id].filename == "blue.png"
    assert message.json == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": CUSTOMER,
                            "type": "image", "image": {"id": media_id, "caption": "Here it is in blue"}}


async def test_send_a_pdf_goes_as_a_document_with_its_filename(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    file = OutboundFile("invoice.pdf", "application/pdf", b"%PDF-1.4")
    result = await live.send(session, reply("", file=file))
    assert result.state == "sent"
    message = fake.sent("/messages")[0].json
    assert message["type"] == "document"
    assert message["document"] == {"id": next(iter(fake.media)), "filename": "invoice.pdf"}


async def test_a_text_too_long_for_a_caption_goes_first_and_the_file_second(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    file = OutboundFile("a.pdf", "application/pdf", b"%PDF")
    result = await live.send(session, reply("x" * 1500, file=file))
    text, document = fake.sent("/messages")
    assert text.json["type"] == "text" and document.json["type"] == "document"
    assert "caption" not in document.json["document"]
    assert result.state == "sent"


async def test_a_template_is_sent_as_a_template_message(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    """B1: outside the 24-hour window only a template can reach the customer."""
    template = Template("order_update", "en_US", ("Sheena", "#2291"))
    result = await live.send(session, reply("", template=template))
    assert result.state == "sent"
    assert fake.sent()[0].json == {
        "messaging_product": "whatsapp", "to": CUSTOMER, "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Sheena"}, {"type": "text", "text": "#2291"}]}]}}


async def test_window_closed_error_is_failed_with_window_closed(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    """B1: 131047 means the 24-hour window is closed."""
    fake.fail_next(1, 400, meta_api.whatsapp_window_closed())
    result = await live.send(session, reply())
    assert (result.state, result.window_closed) == ("failed", True)
    assert "131047" in result.reason


async def test_throughput_limit_error_is_retried(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 400, meta_api.graph_error(130429, "Rate limit hit"))
    assert (await live.send(session, reply())).state == "retry"


async def test_http_429_with_retry_after_is_retried_after_that_delay(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 429, meta_api.graph_error(130429, "Rate limit hit"), headers={"Retry-After": "30"})
    result = await live.send(session, reply())
    assert (result.state, result.retry_after) == ("retry", 30.0)


async def test_http_503_is_retried(live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 503, "Service Unavailable")
    assert (await live.send(session, reply())).state == "retry"


async def test_a_rejected_token_fails_without_echoing_the_token(
        fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    connector = Connector.from_config([{**tables(fake.url)[0], "access_token": "EAAG-revoked"}])
    result = await connector.send(session, reply())
    assert result.state == "failed" and not result.window_closed
    assert "190" in result.reason and "EAAG" not in result.reason


async def test_a_failed_upload_sends_nothing(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 400, meta_api.graph_error(131053, "Media upload error"), path_contains="/media")
    result = await live.send(session, reply("see attached", file=OutboundFile("a.pdf", "application/pdf", b"%")))
    assert result.state == "failed" and "a.pdf" in result.reason
    assert fake.sent("/messages") == []


async def test_an_unconfigured_sending_number_fails(live: Connector, session: aiohttp.ClientSession) -> None:
    result = await live.send(session, reply(account="1"))
    assert result.state == "failed"


async def test_an_unreachable_api_is_retried(session: aiohttp.ClientSession) -> None:
    connector = Connector.from_config(tables("http://127.0.0.1:9"))
    assert (await connector.send(session, reply())).state == "retry"


# Media download ------------------------------------------------------------------------------------

async def test_fetch_media_looks_up_the_url_then_downloads_with_the_token(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    media_id = fake.add_media(b"JPEGDATA", "image/jpeg", media_id="1003383421387256")
    media = await live.fetch_media(session, PN_US, media_id)
    assert (media.data, media.mime_type) == (b"JPEGDATA", "image/jpeg")
    lookup, download = fake.requests
    assert lookup.path == f"/v21.0/{media_id}" and lookup.headers["Authorization"] == "Bearer EAAG-token-us"
    assert download.path == "/whatsapp_business/attachments/"
    assert download.headers["Authorization"] == "Bearer EAAG-token-us"


async def test_fetch_media_of_an_expired_id_is_a_lookup_error(
        live: Connector, session: aiohttp.ClientSession) -> None:
    with pytest.raises(LookupError, match="100"):
        await live.fetch_media(session, PN_US, "4242")


async def test_fetch_media_refuses_a_non_id(live: Connector, session: aiohttp.ClientSession) -> None:
    with pytest.raises(LookupError):
        await live.fetch_media(session, PN_US, "../me/accounts")


def test_fixtures_are_json_shaped_like_meta_sends_them() -> None:
    for path in FIXTURES.glob("*.json"):
        data = json.loads(path.read_text())
        assert data["object"] == "whatsapp_business_account", path.name
