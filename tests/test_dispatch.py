"""The dispatcher: classification, retries, limits, shutdown, and what goes on the wire.

Transports are injected (``httpx.MockTransport``) or real: a threaded ``http.server``
stub on loopback, and a closed port for "connection refused". No pytest-asyncio:
each test drives its coroutine with ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.events.destination import Destination
from engine.server.delivery import MAX_RETRY_AFTER, classify, retry_after
from engine.server.dispatch import DEFAULT_SCHEDULE, Dispatcher
from engine.server.store.rows import AttemptRow, EventRow, NewEvent
from engine.server.store.sqlite import Store
from tests.support.http_stub import Call, HttpStub, Reply

KEY = "secret-api-key-123"
DEST = Destination("http://cdp.test/api", KEY)
TINY = (0.01, 0.01)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "hookmap.sqlite3") as s:
        yield s


def queue(store: Store, n: int = 1, version: str = "v2") -> list[int]:
    """One processed webhook with ``n`` pending events; their ids."""
    wid = store.add_webhook("shop", {}, b"{}", None).id
    events = [
        NewEvent(
            "orders",
            i,
            "orderCreated",
            version,
            {
                "eventTypeKey": "orderCreated",
                "keyValue": "a@b.c",
                "params": [{"name": "n", "value": i}],
            },
        )
        for i in range(n)
    ]
    store.record_result(wid, "t", "s", events)
    return [e.id for e in store.due_events(time.time() + 1, n)]


def events(store: Store) -> list[EventRow]:
    return sorted(store.list_events(limit=1000), key=lambda e: e.id)


def attempts(store: Store) -> list[AttemptRow]:
    (wid,) = {e.webhook_id for e in events(store)}
    detail = store.get_webhook(wid)
    assert detail is not None
    return detail.attempts


def scripted(*statuses: int, text: str = "") -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport answering the statuses in turn (then 200), recording the requests."""
    seen: list[httpx.Request] = []
    left = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(left.pop(0) if left else 200, text=text)

    return httpx.MockTransport(handler), seen


def drain(
    store: Store,
    transport: httpx.AsyncBaseTransport | None,
    destination: Destination = DEST,
    drain_timeout: float = 5.0,
    **kw: Any,
) -> dict[str, int]:
    """Run ``Dispatcher.drain`` once (schedule TINY unless given); the outcome counts."""

    async def main() -> dict[str, int]:
        kw.setdefault("schedule", TINY)
        async with Dispatcher(store, destination, transport=transport, **kw) as d:
            return dict(await d.drain(timeout=drain_timeout))

    return asyncio.run(main())


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# -- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, "sent"),
        (204, "sent"),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (301, "dead"),
        (400, "dead"),
        (401, "dead"),
        (404, "dead"),
        (413, "dead"),
    ],
)
def test_classify_maps_statuses_to_outcomes(status: int, outcome: str) -> None:
    assert classify(status) == outcome


def test_default_schedule_spans_about_a_day() -> None:
    assert 20 * 3600 <= sum(DEFAULT_SCHEDULE) <= 30 * 3600
    assert list(DEFAULT_SCHEDULE) == sorted(DEFAULT_SCHEDULE)


# -- one event, one outcome ------------------------------------------------------------


def test_200_marks_the_event_sent_after_exactly_one_request(store: Store) -> None:
    queue(store)
    transport, seen = scripted(200)
    assert drain(store, transport) == {"sent": 1}
    assert drain(store, transport) == {}
    assert len(seen) == 1
    (event,) = events(store)
    assert (event.state, event.attempts, event.last_status) == ("sent", 1, 200)
    assert event.sent_at is not None
    assert [(a.outcome, a.status) for a in attempts(store)] == [("sent", 200)]


def test_request_is_a_post_of_the_stored_body_with_basic_auth(store: Store) -> None:
    queue(store, version="v1")
    transport, seen = scripted(200)
    drain(store, transport)
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", "http://cdp.test/api/v1/event")
    assert request.content.decode() == events(store)[0].body
    assert request.headers["content-type"] == "application/json; charset=UTF-8"
    scheme, token = request.headers["authorization"].split()
    assert (scheme, base64.b64decode(token).decode()) == ("Basic", f"hookmap:{KEY}")


def test_500_then_200_is_retried_then_sent(store: Store) -> None:
    queue(store)
    transport, seen = scripted(500)
    assert drain(store, transport) == {"retry": 1, "sent": 1}
    assert len(seen) == 2
    assert [(a.outcome, a.status) for a in attempts(store)] == [("retry", 500), ("sent", 200)]
    assert events(store)[0].state == "sent"


