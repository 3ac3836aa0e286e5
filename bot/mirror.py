"""The notifier's outgoing queue: one lane per Slack channel, each in order, none ever skipping a job.

Slack takes about one message a second per channel and answers 429 (with `Retry-After`) or 5xx when
it will not take one now (reference/slack.md). So what the notifier sends waits in its channel's
lane, in the order of the events that asked for it (a ticket's card before its thread, the thread in
order), and leaves the lane only once Slack took it:
- 429: the paced client holds that method or channel for `Retry-After`, then the same job goes again;
- 5xx, a timeout, no connection: the same job again after a backoff (1, 2, 4 ... 60 s); after a few
  failures in a row the lane rests a minute and the next notifier pass wakes it;
- the channel itself refuses (the app is not in it, it is archived or gone): the lane rests, logged
  once a rest with what to do, and resumes when the pass wakes it: nothing is lost while an admin
  invites the app;
- Slack refuses the message itself (a bug of ours: the strict fake catches these in tests): the job
  is dropped with an error in the log, so one bad message cannot hold a channel forever.
Each job names the event that asked for it; the notifier's cursor never passes a job still waiting
(`watermark`), so after a restart the notifier reads those events again, and posting is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.pacing import Clock, retry_after

log = logging.getLogger(__name__)

# Slack refuses the channel, not the message: wait for a person to fix it.
CHANNEL_ERRORS = {"not_in_channel", "channel_not_found", "is_archived", "invalid_auth", "account_inactive",
                  "token_revoked", "not_authed", "missing_scope", "team_access_not_granted", "ekm_access_denied",
                  "restricted_action", "user_not_found", "cannot_dm_bot"}
TRANSIENT_ERRORS = {"internal_error", "service_unavailable", "fatal_error", "request_timeout", "ratelimited"}
# A message to a person Slack cannot reach (gone from the workspace, deactivated): nobody can fix that, so
# it is dropped rather than left resting, retried and holding back the notifier's cursor. What it said is
# on the ticket's card and thread too.
PERSON_GONE = {"channel_not_found", "user_not_found", "account_inactive", "cannot_dm_bot", "user_disabled"}
# Kinds of which one waiting job covers all: it renders the latest state when it goes.
COVERING = {"card_update", "reply_update"}


@dataclass(eq=False)
class Job:
    event_id: int
    kind: str  # card, comment, reply, note, business, conversation_change, card_update, reply_update, notification,
    #            failure_dm
    ticket_id: int | None
    ref: int
    lane: str  # the Slack channel (or user, for a DM) it goes to
    data: dict[str, Any] = field(default_factory=dict)


def to_a_person(job: Job) -> bool:
    """A DM: the refusal DM of R22, or a rule's notification to a user (Slack user ids start U or W)."""
    return job.kind == "failure_dm" or (job.kind == "notification" and job.lane[:1] in ("U", "W"))


def transient(exc: BaseException) -> bool:
    if isinstance(exc, (TimeoutError, aiohttp.ClientError, OSError)):
        return True
    if isinstance(exc, SlackApiError):
        status = getattr(exc.response, "status_code", 200)
        return status >= 500 or status == 429 or (exc.response.get("error") in TRANSIENT_ERRORS)
    return False


