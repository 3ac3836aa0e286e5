"""The harness of the Slack tests: the bot installed on a bare aiohttp app over a real store, a fake
Slack Web API, and requests signed exactly as Slack signs them. Its own tests check the signing.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

import bot
from socialdesk.config import SlackConfig
from socialdesk.fakes import slack_api as fake
from socialdesk.fakes.slack_api import SlackAPI, sign
from warehouse.desk import Desk
from warehouse.ingest import Delivery
from warehouse.model import InboundMessage
from warehouse.rules import load_rules, trigger_runner
from warehouse.store import Store

AGENT = "U0AGENT1"
GROUP_AGENT = "U0AGENT2"
STRANGER = "U0STRANGER"
TRIAGE = "C0TRIAGE"
TEMPLATES = [{"name": "follow_up", "language": "en", "parameters": ["name"]}]


class World:
    """The bot, its fake Slack, and helpers that speak to it as Slack does."""

    def __init__(self, client: Any, api: SlackAPI, the_bot: Any, desk: Desk) -> None:
        self.client = client
        self.api = api
        self.bot = the_bot
        self.desk = desk

    async def post(self, body: str, ctype: str, *, headers: dict[str, str] | None = None) -> Any:
        resp = await self.client.post(bot.PATH, data=body.encode(),
                                      headers={"Content-Type": ctype, **(headers or sign(body))})
        await self.bot.idle()
        return resp

    async def command(self, user: str, text: str = "", **kw: Any) -> Any:
        body, ctype = fake.command_body("/social", text, user, response_url=self.api.response_url(), **kw)
        return await self.post(body, ctype)

    async def interact(self, payload: dict[str, Any]) -> Any:
        return await self.post(*fake.interaction_body(payload))

    async def click(self, user: str, action_id: str, value: str = "", **kw: Any) -> Any:
        action = {"type": "button", "action_id": action_id, "value": value, **kw.pop("action", {})}
        return await self.interact(fake.block_actions(user, action, **kw))

    async def submit(self, user: str, view: dict[str, Any], values: dict[str, Any], **kw: Any) -> Any:
        return await self.interact(fake.view_submission(user, view, values, **kw))

    async def event(self, event: dict[str, Any], **kw: Any) -> Any:
        return await self.post(*fake.event_body(event, **kw))

    async def notify(self) -> None:
        """One deterministic pass of the notifier."""
        await self.bot.notifier.run_once()

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
        row = await self.desk.read(lambda con: con.execute(
            "SELECT channel, ts FROM slack_messages WHERE ticket_id = ? AND kind = ? AND ref = ?",
            [ticket_id, kind, ref]).fetchone())
        assert row, f"no {kind} message for ticket {ticket_id}"
        return row[0], row[1]

    def home(self, user: str = AGENT) -> dict[str, Any]:
        return self.last("views.publish", user_id=user)["view"]

    def last_modal(self) -> dict[str, Any]:
        """The view of the last views.open/push/update (with the id Slack gave it)."""
        for call in reversed(self.api.calls):
            if call.method in ("views.open", "views.push", "views.update"):
                return {**call.args["view"], "id": call.args.get("view_id") or "V-opened"}
        raise AssertionError("no modal was opened")

    def response(self) -> dict[str, Any]:
        assert self.api.responses, "nothing was posted to the response_url"
        return self.api.responses[-1]


def text_of(blocks_or_view: Any) -> str:
    """Every text in a Block Kit structure, for asserting what people see."""
    return json.dumps(blocks_or_view, ensure_ascii=False)


@pytest.fixture
async def world(store: Store, aiohttp_client: Any) -> AsyncIterator[World]:
    api = SlackAPI()
    await api.start()
    api.add_user(AGENT, "Alice Agent")
    api.add_user(GROUP_AGENT, "Gabriel Group")
    api.add_user(STRANGER, "Sam Stranger")
    api.groups["S0AGENTS"] = [GROUP_AGENT]
    cfg = SlackConfig(bot_token=fake.BOT_TOKEN, signing_secret=fake.SIGNING_SECRET, api_url=api.api_url,
                      team_id=fake.TEAM_ID, triage_channel=TRIAGE, agents=[AGENT], agent_group="S0AGENTS")
    rules = load_rules()  # the shipped triggers, automations and macros
    desk = Desk(store, trigger_runner(rules), rules=rules, templates=TEMPLATES)
    app = web.Application()
    # A long interval: the tests drive the notifier pass by pass (World.notify).
    the_bot = bot.install(app, cfg, desk, interval=3600, debounce=0)
    client = await aiohttp_client(app)
    yield World(client, api, the_bot, desk)
    await client.close()
    await api.stop()


# -- the harness's own checks ----------------------------------------------------------------------

def test_signature_is_slacks_v0_hmac() -> None:
    """channels.md section 6: v0=HMAC-SHA256(secret, "v0:{ts}:{body}")."""
    from slack_sdk.signature import SignatureVerifier
    headers = sign("a=b", "secret", ts=1_700_000_000)
    verifier = SignatureVerifier("secret", clock=type("C", (), {"now": lambda self: 1_700_000_000})())
    assert verifier.is_valid("a=b", headers["X-Slack-Request-Timestamp"], headers["X-Slack-Signature"])
