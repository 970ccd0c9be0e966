"""Processing lanes: one platform's API that never answers delays no other platform's
webhooks (issue 14.2), and within a lane webhooks keep their order."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.sandbox.run import running
from engine.sandbox.settings import SandboxConfig
from engine.server.lanes import Lane, Lanes
from tests.helpers_server import (
    API_KEY,
    RULES,
    SECRETS,
    param,
    serving,
    settled,
    shopify_order,
    wait_until,
)
from tests.support.http_stub import Call, HttpStub, Reply

SLOW_RULES = """
name: slowshop
topic: {expression: event}
verify: {scheme: none}
hosts: [127.0.0.1]
lookups:
  order:
    url: ${SLOW_API}/orders/{id}
    args: {id: order_id}
    timeout: 30
    retries: 0
rules:
  - name: created
    topics: order.created
    events:
      - type: custom
        key: fetched('order').email
        params: {orderId: to_string(fetched('order').id)}
"""


class HeldApi:
    """A platform API that holds every request until ``release()``."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()
        self.stub = HttpStub(self._answer)

    def _answer(self, call: Call) -> Reply:
        with self._lock:
            self.waiting += 1
        self.released.wait(30)
        with self._lock:
            self.waiting -= 1
        order = int(call.path.rsplit("/", 1)[1])
        return Reply(200, {"id": order, "email": f"buyer{order}@example.com"})


@pytest.fixture
def held_api() -> Iterator[HeldApi]:
    api = HeldApi()
    with api.stub:
        try:
            yield api
        finally:
            api.released.set()


def test_a_platform_api_that_never_answers_delays_no_other_platforms_webhooks(
    tmp_path: Path, held_api: HeldApi
) -> None:
    rules = tmp_path / "slowshop.yaml"
    rules.write_text(SLOW_RULES, encoding="utf-8")
    env = {**SECRETS, "SLOW_API": held_api.stub.url}
    with (
        running(SandboxConfig(api_key=API_KEY)) as box,
        serving(box.destination(), tmp_path / "data", rules=(*RULES, str(rules)), env=env) as srv,
        httpx.Client(trust_env=False, timeout=5) as client,
    ):
        for order in (1, 2):
            body = json.dumps({"event": "order.created", "order_id": order}).encode()
            assert client.post(srv.hook("slowshop"), content=body).status_code == 200
        wait_until(lambda: held_api.waiting == 1, what="the first lookup held by the API")

        body, headers = shopify_order(5001, "lanes-1")
        assert client.post(srv.hook("shopify"), content=body, headers=headers).status_code == 200
        (shopify,) = wait_until(box.sandbox.events, timeout=10, what="the Shopify order sent")
        assert param(shopify["body"], "externalOrderId") == "5001"
        # sent while the other platform's lookup was still waiting for its answer, and
        # the second slowshop webhook still waits its turn behind the first
        assert held_api.waiting == 1
        assert len(held_api.stub.calls) == 0

        held_api.released.set()
        wait_until(lambda: len(box.sandbox.events()) == 3, what="the slowshop orders sent")
        wait_until(lambda: settled(srv.store), what="the store to settle")
    slow = [e["body"] for e in box.sandbox.events()[1:]]
    # within the lane, in the order they arrived
    assert [param(e, "orderId") for e in slow] == ["1", "2"]
    assert [c.path for c in held_api.stub.calls] == ["/orders/1", "/orders/2"]


