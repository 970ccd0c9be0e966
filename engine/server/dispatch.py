"""Dispatch stage: send queued events to the CDP, retrying what may succeed later.

Each event is POSTed to ``Destination.event_url(api_version)`` with its stored body:

* 2xx → sent.
* 408, 429, 5xx, a timeout or a network error → retried after the next delay of the
  schedule (± jitter); when the schedule is used up → dead.
* any other status (400 validation, 401 key, 404, 413, a 3xx from a wrong URL) → dead
  at once, with the status and response text, since sending the same body again
  cannot help. An operator can re-queue dead events (``Store.retry_dead``).

Sends share one pooled ``httpx.AsyncClient``, a token bucket (the CDP allows 350
requests/s on the event endpoints) and a concurrency limit.

New customers: the CDP accepts events only for contacts it knows. An event stored with
a ``contact`` (the rule's ``contact:``) first gets its contact created through
``POST v1/contact`` (same client, auth and bucket), unless the store remembers that
contact's key (``contact_key``); a 2xx, or the 409 the CDP documents for a repeat
within a minute, is remembered and the event follows. A 408/429/5xx or network error
there retries the event on its own schedule; any other status kills it with
"contact rejected: ...". One event per key at a time looks and creates, so two events
for one new customer create it once.

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
import contextlib
import dataclasses
import json
import logging
import random
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from engine.events.destination import Destination
from engine.server.queries import OutboxEvent
from engine.server.store import RESPONSE_LIMIT, Outcome, Store

log = logging.getLogger("hookmap.dispatch")

#: delays between attempts, about a day in all (10 s … 8 h): 12 attempts per event
DEFAULT_SCHEDULE: tuple[float, ...] = (
    10, 30, 120, 300, 900, 1800, 3600, 7200, 4 * 3600, 8 * 3600, 8 * 3600,
)  # fmt: skip
#: statuses worth trying again besides 5xx
RETRY_STATUSES = frozenset({408, 429})

#: ``on_result(event_type, outcome, status, latency_seconds)``, for metrics
OnResult = Callable[[str, Outcome, int | None, float], None]


def classify(status: int) -> Outcome:
    """What a response status means for the event (before the schedule is consulted)."""
    if 200 <= status < 300:
        return "sent"
    if status in RETRY_STATUSES or status >= 500:
        return "retry"
    return "dead"


def describe(exc: BaseException) -> str:
    """A connection error as text: its class and message (httpx puts no headers in it)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def contact_key(contact: Mapping[str, Any]) -> str | None:
    """The key a v1/contact body is remembered by, or None when nothing identifies it.

    ``email:`` + the lower-cased email, else ``sms:`` + the phone's digits, else
    ``ext:`` + the externalCustomerId: the CDP matches emails in any case and phones
    by their digits, so spellings of one contact share a key.
    """
    channels = [c for c in contact.get("channels") or () if isinstance(c, Mapping)]
    for kind in ("email", "sms"):
        for channel in channels:
            if channel.get("type") != kind or channel.get("value") in (None, ""):
                continue
            value = str(channel["value"])
            if kind == "email":
                ident = value.strip().lower()
            else:
                ident = "".join(ch for ch in value if ch.isdigit())
            if ident:
                return f"{kind}:{ident}"
    external = contact.get("externalCustomerId")
    return None if external in (None, "") else f"ext:{external}"


@dataclasses.dataclass(frozen=True)
class _Call:
    """One POST: the status (None when no answer came) or the error, and its timing."""

    status: int | None
    error: str | None
    text: str | None
    started: float
    duration_ms: float


#: what stops an event before it is sent: the verdict, the contact call, the error text
_Blocked = tuple[Outcome, _Call, str]


