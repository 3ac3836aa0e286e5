"""The desk: every operation people and channels perform, as one write each, with triggers after it.

Slack, the CLI, the admin route and the webhooks all go through a `Desk`, so a ticket changed from
anywhere fires the same triggers (R3) in the same transaction, and nobody writes behind the
writer's back. Reads run on their own cursors in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

import duckdb

from warehouse import log as ingest_log
from warehouse import queries, slack_state, tickets
from warehouse.entries import Entry, entry_of
from warehouse.ingest import Delivery, IngestResult, ingest_batch
from warehouse.log import Append
from warehouse.read_models import NotifierTab, SearchResult, Ticket, User, ViewPage
from warehouse.rows import event, record_events, scalar
from warehouse.store import Store
from warehouse.tickets import Actor

T = TypeVar("T")
Con = duckdb.DuckDBPyConnection


class TriggerRunner(Protocol):
    def __call__(self, con: Con, ticket_ids: list[int], update_type: str, actor: Actor,
                 comment_is_public: bool | None = None) -> Any: ...


def _no_triggers(con: Con, ticket_ids: list[int], update_type: str, actor: Actor,
                 comment_is_public: bool | None = None) -> None:
    return None


class Desk:
    """`rules` (a warehouse.rules.RuleSet) gives macros and R24's rule preview to the Slack app;
    `templates` are the approved WhatsApp templates agents may send outside the window (B1)."""

    def __init__(self, store: Store, triggers: TriggerRunner = _no_triggers, rules: Any = None,
                 templates: list[dict[str, Any]] | None = None) -> None:
        self.store = store
        self.triggers = triggers
        self.rules = rules
        self.templates = list(templates or [])
        self.fresh = True

    def following(self) -> Desk:
        """This desk for the notifier, which follows the events as they are built: its reads and writes
        need not wait for the webhooks acknowledged after them (under a burst that wait held every pass
        and every home tab for hundreds of milliseconds). People's requests keep waiting: a reply just
        after a webhook must find what it carried."""
        other = copy.copy(self)
        other.fresh = False
        return other

    # -- plumbing ----------------------------------------------------------------------------------

    def _ingest_with_triggers(self, con: Con, deliveries: list[Delivery]) -> list[IngestResult]:
        results = ingest_batch(con, deliveries)
        created = [t for r in results for t in r.created_tickets]
        updated = [t for r in results for t in r.updated_tickets if t not in created]
        if created:
            self.triggers(con, created, "Create", Actor("end-user"), True)
        if updated:
            self.triggers(con, updated, "Change", Actor("end-user"), True)
        return results

    async def ingest(self, delivery: Delivery) -> IngestResult:
        """Log what one webhook or import carried and return once it is tickets (an import, a test; a
        webhook is answered sooner, with `receive`)."""
        self.take_log()
        waiter: Future[IngestResult] = Future()
        await self.store.aappend(Append(entry_of(delivery), self._ingest_with_triggers, waiter))
        return await asyncio.wrap_future(waiter)

    async def ingest_many(self, deliveries: list[Delivery]) -> list[IngestResult | BaseException]:
        """`ingest` for many deliveries, logged in one append; a delivery that fails fails alone."""
        self.take_log()
        waiters: list[Future[IngestResult]] = [Future() for _ in deliveries]
        logged = await self.store.aappend_all([Append(entry_of(d), self._ingest_with_triggers, w)
                                               for d, w in zip(deliveries, waiters, strict=True)])
        results: list[IngestResult | BaseException] = []
        for id_or_error, w in zip(logged, waiters, strict=True):
            if isinstance(id_or_error, BaseException):
                results.append(id_or_error)
            else:
                done: IngestResult = await asyncio.wrap_future(w)
                results.append(done)
        return results

    def ingest_sync(self, delivery: Delivery) -> IngestResult:
        self.take_log()
        waiter: Future[IngestResult] = Future()
        self.store.append(Append(entry_of(delivery), self._ingest_with_triggers, waiter))
        return waiter.result()

    def _change(self, ticket_id: int, actor: Actor, op: Callable[[Con], T],
                public: bool | None = None) -> Callable[[Con], T]:
        def run(con: Con) -> T:
            result = op(con)
            self.triggers(con, [ticket_id], "Change", actor, public)
            return result
        return run

    async def write(self, fn: Callable[[Con], T]) -> T:
        return await self.store.awrite(fn, fresh=self.fresh)

    async def read(self, fn: Callable[[Con], T]) -> T:
        return await self.store.aread(fn, fresh=self.fresh)

    # -- agents ------------------------------------------------------------------------------------

    async def agent(self, slack_user_id: str, name: str | None = None) -> int:
        """The agent's user id; written only the first time, or when their name changed."""
        def known(con: Con) -> tuple[int, str] | None:
            aid = tickets.agent_id(con, slack_user_id)
            return None if aid is None else (aid, scalar(con, "SELECT name FROM users WHERE id = ?", [aid]))
        found = await self.read(known)
        if found is not None and (not name or name == found[1]):
            return found[0]
        return await self.write(lambda con: tickets.ensure_agent(con, slack_user_id, name))

    # -- ticket operations -------------------------------------------------------------------------

    async def claim(self, ticket_id: int, agent: int, *, take_over: bool = False) -> dict[str, Any]:
        """Raises tickets.AssignedElsewhere when another agent has it, unless `take_over`."""
        actor = Actor.agent(agent)
        return await self.write(self._change(
            ticket_id, actor, lambda con: tickets.claim(con, ticket_id, agent, take_over=take_over)))

    async def unassign(self, ticket_id: int, actor: Actor) -> dict[str, Any]:
        return await self.assign(ticket_id, None, actor)

    async def assign(self, ticket_id: int, assignee: int | None, actor: Actor) -> dict[str, Any]:
        return await self.write(self._change(ticket_id, actor,
                                             lambda con: tickets.assign(con, ticket_id, assignee, actor)))

    async def set_status(self, ticket_id: int, status: str, actor: Actor) -> dict[str, Any]:
        return await self.write(self._change(ticket_id, actor,
                                             lambda con: tickets.set_status(con, ticket_id, status, actor)))

    async def change_tags(self, ticket_id: int, add: list[str], remove: list[str], actor: Actor) -> dict[str, Any]:
        return await self.write(self._change(ticket_id, actor,
                                             lambda con: tickets.change_tags(con, ticket_id, add, remove, actor)))

    async def set_fields(self, ticket_id: int, changes: Mapping[str, Any], actor: Actor, *,
                         once: str | None = None) -> dict[str, Any] | None:
        """Priority, group, subject, custom fields (`tickets.set_fields`); with `once`, None if that key
        was acted on already (a submission delivered twice)."""
        return await self.write(self._once(ticket_id, actor,
                                           lambda con: tickets.set_fields(con, ticket_id, changes, actor), None,
                                           once, None))

    def _once(self, ticket_id: int, actor: Actor, op: Callable[[Con], dict[str, Any]], public: bool | None,
              once: str | None, then: Callable[[Con, dict[str, Any]], Any] | None
              ) -> Callable[[Con], dict[str, Any] | None]:
        """`op` with its triggers, done only the first time `once` is seen (a delivery Slack may repeat);
        `then` records what else must commit with it. None when `once` was seen before."""
        change = self._change(ticket_id, actor, op, public)

        def run(con: Con) -> dict[str, Any] | None:
            if once is not None and not slack_state.first_time(con, once):
                return None
            result = change(con)
            if then is not None:
                then(con, result)
            return result
        return run

    async def note(self, ticket_id: int, author: int, text: str, *, once: str | None = None,
                   then: Callable[[Con, dict[str, Any]], Any] | None = None) -> dict[str, Any] | None:
        """An internal note; with `once`, None if that key was acted on already."""
        actor = Actor.agent(author)
        return await self.write(self._once(ticket_id, actor,
                                           lambda con: tickets.internal_note(con, ticket_id, author, text), False,
                                           once, then))

    async def reply(self, ticket_id: int, agent: int, text: str, *, status: str | None = None,
                    file: tuple[str, str, bytes] | None = None, template: dict[str, Any] | None = None,
                    before: Callable[[Con], Any] | None = None, once: str | None = None) -> dict[str, Any] | None:
        """A public reply (R20-R23); `before` runs first in the same transaction (a macro's other actions).
        With `once`, None if that key was acted on already (a submission delivered twice sends once)."""
        actor = Actor.agent(agent)

        def op(con: Con) -> dict[str, Any]:
            if before is not None:
                before(con)
            return tickets.reply(con, ticket_id, agent, text, status=status, file=file, template=template)
        return await self.write(self._once(ticket_id, actor, op, True, once, None))

    async def refused_reply(self, ticket_id: int, agent: int, reason: str, *, window_closed: bool) -> None:
        """R22, R23: a reply the desk refused before anything was sent is in the ticket's events too."""
        await self.write(lambda con: record_events(con, [event(
            ticket_id, "reply_refused", "agent", agent, reason=reason, window_closed=window_closed)]))

    # Merges never fire triggers (as in Zendesk).
    async def merge(self, source: int, target: int, actor: Actor, *, once: str | None = None) -> dict[str, Any] | None:
        """With `once`, None if that key was acted on already (a submission delivered twice)."""
        def run(con: Con) -> dict[str, Any] | None:
            if once is not None and not slack_state.first_time(con, once):
                return None
            return tickets.merge_users(con, source, target, actor)
        return await self.write(run)

    async def unmerge(self, source: int, actor: Actor) -> dict[str, Any]:
        return await self.write(lambda con: tickets.unmerge_user(con, source, actor))

    # -- reads -------------------------------------------------------------------------------------

    async def notifier(self, slack_user_id: str, tab: str = "assigned", page: int = 1) -> NotifierTab:
        return await self.read(lambda con: queries.notifier(con, slack_user_id, tab, page))

    async def view(self, title: str, slack_user_id: str | None = None, page: int = 1) -> ViewPage:
        return await self.read(lambda con: queries.view(con, title, slack_user_id, page))

    async def search(self, query: str) -> SearchResult:
        return await self.read(lambda con: queries.search(con, query))

    async def ticket(self, ticket_id: int, history: bool = True) -> Ticket:
        return await self.read(lambda con: queries.ticket(con, ticket_id, history))

    async def user(self, user_id: int) -> User:
        return await self.read(lambda con: queries.user(con, user_id))

    # -- the log (issue 15) ------------------------------------------------------------------------

    def take_log(self) -> None:
        """This desk turns the store's log into tickets (with its triggers): what earlier runs left
        unprocessed, and every webhook from now on. The first desk on a store that asks gets it; what
        another desk logs is still processed with that desk's triggers."""
        self.store.log.adopt(self._ingest_with_triggers)

    async def receive(self, delivery: Delivery) -> int:
        """A webhook's delivery, durable in the log: the platform may be answered. Tickets follow."""
        self.take_log()
        return await self.store.aappend(Append(entry_of(delivery), self._ingest_with_triggers))

    async def receive_entries(self, entries: list[Entry]) -> list[int | BaseException]:
        """Entries a webhook worker logged for its webhooks (parsed and encoded there), in one append."""
        self.take_log()
        return await self.store.aappend_all([Append(e, self._ingest_with_triggers) for e in entries])

    async def dead_letters(self, resolved: bool = False, limit: int = 100) -> list[dict[str, Any]]:
        return await self.read(lambda con: ingest_log.dead_letters(con, resolved=resolved, limit=limit))

    async def retry_dead_letters(self, ids: list[int] | None = None) -> dict[str, Any]:
        """Process dead letters again (after a fix): each in a transaction of its own; one that fails
        again stays, with its new error."""
        if ids is None:
            ids = await self.read(ingest_log.unresolved_ids)
        retried: list[dict[str, Any]] = []
        for letter in ids:
            try:
                result = await self.write(functools.partial(ingest_log.retry, process=self._ingest_with_triggers,
                                                            letter_id=letter))
            except LookupError as exc:
                retried.append({"id": letter, "resolved": False, "error": str(exc)})
            except Exception as exc:  # noqa: BLE001 (it stays a dead letter, with why)
                await self.write(functools.partial(ingest_log.retry_failed, letter_id=letter, error=exc))
                retried.append({"id": letter, "resolved": False, "error": ingest_log.error_text(exc)})
            else:
                retried.append({"id": letter, "resolved": True, "stored": result.stored,
                                "duplicates": result.duplicates, "created_tickets": result.created_tickets,
                                "updated_tickets": result.updated_tickets})
        return {"retried": retried, "resolved": sum(r["resolved"] for r in retried),
                "still_dead": sum(not r["resolved"] for r in retried)}

    async def log_status(self) -> dict[str, Any]:
        """How far the log is turned into tickets, and how many dead letters wait."""
        return await self.store.aread(ingest_log.status, fresh=False)
