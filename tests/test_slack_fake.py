"""The fake Slack holds the app to Slack's contract (reference/slack.md): it refuses what Slack refuses,
with Slack's bodies. slack_sdk's models serve as an oracle where they check the same rule.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError, SlackObjectFormationError
from slack_sdk.models.blocks import Block, Option
from slack_sdk.web.async_client import AsyncWebClient

from socialdesk.fakes import slack_api as fake
from socialdesk.fakes.slack_api import SlackAPI, check_blocks, check_view, check_view_answer
from tests.slack_support import VirtualClock

AGENT = "U0AGENT1"
OTHER = "U0OTHER"


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def api(clock: VirtualClock) -> AsyncIterator[SlackAPI]:
    api = SlackAPI(clock=clock)
    await api.start()
    api.add_user(AGENT, "Alice Agent")
    api.add_user(OTHER, "Olga Other")
    api.add_channel("C0TRIAGE", "triage", members=[AGENT])
    yield api
    await api.stop()


@pytest.fixture
def client(api: SlackAPI) -> AsyncWebClient:
    return AsyncWebClient(token=fake.BOT_TOKEN, base_url=api.api_url)


async def refused(call: Any) -> dict[str, Any]:
    with pytest.raises(SlackApiError) as caught:
        await call
    return dict(caught.value.response.data)


def section(text: str = "hi", **kw: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **kw}


def button(text: str = "Go", action_id: str = "go", **kw: Any) -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": action_id, **kw}


def option(text: str = "One", value: str = "1") -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value}


def select(options: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"type": "static_select", "action_id": "pick", "placeholder": {"type": "plain_text", "text": "Pick"},
            "options": options, **kw}


def text_input(**kw: Any) -> dict[str, Any]:
    return {"type": "input", "block_id": "in", "label": {"type": "plain_text", "text": "Text"},
            "element": {"type": "plain_text_input", "action_id": "text", **kw}}


def modal(blocks: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return {"type": "modal", "title": {"type": "plain_text", "text": "Title"},
            "submit": {"type": "plain_text", "text": "Send"}, "blocks": blocks, **kw}


# -- Block Kit: each rule, at its limit and one past it -------------------------------------------

# (what is over the limit, the block within it, the block past it, the pointer Slack names)
RULES: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("section text 3,000", section("x" * 3000), section("x" * 3001), "/blocks/0/text/text"),
    ("section fields 10", {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 10},
     {"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}, "/blocks/0/fields"),
    ("a field 2,000", {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2000}]},
     {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}, "/blocks/0/fields/0/text"),
    ("header 150", {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
     {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}, "/blocks/0/text/text"),
    ("context 10 elements", {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10},
     {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}, "/blocks/0/elements"),
    ("actions 25 elements", {"type": "actions", "elements": [button(action_id=f"a{i}") for i in range(25)]},
     {"type": "actions", "elements": [button(action_id=f"a{i}") for i in range(26)]}, "/blocks/0/elements"),
    ("button text 75", {"type": "actions", "elements": [button("b" * 75)]},
     {"type": "actions", "elements": [button("b" * 76)]}, "/blocks/0/elements/0/text/text"),
    ("button value 2,000", {"type": "actions", "elements": [button(value="v" * 2000)]},
     {"type": "actions", "elements": [button(value="v" * 2001)]}, "/blocks/0/elements/0/value"),
    ("button url 3,000", {"type": "actions", "elements": [button(url="https://x/" + "u" * 2990)]},
     {"type": "actions", "elements": [button(url="https://x/" + "u" * 2991)]}, "/blocks/0/elements/0/url"),
    ("button style", {"type": "actions", "elements": [button(style="danger")]},
     {"type": "actions", "elements": [button(style="secondary")]}, "/blocks/0/elements/0/style"),
    ("action_id 255", {"type": "actions", "elements": [button(action_id="a" * 255)]},
     {"type": "actions", "elements": [button(action_id="a" * 256)]}, "/blocks/0/elements/0/action_id"),
    ("block_id 255", section(block_id="b" * 255), section(block_id="b" * 256), "/blocks/0/block_id"),
    ("select 100 options", {"type": "actions", "elements": [select([option(value=str(i)) for i in range(100)])]},
     {"type": "actions", "elements": [select([option(value=str(i)) for i in range(101)])]},
     "/blocks/0/elements/0/options"),
    ("option text 75", {"type": "actions", "elements": [select([option("o" * 75)])]},
     {"type": "actions", "elements": [select([option("o" * 76)])]}, "/blocks/0/elements/0/options/0/text/text"),
    ("option value 150", {"type": "actions", "elements": [select([option(value="v" * 150)])]},
     {"type": "actions", "elements": [select([option(value="v" * 151)])]},
     "/blocks/0/elements/0/options/0/value"),
    ("placeholder 150", {"type": "actions", "elements": [select([option()], placeholder={
        "type": "plain_text", "text": "p" * 150})]},
     {"type": "actions", "elements": [select([option()], placeholder={"type": "plain_text", "text": "p" * 151})]},
     "/blocks/0/elements/0/placeholder/text"),
    ("initial_option among the options", {"type": "actions", "elements": [select([option()],
                                                                                 initial_option=option())]},
     {"type": "actions", "elements": [select([option()], initial_option=option("Two", "2"))]},
     "/blocks/0/elements/0/initial_option"),
    ("overflow 2-5 options", {"type": "actions", "elements": [{"type": "overflow", "action_id": "o", "options": [
        option(value=str(i)) for i in range(5)]}]},
     {"type": "actions", "elements": [{"type": "overflow", "action_id": "o", "options": [
         option(value=str(i)) for i in range(6)]}]}, "/blocks/0/elements/0/options"),
]


@pytest.mark.parametrize("name, within, past, pointer", RULES, ids=[r[0] for r in RULES])
def test_each_block_kit_limit_is_slacks(name: str, within: dict[str, Any], past: dict[str, Any],
                                        pointer: str) -> None:
    assert check_blocks([within]) == []
    errors = check_blocks([past])
    assert errors and any(f"[json-pointer:{pointer}]" in e for e in errors), errors


ORACLE = [r for r in RULES if r[0] in ("section text 3,000", "section fields 10", "header 150",
                                       "context 10 elements", "actions 25 elements", "button text 75",
                                       "action_id 255", "block_id 255", "select 100 options", "option text 75",
                                       "option value 150", "placeholder 150")]


def sdk_validate(raw: dict[str, Any]) -> None:
    """slack_sdk's own checks of a block and of the elements in it (it checks those one by one)."""
    block = Block.parse(raw)
    assert block is not None
    block.validate_json()
    for element in [*(getattr(block, "elements", None) or []), getattr(block, "accessory", None)]:
        if element is not None and hasattr(element, "validate_json"):
            element.validate_json()
            for opt in getattr(element, "options", None) or []:
                (Option(**opt) if isinstance(opt, dict) else opt).validate_json()


