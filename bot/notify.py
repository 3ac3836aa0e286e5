"""The notifier task: tails the warehouse's events and mirrors them into Slack (B3, R15, R22, R23).

The warehouse knows nothing of Slack; it records events. Every half second a pass reads the events
after the cursor and plans what Slack must show (`plan`): a ticket's card in the triage channel
(`ticket_created`, or a rule's `slack_notification` to "triage"; never two cards for one ticket),
the conversation in the card's thread (end-user messages, replies with their delivery state, notes
not written in that thread), updates of a reply's thread message as receipts come and of the card
as the ticket changes, a DM to the agent whose reply a channel refused (R22), rules' notifications.
Those jobs wait in their channel's lane (bot/mirror.py), paced, in order, retried until Slack takes
them; each is rendered when it goes, so it shows the latest state, and an update the message
already shows is skipped. The cursor (warehouse.slack_state) moves only past events whose jobs are
all done. The pass also refreshes the App Home of every agent concerned who opened it since the app
started, at most once per agent per `debounce` seconds, reading on through the events for them even
while the lanes are full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.access import Access
from bot.blocks.card import (
    business_posts,
    card_message,
    card_room,
    edit_posts,
    end_user_posts,
    failure_dm,
    note_posts,
    notification_message,
    reply_posts,
    withdrawn_posts,
)
from bot.blocks.common import chunks, escape
from bot.blocks.home import home_view
from bot.mirror import COVERING, Job, Mirror, transient
from bot.pacing import Clock, RealClock, background
from bot.settings import SlackConfig
from warehouse import slack_state
from warehouse.desk import Desk
from warehouse.tickets import OperationError

log = logging.getLogger(__name__)
CURSOR = "notifier"
REPLY_EVENTS = ("reply_sent", "reply_delivered", "reply_read", "reply_failed", "reply_retry")
# Kinds that change who sees a ticket in the Unassigned tab or the red dot (R12, R15).
EVERYONE = ("ticket_created", "assignee_changed", "status_changed", "tags_changed", "requester_merged")
# Slack refused a message's content: its plain text goes instead, so the conversation is still there.
CONTENT_ERRORS = {"invalid_blocks", "invalid_blocks_format", "msg_too_long", "no_text", "invalid_arguments"}
MAX_WAITING = 5_000  # jobs: past this the pass reads no further events until lanes drain
COALESCE = 20  # end-user messages that may share one thread post
FRESH_KEPT = 50_000
HOMES_BATCH = 5_000  # events a pass reads for the home tabs alone while the lanes are full


def touch(tid: int | None, kind: str, data: dict[str, Any], touched: dict[int, set[str]]) -> None:
    """Note which tickets an event changed, and how: whose home tabs show them (`_homes_for`)."""
    if kind == "user_merged":
        for t in data.get("tickets") or []:
            touched.setdefault(int(t), set()).add(kind)
        return
    if tid is None:
        return
    touched.setdefault(tid, set()).add(kind)
    if kind == "assignee_changed" and data.get("previous") is not None:
        touched[tid].add(f"previous:{data['previous']}")

# An agent's home tab is refreshed at most this often. views.publish's own budget (Tier 4, shared by
# every agent, kept by the pacer) is the real limit; this only spares a tab the events of one burst
# one by one. Longer, and the one agent watching a busy desk sees new tickets a second late.
DEBOUNCE = 0.2


class Notifier:
    def __init__(self, desk: Desk, client: AsyncWebClient, cfg: SlackConfig, access: Access, *,
                 interval: float = 0.5, debounce: float = DEBOUNCE, batch: int = 500, homes_per_pass: int = 20,
                 clock: Clock | None = None, monotonic: Callable[[], float] | None = None,
                 media_link: Callable[[int, int], str] | None = None, wake_on_tickets: bool = True) -> None:
        self.wake_on_tickets = wake_on_tickets  # tests that drive the passes themselves turn it off
        self.desk = desk.following()
        self.client = client
        self.cfg = cfg
        self.access = access
        self.interval = interval
        self.debounce = debounce
        self.batch = batch
        self.homes_per_pass = homes_per_pass
        self.clock = clock or RealClock()
        self.monotonic = monotonic or self.clock.now
        self.media_link = media_link  # (comment id, attachment index) -> a signed link to the file
        pacer = getattr(client, "pacer", None)
        self.mirror = Mirror(self.execute, self.clock, can_wait=(
            (lambda job: pacer.ready_in("chat.update") > 0) if pacer is not None else None))
        self.lock = asyncio.Lock()  # one pass at a time
        self.home_tabs: dict[str, str] = {}  # the tab each agent last looked at
        self._pending_homes: set[str] = set()
        self._published_at: dict[str, float] = {}
        self._homes_task: asyncio.Task[None] | None = None
        self._saving: asyncio.Task[None] | None = None
        self._unreachable: set[str] = set()  # Slack refused their home tab for good
        self._homes_seen = 0  # the home tabs were refreshed for the events up to here
        self._cursor: int | None = None  # saved: everything up to it reached Slack
        self._planned: int | None = None  # read: jobs of events up to it are planned
        # What each Slack message shows already: (kind, ticket, ref) -> the ticket's last event when
        # it was rendered. An update asked by an event it already reflects is skipped.
        self._fresh: dict[tuple[str, int, int], int] = {}

    def _mark_fresh(self, key: tuple[str, int, int], event_id: int) -> None:
        """Remember what a message reflects; the oldest entries go past FRESH_KEPT (a forgotten one only
        costs an update that changes nothing)."""
        self._fresh.pop(key, None)
        self._fresh[key] = event_id
        if len(self._fresh) > FRESH_KEPT:
            for old in list(self._fresh)[: FRESH_KEPT // 10]:
                del self._fresh[old]

    # -- cursor ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """On the first start ever, begin at the current end of the log: old tickets get no cards."""
        found = await self.desk.read(lambda con: slack_state.cursor(con, CURSOR))
        if found is None:
            found = await self.desk.read(slack_state.end_of_log)
            await self._save_cursor(found)
        self._cursor = self._planned = found

    async def _save_cursor(self, value: int) -> None:
        await self.desk.write(lambda con: slack_state.save_cursor(con, CURSOR, value))
        self._cursor = value

    async def save_cursor(self) -> None:
        """Move the cursor past every event whose jobs Slack took."""
        if self._planned is None:
            return
        mark = self.mirror.watermark(self._planned)
        if mark != self._cursor:
            await self._save_cursor(mark)

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        if self._cursor is None:
            await self.start()
        # New tickets from webhooks wake the notifier at once (their card is the agents' first sight of
        # them); other changes are seen at the next poll.
        wake = asyncio.Event()
        loop = asyncio.get_running_loop()

        def news() -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody to wake
                loop.call_soon_threadsafe(wake.set)
        if self.wake_on_tickets:
            self.desk.store.log.subscribe(news)
        passes = 0
        try:
            while True:
                try:
                    await self.run_once()
                    passes += 1
                    if passes % 7200 == 0:  # about an hour: keys of Slack's deliveries are kept a day
                        await self.desk.write(slack_state.forget_seen)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bad pass must not stop the notifier for good
                    log.exception("Slack notifier pass failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), self.interval)
                wake.clear()
        finally:
            await self.mirror.stop()
            if self._homes_task is not None:
                self._homes_task.cancel()
            if self._saving is not None:
                self._saving.cancel()

    async def run_once(self) -> int:
        """One pass: plan the events after the last planned one, start the lanes, start saving the cursor and
        publishing the home tabs due. Returns the events read."""
        async with self.lock:
            if self._planned is None:
                await self.start()
            rows = []
            touched: dict[int, set[str]] = {}
            if len(self.mirror) < MAX_WAITING:
                after = self._planned or 0
                rows = await self.desk.read(lambda con: slack_state.events_after(con, after, self.batch))
            else:
                # The lanes wait for Slack (a burst in the triage channel goes at a post a second), but the
                # home tabs show the store as it is: they read on from the events they last saw.
                seen = max(self._homes_seen, self._planned or 0)
                for eid, tid, kind, _, data in await self.desk.read(
                        lambda con: slack_state.events_after(con, seen, HOMES_BATCH)):
                    touch(tid, kind, data, touched)
                    self._homes_seen = eid
            for eid, tid, kind, actor, data in rows:
                if eid > self._homes_seen:
                    touch(tid, kind, data, touched)
                self.plan(eid, tid, kind, actor, data)
                self._planned = eid
            self.mirror.kick()
            if touched:
                await self._homes_for(touched)
            self.kick_homes()
            self._save_cursor_soon()
        return len(rows)

    def _save_cursor_soon(self) -> None:
        """Save the cursor beside the passes, not in them: it is a write, which waits for the writer's
        round (up to a second or two under a burst), and neither the next pass nor the home tabs depend
        on it. A save still running covers this one; the next pass starts another."""
        if self._saving is None or self._saving.done():
            self._saving = asyncio.create_task(self._save_in_background(), name="slack-cursor")

    async def _save_in_background(self) -> None:
        try:
            await self.save_cursor()
        except Exception:  # the next pass saves it again; the events after it are replayed at worst
            log.exception("saving the Slack notifier's cursor failed")

    async def settle(self) -> None:
        """Wait until every lane is empty or resting and the home tabs due are published, then save the
        cursor (tests, shutdown)."""
        await self.mirror.drain()
        if self._homes_task is not None:
            await self._homes_task
        if self._saving is not None:
            await self._saving
        async with self.lock:
            await self.save_cursor()

    # -- planning: events -> jobs ------------------------------------------------------------------

    def plan(self, eid: int, tid: int | None, kind: str, actor: str, data: dict[str, Any]) -> None:
        if kind == "user_merged" or tid is None:
            return
        triage = self.cfg.triage_channel
        if kind == "reply_failed" and data.get("outbox_id") is not None:  # R22: told whether or not cards exist
            self.mirror.add(Job(eid, "failure_dm", tid, int(data["outbox_id"]), f"dm-failure-{data['outbox_id']}"))
        if kind == "ticket_created" or (kind == "slack_notification" and data.get("target") == "triage"):
            if triage:
                self.mirror.add(Job(eid, "card", tid, 0, triage))
            return
        if kind == "slack_notification":
            target = str(data.get("target") or "")
            if target == "assignee":
                target = str(data.get("assignee_slack_id") or "")
                if not target:
                    log.info("slack_notification to the assignee of ticket %s, which has none", tid)
                    return
            if target:
                self.mirror.add(Job(eid, "notification", tid, eid, target, {"text": str(data.get("text") or "")}))
            return
        if not triage:
            return
        if kind == "comment_added":
            cid = int(data["comment_id"])
            what = "note" if not data.get("public") else ("comment" if actor == "end-user" else "reply")
            if data.get("origin"):  # sent by the business from elsewhere: shown as the customer saw it
                what = "business"
            self.mirror.add(Job(eid, what, tid, cid, triage, {"origin": str(data.get("origin") or "")}))
        elif kind in ("comment_edited", "comment_withdrawn"):
            self.mirror.add(Job(eid, "conversation_change", tid, eid, triage,
                                {"kind": kind, "comment_id": int(data["comment_id"]),
                                 "text": str(data.get("text") or "")}))
        elif kind in REPLY_EVENTS and data.get("outbox_id") is not None:
            oid = int(data["outbox_id"])
            self.mirror.add(Job(eid, "reply_update", tid, oid, triage))
        self.mirror.add(Job(eid, "card_update", tid, 0, triage))

    # -- executing: a job -> Slack -----------------------------------------------------------------

    async def execute(self, head: Job, lane: deque[Job]) -> list[Job]:
        with background():
            if head.kind == "comment":
                return await self._comments(head, lane)
            handler = getattr(self, f"_{head.kind}")
            await handler(head)
            return [head]

    async def _post(self, channel: str, payload: dict[str, Any], thread_ts: str | None = None) -> tuple[str, str]:
        """chat.postMessage; if Slack refuses the content, its plain text instead (logged: a bug)."""
        extra: dict[str, Any] = {"thread_ts": thread_ts} if thread_ts else {}
        try:
            resp = await self.client.chat_postMessage(channel=channel, **payload, **extra)
        except SlackApiError as exc:
            if exc.response.get("error") not in CONTENT_ERRORS:
                raise
            log.error("Slack refused a message's blocks (%s %s): sending its plain text",
                      exc.response.get("error"), (exc.response.get("response_metadata") or {}).get("messages"))
            first: tuple[str, str] | None = None
            for piece in chunks(_plain(payload), 3900):
                resp = await self.client.chat_postMessage(channel=channel, text=piece or " ", **extra)
                first = first or (resp["channel"], resp["ts"])
            assert first is not None
            return first
        return resp["channel"], resp["ts"]

    async def _post_all(self, channel: str, parts: list[dict[str, Any]], thread_ts: str | None) -> tuple[str, str]:
        first = await self._post(channel, parts[0], thread_ts)
        for part in parts[1:]:
            await self._post(channel, part, thread_ts or first[1])
        return first

    async def _card_content(self, tid: int) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
        """The card as it is now, the customer's messages it shows, and the event it reflects. A new card
        shows the messages waiting for Slack (as many as fit whole); a posted one keeps those it showed."""
        def read(con: Any) -> tuple[int, list[dict[str, Any]], dict[str, Any] | None]:
            last = slack_state.last_event(con, tid)  # first: what is read after reflects it at least
            card = slack_state.message(con, tid, "card")
            shown = (slack_state.comments(con, slack_state.shown_in(con, tid, "comment", *card)) if card
                     else slack_state.waiting_customer_messages(con, tid))
            return last, shown, slack_state.last_reply(con, tid)
        last, shown, last_reply = await self.desk.read(read)
        ticket = await self.desk.ticket(tid, history=False)
        requester = await self.desk.user(ticket["requester"]["id"])
        if not await self.desk.read(lambda con: slack_state.message(con, tid, "card")):
            shown = card_room(requester, shown)
        links = {m["id"]: self._links(m) for m in shown}
        return card_message(ticket, requester, messages=shown, links=links, last_reply=last_reply), shown, last

    def _links(self, comment: dict[str, Any]) -> list[str | None] | None:
        if not self.media_link:
            return None
        return [self.media_link(comment["id"], i) if a.get("media_id") or a.get("url") else None
                for i, a in enumerate(comment.get("attachments") or [])]

    async def ensure_card(self, tid: int) -> tuple[str, str] | None:
        """The card's (channel, ts), posting it first if the ticket has none (and triage is configured)."""
        found = await self.desk.read(lambda con: slack_state.message(con, tid, "card"))
        if found or not self.cfg.triage_channel:
            return found
        content, shown, last = await self._card_content(tid)
        channel, ts = await self._post(self.cfg.triage_channel, content)

        def remember(con: Any) -> None:
            slack_state.remember(con, tid, "card", [0], channel, ts)
            # The card shows these customer messages: the thread need not.
            slack_state.remember(con, tid, "comment", [m["id"] for m in shown], channel, ts)
        await self.desk.write(remember)
        self._mark_fresh(("card", tid, 0), last)
        return channel, ts

    async def _card(self, job: Job) -> None:
        await self.ensure_card(int(job.ticket_id or 0))

    async def _card_update(self, job: Job) -> None:
        tid = int(job.ticket_id or 0)
        found = await self.desk.read(lambda con: slack_state.message(con, tid, "card"))
        if found is None or self._fresh.get(("card", tid, 0), -1) >= job.event_id:
            return
        try:
            content, _, last = await self._card_content(tid)
        except OperationError:
            return  # the ticket is gone
        await self.client.chat_update(channel=found[0], ts=found[1], **content)
        self._mark_fresh(("card", tid, 0), last)

    async def _comments(self, head: Job, lane: deque[Job]) -> list[Job]:
        """End-user messages for one thread: the head and the ones waiting after it for the same ticket
        (up to a reply or a note of that ticket, which must keep its place), in as few posts as fit."""
        batch = [head]
        waiting = list(lane)
        for job in waiting[waiting.index(head) + 1:]:
            if job.ticket_id != head.ticket_id or job.kind in COVERING:
                continue  # an update adds no message: the thread's order does not depend on it
            if job.kind != "comment" or len(batch) >= COALESCE:
                break
            batch.append(job)
        tid = int(head.ticket_id or 0)
        card = await self.ensure_card(tid)
        if card is None:
            return batch
        refs = [j.ref for j in batch]
        done = await self.desk.read(lambda con: slack_state.posted(con, tid, "comment", refs))
        comments = await self.desk.read(lambda con: slack_state.comments(con, [r for r in refs if r not in done]))
        if comments:
            name = comments[0]["author"] or ""
            links = {c["id"]: self._links(c) for c in comments}
            channel, ts = await self._post_all(card[0], end_user_posts(name, comments, links), card[1])
            await self.desk.write(lambda con: slack_state.remember(con, tid, "comment", [c["id"] for c in comments],
                                                                   channel, ts))
        return batch

    async def _reply(self, job: Job) -> None:
        """A reply in the thread with its delivery state (the job names the reply's comment)."""
        tid, cid = int(job.ticket_id or 0), job.ref
        comment = await self.desk.read(lambda con: slack_state.comment(con, cid))
        if comment is None or comment["outbox_id"] is None:
            return
        oid = int(comment["outbox_id"])
        if await self.desk.read(lambda con: slack_state.message(con, tid, "reply", oid)):
            return
        card = await self.ensure_card(tid)
        if card is None:
            return
        last = await self.desk.read(lambda con: slack_state.last_event(con, tid))
        reply = await self.desk.read(lambda con: slack_state.reply(con, oid))
        if reply is None:
            return
        channel, ts = await self._post_all(card[0], reply_posts(reply, reply["state"], reply["reason"]), card[1])
        await self.desk.write(lambda con: slack_state.remember(con, tid, "reply", [oid], channel, ts))
        self._mark_fresh(("reply", tid, oid), last)

    async def _business(self, job: Job) -> None:
        """A message the business sent from elsewhere, in the card's thread (once)."""
        tid, cid = int(job.ticket_id or 0), job.ref
        if await self.desk.read(lambda con: slack_state.posted(con, tid, "business", [cid])):
            return
        comment = await self.desk.read(lambda con: slack_state.comment(con, cid))
        card = await self.ensure_card(tid)
        if comment is None or card is None:
            return
        channel, ts = await self._post_all(card[0], business_posts(comment, str(job.data.get("origin"))), card[1])
        await self.desk.write(lambda con: slack_state.remember(con, tid, "business", [cid], channel, ts))

    async def _conversation_change(self, job: Job) -> None:
        """The customer edited or unsent a message: a line in the thread (the message itself is kept)."""
        tid, key = int(job.ticket_id or 0), job.ref  # keyed by the event: one line per edit
        if await self.desk.read(lambda con: slack_state.posted(con, tid, "change", [key])):
            return
        original = await self.desk.read(lambda con: slack_state.comment(con, int(job.data["comment_id"])))
        card = await self.ensure_card(tid)
        if original is None or card is None:
            return
        name = original["author"] or "The customer"
        parts = (edit_posts(name, original, str(job.data.get("text") or ""))
                 if job.data.get("kind") == "comment_edited" else withdrawn_posts(name, original))
        channel, ts = await self._post_all(card[0], parts, card[1])
        await self.desk.write(lambda con: slack_state.remember(con, tid, "change", [key], channel, ts))

    async def _reply_update(self, job: Job) -> None:
        tid, oid = int(job.ticket_id or 0), job.ref
        found = await self.desk.read(lambda con: slack_state.message(con, tid, "reply", oid))
        if found is None or self._fresh.get(("reply", tid, oid), -1) >= job.event_id:
            return  # not posted yet (its post will show the latest state) or up to date
        last = await self.desk.read(lambda con: slack_state.last_event(con, tid))
        reply = await self.desk.read(lambda con: slack_state.reply(con, oid))
        if reply is None:
            return
        await self.client.chat_update(channel=found[0], ts=found[1],
                                      **reply_posts(reply, reply["state"], reply["reason"])[0])
        self._mark_fresh(("reply", tid, oid), last)

    async def _note(self, job: Job) -> None:
        tid, cid = int(job.ticket_id or 0), job.ref

        def shown(con: Any) -> bool:  # written in the thread itself, or posted already
            return bool(slack_state.message(con, tid, "agent_note", cid) or slack_state.message(con, tid, "note", cid))
        if await self.desk.read(shown):
            return
        comment = await self.desk.read(lambda con: slack_state.comment(con, cid))
        card = await self.ensure_card(tid)
        if comment is None or card is None:
            return
        channel, ts = await self._post_all(card[0], note_posts(comment), card[1])
        await self.desk.write(lambda con: slack_state.remember(con, tid, "note", [cid], channel, ts))

    async def _notification(self, job: Job) -> None:
        """A rule's `notification_slack` action: to a channel, or a DM to the assignee."""
        tid = int(job.ticket_id or 0)
        if await self.desk.read(lambda con: slack_state.message(con, tid, "notification", job.ref)):
            return
        ticket = None
        with contextlib.suppress(OperationError):
            ticket = await self.desk.ticket(tid, history=False)
        channel, ts = await self._post(job.lane, notification_message(job.data.get("text", ""), ticket))
        await self.desk.write(lambda con: slack_state.remember(con, tid, "notification", [job.ref], channel, ts))

    async def _failure_dm(self, job: Job) -> None:
        """R22: the agent whose reply the channel refused hears it at once, by DM."""
        tid, oid = int(job.ticket_id or 0), job.ref

        def read(con: Any) -> tuple[Any, ...]:
            return (slack_state.message(con, tid, "failure_dm", oid), slack_state.reply(con, oid),
                    slack_state.message(con, tid, "card"))
        told, reply, card = await self.desk.read(read)
        if told or reply is None or reply["state"] != "failed":
            return
        agent = await self.desk.read(lambda con: slack_state.slack_user(con, reply["agent_id"]))
        if not agent:
            return  # a rule's reply, or a CLI agent without Slack: the card and the thread show it
        ticket = await self.desk.ticket(tid, history=False)
        channel, ts = await self._post(agent, failure_dm(ticket, reply, card))
        await self.desk.write(lambda con: slack_state.remember(con, tid, "failure_dm", [oid], channel, ts))

    # -- App Home ----------------------------------------------------------------------------------

    async def _homes_for(self, touched: dict[int, set[str]]) -> None:
        rows = await self.desk.read(lambda con: slack_state.assignees(con, list(touched)))
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
            users |= await self.desk.read(lambda con: slack_state.slack_users(con, previous))
        if everyone:
            users |= set(self.home_tabs)
        self.request_homes(users)

    def request_homes(self, users: set[str]) -> None:
        """Refresh these agents' home tabs, if they have opened it since the app started: Slack shows the
        App Home only when opened, and each opening publishes it fresh (app_home_opened). Refreshing the
        others would spend the views.publish budget (Tier 4, about 100 a minute, shared by everyone) on
        tabs nobody is looking at."""
        self._pending_homes |= {u for u in users if u in self.home_tabs and u not in self._unreachable}

    def kick_homes(self) -> None:
        """Publish the home tabs due in a task of their own: paced to views.publish's tier, they must not
        hold up the pass (and the cards) when many agents are concerned."""
        if self._pending_homes and (self._homes_task is None or self._homes_task.done()):
            self._homes_task = asyncio.create_task(self.flush_homes(), name="slack-homes")

    async def flush_homes(self) -> None:
        """Publish the pending home tabs whose last refresh is at least `debounce` seconds old."""
        now = self.monotonic()
        published = 0
        pacer = getattr(self.client, "pacer", None)
        # The longest unrefreshed first: when views.publish's budget is short, every agent gets their turn.
        for user in sorted(self._pending_homes, key=lambda u: (self._published_at.get(u, -1e18), u)):
            if user in self._unreachable:  # asked for again while its refused publish was on its way
                self._pending_homes.discard(user)
                continue
            if now - self._published_at.get(user, -1e18) < self.debounce:
                continue
            if published >= self.homes_per_pass:
                break  # the rest stay pending for the next pass
            published += 1
            if pacer is not None and (wait := pacer.ready_in("views.publish")) > 0:
                await self.clock.sleep(wait)  # read after the wait, so the tab shows the store as it is then
            self._pending_homes.discard(user)
            try:
                with background():
                    await self.publish_home(user)
            except SlackApiError as exc:
                if transient(exc):
                    log.warning("views.publish failed for %s: %s (again next pass)", user, exc.response.get("error"))
                    self._pending_homes.add(user)
                else:
                    # Gone from the workspace, say: retrying each pass would spend the Tier 4 budget every
                    # other agent's home tab shares. Their next visit to the App Home publishes it again.
                    log.warning("views.publish refused for %s: %s (not refreshed until they open the App "
                                "Home)", user, exc.response.get("error"))
                    self._unreachable.add(user)

    async def publish_home(self, user: str, tab: str | None = None) -> None:
        tab = tab or self.home_tabs.get(user, "assigned")
        self.home_tabs[user] = tab
        self._published_at[user] = self.monotonic()
        result = await self.desk.notifier(user, tab)
        await self.client.views_publish(user_id=user, view=home_view(result))
        self._unreachable.discard(user)


def _plain(payload: dict[str, Any]) -> str:
    """A message's words without Block Kit, escaped for mrkdwn: its texts in order (the fallback when
    blocks are refused). mrkdwn texts are escaped already; plain_text ones are escaped here."""
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
                texts.append(node["text"])
                return
            if node.get("type") == "plain_text" and isinstance(node.get("text"), str):
                texts.append(escape(node["text"]))
                return
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(payload.get("blocks") or [])
    return "\n".join(texts) or str(payload.get("text") or "")
