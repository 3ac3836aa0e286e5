"""Configuration: one TOML file, any value may be `${ENV_VAR}` so secrets stay in the environment.

Path: `--config`, else `SOCIALDESK_CONFIG`, else `socialdesk.toml`; built-in defaults when absent.
The whole file is checked against typed sections (msgspec): an unknown section or key, a value of the
wrong type or out of range stops start-up with one line naming it. Channel sections (`[[whatsapp]]`,
...) are handed to the channel modules, which check their own keys.

Secrets are needed only where they are used: `load(..., secrets=False)` (every command but `serve` and
`demo`) leaves unset variables empty instead of refusing, and optional features' secrets
(`[store] quack_token`, `[server] media_secret`) may stay unset: a random one is made per run.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any

import msgspec

from bot.settings import SlackConfig
from connectors import registry
from connectors.base import ConfigError
from warehouse.phones import check_region as phonenumbers_region

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Size = Annotated[str, msgspec.Meta(pattern=r"^\s*\d+(\.\d+)?\s*([KMGT]i?B|B|bytes)\s*$")]
Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
# Secrets of features that work without them (a random one per run).
OPTIONAL_SECRETS = {"store.quack_token", "server.media_secret"}
# Keys that must be set together in [slack]: one alone is a half-done setup, not "Slack off".
SLACK_REQUIRED = ("bot_token", "signing_secret")


@dataclass(slots=True)
class StoreConfig:
    path: str = "data/socialdesk.duckdb"
    memory_limit: Size = "1GB"
    threads: Positive = 2
    # Notebooks and `socialdesk report` attach the running service's store over DuckDB's Quack, read-only;
    # they find it through the service's admin socket. Port 0: any free loopback port; token "": random.
    quack: bool = True
    quack_port: Port = 0
    quack_host: str = "127.0.0.1"
    quack_token: str = ""
    report_memory_limit: Size = "512MB"  # each notebook's own DuckDB (warehouse.connect)
    # The ticket builder's nice value during a burst (Linux). 0: as the rest. With webhook workers, 10 lets a
    # burst beyond what building keeps up with be acknowledged faster, tickets following later (README,
    # "Performance"); outside bursts tickets are built at the normal priority.
    build_nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 0


@dataclass(slots=True)
class ServerConfig:
    port: Port = 3000
    host: str = "0.0.0.0"
    max_body_bytes: Positive = 1024 * 1024
    public_url: str = "http://localhost:3000"  # where agents' links to inbound media point
    media_secret: str = ""  # signs those links; empty: a random one per run (links end at restart)
    json_logs: bool = False
    retry_base_seconds: Seconds = 2.0  # outbox backoff: base * 2**attempt, with jitter, capped
    retry_max_seconds: Seconds = 600.0
    retry_max_attempts: Positive = 15
    # Processes that take webhook traffic off the store process (socialdesk/workers.py); 0: none.
    # Worth it on a machine with a core to spare when webhooks arrive by the thousand a second.
    webhook_workers: Annotated[int, msgspec.Meta(ge=0, le=64)] = 0


@dataclass(slots=True)
class RulesConfig:
    dir: str = "rules"
    interval_seconds: Annotated[float, msgspec.Meta(gt=0)] = 300.0


@dataclass(slots=True)
class AssignmentConfig:
    enabled: bool = False
    agents: list[str] = field(default_factory=list)
    by: str = "channel"


@dataclass(slots=True)
class PhonesConfig:
    # The country whose national format agents and customers type (R25): "FR" reads "06 12 34 56 78"
    # as +33612345678. Empty: only international numbers are understood.
    default_region: Annotated[str, msgspec.Meta(pattern=r"^([A-Za-z]{2})?$")] = ""


@dataclass(slots=True)
class TemplateConfig:
    """An approved WhatsApp template (B1), as WhatsApp Manager names it."""

    name: Annotated[str, msgspec.Meta(min_length=1)]
    language: str = "en_US"
    parameters: list[str] = field(default_factory=list)


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
    phones: PhonesConfig = field(default_factory=PhonesConfig)
    source: str = "built-in defaults"


# The file's sections: name -> the type its table (or array of tables) is checked against.
SECTIONS: dict[str, Any] = {"store": StoreConfig, "server": ServerConfig, "slack": SlackConfig, "rules": RulesConfig,
                            "assignment": AssignmentConfig, "template": list[TemplateConfig], "phones": PhonesConfig}


def _expand(value: Any, where: str, missing: list[str]) -> Any:
    """`${VAR}` replaced from the environment; unset ones are empty and their keys listed in `missing`."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in os.environ:
                missing.append(f"{where}: environment variable {m.group(1)} is not set")
                return ""
            return os.environ[m.group(1)]
        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}" if where else k, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", missing) for i, v in enumerate(value)]
    return value


