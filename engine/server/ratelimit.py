"""The send rate: the CDP allows 350 requests/s per account, whoever sends them.

A dispatcher asks its ``RateLimiter`` before every request, naming the account
(``Destination.account``). ``LocalLimiter`` keeps one token bucket per account in this
process: the limit holds for one server. Several servers sending for one account share a
limiter kept in their shared store (``engine.server.store.pg_limiter``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class RateLimiter(Protocol):
    async def acquire(self, account: str) -> None:
        """Return once a request for ``account`` may be sent now."""

    async def aclose(self) -> None:
        """Let go of what it holds (a shared limiter's connections), in its event loop."""


class TokenBucket:
    """An async token bucket: ``rate`` tokens a second, at most ``burst`` saved up.

    Waiters queue on a lock, so they are served in arrival order.
    """

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._tokens = self.burst
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
                self._updated = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                await asyncio.sleep((1 - self._tokens) / self.rate)


class LocalLimiter:
    """A token bucket per account, in this process."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = rate if burst is None else burst
        self._buckets: dict[str, TokenBucket] = {}

    async def acquire(self, account: str) -> None:
        bucket = self._buckets.get(account)
        if bucket is None:
            bucket = self._buckets[account] = TokenBucket(self.rate, self.burst)
        await bucket.acquire()

    async def aclose(self) -> None:
        """Nothing to let go of: the buckets are in memory."""
