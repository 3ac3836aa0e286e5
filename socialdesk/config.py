"""Configuration: one TOML file, any value may be `${ENV_VAR}` so secrets stay in the environment.

Path: `--config`, else `SOCIALDESK_CONFIG`, else `socialdesk.toml`; built-in defaults when absent.
Channel sections (`[[whatsapp]]`, ...) are handed as they are to the channel modules, which validate
their own keys.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.settings import SlackConfig
from connectors.base import ConfigError
from warehouse.model import CHANNELS

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return os.environ[name]
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


@dataclass(slots=True)
class StoreConfig:
    path: str = "data/socialdesk.duckdb"
    memory_limit: str = "1GB"
    threads: int = 2
    # Notebooks and `socialdesk report` attach the running service's store over DuckDB's Quack, read-only;
    # they find it through the service's admin socket. Port 0: any free loopback port; token "": random.
    quack: bool = True
    quack_port: int = 0
    quack_host: str = "127.0.0.1"
    quack_token: str = ""
    report_memory_limit: str = "512MB"  # each notebook's own DuckDB (warehouse.connect)


@dataclass(slots=True)
class ServerConfig:
    port: int = 3000
    host: str = "0.0.0.0"
    max_body_bytes: int = 1024 * 1024
    public_url: str = "http://localhost:3000"  # where agents' links to inbound media point
    media_secret: str = ""  # signs those links; empty: a random one per run (links end at restart)
    json_logs: bool = False
    retry_base_seconds: float = 2.0  # outbox backoff: base * 2**attempt, with jitter, capped
    retry_max_seconds: float = 600.0
    retry_max_attempts: int = 15
    # Processes that take webhook traffic off the store process (socialdesk/workers.py); 0: none.
    # Worth it on a machine with a core to spare when webhooks arrive by the thousand a second.
    webhook_workers: int = 0


@dataclass(slots=True)
class Config:
    store: StoreConfig = field(default_factory=StoreConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    slack: SlackConfig = field(default_factory=SlackConfig)
    channels: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    assignment: dict[str, Any] = field(default_factory=dict)
    rules_dir: str = "rules"
    rules_interval: float = 300.0  # seconds between automation runs
    templates: list[dict[str, Any]] = field(default_factory=list)  # approved WhatsApp templates (B1)
    source: str = "built-in defaults"


def _section(cls: type, raw: dict[str, Any], name: str) -> Any:
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(f"[{name}]: unknown key {unknown[0]!r}")
    obj = cls(**raw)
    for key, f in cls.__dataclass_fields__.items():
        value = getattr(obj, key)
        if f.type in ("int",) and not isinstance(value, int):
            try:
                setattr(obj, key, int(value))
            except (TypeError, ValueError):
                raise ConfigError(f"[{name}] {key}: expected a whole number") from None
    return obj


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """The configuration from `path`, `SOCIALDESK_CONFIG` or `socialdesk.toml`, with env overrides."""
    explicit = path or os.environ.get("SOCIALDESK_CONFIG")
    file = Path(explicit or "socialdesk.toml")
    raw: dict[str, Any] = {}
    if file.exists():
        try:
            raw = tomllib.loads(file.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: {exc}") from None
    elif explicit:
        raise ConfigError(f"configuration file {file} not found")
    raw = _expand(raw, file.name)
    rules = raw.pop("rules", {})
    unknown = sorted(set(rules) - {"dir", "interval_seconds"})
    if unknown:
        raise ConfigError(f"[rules]: unknown key {unknown[0]!r}")
    templates = raw.pop("template", [])
    for t in templates:
        if not isinstance(t, dict) or not t.get("name"):
            raise ConfigError("[[template]]: every template needs a name (as approved in WhatsApp Manager)")
    cfg = Config(
        store=_section(StoreConfig, raw.pop("store", {}), "store"),
        server=_section(ServerConfig, raw.pop("server", {}), "server"),
        slack=_section(SlackConfig, raw.pop("slack", {}), "slack"),
        assignment=raw.pop("assignment", {}),
        rules_dir=rules.get("dir", "rules"),
        rules_interval=float(rules.get("interval_seconds", 300)),
        templates=[{"name": t["name"], "language": t.get("language", "en_US"),
                    "parameters": list(t.get("parameters", []))} for t in templates],
        source=str(file) if file.exists() else "built-in defaults",
    )
    for channel in CHANNELS:
        tables = raw.pop(channel, [])
        if not isinstance(tables, list):
            raise ConfigError(f"[[{channel}]] must be an array of tables")
        cfg.channels[channel] = tables
    if raw:
        raise ConfigError(f"{file}: unknown section [{sorted(raw)[0]}]")
    if os.environ.get("SOCIALDESK_DB"):
        cfg.store.path = os.environ["SOCIALDESK_DB"]
    if os.environ.get("PORT"):
        cfg.server.port = int(os.environ["PORT"])
    return cfg