class _KeyLock:
    """The lock of one contact key, who holds or waits for it, and a failure to share."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0
        self.failure: _Blocked | None = None


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


class Dispatcher:
    """Delivers the store's pending events to the CDP. Lives in one event loop.

    Use as ``async with Dispatcher(...) as d: await d.run(stop, wake)``; the client is
    closed on exit.
    """

    def __init__(
        self,
        store: Store,
        destination: Destination,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        concurrency: int = 8,
        rate_per_second: float = 350.0,
        burst: float | None = None,
        timeout: float = 10.0,
        schedule: Sequence[float] = DEFAULT_SCHEDULE,
        jitter: float = 0.2,
        clock: Callable[[], float] = time.time,
        on_result: OnResult | None = None,
        grace_seconds: float = 10.0,
        poll_interval: float = 5.0,
        owner: str | None = None,
    ) -> None:
        """``owner``: the server instance claiming events (engine.server.leases), so that a
        restart can release what it held if it dies; None for a one-off drain."""
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 <= jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        self.concurrency = concurrency
        self.grace_seconds = grace_seconds
        self.poll_interval = poll_interval
        self._store = store
        self._owner = owner
        self._destination = destination
        self._schedule = tuple(schedule)
        self._jitter = jitter
        self._clock = clock
        self._on_result = on_result
        # httpx's timeout bounds each phase (connect, each read...); this bounds a send
        self._deadline = 3 * timeout
        # longer than any send can take (waiting for another event's contact call, its
        # own contact call, the event), so no event is claimed twice while in flight
        self._lease = max(60.0, 3 * self._deadline)
        self._contact_locks: dict[str, _KeyLock] = {}
        self._bucket = TokenBucket(rate_per_second, rate_per_second if burst is None else burst)
        self._slots = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        # limits apply to httpx's own transport; an injected one brings its own
        self._client = httpx.AsyncClient(
            transport=transport,
            limits=limits,
            timeout=httpx.Timeout(timeout),
            headers=destination.headers(),
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
                except sqlite3.Error:
                    log.exception("cannot read the outbox; trying again shortly")
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
        async with self._slots:
            blocked = await self._ensure_contact(event) if event.contact is not None else None
            if blocked is None:
                call = await self._post(
                    self._destination.event_url(event.api_version),
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
        outcome, next_at = self._next_step(verdict, event.attempts)
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

    async def _post(self, url: str, content: bytes, what: str) -> _Call:
        """POST once (after a token from the bucket); errors become ``_Call.error``."""
        status: int | None = None
        error: str | None = None
        text: str | None = None
        await self._bucket.acquire()
        started = self._clock()
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(self._deadline):
                async with self._client.stream("POST", url, content=content) as response:
                    # the status decides; the body is only kept for the record
                    status = response.status_code
                    text = await _read_text(response)
        except (httpx.RequestError, TimeoutError) as exc:
            error = describe(exc)
        except Exception as exc:  # a bug must not lose the event: retry it later
            log.exception("unexpected error sending %s", what)
            error = describe(exc)
        return _Call(status, error, text, started, (time.monotonic() - t0) * 1000)

    async def _ensure_contact(self, event: OutboxEvent) -> _Blocked | None:
        """Make sure the CDP knows the event's contact; what stops the event, or None.

        Under the key's lock: known (remembered) → nothing to do; else POST v1/contact,
        and a 2xx or 409 is remembered. Events that waited for a call that failed
        with a retryable answer share that answer instead of calling again, so a CDP
        that is down costs one contact call per round, not one per waiting event.
        """
        assert event.contact is not None
        key = contact_key(event.contact)
        if key is None:  # nothing identifies it (the rule's checks warned): send as is
            return None
        async with self._contact_lock(key) as entry:
            if entry.failure is not None:
                return entry.failure
            if await self._known(key):
                return None
            content = json.dumps(event.contact, ensure_ascii=False).encode("utf-8")
            call = await self._post(
                f"{self._destination.base_url}/v1/contact", content, f"contact of #{event.id}"
            )
            if call.status is not None and (200 <= call.status < 300 or call.status == 409):
                await self._remember(key, call, event.id)
                return None
            blocked = _contact_failure(call)
            if blocked[0] == "retry":
                entry.failure = blocked
            return blocked

    @contextlib.asynccontextmanager
    async def _contact_lock(self, key: str) -> AsyncIterator[_KeyLock]:
        """Hold one contact key's lock; its entry goes once nobody holds or awaits it."""
        entry = self._contact_locks.get(key)
        if entry is None:
            entry = self._contact_locks[key] = _KeyLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield entry
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._contact_locks[key]

    async def _known(self, key: str) -> bool:
        try:
            return await asyncio.to_thread(self._store.contact_known, key)
        except sqlite3.Error:
            # creating a known contact again only updates it: better than not sending
            log.exception("cannot read the known contacts; creating the contact again")
            return False

    async def _remember(self, key: str, call: _Call, event_id: int) -> None:
        contact_id = _contact_id(call.text) if call.status != 409 else None
        try:
            await asyncio.to_thread(self._store.remember_contact, key, contact_id)
        except sqlite3.Error:
            log.exception(
                "cannot remember the contact of event #%d: it may be created again", event_id
            )
        log.info(
            "contact of event #%d: HTTP %s%s",
            event_id,
            call.status,
            "" if contact_id is None else f" (id {contact_id})",
        )

    def _next_step(self, verdict: Outcome, attempts: int) -> tuple[Outcome, float | None]:
        """A retry verdict becomes a time for the next attempt, or dead when none is left."""
        if verdict != "retry":
            return verdict, None
        if attempts >= len(self._schedule):
            return "dead", None
        delay = self._schedule[attempts] * (1 + random.uniform(-self._jitter, self._jitter))
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
        """Commit the attempt; a few tries, since a lost 'sent' means sending it again."""
        for attempt in range(3):
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
            except sqlite3.Error:
                if attempt == 2:
                    log.exception("cannot record attempt of event #%d (%s)", event.id, outcome)
                    return
                await asyncio.sleep(0.5)


def _contact_failure(call: _Call) -> _Blocked:
    """What a failed contact call means for its event: retry it later, or dead."""
    if call.status is None:
        return "retry", call, f"contact: {call.error}"
    text = (call.text or "").strip()[:200]
    answer = f"HTTP {call.status}: {text}" if text else f"HTTP {call.status}"
    if classify(call.status) == "retry":
        return "retry", call, f"contact: {answer}"
    return "dead", call, f"contact rejected: {answer}"


def _contact_id(text: str | None) -> int | None:
    """The id in v1/contact's ``{"id": n}`` answer, when there is one."""
    try:
        value = json.loads(text or "")
    except ValueError:
        return None
    found = value.get("id") if isinstance(value, dict) else None
    return found if isinstance(found, int) and not isinstance(found, bool) else None


async def _read_text(response: httpx.Response) -> str:
    """The start of a response body as text (enough for the record), tolerating errors."""
    data = b""
    try:
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) >= RESPONSE_LIMIT * 4:  # up to 4 bytes a character
                break
    except httpx.RequestError:
        pass  # the status is what counts
    return data[: RESPONSE_LIMIT * 4].decode("utf-8", errors="replace")


async def _wait_any(events: Sequence[asyncio.Event], timeout: float | None) -> None:
    """Return when any of ``events`` is set, or after ``timeout`` seconds."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
