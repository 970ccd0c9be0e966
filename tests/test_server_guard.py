"""The server under hostile or broken clients: idle sockets, slow heads and bodies,
too many connections, clients that leave mid-body, a full disk, admin paths.

All against the real server on loopback (``Service.run`` in a thread, or ``hookmap
serve`` as a process) with raw sockets for the misbehaving clients, delivering to the
sandbox. Short limits (tenths of a second) keep it fast; each socket read has a 10 s
cap, so a server that never closes fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from engine.server.app import _Shared
from engine.server.guard import Limits
from engine.server.logs import RepeatFilter
from tests.helpers_server import (
    API_KEY,
    SECRETS,
    ServedService,
    free_port,
    serve_env,
    serve_process,
    serving,
    settled,
    shopify_order,
    wait_until,
)

#: the misbehaving clients get tenths of a second; a signed order is far within them
QUICK = Limits(idle_timeout=0.3, header_timeout=0.3, body_timeout=0.5)
#: loggers whose lines a client's misbehaviour may cost
SERVER_LOGGERS = ("hookmap.guard", "hookmap.server", "uvicorn.error", "asyncio")


@pytest.fixture
def box() -> Iterator[RunningSandbox]:
    with running(SandboxConfig(api_key=API_KEY)) as served:
        yield served


@pytest.fixture
def quick(box: RunningSandbox, tmp_path: Path) -> Iterator[ServedService]:
    with serving(box.destination(), tmp_path / "data", limits=QUICK) as served:
        yield served


def connect(server: ServedService) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a 10 s read timeout fails the test)."""
    out = b""
    with contextlib.closing(sock):
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return out
            except TimeoutError:
                raise AssertionError(f"the server kept the connection open; got {out!r}") from None
            if not chunk:
                return out
            out += chunk


def lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name in SERVER_LOGGERS and r.levelno >= level]


def post_order(server: ServedService, order_id: int) -> httpx.Response:
    body, headers = shopify_order(order_id, f"delivery-{order_id}")
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.post(server.hook("shopify"), content=body, headers=headers)


HEAD = b"POST /hooks/shopify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


# -- timeouts --------------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed_quietly(
    quick: ServedService, caplog: pytest.LogCaptureFixture
) -> None:
    """Idle sockets were never closed: now after --idle-timeout, without a log line."""
    caplog.set_level(logging.INFO)
    assert read_until_closed(connect(quick)) == b""
    assert lines(caplog) == []