def _section(name: str, raw: Any) -> Any:
    """The section as its type, or one line saying what is wrong and where."""
    kind = SECTIONS[name]
    tables = raw if isinstance(raw, list) else [raw]
    known = {f.name for f in fields(kind.__args__[0] if isinstance(raw, list) else kind)}
    for i, table in enumerate(tables):
        if isinstance(table, dict):
            unknown = sorted(set(table) - known)
            if unknown:
                where = f"[[{name}]] #{i + 1}" if isinstance(raw, list) else f"[{name}]"
                raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        at = re.search(r" - at `\$(.*)`$", text)
        path = at.group(1).lstrip(".") if at else ""
        reason = re.sub(r" - at `.*`$", "", text)
        reason = reason.replace("`", "").replace("Expected", "expected").replace("Object missing required field",
                                                                                 "missing key")
        # The only patterns are sizes: say so rather than print the regex.
        reason = re.sub(r"expected str matching regex .*", 'expected a size such as "1GB" or "512MB"', reason)
        head = f"[{name}]"
        if isinstance(raw, list):
            index = re.match(r"\[(\d+)\]\.?(.*)", path)
            head, path = (f"[[{name}]] #{int(index.group(1)) + 1}", index.group(2)) if index else (f"[[{name}]]", path)
        raise ConfigError(f"{head} {path}: {reason}" if path else f"{head}: {reason}") from None


def load(path: str | os.PathLike[str] | None = None, *, secrets: bool = True) -> Config:
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
    missing: list[str] = []
    raw = _expand(raw, "", missing)
    unknown = sorted(set(raw) - set(SECTIONS) - set(registry.names()))
    if unknown:
        known = ", ".join([*SECTIONS, *registry.names()])
        raise ConfigError(f"{file}: unknown section [{unknown[0]}] (known: {known})")
    missing = [m for m in missing if m.split(":")[0] not in OPTIONAL_SECRETS]
    if missing and secrets:
        raise ConfigError(missing[0])
    slack_raw = raw.get("slack") or {}
    slack: SlackConfig = _section("slack", slack_raw)
    if secrets and slack_raw:
        absent = [k for k in SLACK_REQUIRED if not slack_raw.get(k)]
        if absent:
            raise ConfigError(f"[slack] {absent[0]}: missing; the [slack] section is there but incomplete "
                              "(remove the section to run without Slack)")
    rules: RulesConfig = _section("rules", raw.get("rules", {}))
    assignment: AssignmentConfig = _section("assignment", raw.get("assignment", {}))
    cfg = Config(
        store=_section("store", raw.get("store", {})),
        server=_section("server", raw.get("server", {})),
        slack=slack,
        assignment={f.name: getattr(assignment, f.name) for f in fields(AssignmentConfig)}
        if "assignment" in raw else {},
        rules_dir=rules.dir,
        rules_interval=rules.interval_seconds,
        templates=[{"name": t.name, "language": t.language, "parameters": list(t.parameters)}
                   for t in _section("template", raw.get("template", []))],
        phones=_section("phones", raw.get("phones", {})),
        source=str(file) if file.exists() else "built-in defaults",
    )
    try:
        phonenumbers_region(cfg.phones.default_region)
    except ValueError as exc:
        raise ConfigError(f"[phones] default_region: {exc}") from None
    for channel in registry.names():
        tables = raw.get(channel, [])
        if not isinstance(tables, list):
            raise ConfigError(f"[[{channel}]] must be an array of tables (write [[{channel}]], not [{channel}])")
        # Commands other than serve and demo never call a channel: they need none of its secrets.
        cfg.channels[channel] = tables if secrets else []
    _environment(cfg)
    return cfg


def _environment(cfg: Config) -> None:
    """`SOCIALDESK_DB` and `PORT` override the file. A store named by SOCIALDESK_DB must have a home
    already: a typo there would otherwise start an empty store beside the real one."""
    if os.environ.get("SOCIALDESK_DB"):
        cfg.store.path = os.environ["SOCIALDESK_DB"]
        if not Path(cfg.store.path).parent.is_dir():
            raise ConfigError(f"SOCIALDESK_DB: the directory {Path(cfg.store.path).parent} does not exist "
                              f"(create it, or point SOCIALDESK_DB at an existing one)")
    if os.environ.get("PORT"):
        value = os.environ["PORT"].strip()
        if not value.isdigit() or int(value) > 65535:
            raise ConfigError(f"PORT must be a port number (0 to 65535), not {value!r}")
        cfg.server.port = int(value)
