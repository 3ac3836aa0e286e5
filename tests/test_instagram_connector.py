"""Instagram connector: handshake, signature, parsing of Meta-shaped fixtures, sends against the strict fake.

Signatures here are computed independently, as Meta documents them (hex HMAC-SHA256 of the raw body keyed
by the app secret), not with connectors.meta.sign.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
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
    UnknownAccount,
)
from connectors.instagram import Connector
from socialdesk.fakes import instagram_api
from socialdesk.fakes.instagram_api import InstagramAPI
from warehouse import clock
from warehouse.model import Attachment, InboundMessage, MessageWithdrawn, StatusUpdate

FIXTURES = Path(__file__).parent / "fixtures" / "instagram"
ACCOUNT = "17841405793187218"
OTHER = "17841405793187219"
IGSID = "6543210987654321"
TOKENS = {ACCOUNT: "IGAAT-token-shop", OTHER: "IGAAT-token-help"}
AT = datetime(2026, 1, 1, tzinfo=UTC)


def tables(api_url: str = "https://graph.instagram.com/v21.0", *, flagged: bool = False) -> list[dict[str, Any]]:
    return [
        {"name": "shop-ig", "account_id": ACCOUNT, "username": "@acme.shop", "app_secret": "app-secret-ig",
         "verify_token": "verify-ig", "access_token": TOKENS[ACCOUNT], "api_url": api_url,
         "human_agent_tag": flagged},
        {"name": "help-ig", "account_id": OTHER, "app_secret": "app-secret-ig", "verify_token": "verify-ig",
         "access_token": TOKENS[OTHER], "api_url": api_url},
    ]


def signed(body: bytes, secret: str = "app-secret-ig") -> Incoming:
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return Incoming({"X-Hub-Signature-256": signature}, {}, body)


def parse(name: str) -> list[Any]:
    request = signed((FIXTURES / f"{name}.json").read_bytes())
    connector = Connector.from_config(tables())
    connector.verify(request)
    return connector.parse(request)


def only_message(name: str) -> InboundMessage:
    [item] = parse(name)
    assert isinstance(item, InboundMessage)
    return item


@pytest.fixture
async def fake() -> AsyncIterator[InstagramAPI]:
    api = InstagramAPI(TOKENS)
    await api.start()
    yield api
    await api.stop()


def reply(text: str = "It ships tomorrow.", account: str = ACCOUNT, hours_ago: float = 1, **kw: Any) -> OutboundReply:
    wrote = clock.now() - timedelta(hours=hours_ago)
    return OutboundReply(outbox_id=7, channel="instagram", account=account, to=IGSID, text=text,
                         customer_wrote_at=wrote, **kw)


def wrote(api: InstagramAPI, account: str, hours_ago: float) -> None:
    api.customer_wrote(account, IGSID, datetime.now(UTC) - timedelta(hours=hours_ago))


# Handshake, signature, configuration ---------------------------------------------------------------

def test_handshake_echoes_the_challenge_and_refuses_a_wrong_token() -> None:
    connector = Connector.from_config(tables())
    query = {"hub.mode": "subscribe", "hub.verify_token": "verify-ig", "hub.challenge": "1158201444"}
    ok = connector.handshake(Incoming({}, query, b""))
    assert ok is not None and (ok.status, ok.text) == (200, "1158201444")
    refused = connector.handshake(Incoming({}, {**query, "hub.verify_token": "nope"}, b""))
    assert refused is not None and refused.status == 403


def test_a_wrong_signature_or_an_unknown_account_is_refused() -> None:
    connector = Connector.from_config(tables())
    body = (FIXTURES / "text.json").read_bytes()
    with pytest.raises(BadSignature):
        connector.verify(signed(body, "another-secret"))
    with pytest.raises(UnknownAccount):
        connector.verify(signed(body.replace(ACCOUNT.encode(), b"17840000000000000")))


def test_a_messenger_body_is_not_an_instagram_one() -> None:
    body = (FIXTURES / "text.json").read_bytes().replace(b'"instagram"', b'"page"')
    with pytest.raises(MalformedPayload, match="object is not 'instagram'"):
        Connector.from_config(tables()).verify(signed(body))


def test_configuration_is_checked_and_secrets_stay_out_of_errors() -> None:
    with pytest.raises(ConfigError, match="'shop-ig'.*unknown key 'page_id'"):
        Connector.from_config([{**tables()[0], "page_id": "1"}])
    with pytest.raises(ConfigError, match="'shop-ig'.*human_agent_tag") as refused:
        Connector.from_config([{**tables()[0], "human_agent_tag": "yes"}])
    assert TOKENS[ACCOUNT] not in str(refused.value)
    with pytest.raises(ConfigError, match="duplicate key 'account_id'"):
        Connector.from_config([tables()[0], {**tables()[1], "account_id": ACCOUNT}])
    assert TOKENS[ACCOUNT] not in repr(Connector.from_config(tables()).account(ACCOUNT))


def test_account_info_names_the_account_and_its_window() -> None:
    connector = Connector.from_config(tables(flagged=True))
    assert connector.account_ids() == [ACCOUNT, OTHER]
    assert connector.account_info(ACCOUNT) == {"channel": "instagram", "account_name": "shop-ig",
                                               "instagram_account_id": ACCOUNT, "username": "acme.shop",
                                               "human_agent_tag": True}
    assert connector.account_info(OTHER) == {"channel": "instagram", "account_name": "help-ig",
                                             "instagram_account_id": OTHER}


# Parsing Meta's shapes -----------------------------------------------------------------------------

def test_a_text_dm() -> None:
    message = only_message("text")
    assert (message.channel, message.account, message.user_id) == ("instagram", ACCOUNT, IGSID)
    assert message.text == "Hi! Do you ship to Belgium?" and message.profile == {"igsid": IGSID}
    assert message.sent_at == AT


def test_a_story_reply_keeps_the_story_link() -> None:
    message = only_message("story_reply")
    url = "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17986519384011234&signature=abc"
    assert message.text == f"replied to your story: {url}\nLove this!"
    assert message.channel_info["story"] == {"url": url, "id": "17986519384011234"}


def test_a_story_mention_keeps_the_story_link() -> None:
    assert only_message("story_mention").text == (
        "mentioned the account in their story: "
        "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17900000000000001&signature=def")


@pytest.mark.parametrize(("name", "text"), [
    ("share", "shared a link: https://www.instagram.com/p/C1a2b3c4d5e/"),
    ("ig_post", "shared a link: Summer collection — https://www.instagram.com/p/C9z8y7x6w5v/"),
    ("reel", "shared a reel: How we pack your orders — "
             "https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=18023456789012345"),
])
def test_shared_posts_and_reels_are_text_with_their_link(name: str, text: str) -> None:
    assert only_message(name).text == text


def test_an_image_is_an_attachment_fetched_by_its_url() -> None:
    message = only_message("image")
    assert message.attachments == (Attachment("image", url="https://lookaside.fbsbx.com/ig_messaging_cdn/"
                                                            "?asset_id=1&signature=img"),)


def test_an_echo_from_the_instagram_app_is_the_business_comment() -> None:
    message = only_message("echo")
    assert (message.user_id, message.text, message.business_origin) == (
        IGSID, "Answered from the Instagram app", "the Instagram app")


def test_an_unsent_message_is_withdrawn() -> None:
    [item] = parse("deleted")
    assert item == MessageWithdrawn("instagram", ACCOUNT, IGSID,
                                    "aWdfZAG1faXRlbToxOkl0ZW1JZDoxNzg0MTQwNTc5MzE4NzIxODozNDA", AT)


def test_a_read_receipt_names_the_message_read() -> None:
    [item] = parse("read")
    assert item == StatusUpdate("instagram", ACCOUNT, IGSID, "read", AT, message_id="aWdfZAG1faXRlbToxOm91cl9yZXBseQ")


def test_a_reaction_and_an_unsupported_message_are_kept() -> None:
    reaction = only_message("reaction")
    assert (reaction.reaction, reaction.reply_to) == ("❤️", "aWdfZAG1faXRlbToxOm91cl9yZXBseQ")
    assert only_message("unsupported").text == "sent a message Instagram does not show to apps"


# Sending -------------------------------------------------------------------------------------------

async def test_a_reply_leaves_from_its_own_account_with_its_own_token(fake: InstagramAPI,
                                                                      session: aiohttp.ClientSession) -> None:
    wrote(fake, OTHER, 1)
    connector = Connector.from_config(tables(fake.url + "/v21.0"))
    result = await connector.send(session, reply(account=OTHER))
    assert result.state == "sent" and result.platform_message_id, result.reason
    [sent] = fake.sent("/messages")
    assert sent.path == f"/v21.0/{OTHER}/messages"
    assert sent.headers["Authorization"] == f"Bearer {TOKENS[OTHER]}" and "access_token" not in sent.query
    assert sent.json == {"recipient": {"id": IGSID}, "messaging_type": "RESPONSE",
                         "message": {"text": "It ships tomorrow."}}


async def test_a_long_reply_goes_in_parts_of_at_most_1000(fake: InstagramAPI, session: aiohttp.ClientSession) -> None:
    wrote(fake, ACCOUNT, 1)
    connector = Connector.from_config(tables(fake.url + "/v21.0"))
    result = await connector.send(session, reply(("word " * 450).strip()))
    assert result.state == "sent", result.reason
    assert [len(r.json["message"]["text"]) <= 1000 for r in fake.sent("/messages")] == [True, True, True]


async def test_the_fake_refuses_a_text_over_1000_and_a_wrong_token(fake: InstagramAPI,
                                                                   session: aiohttp.ClientSession) -> None:
    wrote(fake, ACCOUNT, 1)
    url = f"{fake.url}/v21.0/{ACCOUNT}/messages"
    body = {"recipient": {"id": IGSID}, "messaging_type": "RESPONSE", "message": {"text": "x" * 1001}}
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {TOKENS[ACCOUNT]}"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == 100
    async with session.post(url, json=body, headers={"Authorization": "Bearer nope"}) as resp:
        assert resp.status == 401 and (await resp.json())["error"]["code"] == 190


async def test_at_30_hours_a_flagged_account_answers_with_human_agent(fake: InstagramAPI,
                                                                       session: aiohttp.ClientSession) -> None:
    wrote(fake, ACCOUNT, 30)
    fake.human_agent_pages.add(ACCOUNT)
    connector = Connector.from_config(tables(fake.url + "/v21.0", flagged=True))
    result = await connector.send(session, reply(hours_ago=30))
    assert result.state == "sent", result.reason
    [sent] = fake.sent("/messages")
    assert (sent.json["messaging_type"], sent.json["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


async def test_at_30_hours_without_the_flag_the_window_is_named_and_no_token_shows(
        fake: InstagramAPI, session: aiohttp.ClientSession) -> None:
    wrote(fake, ACCOUNT, 30)
    connector = Connector.from_config(tables(fake.url + "/v21.0"))
    result = await connector.send(session, reply(hours_ago=30))
    assert (result.state, result.window_closed) == ("failed", True)
    assert result.reason.startswith("Instagram refused the reply: the customer last wrote 30 hours ago, outside "
                                    "Instagram's 24-hour window (an account with Meta's Human Agent permission")
    assert "2534022" in result.reason and TOKENS[ACCOUNT] not in result.reason


async def test_the_tag_without_meta_s_permission_says_so(fake: InstagramAPI, session: aiohttp.ClientSession) -> None:
    wrote(fake, ACCOUNT, 30)  # the account says it may, Meta never granted it
    connector = Connector.from_config(tables(fake.url + "/v21.0", flagged=True))
    result = await connector.send(session, reply(hours_ago=30))
    assert result.state == "failed" and "not allowed to use the HUMAN_AGENT tag" in result.reason
    assert "set human_agent_tag = false for account 'shop-ig'" in result.reason


@pytest.mark.parametrize(("body", "state"), [
    (instagram_api.not_available(), "failed"),
    (instagram_api.graph_error(613, "(#613) Calls to this api have exceeded the rate limit."), "retry"),
    (instagram_api.graph_error(100, "(#100) Invalid parameter"), "failed"),
])
async def test_meta_errors_are_permanent_or_transient(fake: InstagramAPI, session: aiohttp.ClientSession,
                                                      body: dict[str, Any], state: str) -> None:
    wrote(fake, ACCOUNT, 1)
    fake.fail_next(1, 400, body)
    result = await Connector.from_config(tables(fake.url + "/v21.0")).send(session, reply())
    assert result.state == state and result.reason.startswith("Instagram error")
    assert TOKENS[ACCOUNT] not in result.reason


async def test_a_file_is_refused_before_anything_is_sent(fake: InstagramAPI, session: aiohttp.ClientSession) -> None:
    wrote(fake, ACCOUNT, 1)
    file = OutboundFile("invoice.pdf", "application/pdf", b"%PDF")
    result = await Connector.from_config(tables(fake.url + "/v21.0")).send(session, reply("Here", file=file))
    assert result.state == "failed" and "public HTTPS URL" in result.reason
    assert fake.sent("/messages") == []