def test_a_write_the_store_refuses_mid_lane_costs_one_line_and_the_webhook_comes_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk filling up while a lane processes (its result cannot be recorded): a
    warning line, no traceback, and the webhook the lane had taken is due again at once,
    not when its 10-minute lease ends, so it is sent as soon as writes succeed."""
    caplog.set_level(logging.INFO)
    with (
        running(SandboxConfig(api_key=API_KEY)) as box,
        serving(box.destination(), tmp_path / "data") as srv,
        httpx.Client(trust_env=False, timeout=5) as client,
    ):
        refusals = [sqlite3.OperationalError("database or disk is full")] * 2
        record = srv.store.record_result

        def full_disk(*args: Any, **kwargs: Any) -> Any:
            if refusals:
                raise refusals.pop()
            return record(*args, **kwargs)

        srv.store.record_result = full_disk  # type: ignore[method-assign]
        body, headers = shopify_order(6001, "lanes-full-disk")
        assert client.post(srv.hook("shopify"), content=body, headers=headers).status_code == 200
        (sent,) = wait_until(box.sandbox.events, timeout=10, what="the order sent")
        assert param(sent["body"], "externalOrderId") == "6001"
        assert not refusals
        wait_until(lambda: settled(srv.store), what="the store to settle")
    warned = [r for r in caplog.records if "cannot process the webhooks of" in r.getMessage()]
    assert len(warned) == 2
    assert all(r.exc_info is None for r in caplog.records if r.name.startswith("hookmap"))


# -- the scheduler alone ---------------------------------------------------------------------


class Board:
    """Lanes with webhooks due, and a drain that records what it did and may block."""

    def __init__(self, due: dict[Lane, int]) -> None:
        self.due = dict(due)
        self.order: list[Lane] = []
        self.blocked: dict[Lane, threading.Event] = {}
        self.running: set[Lane] = set()
        self.most_at_once = 0
        self._lock = threading.Lock()

    def lanes(self, busy: Collection[Lane]) -> list[Lane]:
        with self._lock:
            return [lane for lane, n in self.due.items() if n and lane not in busy]

    def drain(self, lane: Lane, stopping: Callable[[], bool]) -> int:
        with self._lock:
            self.running.add(lane)
            self.most_at_once = max(self.most_at_once, len(self.running))
        gate = self.blocked.get(lane)
        if gate is not None:
            while not gate.wait(0.01) and not stopping():
                pass
            if not gate.is_set():  # stopped while blocked: nothing done
                with self._lock:
                    self.running.discard(lane)
                return 0
        with self._lock:
            self.running.discard(lane)
            done = min(self.due[lane], 2)  # a batch of two
            self.due[lane] -= done
            self.order.extend([lane] * done)
        time.sleep(0.005)
        return done


async def _run(lanes: Lanes, until: Callable[[], bool], timeout: float = 10) -> None:
    stop, wake = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(lanes.run(stop, wake, grace=1))
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "the lanes did not get there in time"
        wake.set()
        await asyncio.sleep(0.01)
    stop.set()
    await task


def test_lanes_take_turns_in_batches_and_a_blocked_lane_holds_only_its_worker() -> None:
    a, b, c = ("a", ""), ("b", ""), ("c", "")
    board = Board({a: 6, b: 6, c: 6})
    gate = board.blocked[c] = threading.Event()
    lanes = Lanes(board.lanes, board.drain, workers=2)
    asyncio.run(_run(lanes, lambda: board.due[a] == board.due[b] == 0))
    # c held one worker the whole time: a and b shared the other, batch by batch
    assert board.due[c] == 6
    assert board.most_at_once == 2
    assert board.order.count(a) == board.order.count(b) == 6
    switches = sum(1 for x, y in zip(board.order, board.order[1:], strict=False) if x != y)
    assert switches >= 4, board.order  # turns, not all of a and then all of b
    gate.set()


def test_stopping_gives_a_blocked_lane_its_grace_and_returns() -> None:
    a = ("a", "")
    board = Board({a: 2})
    board.blocked[a] = threading.Event()  # never set: only stopping() ends it
    lanes = Lanes(board.lanes, board.drain, workers=1)
    started = time.monotonic()
    asyncio.run(_run(lanes, lambda: a in board.running))
    assert time.monotonic() - started < 5
    assert board.running == set()


def test_a_lane_that_finds_nothing_is_not_started_again_at_once() -> None:
    a = ("a", "")
    calls: list[float] = []

    def drain(lane: Lane, stopping: Callable[[], bool]) -> int:
        calls.append(time.monotonic())
        return 0  # another server took them: due says so, the claim finds none

    lanes = Lanes(lambda busy: [a], drain, workers=1)
    asyncio.run(_run(lanes, lambda: len(calls) >= 2, timeout=5))
    assert calls[1] - calls[0] >= 0.9  # rests until the next poll, no busy loop


def test_lanes_need_a_worker() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        Lanes(lambda busy: [], lambda lane, stopping: 0, workers=0)
