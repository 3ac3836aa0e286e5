"""WhatsApp Cloud API connector: handshake, signature, parsing of Meta-shaped fixtures, sends against the fake.

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
from connectors.whatsapp import Connector
from socialdesk.fakes import meta_api
from socialdesk.fakes.meta_api import MetaGraphAPI
from warehouse.model import Attachment, InboundMessage, MessageEdit, MessageWithdrawn, StatusUpdate

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


def parse(name: str) -> list[Any]:
    return Connector.from_config(tables()).parse(signed(fixture(name)))


def parse_body(body: bytes) -> list[Any]:
    return Connector.from_config(tables()).parse(signed(body))


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
    for number in (PN_US, PN_BR):  # the customer wrote a minute ago: the 24-hour window is open
        api.customer_wrote(number, CUSTOMER, datetime.now(UTC) - timedelta(minutes=1))
    yield api
    await api.stop()


@pytest.fixture
async def live(fake: MetaGraphAPI) -> Connector:
    return Connector.from_config(tables(fake.url + "/v21.0"))


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
    assert only_message("interactive_list").text == "Express shipping (1-2 business days)"
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
    pricing = {"billable": False, "pricing_model": "PMP", "category": "service", "type": "free_customer_service"}
    assert parse("statuses") == [
        StatusUpdate("whatsapp", PN_US, CUSTOMER, state, datetime.fromtimestamp(ts, UTC), message_id=sent_id,
                     pricing=priced)
        for state, ts, priced in (("sent", 1749416500, pricing), ("delivered", 1749416502, pricing),
                                  ("read", 1749416530, None))]


def test_failed_status_carries_code_and_title_as_error() -> None:
    [status] = parse("status_failed")
    assert isinstance(status, StatusUpdate)
    assert (status.status, status.error) == ("failed", "131047: Re-engagement message")


def test_an_unsupported_message_is_kept_as_a_readable_placeholder() -> None:
    """Issue 12: every customer message kept, never silently dropped."""
    assert only_message("unsupported").text == "sent an unsupported message (Message type unknown)"
    body = meta_api.whatsapp_message_payload(PN_US, CUSTOMER, message_id="wamid.poll", content={
        "type": "unsupported", "unsupported": {"type": "poll"}})
    [message] = parse_body(body)
    assert message.text == "sent an unsupported message (type: poll)"


def test_a_message_of_a_kind_we_do_not_know_is_kept_as_a_placeholder_naming_it() -> None:
    body = meta_api.whatsapp_message_payload(PN_US, CUSTOMER, message_id="wamid.new", content={
        "type": "hologram", "hologram": {"id": "1"}})
    [message] = parse_body(body)
    assert message.text == "sent a hologram message, which SocialDesk cannot show yet"


def test_a_reaction_names_the_message_it_reacts_to() -> None:
    message = only_message("reaction")
    assert (message.text, message.reaction, message.reply_to) == (
        "", "👍", "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI1QjJCMjY0QzQ2RjA0RjE3OEEA")


# Customers without a phone number: business-scoped user ids (issue 12, R4, R6, R26) ----------------

BSUID = "US.13491208655302741918"


def test_a_bsuid_only_customer_is_known_by_the_bsuid_with_the_username_and_no_phone() -> None:
    body = meta_api.whatsapp_message_payload(PN_US, None, "Hello", "wamid.b1", name="Kerry", user_id=BSUID,
                                             username="kfisher")
    [message] = parse_body(body)
    assert (message.user_id, message.aliases) == (BSUID, ())
    assert message.profile == {"name": "Kerry", "username": "kfisher"}


def test_a_customer_with_both_ids_is_known_by_the_bsuid_and_keeps_the_phone_as_alias() -> None:
    body = meta_api.whatsapp_message_payload(PN_US, CUSTOMER, "Hello", "wamid.b2", name="Kerry", user_id=BSUID)
    [message] = parse_body(body)
    assert (message.user_id, message.aliases) == (BSUID, (CUSTOMER,))
    assert message.profile["phone"] == f"+{CUSTOMER}"


def test_the_bsuid_of_the_contact_counts_when_the_message_names_only_the_phone() -> None:
    """pywa's fixtures: `contacts[].user_id` beside `wa_id`, the message with `from` only."""
    body = json.loads(meta_api.whatsapp_message_payload(PN_US, CUSTOMER, "Hi", "wamid.b3"))
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"][0].update({"user_id": BSUID, "parent_user_id": "US.ENT.11815799212886844830"})
    [message] = parse_body(json.dumps(body).encode())
    assert (message.user_id, message.aliases) == (BSUID, (CUSTOMER,))
    assert message.profile["parent_user_id"] == "US.ENT.11815799212886844830"


