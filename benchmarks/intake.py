#!/usr/bin/env python3
"""Intake throughput of ``hookmap serve``, against a bare endpoint on the same stack.

Starts the sandbox CDP (in this process) and ``hookmap serve`` on the shipped rules (a
subprocess, fresh data folder, loopback), then posts REQUESTS distinct signed Shopify
orders (copies of examples/shopify/orders-create.json) from CONCURRENCY sender
threads, and measures:

* accepted webhooks per second and the acknowledgement latency (p50, p99): each 200
  means the webhook was committed (fsynced) to SQLite;
* events per second delivered end to end: from the first post until the sandbox holds
  every orderCreated (the dispatcher keeps to ``--rate``, the CDP's documented limit);
* the same intake figures for a bare ASGI app that only answers 200 (uvicorn, same
  h11 stack, a subprocess), and the ratio hookmap / bare.

The senders and the sandbox share this process (and its GIL), and on a small machine
every process shares the cores: read the ratio more than the absolute figures.

One line per figure: ``name value``. Run with the Python of hookmap's environment:
``python benchmarks/intake.py [--requests 2000] [--concurrency 8]``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from engine.rules.schemes import VerifySpec
from engine.sandbox.run import RunningSandbox, running
from engine.sandbox.settings import SandboxConfig
from engine.server.signing import sign
from engine.webhook import read_webhook_file

ROOT = Path(__file__).resolve().parents[1]
HOOKMAP = str(Path(sys.executable).parent / "hookmap")
API_KEY = "benchmark-api-key"
SECRET = "benchmark-shopify-secret"
FIRST_ORDER = 9_000_000

#: the bare endpoint: answers every request 200 after reading the body
BARE_APP = """
import sys
import uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status": "accepted"}'})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, lifespan="off")
"""

Request = tuple[bytes, dict[str, str]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def orders(count: int) -> list[Request]:
    """``count`` distinct orders-create webhooks (order id, delivery id), signed."""
    webhook = read_webhook_file(ROOT / "examples" / "shopify" / "orders-create.json")
    data = json.loads(webhook.body)
    base = {k: v for k, v in webhook.headers.items() if v != "PLACEHOLDER"}
    spec = VerifySpec("shopify")
    out: list[Request] = []
    for i in range(count):
        data["id"] = FIRST_ORDER + i
        body = json.dumps(data).encode()
        headers = {**base, "x-shopify-webhook-id": f"bench-{i}"}
        headers.update(sign(spec, SECRET.encode(), body))
        out.append((body, headers))
    return out


@contextlib.contextmanager
def serving(command: Sequence[str], env: dict[str, str], log: Path, ready: str) -> Iterator[None]:
    """Run ``command`` until the block ends (SIGTERM, then SIGKILL); wait until ``ready``
    answers first."""
    with log.open("wb") as sink:
        proc = subprocess.Popen(list(command), cwd=ROOT, env=env, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 20
        with httpx.Client(trust_env=False, timeout=1) as client:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"benchmark: {command[0]} exited early; see {log}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(ready).status_code in (200, 404):
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"benchmark: {ready} did not come up; see {log}")
                time.sleep(0.05)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Result:
    """What one run of posts measured."""

    def __init__(self, seconds: float, latencies: list[float], statuses: collections.Counter[int]):
        self.seconds = seconds
        self.latencies = sorted(latencies)
        self.statuses = statuses

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def per_second(self) -> float:
        return self.ok / self.seconds

    def percentile(self, q: float) -> float:
        """The ``q`` quantile in milliseconds (nearest rank)."""
        index = min(len(self.latencies) - 1, max(0, round(q * len(self.latencies)) - 1))
        return self.latencies[index] * 1000


def post_all(url: str, requests: list[Request], concurrency: int) -> tuple[float, Result]:
    """Post every request from ``concurrency`` threads; (start time, Result)."""
    todo = collections.deque(requests)
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: collections.Counter[int] = collections.Counter()
    go = threading.Barrier(concurrency + 1)

    def sender() -> None:
        with httpx.Client(trust_env=False, timeout=30) as client:
            go.wait()
            while True:
                with lock:
                    if not todo:
                        return
                    body, headers = todo.popleft()
                t0 = time.perf_counter()
                try:
                    status = client.post(url, content=body, headers=headers).status_code
                except httpx.HTTPError:
                    status = 0
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    statuses[status] += 1

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    go.wait()
    first = time.perf_counter()
    for thread in threads:
        thread.join()
    return first, Result(time.perf_counter() - first, latencies, statuses)


def warm_up(url: str, requests: list[Request]) -> None:
    """A few requests first, so lazy imports, connection pools and SQLite's cache settle."""
    with httpx.Client(trust_env=False, timeout=30) as client:
        for body, headers in requests:
            client.post(url, content=body, headers=headers)


