"""The send rate: an async token bucket (the CDP allows 350 requests/s per account)."""

from __future__ import annotations

import asyncio
import time


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
