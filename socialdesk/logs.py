"""Logging set-up: readable lines by default, one JSON object a line when `[server] json_logs` is on."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                 "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure(json_logs: bool = False, verbose: bool = False, quiet: bool = False) -> None:
    """`quiet`: warnings only, for commands whose output is their result."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_logs else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    # aiohttp's access log repeats what /metrics counts; DuckDB and Slack clients are chatty at DEBUG.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # slack_sdk says INFO for every retry of an unreachable Slack; the app's own mirror says it once.
    for chatty in ("slack_sdk", "slack_bolt"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if verbose else logging.WARNING)