def test_a_message_naming_nobody_is_skipped_alone_and_the_rest_is_kept() -> None:
    body = json.loads(meta_api.whatsapp_message_payload(PN_US, CUSTOMER, "Kept", "wamid.ok"))
    messages = body["entry"][0]["changes"][0]["value"]["messages"]
    messages.insert(0, {"id": "wamid.nobody", "timestamp": "1749416383", "type": "text", "text": {"body": "?"}})
    skipped, kept = parse_body(json.dumps(body).encode())
    assert isinstance(skipped, Skipped) and "from" in skipped.what
    assert isinstance(kept, InboundMessage) and kept.text == "Kept"


# Every customer message kept (issue 12) ------------------------------------------------------------

def content(kind: str, value: Any, **extra: Any) -> InboundMessage:
    [message] = parse_body(meta_api.whatsapp_message_payload(PN_US, CUSTOMER, message_id=f"wamid.{kind}",
                                                             content={"type": kind, kind: value, **extra}))
    assert isinstance(message, InboundMessage)
    return message


def test_shared_contacts_read_as_names_and_numbers() -> None:
    message = content("contacts", [
        {"name": {"first_name": "Chandler", "last_name": "Bing", "formatted_name": "Chandler Bing"},
         "phones": [{"phone": "+1 555-555-5555", "type": "CELL"}], "emails": [{"email": "c@bing.example"}]},
        {"name": {"first_name": "Monica"}, "phones": [{"phone": "+1 666-666-6666", "type": "HOME"}]}])
    assert message.text == ("📇 shared contacts:\nChandler Bing: +1 555-555-5555 (CELL), c@bing.example\n"
                            "Monica: +1 666-666-6666 (HOME)")


def test_an_order_reads_as_its_items_and_total() -> None:
    message = content("order", {"catalog_id": "354160437058781", "text": "for tonight", "product_items": [
        {"product_retailer_id": "HAMBURGER", "quantity": 3, "item_price": 30, "currency": "ILS"},
        {"product_retailer_id": "SODA", "quantity": 2, "item_price": 10, "currency": "ILS"}]})
    assert message.text == ("🛒 sent an order:\nfor tonight\n3 × HAMBURGER at 30 ILS\n"
                            "2 × SODA at 10 ILS\nTotal: 110 ILS")


def test_a_flow_reply_reads_as_its_answers_without_the_flow_token() -> None:
    message = content("interactive", {"type": "nfm_reply", "nfm_reply": {
        "name": "flow", "body": "Sent", "response_json": '{"flow_token": "t0k3n", "first_name": "Bob", "age": "32"}'}})
    assert message.text == "Sent\nfirst_name: Bob\nage: 32"


def test_an_interactive_message_without_its_object_is_skipped_alone() -> None:
    body = json.loads(meta_api.whatsapp_message_payload(PN_US, CUSTOMER, "Kept", "wamid.ok"))
    messages = body["entry"][0]["changes"][0]["value"]["messages"]
    messages.append({"from": CUSTOMER, "id": "wamid.odd", "timestamp": "1700505494", "type": "interactive"})
    kept, skipped = parse_body(json.dumps(body).encode())
    assert kept.text == "Kept"
    assert skipped == Skipped("whatsapp interactive message: interactive message without its content")


def test_a_removed_reaction_has_an_empty_emoji() -> None:
    message = content("reaction", {"message_id": "wamid.original"})
    assert (message.reaction, message.reply_to) == ("", "wamid.original")


def test_an_edit_is_a_message_edit_of_the_original_with_the_new_content() -> None:
    body = meta_api.whatsapp_message_payload(PN_US, CUSTOMER, message_id="wamid.edit1", timestamp=1749854575,
                                             content={"type": "edit", "edit": {
                                                 "original_message_id": "wamid.original",
                                                 "message": {"type": "text", "text": {"body": "3 rue Blanche"}}}})
    assert parse_body(body) == [MessageEdit("whatsapp", PN_US, CUSTOMER, "wamid.original", "wamid.edit1",
                                            datetime.fromtimestamp(1749854575, UTC), "3 rue Blanche")]


def test_a_revoked_message_is_withdrawn() -> None:
    body = meta_api.whatsapp_message_payload(PN_US, CUSTOMER, message_id="wamid.revoke1", timestamp=1697043223,
                                             content={"type": "revoke",
                                                      "revoke": {"original_message_id": "wamid.original"}})
    assert parse_body(body) == [MessageWithdrawn("whatsapp", PN_US, CUSTOMER, "wamid.original",
                                                 datetime.fromtimestamp(1697043223, UTC))]


