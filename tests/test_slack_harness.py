"""The harness of the Slack tests: the bot installed on a bare aiohttp app over a real store, the strict
fake of Slack's Web API, and requests signed exactly as Slack signs them. Its own tests check the
signing and the harness's strictness.

The bot and the fake run on one virtual clock (tests/slack_support.py), so Slack's real rate limits
and trigger lifetimes apply without a test waiting for them. At teardown every test fails if Slack
refused anything the test did not declare (`world.api.expect(...)`): an `ok: false`, a 429, an
answer to a view submission Slack would not take.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError

import bot
from socialdesk.config import SlackConfig
from socialdesk.fakes import slack_api as fake
from socialdesk.fakes.slack_api import Refusal, SlackAPI, check_view_answer, sign
from tests.slack_support import VirtualClock
from warehouse import slack_state
from warehouse.desk import Desk
from warehouse.ingest import Delivery
from warehouse.model import InboundMessage
from warehouse.rules import load_rules, trigger_runner
from warehouse.store import Store

AGENT = "U0AGENT1"
GROUP_AGENT = "U0AGENT2"
STRANGER = "U0STRANGER"
TRIAGE = "C0TRIAGE"
GENERAL = "C0GENERAL"  # where the slash commands are typed
TEMPLATES = [{"name": "follow_up", "language": "en", "parameters": ["name"]}]


class World:
    """The bot, its fake Slack, and helpers that speak to it as Slack does."""

    def __init__(self, client: Any, api: SlackAPI, the_bot: Any, desk: Desk, clock: VirtualClock) -> None:
        self.client = client
        self.api = api
        self.bot = the_bot
        self.desk = desk
        self.clock = clock

    async def post(self, body: str, ctype: str, *, headers: dict[str, str] | None = None) -> Any:
        resp = await self.client.post(bot.PATH, data=body.encode(),
                                      headers={"Content-Type": ctype, **(headers or sign(body))})
        await self.bot.idle()
        return resp

    async def command(self, user: str, text: str = "", **kw: Any) -> Any:
        body, ctype = fake.command_body("/social", text, user, response_url=self.api.response_url(), api=self.api,
                                        **kw)
        return await self.post(body, ctype)

    async def interact(self, payload: dict[str, Any]) -> Any:
        return await self.post(*fake.interaction_body(payload))

    async def click(self, user: str, action_id: str, value: str = "", **kw: Any) -> Any:
        action = {"type": "button", "action_id": action_id, "value": value, **kw.pop("action", {})}
        return await self.interact(fake.block_actions(user, action, api=self.api, **kw))

    async def submit(self, user: str, view: dict[str, Any], values: dict[str, Any], **kw: Any) -> Any:
        """A view_submission; the app's answer is held to what Slack takes (errors on input blocks only...)."""
        resp = await self.interact(fake.view_submission(user, view, values, api=self.api, **kw))
        text = await resp.text()
        answer = json.loads(text) if text.strip().startswith("{") else {}
        for problem in check_view_answer(view, answer):
            self.api.refusals.append(Refusal("view_submission", "invalid_response", 200, answer, [problem]))
        return resp

    async def event(self, event: dict[str, Any], *, headers: dict[str, str] | None = None, **kw: Any) -> Any:
        body, ctype = fake.event_body(event, **kw)
        return await self.post(body, ctype, headers={**sign(body), **(headers or {})})

    async def notify(self) -> None:
        """Deterministic passes of the notifier until it has read every event (a pass reads `batch`), each
        followed by everything it queued until Slack took it."""
        while True:
            read = await self.bot.notifier.run_once()
            await self.bot.notifier.settle()
            if read < self.bot.notifier.batch:
                return

    async def ingest(self, *messages: InboundMessage) -> Any:
        result = await self.desk.ingest(Delivery(list(messages)))
        await self.notify()
        return result

    # -- reading the fake --------------------------------------------------------------------------

    def last(self, method: str, **match: Any) -> dict[str, Any]:
        calls = [c for c in self.api.called(method) if all(c.get(k) == v for k, v in match.items())]
        assert calls, f"no {method} call matching {match}; calls: {[c.method for c in self.api.calls]}"
        return calls[-1]

    def posts(self, *, thread: bool) -> list[dict[str, Any]]:
        return [c for c in self.api.called("chat.postMessage") if bool(c.get("thread_ts")) == thread]

    async def slack_message(self, ticket_id: int, kind: str = "card", ref: int = 0) -> tuple[str, str]:
        """(channel, ts) of the bot's message for this ticket, as it recorded it."""
        found = await self.desk.read(lambda con: slack_state.message(con, ticket_id, kind, ref))
        assert found, f"no {kind} message for ticket {ticket_id}"
        return found

    def home(self, user: str = AGENT) -> dict[str, Any]:
        return self.api.views[self.api.homes[user]]

    def last_modal(self) -> dict[str, Any]:
        """The modal opened, pushed or updated last, as Slack holds it (with its id and hash)."""
        assert self.api.last_modal_id, "no modal was opened"
        return self.api.views[self.api.last_modal_id]

    def response(self) -> dict[str, Any]:
        assert self.api.responses, "nothing was posted to the response_url"
        return self.api.responses[-1]

    def thread_texts(self, channel: str, ts: str) -> list[str]:
        """What the card's thread shows, reply by reply."""
        return [text_of(m.blocks) or m.text for m in self.api.thread(channel, ts)]