def wait_delivered(box: RunningSandbox, count: int, seconds: float) -> float | None:
    """perf_counter() when the sandbox holds ``count`` events, None if not within ``seconds``."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        if len(box.sandbox.events()) >= count:
            return time.perf_counter()
        time.sleep(0.05)  # each look copies the list under the sandbox's lock
    return None


def figure(name: str, value: float | int, digits: int = 1) -> None:
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    print(f"{name} {text}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="webhooks to post (M)")
    parser.add_argument("--concurrency", type=int, default=8, help="sender threads (K)")
    parser.add_argument("--rate", type=float, default=350.0, help="hookmap serve --rate")
    parser.add_argument("--timeout", type=float, default=90.0, help="end-to-end wait, seconds")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        parser.error("--requests and --concurrency must be at least 1")

    warm = orders(args.requests + 20)
    batch, warmup = warm[: args.requests], warm[args.requests :]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HOOKMAP_", "SHOPIFY_"))}
    env.update(HOOKMAP_API_KEY=API_KEY, SHOPIFY_WEBHOOK_SECRET=SECRET)
    env["WOOCOMMERCE_WEBHOOK_SECRET"] = "benchmark-woocommerce-secret"

    with (
        tempfile.TemporaryDirectory(prefix="hookmap-bench-") as tmp,
        running(SandboxConfig(api_key=API_KEY)) as box,
    ):
        logs = Path(tmp)
        env["HOOKMAP_API_URL"] = box.url
        port = free_port()
        serve = [HOOKMAP, "serve", "--rules", "rules/shopify", "--port", str(port)]
        serve += ["--data", str(logs / "data"), "--rate", str(args.rate), "--log-level", "warning"]
        base = f"http://127.0.0.1:{port}"
        with serving(serve, env, logs / "serve.log", f"{base}/readyz"):
            warm_up(f"{base}/hooks/shopify", warmup)
            if wait_delivered(box, len(warmup), 30) is None:
                raise SystemExit("benchmark: the warm-up events were not delivered")
            first, hookmap = post_all(f"{base}/hooks/shopify", batch, args.concurrency)
            done = wait_delivered(box, len(warmup) + hookmap.ok, args.timeout)
        refused = collections.Counter(r["status"] for r in box.sandbox.requests())

        bare_port = free_port()
        bare_url = f"http://127.0.0.1:{bare_port}"
        bare_cmd = [sys.executable, "-c", BARE_APP, str(bare_port)]
        with serving(bare_cmd, env, logs / "bare.log", bare_url):
            warm_up(f"{bare_url}/hooks/shopify", warmup)
            _, bare = post_all(f"{bare_url}/hooks/shopify", batch, args.concurrency)

    figure("requests", args.requests)
    figure("concurrency", args.concurrency)
    figure("intake_accepted", hookmap.ok)
    figure("intake_webhooks_per_s", hookmap.per_second)
    figure("intake_ack_p50_ms", hookmap.percentile(0.50))
    figure("intake_ack_p99_ms", hookmap.percentile(0.99))
    if done is None:
        figure("end_to_end_events_per_s", 0.0)
        print(f"end_to_end_incomplete within {args.timeout:.0f} s", flush=True)
    else:
        figure("end_to_end_seconds", done - first)
        figure("end_to_end_events_per_s", hookmap.ok / (done - first))
    figure("sandbox_429_answers", refused.get(429, 0))
    figure("bare_webhooks_per_s", bare.per_second)
    figure("bare_ack_p50_ms", bare.percentile(0.50))
    figure("bare_ack_p99_ms", bare.percentile(0.99))
    figure("intake_vs_bare_throughput_ratio", hookmap.per_second / bare.per_second, 3)
    figure("intake_vs_bare_p50_latency_ratio", hookmap.percentile(0.5) / bare.percentile(0.5), 2)
    failures = {s: n for s, n in hookmap.statuses.items() if not 200 <= s < 300}
    if failures:
        print(f"intake_failures {failures}", flush=True)
    return 0 if done is not None and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
