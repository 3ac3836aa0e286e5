"""Helpers shared by the Slack tests: a virtual clock both the fake Slack and the bot run on."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class VirtualClock:
    """Seconds that pass only when someone sleeps on it or the test advances it.

    The fake Slack reads it (`clock()`) to judge rate windows and trigger ages, and the bot's pacing
    sleeps on it, so a test goes through Slack's real limits without waiting for them. Sleepers wake
    in the order of their wake times, the clock moving to each one's; between wakes the loop gets a
    moment of real time, so work in flight (HTTP, the store) goes on as it would while time passes.
    """

    def __init__(self, start: float = 1_000.0) -> None:
        self.t = start
        self.slept = 0.0  # how far sleeping moved the clock
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._ticker: asyncio.Task[None] | None = None

    def __call__(self) -> float:
        return self.t

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + seconds, next(self._seq), future))
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick())
        await future

    async def _tick(self) -> None:
        while self._sleepers:
            await asyncio.sleep(0.001)
            wake = self._sleepers[0][0]
            if wake > self.t:
                self.slept += wake - self.t
                self.t = wake
            while self._sleepers and self._sleepers[0][0] <= self.t:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