def test_a_request_head_that_never_ends_gets_408(
    quick: ServedService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    sock = connect(quick)
    sock.sendall(HEAD)  # no blank line: the head never ends
    assert read_until_closed(sock).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    (line,) = lines(caplog)
    assert "request head was not complete within 0.3 s (--header-timeout)" in line.getMessage()
    assert line.exc_info is None


def test_a_body_sent_a_byte_at_a_time_gets_408_and_nothing_is_stored(
    quick: ServedService, caplog: pytest.LogCaptureFixture
) -> None:
    """A 1 byte/s body was waited on for 41 s: now for --body-timeout, however it drips."""
    caplog.set_level(logging.INFO)
    sock = connect(quick)
    sock.sendall(HEAD + b"Content-Length: 1000\r\n\r\n{")
    answer = b""
    with contextlib.suppress(OSError):  # the server closes while we still drip
        for _ in range(100):
            sock.sendall(b" ")
            sock.settimeout(0.05)
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(65536)
            if answer:
                break
    sock.settimeout(10)
    answer += read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    (line,) = lines(caplog)
    assert "request body was not complete within 0.5 s" in line.getMessage()
    assert quick.store.counts()["webhooks"] == {"received": 0, "processed": 0, "failed": 0}


def test_half_sent_bodies_are_all_closed_and_the_server_still_takes_orders(
    quick: ServedService, caplog: pytest.LogCaptureFixture
) -> None:
    """0 of 300 half-sent bodies were closed before; now every one is, and a signed order
    sent meanwhile is accepted and delivered."""
    caplog.set_level(logging.INFO)
    socks = []
    for _ in range(60):
        # each sends as soon as it is connected: a socket left silent for the idle timeout
        # (0.3 s here, easily reached on a busy machine) is closed as idle, not answered
        sock = connect(quick)
        sock.sendall(HEAD + b'Content-Length: 5000\r\n\r\n{"id": 1')
        socks.append(sock)
    assert post_order(quick, 7).json()["status"] == "accepted"
    answers = [read_until_closed(sock) for sock in socks]
    assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
    wait_until(lambda: settled(quick.store), what="the order processed and sent")
    assert quick.store.counts()["events"]["sent"] == 1
    assert all(r.exc_info is None for r in lines(caplog))


def test_keep_alive_requests_and_an_early_answer_are_not_cut_short(quick: ServedService) -> None:
    """The limits bound waiting, not work: requests on one kept-alive connection, spaced
    by less than --idle-timeout, all succeed; a 413 answered before its body ended keeps
    the connection to the body's deadline, not a head timeout's."""
    with httpx.Client(trust_env=False, timeout=10) as client:
        for order_id in range(1, 4):
            body, headers = shopify_order(order_id, f"d-{order_id}")
            response = client.post(quick.hook("shopify"), content=body, headers=headers)
            assert response.json()["status"] == "accepted"
    sock = connect(quick)
    sock.sendall(HEAD + b"Content-Length: 99999999\r\n\r\n{")
    assert read_until_closed(sock).startswith(b"HTTP/1.1 413 ")


# -- connections -----------------------------------------------------------------------------


def test_idle_connections_make_room_for_a_signed_order_at_the_limit(
    box: RunningSandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """400 idle sockets once held every descriptor, so every signed order timed out (and
    the log grew 208 MB in 15 s): at --max-connections a new connection takes the place
    of the one idle longest, so the order is accepted at once, in a bounded log."""
    caplog.set_level(logging.INFO)
    limits = dataclasses.replace(QUICK, idle_timeout=60.0, max_connections=20)
    with serving(box.destination(), tmp_path / "data", limits=limits) as srv, _sockets() as idle:
        idle.extend(connect(srv) for _ in range(400))
        assert post_order(srv, 1).json()["status"] == "accepted"
        # the 380 oldest made room for the newer ones, then one more for the order
        assert [read_until_closed(sock) for sock in idle[:381]] == [b""] * 381
        assert len(_connections(srv)) <= 20
        wait_until(lambda: settled(srv.store), what="the order delivered")
    made_room = [r for r in lines(caplog) if "to make room" in r.getMessage()]
    assert 1 <= len(made_room) <= RepeatFilter().burst
    assert all(r.exc_info is None for r in lines(caplog))


def test_at_the_limit_with_every_connection_busy_a_new_one_gets_503(
    box: RunningSandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Connections in the middle of a body are never closed to make room: the new one is
    answered 503 Retry-After: 1 at once, one line each until repeats are counted."""
    caplog.set_level(logging.INFO)
    limits = dataclasses.replace(QUICK, body_timeout=60.0, max_connections=5)
    with serving(box.destination(), tmp_path / "data", limits=limits) as srv:
        with _sockets() as busy:
            busy.extend(connect(srv) for _ in range(5))
            for sock in busy:
                sock.sendall(HEAD + b"Content-Length: 100\r\n\r\n{")
            wait_until(lambda: sum(c._phase == "body" for c in _connections(srv)) == 5)
            refused = [read_until_closed(connect(srv)) for _ in range(40)]
            assert all(r.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") for r in refused)
            assert all(b"retry-after: 1\r\n" in r for r in refused)
        wait_until(lambda: not _connections(srv), what="the busy ones gone")
        assert post_order(srv, 1).json()["status"] == "accepted"
    refusals = [r for r in lines(caplog) if "refused a connection" in r.getMessage()]
    assert 1 <= len(refusals) <= RepeatFilter().burst
    assert all(r.exc_info is None for r in lines(caplog))


def test_at_the_limit_a_head_stuck_over_a_second_makes_room_a_fresh_one_does_not(
    box: RunningSandbox, tmp_path: Path
) -> None:
    """Slow heads (a slowloris) filling the limit keep an order out for a second at most:
    under a second old they are someone's request on its way (the new one gets 503),
    past it the oldest is closed for the order."""
    limits = dataclasses.replace(QUICK, header_timeout=30.0, max_connections=3)
    with serving(box.destination(), tmp_path / "data", limits=limits) as srv, _sockets() as slow:
        slow.extend(connect(srv) for _ in range(3))
        for count, sock in enumerate(slow, 1):  # one by one: slow[0] is the oldest
            sock.sendall(HEAD)  # no blank line: the head never ends
            wait_until(lambda n=count: _heads(srv) == n)
        assert read_until_closed(connect(srv)).startswith(b"HTTP/1.1 503 ")
        wait_until(lambda: _oldest_head(srv) > 1.0)
        assert post_order(srv, 1).json()["status"] == "accepted"
        assert read_until_closed(slow[0]) == b""


def _heads(server: ServedService) -> int:
    return sum(c._phase == "head" for c in _connections(server))


def _oldest_head(server: ServedService) -> float:
    """Seconds the oldest connection still in its request head has been there."""
    heads = [c for c in _connections(server) if c._phase == "head"]
    return max((c.loop.time() - c._since for c in heads), default=0.0)


@contextlib.contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    """A list of client sockets, all closed at the end (a failing test leaks none)."""
    socks: list[socket.socket] = []
    try:
        yield socks
    finally:
        for sock in socks:
            sock.close()


def _connections(server: ServedService) -> list[Any]:
    assert server.service._listeners is not None
    return list(server.service._listeners.servers[0].server_state.connections)


def test_a_client_leaving_mid_body_costs_one_info_line_and_stores_nothing(
    quick: ServedService, caplog: pytest.LogCaptureFixture
) -> None:
    """It cost an ERROR traceback each (301 for 301)."""
    caplog.set_level(logging.INFO)
    for _ in range(3):
        sock = connect(quick)
        sock.sendall(HEAD + b'Content-Length: 100\r\n\r\n{"id"')
        wait_until(lambda: any(c._phase == "body" for c in _connections(quick)))
        sock.close()
    wait_until(lambda: len(lines(caplog)) == 3, what="three lines")
    assert all(r.levelno == logging.INFO and r.exc_info is None for r in lines(caplog))
    assert all("disconnected while sending its body" in r.getMessage() for r in lines(caplog))
    assert quick.store.counts()["webhooks"]["received"] == 0


# -- a full disk -----------------------------------------------------------------------------


def _file_size_limit(pid: int, limit: int) -> None:
    import resource

    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or not hasattr(__import__("resource"), "prlimit"),
    reason="needs Linux's prlimit to give the server process a file size limit",
)
def test_a_store_that_cannot_write_answers_503_and_readiness_says_so(
    box: RunningSandbox, tmp_path: Path
) -> None:
    """The disk filling up made a traceback and a 500, and /readyz said ready. Here the
    server's files may not grow (RLIMIT_FSIZE, as a full disk does to SQLite): a webhook
    is answered 503 with Retry-After, not acknowledged, in one line; /readyz is 503; when
    the files may grow again, the platform's retry is accepted and delivered once."""
    data, log = tmp_path / "data", tmp_path / "serve.log"
    with serve_process(data, serve_env(box.url), log) as proc:
        proc.wait_ready()
        with httpx.Client(trust_env=False, timeout=10) as client:
            body, headers = shopify_order(1, "first")
            assert client.post(proc.hook("shopify"), content=body, headers=headers).is_success
            sizes = [f.stat().st_size for f in data.rglob("*") if f.is_file()]
            _file_size_limit(proc.proc.pid, max([*sizes, log.stat().st_size]) + 1)
            body, headers = shopify_order(2, "second")
            refused = client.post(proc.hook("shopify"), content=body, headers=headers)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "30"
            wait_until(lambda: client.get(f"{proc.url}/readyz").status_code == 503, timeout=5)
            problems = client.get(f"{proc.url}/readyz").json()["problems"]
            assert problems == ["database is not writable (a write failed, or the disk is full)"]
            _file_size_limit(proc.proc.pid, -1)
            wait_until(lambda: client.get(f"{proc.url}/readyz").status_code == 200, timeout=5)
            again = client.post(proc.hook("shopify"), content=body, headers=headers)
            assert again.json()["status"] == "accepted"
        wait_until(lambda: len(box.sandbox.events()) == 2, what="both orders delivered")
        assert proc.terminate() == 0
    output = log.read_text(encoding="utf-8")
    assert "Traceback" not in output
    assert output.count("cannot store a webhook for shopify, answered 503") == 1
    assert sorted(e["body"]["params"][0]["value"] for e in box.sandbox.events()) == ["1", "2"]


# -- admin paths -----------------------------------------------------------------------------


def test_admin_paths_on_their_own_port_and_behind_a_token(
    box: RunningSandbox, tmp_path: Path
) -> None:
    """/metrics, /readyz and /healthz shared the hooks port unauthenticated: with
    --admin-port they leave it, and HOOKMAP_ADMIN_TOKEN makes them ask for the token."""
    env = {**SECRETS, "HOOKMAP_ADMIN_TOKEN": "admin-token-never-logged"}
    admin = free_port()
    with serving(box.destination(), tmp_path / "data", env=env, admin_port=admin) as srv:
        with httpx.Client(trust_env=False, timeout=10) as client:
            for path in ("/metrics", "/readyz", "/healthz"):
                assert client.get(f"{srv.url}{path}").status_code == 404
                assert client.get(f"{srv.admin_url}{path}").status_code == 401
                wrong = {"authorization": "Bearer nope"}
                assert client.get(f"{srv.admin_url}{path}", headers=wrong).status_code == 401
                good = client.get(f"{srv.admin_url}{path}", headers=srv.admin_headers)
                assert good.status_code == 200
            assert client.post(f"{srv.admin_url}/hooks/shopify", content=b"{}").status_code == 404
        assert post_order(srv, 1).json()["status"] == "accepted"


def test_the_admin_token_guards_the_paths_beside_the_hooks_too(
    box: RunningSandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    env = {**SECRETS, "HOOKMAP_ADMIN_TOKEN": "admin-token-never-logged"}
    with (
        serving(box.destination(), tmp_path / "data", env=env) as srv,
        httpx.Client(trust_env=False, timeout=10) as client,
    ):
        assert client.get(f"{srv.url}/metrics").status_code == 401
        metrics = client.get(f"{srv.url}/metrics", headers=srv.admin_headers)
        assert metrics.text.startswith("# HELP")
    assert "admin-token-never-logged" not in caplog.text


def test_a_flood_of_admin_requests_costs_one_computation_at_a_time() -> None:
    """/metrics reads the store under its lock in a worker thread: 16 scrapers at once
    took the worker threads intake's writes wait for (intake fell to 55% of its rate).
    Requests that come while one is computed share its answer; readiness is reused for
    its TTL; a later request computes afresh."""
    calls: list[int] = []
    gate = threading.Event()

    def compute() -> str:
        calls.append(1)
        gate.wait(5)
        return f"render {len(calls)}"

    async def flood() -> tuple[list[str], str, list[str]]:
        shared = _Shared(compute)
        waiting = [asyncio.ensure_future(shared.get()) for _ in range(16)]
        await asyncio.sleep(0.05)
        gate.set()
        together = list(await asyncio.gather(*waiting))
        later = await shared.get()
        cached = _Shared(compute, ttl=60.0)
        return together, later, [await cached.get(), await cached.get()]

    together, later, cached = asyncio.run(flood())
    assert together == ["render 1"] * 16
    assert later == "render 2"
    assert cached == ["render 3", "render 3"]
    assert len(calls) == 3


# -- the log ---------------------------------------------------------------------------------


def test_repeated_warnings_are_counted_not_repeated() -> None:
    """burst lines of one kind per window; the next line says how many were dropped."""
    now = [0.0]
    repeat = RepeatFilter(burst=3, window=10.0, clock=lambda: now[0])

    def record(msg: str, *args: object, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("hookmap.guard", level, __file__, 1, msg, args, None)

    kept = [repeat.filter(record("refused %s", i)) for i in range(10)]
    assert kept == [True] * 3 + [False] * 7
    assert repeat.filter(record("another kind %s", 1))
    assert repeat.filter(record("refused %s", 1, level=logging.INFO))  # INFO passes
    now[0] = 10.0
    line = record("refused %s", 99)
    assert repeat.filter(line)
    assert line.getMessage() == "refused 99 (7 more like it not logged)"


def test_out_of_descriptors_keeps_its_line_but_not_its_traceback() -> None:
    try:
        raise OSError(24, "Too many open files")
    except OSError:
        import sys

        info = sys.exc_info()
    line = logging.LogRecord(
        "asyncio", logging.ERROR, __file__, 1, "socket.accept() out of system resource", (), info
    )
    assert RepeatFilter().filter(line)
    assert line.exc_info is None
    assert "raise the open-file limit (ulimit -n)" in line.getMessage()
