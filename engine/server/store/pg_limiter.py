"""The send rate per CDP account, shared by every server on one PostgreSQL database.

The CDP allows 350 requests/s per account, whichever process sends them; a limiter in
each process (``engine.server.ratelimit.LocalLimiter``) would let N servers send N times
that. This one keeps the limit in the database, with GCRA (the generic cell rate
algorithm): one row per account holds the theoretical arrival time (TAT) of its next
request, and each request moves it on by one interval (1 / rate) in one atomic statement
that also says how long to wait. Concurrent requests, from any process, are thereby
queued in the order the database serialises them, each given a slot of its own::

    wait = max(TAT, now) - tolerance - now          TAT := max(TAT, now) + interval

``now`` is the database's clock (``clock_timestamp()``), the one clock every server
shares; ``tolerance`` is (burst - 1) × interval. The default burst is 1: requests are
spaced a whole interval apart.

A request leaves when its process wakes up, a little after its slot: a busy process wakes
late, and a late request followed by punctual ones would crowd more than ``rate`` into a
second. So the interval is ``(1 + SLACK) / rate`` (requests spaced as if each second
lasted 1 + SLACK seconds, which costs that share of the rate), and a request that wakes
more than SLACK / 2 after its slot gives the slot up and takes the next free one (at most
``RESERVATIONS`` times, then it goes); the other half of SLACK covers the answer's way
from the database and the window's edges. Every request thus leaves less than SLACK
after its slot, and no 1 s window holds more than ``rate`` of them
(benchmarks/ratelimit.py measures it). A slot reserved by a process that dies before
sending is simply unused.

When the database cannot be reached, a request waits on a limiter in this process
instead (and says so in the log, at most once a minute): it is not held up, and the
limit then holds per process until the database answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from engine.server.ratelimit import LocalLimiter

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import AsyncConnectionPool

log = logging.getLogger("hookmap.ratelimit")

#: connections the limiter of one process keeps (one statement each, a few µs of work)
POOL_SIZE = 4
#: seconds to wait for a connection before falling back to the local limit
CONNECT_TIMEOUT = 5.0
#: seconds between two warnings that the shared limit is not reachable
WARN_EVERY = 60.0
#: the share of the rate given up so that a request may leave a little after its slot
#: (seconds per second; half of it is how late a request may wake)
SLACK = 0.02
#: slots a request reserves at most before it goes however late it woke
RESERVATIONS = 3

#: Reserve the next slot of an account: the wait before it (seconds, <= 0: now). The clock
#: is read when the row is held (``clock_timestamp()``; the statement's start would be
#: earlier by the time it waited for another reservation of the same account).
_RESERVE = """
INSERT INTO rate_limits AS r (account, tat)
VALUES (%(account)s, extract(epoch FROM clock_timestamp())::float8 + %(interval)s)
ON CONFLICT (account) DO UPDATE
SET tat = greatest(r.tat, extract(epoch FROM clock_timestamp())::float8) + %(interval)s
RETURNING r.tat - %(interval)s - %(tolerance)s - extract(epoch FROM clock_timestamp())::float8
"""


async def _no_flush_wait(conn: psycopg.AsyncConnection[Any]) -> None:
    """A reservation need not wait for a disk flush: losing the last ones in a crash only
    restarts the spacing, while waiting would hold the account's row for a flush each."""
    await conn.execute("SET synchronous_commit = off")


class SharedLimiter:
    """``rate`` requests a second per account, across every process on the database.

    Its async pool is opened in the event loop of the first ``acquire`` (an async pool
    must be), and closed by ``aclose``.
    """

    def __init__(
        self,
        conninfo: str,
        rate: float,
        burst: float | None = None,
        *,
        pool_size: int = POOL_SIZE,
        timeout: float = CONNECT_TIMEOUT,
        slack: float = SLACK,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if slack < 0:
            raise ValueError("slack must not be negative")
        self.rate = rate
        self.burst = 1.0 if burst is None else max(float(burst), 1.0)
        self.slack = slack
        self.interval = (1.0 + slack) / rate
        self.tolerance = (self.burst - 1.0) * self.interval
        #: slots given up because the request woke too late for them (benchmarks read it)
        self.late = 0
        self._conninfo = conninfo
        self._pool_size = pool_size
        self._timeout = timeout
        self._pool: AsyncConnectionPool[Any] | None = None
        self._opening: asyncio.Lock | None = None
        self._local = LocalLimiter(rate, self.burst)
        self._warned_at = -WARN_EVERY

    async def acquire(self, account: str) -> None:
        """Return once a request for ``account`` may be sent now."""
        for attempt in range(1, RESERVATIONS + 1):
            wait = await self._reserve(account)
            if wait is None:  # the database is not reachable
                await self._local.acquire(account)
                return
            # the slot, on this process's clock: the answer left the database ``wait``
            # before it (its way here, a fraction of a millisecond, is counted as late)
            slot = time.monotonic() + max(wait, 0.0)
            if wait > 0:
                await asyncio.sleep(wait)
            if time.monotonic() - slot <= self.slack / 2:
                return
            if attempt < RESERVATIONS:
                self.late += 1

    async def _reserve(self, account: str) -> float | None:
        """The wait before the next slot of ``account`` (reserved), None when the database
        cannot be reached."""
        import psycopg  # psycopg is optional: the store that made this checked for it

        try:
            pool = await self._open()
            async with pool.connection(timeout=self._timeout) as conn:
                cursor = await conn.execute(
                    _RESERVE,
                    {"account": account, "interval": self.interval, "tolerance": self.tolerance},
                )
                row = await cursor.fetchone()
        except psycopg.Error as exc:
            self._warn(exc)
            return None
        return 0.0 if row is None else float(row[0])

    async def aclose(self) -> None:
        """Close the pool (in the loop that opened it); a later acquire opens a new one."""
        pool, self._pool = self._pool, None
        self._opening = None
        if pool is not None:
            await pool.close()

    async def _open(self) -> AsyncConnectionPool[Any]:
        if self._pool is not None:
            return self._pool
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._pool is None:
                from psycopg_pool import AsyncConnectionPool

                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    self._conninfo,
                    open=False,  # opened here, in the running loop
                    min_size=1,
                    max_size=self._pool_size,
                    kwargs={"autocommit": True},
                    configure=_no_flush_wait,
                    name="hookmap-rate-limit",
                    timeout=self._timeout,
                )
                try:
                    await pool.open(wait=True, timeout=self._timeout)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
            return self._pool

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY:
            self._warned_at = now
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning(
                "the shared rate limit is not reachable (%s): limiting in this process alone",
                first,
            )
