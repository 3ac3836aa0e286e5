"""Which channels exist: one line each. Everything else reads this (webhook routes, the warehouse's
channel table, Slack's badges, the CLI, the sandbox and the demo, the reports).

Importing this module registers every channel's plain facts (`warehouse.channels`): the warehouse
knows the channels without importing connectors.
"""

from __future__ import annotations

import importlib
from typing import Any

from connectors.base import ConfigError, Connector, Description
from warehouse import channels

# The channel modules, in the order lists and reports show them; each exports DESCRIPTION.
MODULES = (
    "connectors.whatsapp",
    "connectors.messenger",
    "connectors.instagram",
    "connectors.line",
    "connectors.wechat",
    "connectors.x",
    "connectors.telegram",
)

DESCRIPTIONS: dict[str, Description] = {}
for _module in MODULES:
    _description: Description = importlib.import_module(_module).DESCRIPTION
    DESCRIPTIONS[_description.name] = _description
channels.register(d.channel for d in DESCRIPTIONS.values())


def names() -> list[str]:
    return list(DESCRIPTIONS)


def description(channel: str) -> Description:
    try:
        return DESCRIPTIONS[channel]
    except KeyError:
        raise ConfigError(f"unknown channel [[{channel}]] (one of {', '.join(DESCRIPTIONS)})") from None


def build(channels_config: dict[str, list[dict[str, Any]]]) -> dict[str, Connector]:
    """A connector for every channel that has configured accounts."""
    built: dict[str, Connector] = {}
    for channel, tables in channels_config.items():
        found = description(channel)
        if tables:
            built[channel] = found.build(tables)
    return built


def media_domains() -> tuple[str, ...]:
    """Where the platforms serve customers' files (their CDNs), every channel's."""
    return tuple(dict.fromkeys(domain for d in DESCRIPTIONS.values() for domain in d.media_domains))


def accounts(registry: dict[str, Connector]) -> list[dict[str, Any]]:
    """Every configured business account as the warehouse records it (R2, R8)."""
    rows = []
    for channel, connector in registry.items():
        for account_id in connector.account_ids():
            info = connector.account_info(account_id)
            rows.append({"channel": channel, "account": account_id, "name": info.get("account_name", account_id),
                         "info": info})
    return rows