def text_of(blocks_or_view: Any) -> str:
    """Every text in a Block Kit structure, for asserting what people see."""
    return json.dumps(blocks_or_view, ensure_ascii=False)


async def make_world(store: Store, aiohttp_client: Any, **notifier_options: Any) -> tuple[World, Any]:
    clock = notifier_options.pop("clock", None) or VirtualClock()
    api = SlackAPI(clock=clock)
    await api.start()
    for user, name in ((AGENT, "Alice Agent"), (GROUP_AGENT, "Gabriel Group"), (STRANGER, "Sam Stranger")):
        api.add_user(user, name)
    api.groups["S0AGENTS"] = [GROUP_AGENT]
    api.add_channel(TRIAGE, "social-triage", members=[AGENT, GROUP_AGENT, STRANGER])
    api.add_channel(GENERAL, "general", members=[AGENT, GROUP_AGENT, STRANGER])
    cfg = SlackConfig(bot_token=fake.BOT_TOKEN, signing_secret=fake.SIGNING_SECRET, api_url=api.api_url,
                      team_id=fake.TEAM_ID, triage_channel=TRIAGE, agents=[AGENT], agent_group="S0AGENTS")
    rules = load_rules()  # the shipped triggers, automations and macros
    desk = Desk(store, trigger_runner(rules), rules=rules, templates=TEMPLATES)
    app = web.Application()
    # A long interval and no waking on new tickets: the tests drive the notifier pass by pass (World.notify).
    options = {"interval": 3600, "debounce": 0, "wake_on_tickets": False, **notifier_options}
    the_bot = bot.install(app, cfg, desk, clock=clock, **options)
    client = await aiohttp_client(app)
    return World(client, api, the_bot, desk, clock), client


def assert_slack_took_everything(api: SlackAPI) -> None:
    unexpected = api.unexpected()
    assert not unexpected, "Slack would have refused: " + "; ".join(
        f"{r.method} -> {r.error} {r.messages}" for r in unexpected)


@pytest.fixture
async def world(store: Store, aiohttp_client: Any) -> AsyncIterator[World]:
    w, client = await make_world(store, aiohttp_client)
    yield w
    await client.close()
    await w.api.stop()
    assert_slack_took_everything(w.api)


# -- the harness's own checks ----------------------------------------------------------------------

def test_signature_is_slacks_v0_hmac() -> None:
    """channels.md section 6: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")."""
    from slack_sdk.signature import SignatureVerifier
    headers = sign("a=b", "secret", ts=1_700_000_000)
    verifier = SignatureVerifier("secret", clock=type("C", (), {"now": lambda self: 1_700_000_000})())
    assert verifier.is_valid("a=b", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])


async def test_a_refusal_the_app_did_not_expect_fails_the_test(store: Store, aiohttp_client: Any) -> None:
    """The teardown check itself: a refusal nobody declared is reported, a declared one is not."""
    w, client = await make_world(store, aiohttp_client)
    with pytest.raises(SlackApiError):
        await w.bot.client.chat_postMessage(channel=TRIAGE, text="x", blocks=[{"type": "section"}])
    with pytest.raises(AssertionError, match="invalid_blocks"):
        assert_slack_took_everything(w.api)
    w.api.expect("invalid_blocks")
    assert_slack_took_everything(w.api)
    await client.close()
    await w.api.stop()
