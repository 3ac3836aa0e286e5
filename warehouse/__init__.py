"""The DuckDB ticket store: schema and migrations, the single write path, queries, views and rules.

It imports nothing from `connectors` or `bot`: what must happen outside (a reply to send, a ticket to
announce) is recorded here (an outbox row, an event) and the service's tasks act on it.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from warehouse.model import dumps

if TYPE_CHECKING:
    from warehouse.store import Store, StoreBusy

__all__ = ["Store", "StoreBusy", "open_store", "register_accounts"]
# Imported when first asked for: `warehouse.model` and `warehouse.channels` (what a webhook worker
# needs) must not load DuckDB, pyarrow and numpy (about 60 MiB a process) through this package.
# (A notebook's `connect` is `warehouse.connect.connect`: the package's attribute of that name is the
# module, once anything imported it.)
_LAZY = {"Store": "warehouse.store", "StoreBusy": "warehouse.store"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'warehouse' has no attribute {name!r}")


def open_store(path: str | Path, *, memory_limit: str = "1GB", threads: int = 2,
               views: list[dict[str, Any]] | None = None) -> Store:
    """Open (creating or upgrading) the store and sync the shared views."""
    from warehouse.queries import shipped_views
    from warehouse.store import Store
    from warehouse.views import sync_shared_views

    store = Store(path, memory_limit=memory_limit, threads=threads)
    store.write(lambda con: sync_shared_views(con, views if views is not None else shipped_views()))
    return store


def register_accounts(store: Store, accounts: list[dict[str, Any]]) -> None:
    """Record the configured business accounts: {channel, account, name, info} (R2, R8)."""
    def write(con: Any) -> None:
        for a in accounts:
            con.execute("INSERT INTO accounts VALUES (?, ?, ?, ?::JSON) ON CONFLICT DO UPDATE SET "
                        "name = excluded.name, info = excluded.info",
                        [a["channel"], a["account"], a["name"], dumps(a["info"])])
    store.write(write)
