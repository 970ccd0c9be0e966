"""Processing lanes: stored webhooks are processed per (rule set, shop), each lane in a
worker thread of its own, so one platform's slow or dead API never delays another's
webhooks.

A lane takes its webhooks in order, one batch at a time (``drain``); the scheduler
starts a lane whenever it has webhooks due and a worker is free, and a lane gives its
worker back after each batch: with more lanes backlogged than workers, the one that
went longest without a turn goes next, so a shop sending a flood takes turns with the
others. Within a lane webhooks stay in the
order they arrived: an order's update is never processed before its creation, as long
as neither waits for a lookup to be retried.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

log = logging.getLogger("hookmap.server")

#: (rule set, shop): "" is the shop of a server without a shops file
Lane = tuple[str, str]

#: workers, hence lanes processed at once (each blocks only on its own lookups)
DEFAULT_LANES = 8

#: the longest the scheduler sleeps before it looks at the store again (a webhook put off
#: after a failed lookup comes back due without anyone waking it)
POLL_SECONDS = 1.0


class Lanes:
    """Runs ``drain(lane, stopping)`` in a worker per lane with webhooks due.

    ``due(busy)`` lists the lanes with webhooks due, oldest first, leaving out ``busy``
    ones (being drained here); ``drain`` processes one batch of the lane's webhooks and
    returns how many it did, checking ``stopping()`` between webhooks.
    """

    def __init__(
        self,
        due: Callable[[Collection[Lane]], list[Lane]],
        drain: Callable[[Lane, Callable[[], bool]], int],
        workers: int = DEFAULT_LANES,
        errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        if workers < 1:
            raise ValueError("lanes need at least one worker")
        self._due, self._drain, self.workers = due, drain, workers
        self._errors = errors
        self._stopping = False
        self.active: dict[Lane, asyncio.Future[int]] = {}
        #: lanes whose last batch did nothing (or failed), not started again until then
        self._resting: dict[Lane, float] = {}
        #: when each lane last got a worker
        self._last_turn: dict[Lane, float] = {}

    async def run(
        self,
        stop: asyncio.Event,
        wake: asyncio.Event,
        grace: float = 10.0,
    ) -> None:
        """Schedule lanes until ``stop``; then give the lanes in flight ``grace`` seconds
        to finish the webhook each is on (the rest of their batch stays due)."""
        loop = asyncio.get_running_loop()
        pool = concurrent.futures.ThreadPoolExecutor(self.workers, "hookmap-lane")
        try:
            while not stop.is_set():
                wake.clear()
                await self._start_due(loop, pool)
                await self._wait(stop, wake)
        finally:
            self._stopping = True
            if self.active:
                done, _ = await asyncio.wait(set(self.active.values()), timeout=grace)
                if len(done) < len(self.active):
                    log.warning(
                        "stopping: %d lane(s) still processing after %.0fs (their "
                        "webhooks are due again for the next server)",
                        len(self.active) - len(done),
                        grace,
                    )
            pool.shutdown(wait=False, cancel_futures=True)

    async def _start_due(
        self, loop: asyncio.AbstractEventLoop, pool: concurrent.futures.Executor
    ) -> None:
        free = self.workers - len(self.active)
        if free <= 0:
            return
        try:
            lanes = await asyncio.to_thread(self._due, set(self.active))
        except self._errors:
            log.warning("cannot read the webhooks due; trying again in %.0fs", POLL_SECONDS)
            return
        now = time.monotonic()
        self._resting = {lane: until for lane, until in self._resting.items() if until > now}
        # the lane that went longest without a turn first (never: first of all), so that
        # with more lanes backlogged than workers, each gets a batch in turn
        ready = [lane for lane in lanes if lane not in self._resting]
        ready.sort(key=lambda lane: self._last_turn.get(lane, 0.0))
        for lane in ready[:free]:
            self._last_turn[lane] = now
            self.active[lane] = loop.run_in_executor(pool, self._drain, lane, self.stopping)

    def stopping(self) -> bool:
        return self._stopping

    async def _wait(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Until a lane finishes its batch, a webhook arrives, ``stop``, or POLL_SECONDS."""
        woken = asyncio.ensure_future(wake.wait())
        stopped = asyncio.ensure_future(stop.wait())
        waiting: set[asyncio.Future[Any]] = {woken, stopped, *self.active.values()}
        try:
            await asyncio.wait(waiting, timeout=POLL_SECONDS, return_when="FIRST_COMPLETED")
        finally:
            woken.cancel()
            stopped.cancel()
        for lane, future in list(self.active.items()):
            if not future.done():
                continue
            del self.active[lane]
            try:
                count = future.result()
            except Exception:  # a bug in the drain: say so, the lane is tried again later
                log.exception("processing lane %s/%s failed", *lane)
                count = 0
            if not count:  # nothing was done: not again before the next poll
                self._resting[lane] = time.monotonic() + POLL_SECONDS