@pytest.mark.parametrize("status", [429, 408, 502])
def test_rate_limited_timeout_and_server_statuses_are_retried(store: Store, status: int) -> None:
    queue(store)
    transport, _ = scripted(status)
    assert drain(store, transport) == {"retry": 1, "sent": 1}


def test_retry_waits_for_the_schedule_delay(store: Store) -> None:
    queue(store)
    transport, _ = scripted(500)
    before = time.time()
    assert drain(store, transport, schedule=[60], drain_timeout=0.5) == {"retry": 1}
    (event,) = events(store)
    assert event.state == "pending" and event.attempts == 1
    assert event.next_attempt_at is not None and event.next_attempt_at >= before + 60 * 0.8


def test_connection_refused_is_retried_and_the_error_recorded(store: Store) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    queue(store)
    closed = Destination(f"http://127.0.0.1:{port}/api", KEY)
    assert drain(store, None, destination=closed, schedule=[60]) == {"retry": 1}
    (attempt,) = attempts(store)
    assert (attempt.outcome, attempt.status) == ("retry", None)
    assert attempt.error is not None and attempt.error.startswith("ConnectError")
    assert events(store)[0].last_error == attempt.error


class BrokenBody(httpx.AsyncByteStream):
    """A response body whose connection drops after the first bytes."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"o"
        raise httpx.ReadError("connection reset")


def test_a_2xx_whose_body_cannot_be_read_still_counts_as_sent(store: Store) -> None:
    """The status line decides: retrying here would send the event twice."""
    queue(store)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=BrokenBody()))
    assert drain(store, transport) == {"sent": 1}
    assert [(a.outcome, a.status, a.response) for a in attempts(store)] == [("sent", 200, "o")]


def test_timeout_is_retried(store: Store) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    queue(store)
    assert drain(store, httpx.MockTransport(handler)) == {"retry": 2, "dead": 1}
    assert {a.error for a in attempts(store)} == {"ReadTimeout: timed out"}


def test_400_is_dead_at_once_with_the_response_text(store: Store) -> None:
    queue(store)
    transport, seen = scripted(400, text="Invalid eventTypeKey")
    assert drain(store, transport) == {"dead": 1}
    assert len(seen) == 1
    (event,) = events(store)
    assert (event.state, event.last_status) == ("dead", 400)
    assert event.last_error == "HTTP 400: Invalid eventTypeKey"
    assert attempts(store)[0].response == "Invalid eventTypeKey"


@pytest.mark.parametrize("status", [401, 403, 404, 413, 422])
def test_other_client_errors_are_dead_at_once(store: Store, status: int) -> None:
    queue(store)
    transport, seen = scripted(status)
    assert drain(store, transport) == {"dead": 1}
    assert len(seen) == 1


def test_dead_when_the_schedule_is_used_up(store: Store) -> None:
    queue(store)
    transport, seen = scripted(500, 500, 500, 500)
    assert drain(store, transport) == {"retry": 2, "dead": 1}
    assert len(seen) == 3
    assert [a.outcome for a in attempts(store)] == ["retry", "retry", "dead"]
    (event,) = events(store)
    assert (event.state, event.attempts, event.last_error) == ("dead", 3, "HTTP 500")


def test_on_result_reports_type_outcome_status_and_latency(store: Store) -> None:
    queue(store)
    seen: list[tuple[str, str, int | None, float]] = []
    transport, _ = scripted(500)
    drain(store, transport, on_result=lambda *args: seen.append(args))
    assert [s[:3] for s in seen] == [("orderCreated", "retry", 500), ("orderCreated", "sent", 200)]
    assert all(s[3] >= 0 for s in seen)


def test_the_api_key_never_reaches_logs_or_the_store(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    queue(store, 2)
    token = DEST.headers()["Authorization"].split()[1]
    transport, _ = scripted(401, 500, text="unauthorized")
    drain(store, transport, schedule=[60])
    stored = json.dumps([repr(e) for e in events(store)] + [repr(a) for a in attempts(store)])
    assert "dead" in stored and "retry" in stored
    for text in (caplog.text, stored, repr(DEST)):
        assert KEY not in text and token not in text


# -- limits -------------------------------------------------------------------------------


def test_rate_limiter_bounds_throughput(store: Store) -> None:
    """At 20/s with no burst, 10 sends need at least 9 intervals (0.45 s): assert 0.4 s."""
    queue(store, 10)
    transport, seen = scripted()
    started = time.monotonic()
    assert drain(store, transport, rate_per_second=20, burst=1) == {"sent": 10}
    assert time.monotonic() - started >= 0.4
    assert len(seen) == 10


def test_concurrency_limit_bounds_sends_in_flight(store: Store) -> None:
    queue(store, 10)
    active = peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return httpx.Response(200)

    assert drain(store, httpx.MockTransport(handler), concurrency=3) == {"sent": 10}
    assert peak == 3


# -- run: waking, sleeping, stopping ------------------------------------------------------


def test_run_sends_events_written_later_when_woken(store: Store) -> None:
    transport, seen = scripted()

    async def main() -> None:
        async with Dispatcher(store, DEST, transport=transport, poll_interval=30) as d:
            stop, wake = asyncio.Event(), asyncio.Event()
            task = asyncio.create_task(d.run(stop, wake))
            await asyncio.sleep(0.05)  # idle: nothing queued
            await asyncio.to_thread(queue, store, 3)
            wake.set()
            await until(lambda: store.counts()["events"]["sent"] == 3)
            stop.set()
            await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert len(seen) == 3


def test_run_sleeps_only_until_the_next_retry_is_due(store: Store) -> None:
    """With a 30 s poll interval, a retry due in 0.05 s is still sent promptly."""
    queue(store)
    transport, seen = scripted(503)

    async def main() -> None:
        async with Dispatcher(
            store, DEST, transport=transport, schedule=[0.05], poll_interval=30
        ) as d:
            stop = asyncio.Event()
            task = asyncio.create_task(d.run(stop))
            await until(lambda: store.counts()["events"]["sent"] == 1, timeout=3)
            stop.set()
            await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert len(seen) == 2


def _blocking_run(store: Store, delay: float, grace: float) -> int:
    """Start run() over 5 events with 2 slots, stop once 2 sends are in flight."""
    queue(store, 5)
    started = 0
    both = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal started
        started += 1
        if started == 2:
            both.set()
        await asyncio.sleep(delay)
        return httpx.Response(200)

    async def main() -> None:
        async with Dispatcher(
            store, DEST, transport=httpx.MockTransport(handler), concurrency=2, grace_seconds=grace
        ) as d:
            stop = asyncio.Event()
            task = asyncio.create_task(d.run(stop))
            await asyncio.wait_for(both.wait(), 5)
            stop.set()
            await asyncio.wait_for(task, 5)

    asyncio.run(main())
    return started


def test_stop_lets_in_flight_sends_finish_and_leaves_the_rest_pending(store: Store) -> None:
    assert _blocking_run(store, delay=0.2, grace=5) == 2
    assert [e.state for e in events(store)] == ["sent", "sent", "pending", "pending", "pending"]
    assert [e.attempts for e in events(store)][2:] == [0, 0, 0]


def test_stop_cuts_sends_short_after_the_grace_period_and_they_stay_pending(
    store: Store,
) -> None:
    started = time.monotonic()
    assert _blocking_run(store, delay=30, grace=0.1) == 2
    assert time.monotonic() - started < 5
    assert {e.state for e in events(store)} == {"pending"}
    assert attempts(store) == []  # nothing known about the cut sends: sent again later


# -- a real HTTP server on loopback -------------------------------------------------------


class StubServer(HttpStub):
    """Answers POSTs with the queued statuses (then 200) and keeps what it received."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        super().__init__(self._answer)

    def _answer(self, _call: Call) -> Reply:
        status = self.statuses.pop(0) if self.statuses else 200
        return Reply(status, b"" if status == 200 else b"try later")

    @property
    def api(self) -> str:
        return f"{self.url}/api"