@pytest.mark.parametrize("name, within, past, pointer", ORACLE, ids=[r[0] for r in ORACLE])
def test_slack_sdk_agrees_where_it_checks_the_same_rule(name: str, within: dict[str, Any], past: dict[str, Any],
                                                        pointer: str) -> None:
    sdk_validate(within)
    with pytest.raises(SlackObjectFormationError):
        sdk_validate(past)


def test_action_ids_are_unique_within_their_block_and_block_ids_within_the_message() -> None:
    """slack_sdk checks neither: the fake does (design.md)."""
    twice = {"type": "actions", "elements": [button(action_id="tab"), button(action_id="tab")]}
    Block.parse(twice).validate_json()  # type: ignore[union-attr]  # slack_sdk lets it through
    assert any("json-pointer:/blocks/0/elements/1/action_id" in e for e in check_blocks([twice]))
    apart = [{"type": "actions", "elements": [button(action_id="tab")]},
             {"type": "actions", "elements": [button(action_id="tab")]}]
    assert check_blocks(apart) == []  # the same action_id in two blocks is fine
    assert any("/blocks/1/block_id" in e for e in check_blocks([section(block_id="x"), section(block_id="x")]))


@pytest.mark.parametrize("element, pointer", [
    ({"max_length": 3001}, "/element/max_length"),
    ({"max_length": 0}, "/element/max_length"),
    ({"min_length": 3001}, "/element/min_length"),
    ({"min_length": 10, "max_length": 5}, "/element/min_length"),
    ({"max_length": 5, "initial_value": "too long"}, "/element/initial_value"),
])
def test_plain_text_input_lengths_stay_within_0_to_3000(element: dict[str, Any], pointer: str) -> None:
    from slack_sdk.models.blocks import InputBlock
    InputBlock(**{k: v for k, v in text_input(**element).items() if k != "type"}).validate_json()  # sdk: fine
    error, messages = check_view(modal([text_input(**element)]))
    assert error == "invalid_arguments" and any(f"[json-pointer:/view/blocks/0{pointer}]" in m for m in messages)
    assert check_view(modal([text_input(max_length=3000, min_length=0)])) == ("", [])