class Mirror:
    """Lanes of jobs; `execute(head, lane)` sends the head (and may take more of the lane with it:
    several waiting messages of one thread go as one post) and returns the jobs Slack took."""

    def __init__(self, execute: Callable[[Job, deque[Job]], Awaitable[list[Job]]], clock: Clock, *,
                 rest: float = 60.0, max_backoff: float = 60.0, failures_before_rest: int = 5,
                 can_wait: Callable[[Job], bool] | None = None) -> None:
        self.execute = execute
        self.clock = clock
        # An update that would wait for its rate limit lets the posts behind it go first: an update
        # changes a message that is there already, so no message changes place.
        self.can_wait = can_wait
        self.rest = rest
        self.max_backoff = max_backoff
        self.failures_before_rest = failures_before_rest
        self.lanes: dict[str, deque[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._resting: dict[str, float] = {}  # lane -> when it may go again
        self._events: Counter[int] = Counter()  # jobs waiting per event
        self.taken = 0  # jobs Slack took (metrics, benchmark)
        self.dropped = 0  # jobs Slack refused for good

    # -- the queue ---------------------------------------------------------------------------------

    def add(self, job: Job) -> bool:
        lane = self.lanes.setdefault(job.lane, deque())
        if job.kind in COVERING and any(j.kind == job.kind and j.ticket_id == job.ticket_id and j.ref == job.ref
                                        for j in list(lane)[1:]):
            return False  # a waiting one renders the latest state anyway (not the head: it may be going)
        lane.append(job)
        self._events[job.event_id] += 1
        return True

    def __len__(self) -> int:
        return sum(len(lane) for lane in self.lanes.values())

    def watermark(self, planned: int) -> int:
        """The last event whose jobs are all done, given that events up to `planned` were planned."""
        waiting = [e for e, n in self._events.items() if n > 0]
        return min(min(waiting) - 1, planned) if waiting else planned

    def resting(self) -> list[str]:
        return [lane for lane, until in self._resting.items() if until > self.clock.now() and self.lanes.get(lane)]

    def _done(self, jobs: list[Job]) -> None:
        lane = self.lanes[jobs[0].lane]
        for job in jobs:
            try:
                lane.remove(job)
            except ValueError:
                continue
            self._events[job.event_id] -= 1
            if self._events[job.event_id] <= 0:
                del self._events[job.event_id]

    # -- running -----------------------------------------------------------------------------------

    def kick(self) -> None:
        """Start a task for every lane with jobs that is not running or resting."""
        now = self.clock.now()
        for name, lane in self.lanes.items():
            task = self._tasks.get(name)
            if lane and (task is None or task.done()) and self._resting.get(name, 0) <= now:
                self._resting.pop(name, None)
                self._tasks[name] = asyncio.create_task(self._run(name), name=f"slack-lane-{name}")

    async def drain(self) -> None:
        """Until every lane is empty or resting (tests, and the service's shutdown)."""
        while True:
            self.kick()
            running = [t for t in self._tasks.values() if not t.done()]
            if not running:
                return
            await asyncio.gather(*running, return_exceptions=True)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _run(self, name: str) -> None:
        lane = self.lanes[name]
        failures = 0
        while lane:
            head = self._next(lane)
            try:
                taken = await self.execute(head, lane)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if isinstance(exc, SlackApiError) and retry_after(exc) is not None:
                    continue  # the paced client holds the method or channel for Retry-After
                if transient(exc):
                    failures += 1
                    if failures >= self.failures_before_rest:
                        log.warning("Slack unreachable for channel %s after %d tries (%s); resting", name, failures,
                                    exc)
                        self._resting[name] = self.clock.now() + self.rest
                        return
                    await self.clock.sleep(min(self.max_backoff, 2.0 ** (failures - 1)))
                    continue
                error = exc.response.get("error") if isinstance(exc, SlackApiError) else None
                if error in PERSON_GONE and to_a_person(head):
                    log.warning("Slack cannot reach the person of %s (%s): the %s for ticket %s is dropped",
                                name, error, head.kind, head.ticket_id)
                elif error in CHANNEL_ERRORS:
                    log.warning("Slack refuses channel %s (%s): its messages wait; %d waiting", name, error,
                                len(lane))
                    self._resting[name] = self.clock.now() + self.rest
                    return
                else:
                    log.exception("Slack refused %s for ticket %s for good; dropped", head.kind, head.ticket_id)
                self.dropped += 1
                taken = [head]
            failures = 0
            self.taken += len(taken)
            self._done(taken or [head])
        if not lane and self.lanes.get(name) is lane:
            del self.lanes[name]  # lanes come and go with their channels (DMs, notification targets)

    def _next(self, lane: deque[Job]) -> Job:
        head = lane[0]
        if head.kind in COVERING and self.can_wait is not None and self.can_wait(head):
            for job in lane:
                if job.kind not in COVERING:
                    return job
        return head
