"""The app keeps to Slack's rate limits itself (reference/slack.md, "Rate limits"): a client that paces
its own background calls, and counts and honours every 429 it meets.

Slack limits each method per workspace (tiers, per minute) and `chat.postMessage` to about one message
a second per channel. Slack asks apps to pace themselves rather than bounce off the limit, so:
- background work (the notifier mirroring tickets into Slack) waits for its turn before each call;
- a person's own request (a click, a command) never waits: it goes at once and its call is counted,
  so background work yields to people;
- a 429 holds that method (or channel) for the `Retry-After` Slack gave.
The clock is injectable: tests run the bot and the fake Slack on one virtual clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

# Per minute, per method, per workspace.
TIER_PER_MINUTE = {
    "chat.update": 50, "chat.delete": 50, "reactions.add": 50,
    "views.open": 100, "views.update": 100, "views.push": 100, "views.publish": 100, "chat.postEphemeral": 100,
    "users.info": 100, "files.info": 100,
    "usergroups.users.list": 20, "conversations.members": 20,
}
POSTS_PER_SECOND = 1.0  # chat.postMessage, per channel
# Background calls may not burst: a small allowance per method, the rest at the tier's steady rate.
BACKGROUND_BURST = 5.0


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Bucket:
    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.at = now
        self.held_until = now

    def _fill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def delay(self, now: float) -> float:
        """Seconds before a background call may go (0 within a microsecond: clocks are floats)."""
        self._fill(now)
        wait = max(self.held_until - now, (1 - self.tokens) / self.rate if self.tokens < 1 else 0.0)
        return wait if wait > 1e-6 else 0.0

    def take(self, now: float) -> None:
        self._fill(now)
        self.tokens -= 1  # a person's call may take it below zero: background work then waits longer


_background: contextvars.ContextVar[bool] = contextvars.ContextVar("slack_background", default=False)


@contextlib.contextmanager
def background() -> Iterator[None]:
    """Calls made inside wait for their turn (the notifier's work)."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


def retry_after(exc: SlackApiError) -> float | None:
    """Seconds Slack asked to wait, if this was a 429."""
    response = exc.response
    if getattr(response, "status_code", None) != 429:
        return None
    headers = {k.lower(): v for k, v in (getattr(response, "headers", None) or {}).items()}
    value = headers.get("retry-after")
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(1.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


class Pacer:
    """Token buckets per method (and per channel for chat.postMessage), on `clock`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def _bucket(self, method: str, channel: str | None) -> _Bucket | None:
        if method == "chat.postMessage":
            key, rate, capacity = (method, channel or ""), POSTS_PER_SECOND, 1.0
        elif method in TIER_PER_MINUTE:
            key, rate, capacity = (method, ""), TIER_PER_MINUTE[method] / 60.0, BACKGROUND_BURST
        else:
            return None
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(rate, capacity, self.clock.now())
        return bucket

    async def wait(self, method: str, channel: str | None = None) -> None:
        bucket = self._bucket(method, channel)
        if bucket is None:
            return
        while (delay := bucket.delay(self.clock.now())) > 0:
            await self.clock.sleep(delay)
        bucket.take(self.clock.now())

    def ready_in(self, method: str, channel: str | None = None) -> float:
        """Seconds before a background call of this method may go (0: now)."""
        bucket = self._bucket(method, channel)
        return bucket.delay(self.clock.now()) if bucket is not None else 0.0

    def spend(self, method: str, channel: str | None = None) -> None:
        bucket = self._bucket(method, channel)
        if bucket is not None:
            bucket.take(self.clock.now())

    def hold(self, method: str, channel: str | None, seconds: float) -> None:
        bucket = self._bucket(method, channel)
        if bucket is not None:
            bucket.held_until = max(bucket.held_until, self.clock.now() + seconds)


class PacedClient(AsyncWebClient):
    """slack_sdk's client, paced: background calls wait their turn; 429s are counted and held."""

    def __init__(self, *args: Any, pacer: Pacer, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pacer = pacer
        self.rate_limited: Counter[str] = Counter()  # 429s met, per method

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        channel = None
        for source in ("json", "data", "params"):
            args = kwargs.get(source)
            if isinstance(args, dict) and args.get("channel"):
                channel = str(args["channel"])
                break
        if _background.get():
            await self.pacer.wait(api_method, channel)
        else:
            self.pacer.spend(api_method, channel)
        try:
            return await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            wait = retry_after(exc)
            if wait is not None:
                self.rate_limited[api_method] += 1
                self.pacer.hold(api_method, channel, wait)
            raise