@pytest.fixture
def server() -> Iterator[StubServer]:
    with StubServer() as stub:
        yield stub


def test_real_server_receives_body_and_auth_and_a_503_is_retried(
    store: Store, server: StubServer
) -> None:
    ids = queue(store, 3)
    server.statuses = [503]
    outcomes = drain(store, None, destination=Destination(server.api, KEY))
    assert outcomes == {"retry": 1, "sent": 3}
    assert {call.path for call in server.calls} == {"/api/v2/event"}
    assert len(server.calls) == 4
    authorization = server.calls[-1].header("Authorization") or ""
    token = base64.b64decode(authorization.split()[1]).decode()
    assert token == f"hookmap:{KEY}"
    bodies = {e.body for e in events(store)}
    assert {call.body.decode() for call in server.calls} == bodies
    assert [e.state for e in events(store)] == ["sent"] * len(ids)
    retried = [a for a in attempts(store) if a.outcome == "retry"]
    assert [(a.status, a.response) for a in retried] == [(503, "try later")]


# -- Retry-After ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "now", "wait"),
    [
        ("3600", 0.0, 3600.0),
        (" 120 ", 0.0, 120.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784111777.0 - 90, 90.0),
        ("Sunday, 06-Nov-94 08:49:37 GMT", 784111777.0 - 90, 90.0),
        ("Sun Nov  6 08:49:37 1994", 784111777.0 - 90, 90.0),
        ("Sun, 06 Nov 1994 08:49:37 GMT", 784111777.0 + 5, 0.0),
        ("-5", 0.0, None),
        ("1.5", 0.0, None),
        ("soon", 0.0, None),
        ("", 0.0, None),
        (None, 0.0, None),
    ],
)
def test_retry_after_reads_seconds_or_an_http_date(
    value: str | None, now: float, wait: float | None
) -> None:
    """RFC 9110: delay-seconds, or an HTTP date in any of its three forms; else ignored."""
    assert retry_after(value, now) == wait


