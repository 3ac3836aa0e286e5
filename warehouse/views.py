"""Shared and personal views (R18, R19), stored in the `views` table.

Shared views come from files (the shipped ones, then the admins' own in the rules folder, which
replace a shipped view of the same title) and are synced at start-up. Agents save personal views.
"""

from __future__ import annotations

from typing import Any

import duckdb

from warehouse import clock
from warehouse.conditions import Context, compile_conditions
from warehouse.model import dumps
from warehouse.rows import insert, next_ids
from warehouse.tickets import OperationError


def _validate(view: dict[str, Any], where: str) -> None:
    if not view.get("title"):
        raise OperationError(f"{where}: a view needs a title")
    compile_conditions(view.get("conditions"), Context(now=clock.now()), f"{where} {view['title']!r}")


def sync_shared_views(con: duckdb.DuckDBPyConnection, views: list[dict[str, Any]]) -> None:
    """Make the shared views exactly `views` (in order), keeping ids of titles that stay."""
    now = clock.now()
    for v in views:
        _validate(v, "shared view")
    existing = {t: i for i, t in con.execute("SELECT id, title FROM views WHERE owner_id IS NULL").fetchall()}
    titles = [v["title"] for v in views]
    for title, vid in existing.items():
        if title not in titles:
            con.execute("DELETE FROM views WHERE id = ?", [vid])
    for pos, v in enumerate(views):
        execution = dumps(v.get("execution") or {})
        if v["title"] in existing:
            con.execute("UPDATE views SET conditions = ?, execution = ?, position = ?, updated_at = ? WHERE id = ?",
                        [dumps(v["conditions"]), execution, pos, now, existing[v["title"]]])
        else:
            (vid,) = next_ids(con, "view_ids", 1)
            insert(con, "views", [{"id": vid, "title": v["title"], "owner_id": None,
                                   "conditions": dumps(v["conditions"]), "execution": execution, "position": pos,
                                   "created_at": now, "updated_at": now}])


def save_personal_view(con: duckdb.DuckDBPyConnection, owner_id: int, title: str,
                       conditions: dict[str, Any], execution: dict[str, Any] | None = None) -> dict[str, Any]:
    """R19: an agent's own view of social tickets, with the same conditions as shared ones."""
    view = {"title": title, "conditions": conditions}
    _validate(view, "personal view")
    now = clock.now()
    row = con.execute("SELECT id FROM views WHERE owner_id = ? AND lower(title) = lower(?)",
                      [owner_id, title]).fetchone()
    if row:
        con.execute("UPDATE views SET conditions = ?, execution = ?, updated_at = ? WHERE id = ?",
                    [dumps(conditions), dumps(execution or {}), now, row[0]])
        return {"id": row[0], "title": title, "updated": True}
    (vid,) = next_ids(con, "view_ids", 1)
    insert(con, "views", [{"id": vid, "title": title, "owner_id": owner_id, "conditions": dumps(conditions),
                           "execution": dumps(execution or {}), "position": 0, "created_at": now,
                           "updated_at": now}])
    return {"id": vid, "title": title, "updated": False}