def test_surfaces_have_their_own_block_counts_and_types() -> None:
    assert check_blocks([section()] * 50) == []
    assert any("no more than 50 items" in e for e in check_blocks([section()] * 51))
    assert check_view({"type": "home", "blocks": [section()] * 100}) == ("", [])
    assert check_view({"type": "home", "blocks": [section()] * 101})[0] == "invalid_arguments"
    assert check_view(modal([section()] * 100)) == ("", [])
    assert any("unsupported type: input" in e for e in check_blocks([text_input()]))  # no inputs in messages
    file_input = {"type": "input", "block_id": "f", "label": {"type": "plain_text", "text": "File"},
                  "element": {"type": "file_input", "action_id": "f", "max_files": 11}}
    assert any("/view/blocks/0/element/max_files" in m for m in check_view(modal([file_input]))[1])


def test_modal_title_submit_close_metadata_and_size() -> None:
    assert any("/view/title/text" in m for m in check_view(modal([], title={"type": "plain_text",
                                                                              "text": "t" * 25}))[1])
    no_submit = {"type": "modal", "title": {"type": "plain_text", "text": "T"}, "blocks": [text_input()]}
    assert any("must define `submit`" in m for m in check_view(no_submit)[1])
    assert any("/view/private_metadata" in m for m in check_view(modal([], private_metadata="m" * 3001))[1])
    big = modal([section("x" * 3000) for _ in range(90)])  # 100 blocks of text would pass the block rules
    assert check_view(big) == ("view_too_large", [])


def test_answers_to_a_submission_name_only_input_blocks_of_the_view() -> None:
    view = modal([section(block_id="intro"), text_input()])
    assert check_view_answer(view, {}) == []
    assert check_view_answer(view, {"response_action": "errors", "errors": {"in": "Write something"}}) == []
    assert check_view_answer(view, {"response_action": "errors", "errors": {"intro": "No"}})
    assert check_view_answer(view, {"response_action": "update", "view": modal([section("x" * 3001)])})


# -- over HTTP, with Slack's bodies -----------------------------------------------------------------

