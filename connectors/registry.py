"""Which channel modules exist, and the connectors built from the configured accounts."""

from __future__ import annotations

import importlib
from typing import Any

from connectors.base import ConfigError, Connector

# channel -> module; each module exports `Connector` with `from_config(tables)`.
MODULES = {"whatsapp": "connectors.whatsapp", "messenger": "connectors.messenger", "line": "connectors.line",
           "wechat": "connectors.wechat", "x": "connectors.x"}


def connector_class(channel: str) -> Any:
    return importlib.import_module(MODULES[channel]).Connector


def build(channels: dict[str, list[dict[str, Any]]]) -> dict[str, Connector]:
    """A connector for every channel that has configured accounts."""
    built: dict[str, Connector] = {}
    for channel, tables in channels.items():
        if channel not in MODULES:
            raise ConfigError(f"unknown channel [[{channel}]]")
        if tables:
            built[channel] = connector_class(channel).from_config(tables)
    return built


def accounts(registry: dict[str, Connector]) -> list[dict[str, Any]]:
    """Every configured business account as the warehouse records it (R2, R8)."""
    rows = []
    for channel, connector in registry.items():
        for account_id in connector.account_ids():
            info = connector.account_info(account_id)
            rows.append({"channel": channel, "account": account_id, "name": info.get("account_name", account_id),
                         "info": info})
    return rows
