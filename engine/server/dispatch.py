"""Dispatch stage: send queued events to the CDP, retrying what may succeed later.

Each event is POSTed to ``Destination.event_url(api_version)`` with its stored body;
what its answer means is ``engine.server.delivery.classify``: sent, retried after the
next delay of the schedule (± jitter; dead when the schedule is used up), or dead at
once, with the status and response text. A 429 or 503 with ``Retry-After`` (the event's
or its contact call's) waits that long instead when it is longer (at most 6 h); the
attempt's error says so. An operator can re-queue dead events
(``Store.retry_dead``).

Sends share one pooled ``httpx.AsyncClient``, a token bucket (``engine.server.ratelimit``:
the CDP allows 350 requests/s on the event endpoints) and a concurrency limit. An event
for a new customer first gets its contact created (``engine.server.contact_calls``),
through the same client, auth and bucket.

At least once, never knowingly twice: an event is marked sent only when the CDP's
status line says 2xx and that is committed; claiming an event leases it, so a second
dispatcher on the same file (a CLI drain) does not send it meanwhile. The API has no
idempotency key, so one window cannot be closed: if the CDP accepts a request but its
answer never reaches us (timeout, dropped connection), or the process dies between
the 2xx and the commit (one SQLite write, started at once), the event is sent again.
On shutdown, sends in flight get ``grace_seconds`` to finish; the rest stay pending
(a send cut short is retried once its lease ends).

The API key travels only in the client's Authorization header: no message here
includes headers or the URL.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from types import TracebackType

import httpx

from engine.events.destination import RATE_LIMIT, Destination
from engine.server.contact_calls import Blocked, ContactCalls
from engine.server.delivery import (
    MAX_RETRY_AFTER,
    RETRY_AFTER_STATUSES,
    Call,
    classify,
    describe,
    read_text,
    retry_after,
)
from engine.server.ratelimit import LocalLimiter, RateLimiter
from engine.server.store.base import Store
from engine.server.store.rows import OutboxEvent, Outcome

log = logging.getLogger("hookmap.dispatch")

#: delays between attempts, about a day in all (10 s … 8 h): 12 attempts per event
DEFAULT_SCHEDULE: tuple[float, ...] = (
    10, 30, 120, 300, 900, 1800, 3600, 7200, 4 * 3600, 8 * 3600, 8 * 3600,
)  # fmt: skip

#: sends in flight at once; seconds httpx gives each phase of a request; seconds the sends
#: in flight get to finish on shutdown
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 10.0
DEFAULT_GRACE = 10.0

#: ``on_result(event_type, outcome, status, latency_seconds)``, for metrics
OnResult = Callable[[str, Outcome, int | None, float], None]


class Dispatcher:
    """Delivers the store's pending events to the CDP. Lives in one event loop.

    Use as ``async with Dispatcher(...) as d: await d.run(stop, wake)``; the client is
    closed on exit.
    """

    def __init__(
        self,
        store: Store,
        destination: Destination | Callable[[str], Destination | None],
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        rate_per_second: float = RATE_LIMIT,
        burst: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        schedule: Sequence[float] = DEFAULT_SCHEDULE,
        jitter: float = 0.2,
        clock: Callable[[], float] = time.time,
        on_result: OnResult | None = None,
        grace_seconds: float = DEFAULT_GRACE,
        poll_interval: float = 5.0,
        owner: str | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        """``destination``: where events go, one for every shop, or a function giving the one
        of each shop id ("" is the default shop; None: no account is configured).
        ``owner``: the server instance claiming events, so that a restart can release what
        it held if it dies; None for a one-off drain. ``limiter``: the send rate per CDP
        account (default: ``rate_per_second`` in this process)."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.concurrency = concurrency
        self.grace_seconds = grace_seconds
        self.poll_interval = poll_interval
        self._store = store
        self._owner = owner
        self._destination_for = (
            (lambda _shop: destination) if isinstance(destination, Destination) else destination
        )
        self._schedule = tuple(schedule)
        self._jitter = jitter
        self._clock = clock
        self._on_result = on_result
        # httpx's timeout bounds each phase (connect, each read...); this bounds a send
        self._deadline = 3 * timeout
        # longer than any send can take (waiting for another event's contact call, its
        # own contact call, the event), so no event is claimed twice while in flight
        self._lease = max(60.0, 3 * self._deadline)
        self._limiter = limiter or LocalLimiter(rate_per_second, burst)
        self._slots = asyncio.Semaphore(concurrency)
        self._contacts = ContactCalls(store, self._post)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        # limits apply to httpx's own transport; an injected one brings its own
        self._client = httpx.AsyncClient(
            transport=transport,
            limits=limits,
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
        )

    async def __aenter__(self) -> Dispatcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def run(self, stop: asyncio.Event, wake: asyncio.Event | None = None) -> None:
        """Send due events until ``stop`` is set; ``wake`` says new events were written.

        Between rounds it sleeps until the next event falls due, a send finishes, or it
        is woken (at most ``poll_interval``, which also picks up events written by
        another process). On stop it claims nothing more and gives the sends in flight
        ``grace_seconds``; whatever is not sent stays pending.
        """
        inflight: dict[asyncio.Task[Outcome], int] = {}
        finished = asyncio.Event()

        def done(task: asyncio.Task[Outcome]) -> None:
            inflight.pop(task, None)
            finished.set()
            if not task.cancelled() and task.exception() is not None:
                log.error("send task failed", exc_info=task.exception())

        try:
            while not stop.is_set():
                # cleared before looking, so a signal that arrives meanwhile is not lost
                finished.clear()
                if wake is not None:
                    wake.clear()
                delay: float | None = self.poll_interval
                try:
                    for event in await self._claim(self.concurrency - len(inflight)):
                        if event.id in inflight.values():
                            continue  # cannot happen while sends end before the lease
                        task = asyncio.create_task(self._send(event))
                        inflight[task] = event.id
                        task.add_done_callback(done)
                    if len(inflight) >= self.concurrency:
                        delay = None  # a finished send frees a slot and wakes us
                    else:
                        delay = await self._until_next_due()
                except self._store.errors as exc:  # a full disk, a lock: the loop goes on
                    log.warning("cannot read the outbox (%s); trying again shortly", exc)
                waits = [stop, finished] + ([wake] if wake is not None else [])
                await _wait_any(waits, delay)
        finally:
            await self._settle(set(inflight))

    async def drain(self, timeout: float = 30.0) -> Counter[str]:
        """Send every due event, and the retries that fall due within ``timeout``.

        Returns how many attempts ended sent / retry / dead. For tests and the CLI.
        """
        deadline = time.monotonic() + timeout
        outcomes: Counter[str] = Counter()
        while time.monotonic() < deadline:
            batch = await self._claim(self.concurrency)
            if batch:
                outcomes.update(await asyncio.gather(*(self._send(e) for e in batch)))
                continue
            next_due = await asyncio.to_thread(self._store.next_due_at)
            if next_due is None:
                break
            wait = max(next_due - self._clock(), 0.001)
            if time.monotonic() + wait >= deadline:
                break
            await asyncio.sleep(wait)
        return outcomes

    async def _claim(self, limit: int) -> list[OutboxEvent]:
        if limit <= 0:
            return []
        return await asyncio.to_thread(
            self._store.claim_due, self._clock(), limit, self._lease, self._owner
        )

    async def _until_next_due(self) -> float:
        next_due = await asyncio.to_thread(self._store.next_due_at)
        if next_due is None:
            return self.poll_interval
        # a floor, so an event due right now but not claimable cannot make a busy loop
        return min(max(next_due - self._clock(), 0.005), self.poll_interval)

    async def _settle(self, tasks: set[asyncio.Task[Outcome]]) -> None:
        """Give sends in flight ``grace_seconds``, then cancel the rest (still pending)."""
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=self.grace_seconds)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        if late:
            when = "at the next start" if self._owner else "when their lease ends"
            log.warning("%d send(s) cut short at shutdown: pending, sent %s", len(late), when)

    async def _send(self, event: OutboxEvent) -> Outcome:
        """One attempt: the contact first when needed, then POST, classify, record.

        Never raises for the HTTP side.
        """
        destination = self.destination(event.shop)
        async with self._slots:
            blocked = None
            if destination is None:  # the shop left the shops file: kept, retried, seen
                blocked = _no_account(event.shop, self._clock())
            elif event.contact is not None:
                blocked = await self._contacts.ensure(event, destination)
            if blocked is None:
                assert destination is not None
                call = await self._post(
                    destination,
                    destination.event_url(event.api_version),
                    event.body.encode("utf-8"),
                    f"event #{event.id}",
                )
                # a 2xx status line means sent, even if reading the body then failed
                verdict = "retry" if call.status is None else classify(call.status)
                status, error = call.status, call.error
            else:
                # the attempt's status is the event request's, and none was made: the
                # contact call's answer is in the error ("contact: HTTP 503: ..."),
                # which is what `hookmap show` and `hookmap events` print
                verdict, call, error = blocked
                status = None
        outcome, next_at = self._next_step(verdict, event.attempts, call.retry_after)
        if outcome == "retry" and call.retry_after_header is not None and next_at is not None:
            # the attempt says why it waits longer than the schedule: `hookmap show`
            error = _with_retry_after(error, status, call, next_at - self._clock())
        await self._record(
            event, outcome, status, error, call.text, call.started, call.duration_ms, next_at
        )
        if outcome != "sent":
            level = logging.WARNING if outcome == "dead" else logging.INFO
            log.log(
                level,
                "event #%d (%s) attempt %d: %s → %s",
                event.id,
                event.event_type,
                event.attempts + 1,
                error or f"HTTP {status}",
                outcome,
            )
        if self._on_result is not None:
            try:
                self._on_result(event.event_type, outcome, status, call.duration_ms / 1000)
            except Exception:
                log.exception("on_result callback failed")
        return outcome

    def destination(self, shop: str) -> Destination | None:
        """Where ``shop``'s events go (its CDP account); None when no account is configured
        for it (never another shop's)."""
        return self._destination_for(shop)

    async def _post(self, destination: Destination, url: str, content: bytes, what: str) -> Call:
        """POST once (after the account's rate allows it); errors become ``Call.error``."""
        status: int | None = None
        error: str | None = None
        text: str | None = None
        await self._limiter.acquire(destination.account)
        started = self._clock()
        t0 = time.monotonic()
        header: str | None = None
        try:
            async with asyncio.timeout(self._deadline):
                request = self._client.stream(
                    "POST", url, content=content, headers=destination.headers()
                )
                async with request as response:
                    # the status decides; the body is only kept for the record
                    status = response.status_code
                    if status in RETRY_AFTER_STATUSES:
                        header = response.headers.get("retry-after")
                    text = await read_text(response)
        except (httpx.RequestError, TimeoutError) as exc:
            error = describe(exc)
        except Exception as exc:  # a bug must not lose the event: retry it later
            log.exception("unexpected error sending %s", what)
            error = describe(exc)
        duration_ms = (time.monotonic() - t0) * 1000
        wait = retry_after(header, self._clock())
        return Call(status, error, text, started, duration_ms, wait, header if wait else None)

    def _next_step(
        self, verdict: Outcome, attempts: int, asked: float | None = None
    ) -> tuple[Outcome, float | None]:
        """A retry verdict becomes a time for the next attempt, or dead when none is left.

        ``asked``: the seconds a Retry-After asked for; the wait is the longer of it
        (capped at ``MAX_RETRY_AFTER``) and the schedule's delay.
        """
        if verdict != "retry":
            return verdict, None
        if attempts >= len(self._schedule):
            return "dead", None
        delay = self._schedule[attempts] * (1 + random.uniform(-self._jitter, self._jitter))
        if asked is not None:
            delay = max(delay, min(asked, MAX_RETRY_AFTER))
        return "retry", self._clock() + delay

    async def _record(
        self,
        event: OutboxEvent,
        outcome: Outcome,
        status: int | None,
        error: str | None,
        text: str | None,
        started: float,
        duration_ms: float,
        next_at: float | None,
    ) -> None:
        """Commit the attempt, trying again for half the lease (a full disk may free up
        meanwhile), since a lost 'sent' means sending it again once the lease ends."""
        waits = [0.5 * 2**i for i in range(10) if 0.5 * (2 ** (i + 1) - 1) <= self._lease / 2]
        for attempt in range(len(waits) + 1):
            try:
                await asyncio.to_thread(
                    self._store.record_attempt,
                    event.id,
                    outcome,
                    status,
                    error,
                    text,
                    started,
                    duration_ms,
                    next_at,
                )
                return
            except self._store.errors as exc:
                if attempt == len(waits):
                    log.error("cannot record attempt of event #%d (%s): %s", event.id, outcome, exc)
                    return
                await asyncio.sleep(waits[attempt])


def _with_retry_after(error: str | None, status: int | None, call: Call, wait: float) -> str:
    """An attempt's error text with the Retry-After it honoured (and the wait it chose)."""
    answer = error
    if answer is None:
        text = (call.text or "").strip()[:200]
        answer = f"HTTP {status}: {text}" if text else f"HTTP {status}"
    capped = " (capped)" if (call.retry_after or 0) > MAX_RETRY_AFTER else ""
    return f"{answer}; Retry-After: {call.retry_after_header}, next attempt in {wait:.0f} s{capped}"


async def _wait_any(events: Sequence[asyncio.Event], timeout: float | None) -> None:
    """Return when any of ``events`` is set, or after ``timeout`` seconds."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


def _no_account(shop: str, now: float) -> Blocked:
    """What stops an event whose shop has no CDP account configured: retried on its
    schedule (a reload may bring the shop back), then dead, where an operator sees it."""
    return "retry", Call(None, None, None, now, 0.0), f"no CDP account configured for shop {shop!r}"