def _asking(status: int, value: str) -> HttpStub:
    """A CDP on loopback answering ``status`` with ``Retry-After: value`` to everything."""
    return HttpStub(lambda call: Reply(status, "slow down", headers={"Retry-After": value}))


def _retry_at(store: Store, api: HttpStub, **kw: Any) -> tuple[float, EventRow, AttemptRow]:
    """One drain at a frozen clock against ``api``: the clock, the event, its attempt."""
    frozen = time.time() + 1
    kw.setdefault("schedule", [10])
    outcomes = drain(store, None, Destination(f"{api.url}/api", KEY), clock=lambda: frozen, **kw)
    assert outcomes == {"retry": 1}
    ((event,), (attempt,)) = events(store), attempts(store)
    assert event.next_attempt_at is not None
    return frozen, event, attempt


def test_a_429_retry_after_in_seconds_is_waited_and_recorded(store: Store) -> None:
    """Retry-After: 3600 on a 429 puts the next attempt an hour away (it came 8-12 s
    later), and the attempt and the event say why."""
    queue(store)
    with _asking(429, "3600") as api:
        now, event, attempt = _retry_at(store, api)
    assert event.next_attempt_at == now + 3600
    assert (attempt.status, attempt.response) == (429, "slow down")
    assert attempt.error == "HTTP 429: slow down; Retry-After: 3600, next attempt in 3600 s"
    assert event.last_error == attempt.error


def test_a_503_retry_after_as_an_http_date_is_waited(store: Store) -> None:
    queue(store)
    when = email.utils.formatdate(time.time() + 600, usegmt=True)
    with _asking(503, when) as api:
        now, event, _ = _retry_at(store, api)
    expected = email.utils.parsedate_to_datetime(when).timestamp()
    assert event.next_attempt_at == pytest.approx(expected, abs=0.01)
    assert event.next_attempt_at > now + 590


def test_a_retry_after_shorter_than_the_schedule_does_not_shorten_it(store: Store) -> None:
    queue(store)
    with _asking(429, "1") as api:
        now, event, _ = _retry_at(store, api, schedule=[60], jitter=0)
    assert event.next_attempt_at == now + 60


def test_a_retry_after_beyond_the_cap_is_capped(store: Store) -> None:
    queue(store)
    with _asking(503, "99999999") as api:
        now, event, attempt = _retry_at(store, api)
    assert event.next_attempt_at == now + MAX_RETRY_AFTER
    assert attempt.error is not None and attempt.error.endswith("(capped)")


def test_retry_after_is_ignored_on_other_statuses(store: Store) -> None:
    """Only 429 and 503 define it: a 500 with Retry-After keeps the schedule."""
    queue(store)
    with _asking(500, "3600") as api:
        now, event, attempt = _retry_at(store, api, schedule=[10], jitter=0)
    assert event.next_attempt_at == now + 10
    assert attempt.error is None


def test_a_contact_calls_retry_after_delays_its_event(store: Store) -> None:
    """The contact call comes first; its 503 Retry-After: 120 puts the event off 120 s."""
    wid = store.add_webhook("shop", {}, b"{}", None).id
    body = {"eventTypeKey": "orderCreated", "keyValue": "n@e.w", "params": []}
    contact = {"channels": [{"type": "email", "value": "n@e.w"}]}
    store.record_result(
        wid, "t", "s", [NewEvent("r", 0, "orderCreated", "v1", body, contact=contact)]
    )
    with _asking(503, "120") as api:
        now, event, attempt = _retry_at(store, api)
        assert [c.path for c in api.calls] == ["/api/v1/contact"]
    assert event.next_attempt_at == now + 120
    assert attempt.error == "contact: HTTP 503: slow down; Retry-After: 120, next attempt in 120 s"
