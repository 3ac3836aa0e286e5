"""A complete local world for the demo, the end-to-end tests and the benchmarks.

Fakes of every channel's API and of Slack on loopback, demo business accounts for every channel with
fresh random secrets, and one way to build what a platform would POST to our webhooks: a realistic
payload, signed (and for WeChat encrypted) exactly as the platform does. Each channel brings its own
fake and how to drive it (the simulation its description names): nothing here knows one channel from
another.
"""

from __future__ import annotations

import importlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors import registry as connector_registry
from connectors.base import Connector
from socialdesk.config import Config, SlackConfig
from socialdesk.fakes import slack_api
from socialdesk.fakes.recorder import FakeAPI, Simulation
from warehouse import channels

AGENT, AGENT_NAME = "U0DEMOAGENT", "Ada Lovelace"
TRIAGE_CHANNEL = "C0TRIAGE"


def simulation(channel: str) -> Simulation:
    """The channel's simulation, as its description names it (`module:attribute`)."""
    module, _, attribute = connector_registry.description(channel).simulation.partition(":")
    found: Simulation = getattr(importlib.import_module(module), attribute)
    return found


SIMULATIONS: dict[str, Simulation] = {name: simulation(name) for name in connector_registry.names()}
# Every channel's demo business accounts, in order: {channel: [account id, ...]}.
ACCOUNTS: dict[str, list[str]] = {name: list(s.account_ids) for name, s in SIMULATIONS.items()}
# Approved message templates, from the channels that have them (the configuration's `[[template]]`).
TEMPLATES: list[dict[str, Any]] = [dict(t) for s in SIMULATIONS.values() for t in s.templates]


def _traffic(name: str) -> float:
    profile = channels.get(name).demo
    return sum(share for *_, share in profile.accounts) if profile else 0.0


# The channel the benchmarks drive: the one with the most traffic (its module's demo profile says so).
BUSIEST: str = max(SIMULATIONS, key=_traffic)


def _secret() -> str:
    return secrets.token_hex(16)


@dataclass
class Request:
    """One webhook request as the platform would send it."""

    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes


@dataclass
class Sandbox:
    slack: slack_api.SlackAPI = field(default_factory=slack_api.SlackAPI)
    # One fake per API: channels that share an API (Meta's Graph API) share its fake.
    apis: dict[type[FakeAPI], FakeAPI] = field(default_factory=dict)
    channels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    registry: dict[str, Connector] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for found in SIMULATIONS.values():
            if found.api not in self.apis:
                self.apis[found.api] = found.api()

    @property
    def fakes(self) -> dict[str, Any]:
        """Each channel's fake API."""
        return {name: self.apis[s.api] for name, s in SIMULATIONS.items()}

    def _all_fakes(self) -> list[FakeAPI]:
        return [*self.apis.values(), self.slack]

    async def start(self) -> Sandbox:
        """Start the fakes and configure one account set pointing at them."""
        for fake in self._all_fakes():
            await fake.start()
        self.slack.add_user(AGENT, AGENT_NAME)
        self.slack.add_channel(TRIAGE_CHANNEL, "social-triage", members=[AGENT])
        self.channels = {name: s.accounts(self.apis[s.api], _secret) for name, s in SIMULATIONS.items()}
        self.registry = connector_registry.build(self.channels)
        return self

    async def stop(self) -> None:
        for fake in self._all_fakes():
            await fake.stop()

    def configure(self, cfg: Config, *, slack: bool = False) -> Config:
        """Point `cfg` at the fakes: every channel's accounts, and with `slack` the Slack app too."""
        cfg.channels = {**cfg.channels, **self.channels}
        cfg.templates = cfg.templates or list(TEMPLATES)
        if slack:
            cfg.slack = SlackConfig(bot_token=slack_api.BOT_TOKEN, signing_secret=slack_api.SIGNING_SECRET,
                                    api_url=self.slack.api_url, team_id=slack_api.TEAM_ID,
                                    triage_channel=TRIAGE_CHANNEL, agents=[AGENT])
        return cfg

    def message(self, channel: str, account: str, user: str, text: str, message_id: str, sent_at: datetime,
                name: str = "Demo Customer") -> bytes:
        """A text message as `channel` would send it to our webhook (its platform's fake learns that the
        customer wrote then)."""
        self.fakes[channel].customer_wrote(account, user, sent_at)
        return SIMULATIONS[channel].message(account, user, text, message_id, sent_at, name)

    def receipt(self, channel: str, account: str, user: str, platform_message_id: str, status: str) -> bytes | None:
        """The platform's receipt for one of our messages, where it sends receipts."""
        return SIMULATIONS[channel].receipt(account, user, platform_message_id, status)

    def replies(self, channel: str) -> list[Any]:
        """What the channel's fake took from us (`SentReply`: account, recipient, text), in order."""
        return SIMULATIONS[channel].replies(self.fakes[channel])

    def request(self, channel: str, account: str, body: bytes) -> Request:
        """`body` signed (and encrypted) as the platform would POST it, with the route it goes to."""
        connector = self.registry[channel]
        headers, query, signed = connector.simulate(account, body)
        path = f"/webhooks/{channel}"
        if connector_registry.description(channel).route == "account":
            path += "/" + connector.account_info(account)["account_name"]
        return Request(path, headers, query, signed)
