"""The notifier task: tails the warehouse's events and mirrors them into Slack (B3, R15, R23).

The warehouse knows nothing of Slack; it records events. This task reads the events after its
cursor (table `slack_cursor`) every half second and, for each: posts a ticket's card in the triage
channel (`ticket_created`, or a rule's `slack_notification` to "triage"; never two cards for one
ticket), mirrors comments into the card's thread (end-user messages, replies with their delivery
state, notes not written in that thread), updates a reply's thread message as receipts come, posts
rules' notifications, updates the cards of changed tickets and refreshes the App Home of every
agent concerned, at most once per agent per `debounce` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.access import Access
from bot.blocks.card import card_message, end_user_message, note_message, notification_message, reply_message
from bot.blocks.home import home_view
from bot.settings import SlackConfig
from warehouse import clock
from warehouse.desk import Desk
from warehouse.rows import sql_list
from warehouse.tickets import OperationError

log = logging.getLogger(__name__)
CURSOR = "notifier"
REPLY_EVENTS = ("reply_sent", "reply_delivered", "reply_read", "reply_failed", "reply_retry")
# Kinds that change who sees a ticket in the Unassigned tab or the red dot (R12, R15).
EVERYONE = ("ticket_created", "assignee_changed", "status_changed", "tags_changed", "requester_merged")


class Notifier:
    def __init__(self, desk: Desk, client: AsyncWebClient, cfg: SlackConfig, access: Access, *,
                 interval: float = 0.5, debounce: float = 1.0, batch: int = 500, card_every: float | None = None,
                 homes_per_pass: int = 20, monotonic: Callable[[], float] = time.monotonic,
                 media_link: Callable[[int, int], str] | None = None) -> None:
        self.desk = desk
        self.client = client
        self.cfg = cfg
        self.access = access
        self.interval = interval
        self.debounce = debounce
        self.batch = batch
        # A busy ticket's card is updated at most once per `card_every` seconds (the debounce by
        # default), and a pass publishes at most `homes_per_pass` home tabs: under a flood of messages
        # the mirror lags a little instead of starving agents' own requests.
        self.card_every = debounce if card_every is None else card_every
        self.homes_per_pass = homes_per_pass
        self._cards_due: set[int] = set()
        self._card_updated: dict[int, float] = {}
        self.monotonic = monotonic
        self.media_link = media_link  # (comment id, attachment index) -> a signed link to the file
        # Held during a pass, and by the thread listener while it writes a note, so the pass never
        # sees that note's event before it knows the note came from the thread.
        self.lock = asyncio.Lock()
        self.from_thread: set[int] = set()  # comment ids agents wrote in a card's thread
        self.home_tabs: dict[str, str] = {}  # the tab each agent last looked at
        self._pending_homes: set[str] = set()
        self._published_at: dict[str, float] = {}
        self._cursor: int | None = None

    # -- cursor ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """On the first start ever, begin at the current end of the log: old tickets get no cards."""
        row = await self.desk.read(lambda con: con.execute(
            "SELECT last_event_id FROM slack_cursor WHERE name = ?", [CURSOR]).fetchone())
        if row is None:
            last = await self.desk.read(lambda con: con.execute("SELECT coalesce(max(id), 0) FROM events").fetchone())
            await self._save_cursor(last[0])
        else:
            self._cursor = row[0]

    async def _save_cursor(self, value: int) -> None:
        await self.desk.write(lambda con: con.execute(
            "INSERT INTO slack_cursor VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET last_event_id = "
            "excluded.last_event_id", [CURSOR, value]))
        self._cursor = value

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        if self._cursor is None:
            await self.start()
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad pass must not stop the notifier for good
                log.exception("Slack notifier pass failed")
            await asyncio.sleep(self.interval)

    async def run_once(self) -> int:
        """One pass: every event after the cursor, then the home tabs due. Returns the events handled."""
        async with self.lock:
            if self._cursor is None:
                await self.start()
            cursor = self._cursor or 0
            rows = await self.desk.read(lambda con: con.execute(
                "SELECT id, ticket_id, kind, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
                [cursor, self.batch]).fetchall())
            touched: dict[int, set[str]] = {}
            posted: set[int] = set()
            done = cursor
            for eid, tid, kind, data in rows:
                try:
                    await self._handle(tid, kind, json.loads(data), touched, posted)
                except SlackApiError as exc:  # Slack said no (channel gone, ...): log it and move on
                    log.warning("Slack refused event %s (%s): %s", eid, kind, exc.response.get("error"))
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    log.warning("Slack unreachable at event %s: %s; retrying next pass", eid, exc)
                    break
                done = eid
            self._cards_due |= {tid for tid in touched if tid not in posted}
            await self._update_due_cards()
            if touched:
                await self._homes_for(touched)
            if done != cursor:
                await self._save_cursor(done)
        await self.flush_homes()
        return len(rows)

    async def _handle(self, tid: int | None, kind: str, data: dict[str, Any], touched: dict[int, set[str]],
                      posted: set[int]) -> None:
        if kind == "user_merged":
            for t in data.get("tickets") or []:
                touched.setdefault(int(t), set()).add(kind)
            return
        if tid is None:
            return
        touched.setdefault(tid, set()).add(kind)
        if kind == "assignee_changed" and data.get("previous") is not None:
            touched[tid].add(f"previous:{data['previous']}")
        if kind == "ticket_created" or (kind == "slack_notification" and data.get("target") == "triage"):
            if await self.ensure_card(tid):
                posted.add(tid)
        elif kind == "comment_added":
            await self.post_comment(tid, int(data["comment_id"]))
        elif kind in REPLY_EVENTS and data.get("outbox_id") is not None:
            await self.update_reply(tid, int(data["outbox_id"]))
        elif kind == "slack_notification":
            await self.post_notification(tid, data)

    # -- cards and threads -------------------------------------------------------------------------

    async def _message_ts(self, tid: int, kind: str, ref: int = 0) -> tuple[str, str] | None:
        row = await self.desk.read(lambda con: con.execute(
            "SELECT channel, ts FROM slack_messages WHERE ticket_id = ? AND kind = ? AND ref = ?",
            [tid, kind, ref]).fetchone())
        return (row[0], row[1]) if row else None

    async def _remember(self, tid: int, kind: str, ref: int, channel: str, ts: str) -> None:
        await self.desk.write(lambda con: con.execute(
            "INSERT INTO slack_messages VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [tid, kind, ref, channel, ts, clock.now()]))

    async def _update_due_cards(self) -> None:
        now = self.monotonic()
        for tid in sorted(self._cards_due):
            if now - self._card_updated.get(tid, -1e18) < self.card_every:
                continue  # stays due: a later pass updates it
            self._cards_due.discard(tid)
            self._card_updated[tid] = now
            with contextlib.suppress(SlackApiError, OperationError):
                await self.update_card(tid)

    async def card_content(self, tid: int) -> dict[str, Any]:
        ticket = await self.desk.ticket(tid, history=False)
        requester = await self.desk.user(ticket["requester"]["id"])
        return card_message(ticket, requester)

    async def ensure_card(self, tid: int) -> tuple[str, str] | None:
        """The card's (channel, ts), posting it first if the ticket has none (and triage is configured)."""
        found = await self._message_ts(tid, "card")
        if found or not self.cfg.triage_channel:
            return found if found else None
        resp = await self.client.chat_postMessage(channel=self.cfg.triage_channel, **await self.card_content(tid))
        await self._remember(tid, "card", 0, resp["channel"], resp["ts"])
        return resp["channel"], resp["ts"]

    async def update_card(self, tid: int) -> None:
        found = await self._message_ts(tid, "card")
        if found:
            await self.client.chat_update(channel=found[0], ts=found[1], **await self.card_content(tid))

    async def _comment(self, cid: int) -> dict[str, Any] | None:
        row = await self.desk.read(lambda con: con.execute(
            "SELECT c.body, c.public, c.attachments, u.name, u.role, o.id, o.state, o.last_error "
            "FROM comments c JOIN users u ON u.id = c.author_id LEFT JOIN outbox o ON o.comment_id = c.id "
            "WHERE c.id = ?", [cid]).fetchone())
        if row is None:
            return None
        body, public, attachments, name, role, oid, state, error = row
        return {"id": cid, "body": body, "public": public, "attachments": json.loads(attachments), "author": name,
                "author_role": role, "outbox_id": oid, "state": state, "reason": error}

    async def post_comment(self, tid: int, cid: int) -> None:
        if cid in self.from_thread:  # written in the thread: it is there already
            self.from_thread.discard(cid)
            return
        comment = await self._comment(cid)
        card = await self.ensure_card(tid)
        if comment is None or card is None:
            return
        if comment["outbox_id"] is not None:
            content, kind, ref = reply_message(comment, comment["state"], comment["reason"]), "reply", \
                comment["outbox_id"]
        elif comment["public"]:
            links = ([self.media_link(cid, i) if a.get("media_id") or a.get("url") else None
                      for i, a in enumerate(comment["attachments"])] if self.media_link else None)
            content, kind, ref = end_user_message(comment["author"] or "", comment, links), "comment", cid
        else:
            content, kind, ref = note_message(comment), "note", cid
        resp = await self.client.chat_postMessage(channel=card[0], thread_ts=card[1], **content)
        await self._remember(tid, kind, ref, resp["channel"], resp["ts"])

    async def update_reply(self, tid: int, outbox_id: int) -> None:
        found = await self._message_ts(tid, "reply", outbox_id)
        if not found:
            return
        row = await self.desk.read(lambda con: con.execute(
            "SELECT comment_id, state, last_error FROM outbox WHERE id = ?", [outbox_id]).fetchone())
        if row is None or row[0] is None:
            return
        comment = await self._comment(row[0])
        if comment is None:
            return
        state = row[1]
        if state == "queued" and row[2]:
            state = "retry"
        await self.client.chat_update(channel=found[0], ts=found[1], **reply_message(comment, state, row[2]))

    async def post_notification(self, tid: int, data: dict[str, Any]) -> None:
        """A rule's `notification_slack` action: to a channel, or a DM to the assignee."""
        target = str(data.get("target") or "")
        text = str(data.get("text") or "")
        if target == "assignee":
            target = data.get("assignee_slack_id") or ""
            if not target:
                log.info("slack_notification to the assignee of ticket %s, which has none", tid)
                return
        if not target:
            return
        ticket = None
        with contextlib.suppress(OperationError):
            ticket = await self.desk.ticket(tid)
        await self.client.chat_postMessage(channel=target, **notification_message(text, ticket))

    # -- App Home ----------------------------------------------------------------------------------

    async def _homes_for(self, touched: dict[int, set[str]]) -> None:
        ids = list(touched)
        rows = await self.desk.read(lambda con: con.execute(
            "SELECT t.id, t.assignee_id, u.slack_user_id FROM tickets t LEFT JOIN users u ON u.id = t.assignee_id "
            f"WHERE t.id IN {sql_list(ids)}").fetchall())
        users: set[str] = set()
        previous: set[int] = set()
        everyone = False
        for tid, assignee, slack_id in rows:
            kinds = touched[tid]
            if slack_id:
                users.add(slack_id)
            previous |= {int(k.split(":", 1)[1]) for k in kinds if k.startswith("previous:")}
            if assignee is None or kinds & set(EVERYONE):
                everyone = True
        if previous:
            users |= {r[0] for r in await self.desk.read(lambda con: con.execute(
                f"SELECT slack_user_id FROM users WHERE id IN {sql_list(previous)} AND slack_user_id IS NOT NULL"
            ).fetchall())}
        if everyone:
            users |= await self.access.known_agents() | set(self.home_tabs)
        self.request_homes(users)

    def request_homes(self, users: set[str]) -> None:
        self._pending_homes |= {u for u in users if u}

    async def flush_homes(self) -> None:
        """Publish the pending home tabs whose last refresh is at least `debounce` seconds old."""
        now = self.monotonic()
        published = 0
        for user in sorted(self._pending_homes):
            if now - self._published_at.get(user, -1e18) < self.debounce:
                continue
            if published >= self.homes_per_pass:
                break  # the rest stay pending for the next pass
            published += 1
            self._pending_homes.discard(user)
            try:
                await self.publish_home(user)
            except SlackApiError as exc:
                log.warning("views.publish failed for %s: %s", user, exc.response.get("error"))

    async def publish_home(self, user: str, tab: str | None = None) -> None:
        tab = tab or self.home_tabs.get(user, "assigned")
        self.home_tabs[user] = tab
        self._published_at[user] = self.monotonic()
        result = await self.desk.notifier(user, tab)
        await self.client.views_publish(user_id=user, view=home_view(result))