def test_an_ad_referral_goes_into_the_channel_info() -> None:
    referral = {"source_type": "ad", "source_id": "120200", "headline": "Winter sale", "ctwa_clid": "CLID"}
    message = content("text", {"body": "Is this on sale?"}, referral=referral)
    assert message.channel_info == {"referral": referral}


def test_a_quoted_reply_names_the_message_it_answers() -> None:
    message = content("text", {"body": "yes"}, context={"from": "15550783881", "id": "wamid.ours"})
    assert message.reply_to == "wamid.ours"


def test_system_events_are_not_messages() -> None:
    body = meta_api.whatsapp_message_payload(PN_US, CUSTOMER, message_id="wamid.sys", content={
        "type": "system", "system": {"body": "User A changed number", "type": "user_changed_number"}})
    assert parse_body(body) == []


# What the business sends from the WhatsApp Business app (coexistence, issue 12) ---------------------

def test_a_coexistence_echo_is_the_business_message_to_the_customer() -> None:
    body = meta_api.whatsapp_echo_payload(PN_US, CUSTOMER, "We are on it", "wamid.app1", to_user_id=BSUID,
                                          timestamp=1697043223)
    [message] = parse_body(body)
    assert (message.user_id, message.aliases, message.text, message.business_origin) == (
        BSUID, (CUSTOMER,), "We are on it", "the WhatsApp Business app")


def test_an_echo_with_the_business_number_in_to_names_the_customer_in_from() -> None:
    """pywa's outgoing edit and delete: `from` the customer, `to` the business's display number."""
    body = json.loads(meta_api.whatsapp_echo_payload(PN_US, "15550783881", "x", "wamid.app2"))
    echo = body["entry"][0]["changes"][0]["value"]["message_echoes"][0]
    echo.update({"from": CUSTOMER, "type": "revoke", "revoke": {"original_message_id": "wamid.zz"}})
    [message] = parse_body(json.dumps(body).encode())
    assert (message.user_id, message.text, message.business_origin) == (
        CUSTOMER, "🗑️ deleted a message for everyone", "the WhatsApp Business app")


# Receipts (B2) and pricing (issue 12) ----------------------------------------------------------------

def test_played_and_priced_statuses() -> None:
    pricing = {"billable": True, "pricing_model": "PMP", "category": "utility"}
    [status] = parse_body(meta_api.whatsapp_status_payload(PN_US, CUSTOMER, "wamid.voice", "played",
                                                           pricing=pricing))
    assert (status.status, status.pricing) == ("played", pricing)


def test_a_status_for_a_customer_without_a_phone_names_the_bsuid() -> None:
    body = json.loads(meta_api.whatsapp_status_payload(PN_US, CUSTOMER, "wamid.x", "delivered"))
    item = body["entry"][0]["changes"][0]["value"]["statuses"][0]
    del item["recipient_id"]
    item["recipient_user_id"] = BSUID
    [status] = parse_body(json.dumps(body).encode())
    assert status.user_id == BSUID


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
                            "type": "text", "text": {"preview_url": False, "body": "Yes, it comes in blue."},
                            "biz_opaque_callback_data": "socialdesk:outbox:1"}


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
                            "type": "image", "image": {"id": media_id, "caption": "Here it is in blue"},
                            "biz_opaque_callback_data": "socialdesk:outbox:1"}


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
    fake.approve_template("order_update", 2)
    result = await live.send(session, reply("", template=template))
    assert result.state == "sent"
    assert fake.sent()[0].json == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": CUSTOMER, "type": "template",
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


