"""The operations the CLI offers, by name, run on a Desk: locally, or inside the running service.

While `socialdesk serve` holds the store no other process may open it, so the CLI sends the same
operation to the service's loopback admin route, which runs it here on the service's own Desk.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from warehouse.desk import Desk
from warehouse.ingest import Delivery
from warehouse.model import InboundMessage, InvalidMessage
from warehouse.read_models import SearchResult, Ticket, User, ViewPage
from warehouse.tickets import Actor

CLI = Actor("system", "cli")
Operation = Callable[..., Awaitable[Mapping[str, Any]]]  # a JSON-ready result (read models are TypedDicts)


async def notifier(desk: Desk, agent: str, tab: str = "assigned", page: int = 1) -> dict[str, Any]:
    result = await desk.notifier(agent, tab, page)
    return {k: result[k] for k in ("tab", "red_dot", "has_more", "page", "tickets")}


async def view(desk: Desk, name: str, agent: str | None = None, page: int = 1) -> ViewPage:
    return await desk.view(name, agent, page)


async def search(desk: Desk, query: str) -> SearchResult:
    return await desk.search(query)


async def ticket(desk: Desk, id: int) -> Ticket:
    return await desk.ticket(id)


async def user(desk: Desk, id: int) -> User:
    return await desk.user(id)


async def claim(desk: Desk, ticket: int, agent: str) -> dict[str, Any]:
    return await desk.claim(ticket, await desk.agent(agent))


async def status(desk: Desk, ticket: int, status: str) -> dict[str, Any]:
    return await desk.set_status(ticket, status, CLI)


async def tag(desk: Desk, ticket: int, action: str, tag: str) -> dict[str, Any]:
    if action not in ("add", "remove"):
        raise ValueError("tag takes add or remove")
    add, remove = ([tag], []) if action == "add" else ([], [tag])
    return await desk.change_tags(ticket, add, remove, CLI)


async def field(desk: Desk, ticket: int, changes: dict[str, Any]) -> dict[str, Any]:
    return _done(await desk.set_fields(ticket, changes, CLI))


def _done(result: dict[str, Any] | None) -> dict[str, Any]:
    """What the desk did; None only where a once-key was acted on already, which the CLI never sends."""
    assert result is not None
    return result


async def reply(desk: Desk, ticket: int, agent: str, text: str, status: str | None = None,
                file: dict[str, str] | None = None) -> dict[str, Any]:
    attachment = (file["name"], file["mime_type"], base64.b64decode(file["data"])) if file else None
    return _done(await desk.reply(ticket, await desk.agent(agent), text, status=status, file=attachment))


async def merge(desk: Desk, source: int, target: int) -> dict[str, Any]:
    return _done(await desk.merge(source, target, CLI))


async def unmerge(desk: Desk, source: int) -> dict[str, Any]:
    return await desk.unmerge(source, CLI)


async def rules_test(desk: Desk, ticket: int) -> dict[str, Any]:
    """R24: which triggers and automations would act on the ticket now."""
    from warehouse import clock, rules
    return await desk.read(lambda con: {"ticket_id": ticket, **rules.rules_affecting(con, desk.rules, ticket,
                                                                                     clock.now())})


async def ingest(desk: Desk, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Normalized messages (the JSON form of `socialdesk ingest`), already validated by the caller: logged
    like a webhook, and answered once they are tickets (or dead letters)."""
    items: list[InboundMessage | Any] = [InboundMessage.from_dict(m) for m in messages]
    result = await desk.ingest(Delivery(items, "import"))
    return {"stored": result.stored, "duplicates": result.duplicates, "created_tickets": result.created_tickets,
            "updated_tickets": result.updated_tickets, "dead_letters": result.dead_letters}


async def dead_letters(desk: Desk, resolved: bool = False) -> dict[str, Any]:
    """Deliveries whose processing failed, with the error and their input (unresolved ones; or all)."""
    letters = await desk.dead_letters(resolved=resolved, limit=1000)
    return {"dead_letters": letters, "count": len(letters), "log": await desk.log_status()}


async def dead_letters_retry(desk: Desk, id: int | None = None) -> dict[str, Any]:
    """Process dead letters again after a fix: one, or every unresolved one."""
    return await desk.retry_dead_letters(None if id is None else [id])


async def log_status(desk: Desk) -> dict[str, Any]:
    """How far webhooks in the log are turned into tickets."""
    return await desk.log_status()


OPERATIONS: dict[str, Operation] = {
    "notifier": notifier, "view": view, "search": search, "ticket": ticket, "user": user, "claim": claim,
    "status": status, "tag": tag, "field": field, "reply": reply, "merge": merge, "unmerge": unmerge,
    "ingest": ingest, "rules_test": rules_test, "dead_letters": dead_letters, "dead_letters_retry": dead_letters_retry,
    "log_status": log_status,
}


def file_argument(path: str) -> dict[str, str]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"no such file: {path}")
    mime = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
    return {"name": p.name, "mime_type": mime, "data": base64.b64encode(p.read_bytes()).decode()}


def parse_jsonl(lines: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Valid messages, and one error per malformed line with its line number."""
    import json
    good, errors = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            InboundMessage.from_dict(data)
            good.append(data)
        except (ValueError, InvalidMessage) as exc:
            errors.append(f"line {n}: {exc}")
    return good, errors
