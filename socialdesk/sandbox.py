"""A complete local world for the demo, the end-to-end tests and the benchmarks.

Fakes of every platform's API on loopback, demo business accounts for all five channels (two
WhatsApp numbers) with fresh random secrets, and one way to build what a platform would POST to our
webhooks: a realistic payload, signed (and for WeChat encrypted) exactly as the platform does.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors import registry as connector_registry
from connectors.base import Connector
from socialdesk.config import Config, SlackConfig
from socialdesk.fakes import line_api, meta_api, slack_api, wechat_api, x_api
from socialdesk.fakes.recorder import FakeAPI

WHATSAPP_PARIS = "106540352242922"
WHATSAPP_LYON = "106540352242923"
MESSENGER_PAGE = "682498302938465"
LINE_BOT = line_api.DEMO_BOT_USER_ID
WECHAT_ACCOUNT = "gh_97417a04a28d"
WECHAT_APP = "wx5e1f0a2b3c4d5e6f"
X_ACCOUNT = x_api.DEMO_USER_ID
AGENT, AGENT_NAME = "U0DEMOAGENT", "Ada Lovelace"
TRIAGE_CHANNEL = "C0TRIAGE"
TEMPLATES: list[dict[str, Any]] = [{"name": "order_update", "language": "en_US", "parameters": ["order number"]}]
ACCOUNTS = {"whatsapp": [WHATSAPP_PARIS, WHATSAPP_LYON], "messenger": [MESSENGER_PAGE], "line": [LINE_BOT],
            "wechat": [WECHAT_ACCOUNT], "x": [X_ACCOUNT]}


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
    meta: meta_api.MetaGraphAPI = field(default_factory=meta_api.MetaGraphAPI)
    line: line_api.LineAPI = field(default_factory=line_api.LineAPI)
    wechat: wechat_api.FakeWeChatAPI = field(default_factory=wechat_api.FakeWeChatAPI)
    x: x_api.XAPI = field(default_factory=x_api.XAPI)
    slack: slack_api.SlackAPI = field(default_factory=slack_api.SlackAPI)
    channels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    registry: dict[str, Connector] = field(default_factory=dict)

    @property
    def fakes(self) -> dict[str, FakeAPI]:
        return {"whatsapp": self.meta, "messenger": self.meta, "line": self.line, "wechat": self.wechat, "x": self.x}

    def _all_fakes(self) -> list[FakeAPI]:
        return [self.meta, self.line, self.wechat, self.x, self.slack]

    async def start(self) -> Sandbox:
        """Start the fakes and configure one account set pointing at them."""
        for fake in self._all_fakes():
            await fake.start()
        self.slack.add_user(AGENT, AGENT_NAME)
        self.slack.add_channel(TRIAGE_CHANNEL, "social-triage", members=[AGENT])
        for template in TEMPLATES:  # approved in WhatsApp Manager, as the configuration says
            self.meta.approve_template(template["name"], len(template["parameters"]))
        wa_tokens = {WHATSAPP_PARIS: _secret(), WHATSAPP_LYON: _secret()}
        page_token = _secret()
        self.meta.whatsapp_tokens.update(wa_tokens)
        self.meta.page_tokens[MESSENGER_PAGE] = page_token
        wechat_secret = _secret()
        self.wechat.apps[WECHAT_APP] = wechat_secret
        app_secret = _secret()  # one Meta app serves both numbers and the page
        self.channels = {
            "whatsapp": [
                {"name": "paris", "phone_number_id": WHATSAPP_PARIS, "display_phone_number": "+33 1 86 95 00 01",
                 "app_secret": app_secret, "verify_token": _secret(), "access_token": wa_tokens[WHATSAPP_PARIS],
                 "api_url": self.meta.url + "/v21.0"},
                {"name": "lyon", "phone_number_id": WHATSAPP_LYON, "display_phone_number": "+33 4 28 29 00 02",
                 "app_secret": app_secret, "verify_token": _secret(), "access_token": wa_tokens[WHATSAPP_LYON],
                 "api_url": self.meta.url + "/v21.0"}],
            "messenger": [{"name": "brand-page", "page_id": MESSENGER_PAGE, "page_name": "SocialDesk Demo",
                           "app_secret": app_secret, "verify_token": _secret(), "page_access_token": page_token,
                           "api_url": self.meta.url + "/v21.0"}],
            "line": [{"name": "jp", "bot_user_id": LINE_BOT, "channel_secret": _secret(),
                      "channel_access_token": line_api.DEMO_TOKEN, "api_url": self.line.url,
                      "data_api_url": self.line.url}],
            "wechat": [{"name": "cn", "original_id": WECHAT_ACCOUNT, "app_id": WECHAT_APP, "app_secret": wechat_secret,
                        "token": _secret(), "encoding_aes_key": base64.b64encode(os.urandom(32)).decode()[:43],
                        "api_url": self.wechat.url}],
            "x": [{"name": "brand", "user_id": X_ACCOUNT, "screen_name": x_api.DEMO_SCREEN_NAME,
                   "consumer_secret": _secret(), "access_token": x_api.DEMO_TOKEN, "api_url": self.x.url}],
        }
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
        seconds = int(sent_at.timestamp())
        if channel == "whatsapp":
            return meta_api.whatsapp_message_payload(account, user, text, message_id, name=name, timestamp=seconds)
        if channel == "messenger":
            return meta_api.messenger_message_payload(account, user, text, message_id, timestamp_ms=seconds * 1000)
        if channel == "line":
            return line_api.message_payload(account, user, text, message_id, timestamp_ms=seconds * 1000)
        if channel == "wechat":
            return wechat_api.message_payload(account, user, text, message_id, create_time=seconds)
        if channel == "x":
            return x_api.message_payload(account, user, text, message_id, created_ms=seconds * 1000, name=name,
                                         screen_name=name.lower().replace(" ", "_"))
        raise ValueError(f"unknown channel {channel}")

    def request(self, channel: str, account: str, body: bytes) -> Request:
        """`body` signed (and encrypted) as the platform would POST it, with the route it goes to."""
        connector = self.registry[channel]
        headers, query, signed = connector.simulate(account, body)  # type: ignore[attr-defined]
        path = f"/webhooks/{channel}"
        if channel in ("line", "wechat"):
            path += "/" + connector.account_info(account)["account_name"]
        return Request(path, headers, query, signed)