async def test_a_reply_to_a_bsuid_goes_in_recipient_and_the_strict_fake_takes_it(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    """Issue 12: replies go to the id the customer wrote from, in the form the Cloud API documents."""
    fake.customer_wrote(PN_US, BSUID, datetime.now(UTC))
    result = await live.send(session, OutboundReply(1, "whatsapp", PN_US, BSUID, "Hello Kerry"))
    assert result.state == "sent"
    [request] = fake.sent()
    assert request.json == {"messaging_product": "whatsapp", "recipient_type": "individual", "recipient": BSUID,
                            "type": "text", "text": {"preview_url": False, "body": "Hello Kerry"},
                            "biz_opaque_callback_data": "socialdesk:outbox:1"}


async def test_a_bsuid_in_to_is_refused_by_the_strict_fake(fake: MetaGraphAPI, session: aiohttp.ClientSession,
                                                           live: Connector) -> None:
    fake.customer_wrote(PN_US, BSUID, datetime.now(UTC))
    async with session.post(f"{fake.url}/v21.0/{PN_US}/messages", headers={"Authorization": "Bearer EAAG-token-us"},
                            json={"messaging_product": "whatsapp", "to": BSUID, "type": "text",
                                  "text": {"body": "hi"}}) as resp:
        body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == 131009


async def whatsapp_post(fake: MetaGraphAPI, session: aiohttp.ClientSession, body: dict[str, Any]) -> tuple[int, Any]:
    async with session.post(f"{fake.url}/v21.0/{PN_US}/messages", headers={"Authorization": "Bearer EAAG-token-us"},
                            json={"messaging_product": "whatsapp", "type": "text", **body}) as resp:
        return resp.status, await resp.json()


async def test_the_strict_fake_refuses_a_text_over_4096_characters_and_a_malformed_recipient(
        fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    status, body = await whatsapp_post(fake, session, {"to": CUSTOMER, "text": {"body": "x" * 4097}})
    assert (status, body["error"]["code"]) == (400, 100)
    assert body["error"]["message"] == "(#100) Param text['body'] must be at most 4096 characters long."
    status, body = await whatsapp_post(fake, session, {"recipient": "not a bsuid", "text": {"body": "hi"}})
    assert (status, body["error"]["code"], body["error"]["type"]) == (400, 131009, "OAuthException")
    assert body["error"]["error_data"]["messaging_product"] == "whatsapp" and body["error"]["fbtrace_id"]


async def test_a_text_longer_than_one_message_goes_as_several_in_order(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    paragraphs = [f"Paragraph {n}: " + "word " * 400 for n in range(5)]  # about 2,000 characters each
    result = await live.send(session, reply("\n\n".join(paragraphs)))
    bodies = [r.json["text"]["body"] for r in fake.sent("/messages")]
    assert result.state == "sent" and result.platform_message_id == fake.message_ids[-1]
    assert len(bodies) == 3 and all(len(b) <= 4096 for b in bodies)
    assert " ".join(" ".join(bodies).split()) == " ".join(" ".join(paragraphs).split())


async def test_when_a_later_part_fails_the_reply_fails_saying_what_the_customer_received(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch) -> None:
    """Retrying the whole reply would send part 1 twice, so a failed later part is final."""
    answer = fake._whatsapp_message

    def refuse_the_second_part(node: str, body: Any) -> web.Response:
        if fake.message_ids:  # part 1 went out
            return web.json_response(meta_api.whatsapp_window_closed(), status=400)
        return answer(node, body)

    monkeypatch.setattr(fake, "_whatsapp_message", refuse_the_second_part)
    result = await live.send(session, reply("z" * 5000))
    assert result.state == "failed" and result.window_closed
    assert result.reason.startswith(f"part 1 of 2 of the text was sent (message {fake.message_ids[0]}) but part 2 "
                                    "of 2 of the text was not: WhatsApp error 131047")


async def test_when_the_first_part_meets_an_outage_the_whole_reply_is_retried(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.fail_next(1, 503, "down", path_contains="/messages")
    result = await live.send(session, reply("z" * 5000))
    assert result.state == "retry" and len(fake.sent("/messages")) == 1


async def test_the_strict_fake_refuses_a_text_outside_the_window_and_the_agent_reads_why(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    """R22, B1: 131047 from the platform itself, a permanent failure marked window_closed."""
    fake.customers.clear()
    fake.customer_wrote(PN_US, CUSTOMER, datetime.now(UTC) - timedelta(hours=25))
    result = await live.send(session, reply())
    assert (result.state, result.window_closed) == ("failed", True)
    assert "24 hours" in result.reason and "template" in result.reason and "131047" in result.reason


async def test_a_template_goes_out_of_the_window_but_a_wrong_parameter_count_is_refused(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.customers.clear()
    fake.approve_template("order_update", 1)
    ok = await live.send(session, reply("", template=Template("order_update", "en_US", ("#2291",))))
    wrong = await live.send(session, reply("", template=Template("order_update", "en_US", ("a", "b"))))
    unknown = await live.send(session, reply("", template=Template("no_such_template")))
    assert ok.state == "sent"
    assert wrong.state == "failed" and "132000" in wrong.reason and "expected number of params (1)" in wrong.reason
    assert unknown.state == "failed" and "132001" in unknown.reason


async def test_past_the_numbers_throughput_the_fake_answers_130429_and_the_reply_is_retried(
        live: Connector, fake: MetaGraphAPI, session: aiohttp.ClientSession) -> None:
    fake.monotonic = lambda: 100.0  # every send in the same instant
    fake.rate_per_second = 3
    results = [await live.send(session, reply(f"n{i}")) for i in range(4)]
    assert [r.state for r in results] == ["sent", "sent", "sent", "retry"]
    assert "130429" in results[-1].reason
    fake.monotonic = lambda: 101.5  # a second later the number may send again
    assert (await live.send(session, reply("again"))).state == "sent"


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