async def test_invalid_blocks_are_refused_with_slacks_body(api: SlackAPI) -> None:
    async with aiohttp.ClientSession() as http, http.post(
            api.api_url + "chat.postMessage", headers={"Authorization": f"Bearer {fake.BOT_TOKEN}"},
            json={"channel": "C0TRIAGE", "text": "x", "blocks": [section("x" * 3001)]}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["ok"] is False and body["error"] == "invalid_blocks"
    assert body["response_metadata"]["messages"] == [
        "[ERROR] must be less than 3001 characters [json-pointer:/blocks/0/text/text]"]
    assert [r.error for r in api.unexpected()] == ["invalid_blocks"]


async def test_views_are_refused_with_invalid_arguments_naming_the_view(api: SlackAPI,
                                                                        client: AsyncWebClient) -> None:
    body = await refused(client.views_open(trigger_id=api.issue_trigger(), view=modal([text_input(max_length=4096)])))
    assert body["error"] == "invalid_arguments"
    assert "[ERROR] must be between 1 and 3000 [json-pointer:/view/blocks/0/element/max_length]" in \
        body["response_metadata"]["messages"]
    too_big = modal([section("x" * 3000) for _ in range(90)])
    assert (await refused(client.views_open(trigger_id=api.issue_trigger(), view=too_big)))["error"] == \
        "view_too_large"


async def test_a_trigger_works_once_and_for_three_seconds(api: SlackAPI, client: AsyncWebClient,
                                                          clock: VirtualClock) -> None:
    trigger = api.issue_trigger()
    await client.views_open(trigger_id=trigger, view=modal([section()]))
    assert (await refused(client.views_open(trigger_id=trigger, view=modal([section()]))))["error"] == \
        "exchanged_trigger_id"
    late = api.issue_trigger()
    clock.advance(3.01)
    assert (await refused(client.views_open(trigger_id=late, view=modal([section()]))))["error"] == \
        "expired_trigger_id"
    assert (await refused(client.views_open(trigger_id="made.up", view=modal([section()]))))["error"] == \
        "invalid_trigger_id"


async def test_the_request_helpers_hand_out_triggers_the_fake_knows(api: SlackAPI, client: AsyncWebClient,
                                                                    clock: VirtualClock) -> None:
    payload = fake.block_actions(AGENT, {"action_id": "x"}, api=api)
    clock.advance(2.9)
    await client.views_open(trigger_id=payload["trigger_id"], view=modal([section()]))
    body, _ = fake.command_body("/social", "", AGENT, response_url=api.response_url(), api=api)
    trigger = dict(pair.split("=", 1) for pair in body.split("&"))["trigger_id"]
    clock.advance(4)
    assert (await refused(client.views_open(trigger_id=trigger, view=modal([section()]))))["error"] == \
        "expired_trigger_id"


async def test_views_update_needs_a_known_view_and_a_fresh_hash(api: SlackAPI, client: AsyncWebClient) -> None:
    opened = (await client.views_open(trigger_id=api.issue_trigger(), view=modal([section()])))["view"]
    updated = (await client.views_update(view_id=opened["id"], hash=opened["hash"], view=modal([section("2")])))
    assert updated["view"]["id"] == opened["id"] and updated["view"]["hash"] != opened["hash"]
    assert (await refused(client.views_update(view_id=opened["id"], hash=opened["hash"],
                                              view=modal([section("3")]))))["error"] == "hash_conflict"
    assert (await refused(client.views_update(view_id="V0NOPE", view=modal([section()]))))["error"] == "not_found"


async def test_channels_members_and_messages(api: SlackAPI, client: AsyncWebClient) -> None:
    api.add_channel("C0OUTSIDE", "outside", bot=False)
    api.add_channel("G0SECRET", "secret", private=True, bot=False)
    api.add_channel("C0OLD", "old", archived=True)
    for channel, error in (("C0OUTSIDE", "not_in_channel"), ("G0SECRET", "channel_not_found"),
                           ("C0NOWHERE", "channel_not_found"), ("C0OLD", "is_archived")):
        assert (await refused(client.chat_postMessage(channel=channel, text="hi")))["error"] == error
    long_text = "x" * 40_001
    assert (await refused(client.chat_postMessage(channel="C0TRIAGE", text=long_text)))["error"] == "msg_too_long"
    with pytest.warns(UserWarning):  # slack_sdk warns too: the fallback text is for notifications
        assert (await refused(client.chat_postMessage(channel="C0TRIAGE", blocks=[section()])))["error"] == "no_text"
    posted = await client.chat_postMessage(channel="#triage", text="hello")
    assert posted["channel"] == "C0TRIAGE"
    await client.chat_update(channel="C0TRIAGE", ts=posted["ts"], text="edited")
    assert (await refused(client.chat_update(channel="C0TRIAGE", ts="1.2", text="x")))["error"] == \
        "message_not_found"
    theirs = api.post_as_user("C0TRIAGE", AGENT, "mine")
    assert (await refused(client.chat_update(channel="C0TRIAGE", ts=theirs, text="x")))["error"] == \
        "cant_update_message"
    assert (await refused(client.chat_postEphemeral(channel="C0TRIAGE", user=OTHER, text="psst")))["error"] == \
        "user_not_in_channel"
    await client.chat_postEphemeral(channel="C0TRIAGE", user=AGENT, text="psst")
    dm = await client.chat_postMessage(channel=OTHER, text="a direct message")
    assert dm["channel"].startswith("D")


async def test_post_message_is_paced_per_channel_with_a_short_burst(api: SlackAPI, clock: VirtualClock) -> None:
    api.add_channel("C0OTHER", "other")
    client = AsyncWebClient(token=fake.BOT_TOKEN, base_url=api.api_url)  # no retry handler: see the 429
    for _ in range(fake.POST_BURST):
        await client.chat_postMessage(channel="C0TRIAGE", text="burst")
    with pytest.raises(SlackApiError) as caught:
        await client.chat_postMessage(channel="C0TRIAGE", text="one too many")
    assert caught.value.response.status_code == 429 and caught.value.response.headers["Retry-After"] == "1"
    await client.chat_postMessage(channel="C0OTHER", text="another channel has its own pace")
    clock.advance(1.0)
    await client.chat_postMessage(channel="C0TRIAGE", text="a second later")
    assert [r.error for r in api.rate_limited] == ["ratelimited"]


async def test_other_methods_are_limited_by_their_tier_per_minute(api: SlackAPI, clock: VirtualClock) -> None:
    client = AsyncWebClient(token=fake.BOT_TOKEN, base_url=api.api_url)
    posted = await client.chat_postMessage(channel="C0TRIAGE", text="card")
    for _ in range(50):  # chat.update is Tier 3: about 50 a minute
        await client.chat_update(channel="C0TRIAGE", ts=posted["ts"], text="update")
    with pytest.raises(SlackApiError) as caught:
        await client.chat_update(channel="C0TRIAGE", ts=posted["ts"], text="update")
    assert caught.value.response.status_code == 429 and int(caught.value.response.headers["Retry-After"]) >= 1
    clock.advance(60 / 50)
    await client.chat_update(channel="C0TRIAGE", ts=posted["ts"], text="update")


async def test_a_response_url_takes_five_messages_within_thirty_minutes(api: SlackAPI,
                                                                        clock: VirtualClock) -> None:
    url = api.response_url()
    async with aiohttp.ClientSession() as http:
        for _ in range(5):
            async with http.post(url, json={"text": "ok"}) as resp:
                assert resp.status == 200
        async with http.post(url, json={"text": "sixth"}) as resp:
            assert resp.status == 404
        late = api.response_url()
        clock.advance(30 * 60 + 1)
        async with http.post(late, json={"text": "too late"}) as resp:
            assert resp.status == 404
        async with http.post(api.response_url(), json={"text": "x", "blocks": [section("x" * 3001)]}) as resp:
            assert resp.status == 400
    assert [r.error for r in api.unexpected()] == ["expired_url", "expired_url", "invalid_blocks"]


async def test_refusals_a_test_declares_are_expected_and_no_others(api: SlackAPI, client: AsyncWebClient) -> None:
    api.expect("not_in_channel")
    api.add_channel("C0OUTSIDE", "outside", bot=False)
    await refused(client.chat_postMessage(channel="C0OUTSIDE", text="hi"))
    assert api.unexpected() == []
    await refused(client.chat_postMessage(channel="C0OUTSIDE", text="again"))
    assert [r.error for r in api.unexpected()] == ["not_in_channel"]  # expected once, happened twice


async def test_scripted_failures_are_the_tests_doing_not_refusals(api: SlackAPI, client: AsyncWebClient) -> None:
    api.fail_next(1, 503, {"ok": False, "error": "service_unavailable"}, path_contains="chat.postMessage")
    with pytest.raises(SlackApiError):
        await client.chat_postMessage(channel="C0TRIAGE", text="hi")
    assert api.unexpected() == []


def test_what_slack_would_render_as_a_mention_or_a_link_is_found() -> None:
    payload = {"text": "<!here> hi", "blocks": [section("see <https://evil|bank> &lt;!channel&gt;")]}
    assert [t for text in fake.mrkdwn_texts(payload) for t in fake.tokens(text)] == ["!here", "https://evil|bank"]
    assert json.dumps(payload)  # the fixture itself is plain JSON
