"""Many shops, many processes: ``hookmap serve`` x N over one shared store, on loopback.

Signed Shopify orders from 20 shops (four CDP accounts, five shops each) are posted by
concurrent senders to N = 1, 2, 4 ``hookmap serve`` processes sharing one PostgreSQL
database, and delivered to four sandboxes (one per account, each checking its own key).
Per N it prints accepted webhooks/s, acknowledgement p50/p99, events delivered/s, and
the most requests any CDP account received in one second (the limit, ``--rate``, holds
per account across every process). Then the kill test: three processes, a burst of 600
webhooks, one process SIGKILLed mid-burst; every acknowledged webhook must reach the
CDP, and a duplicate is allowed only for a send in flight when the process died (the
CDP has no idempotency key: docs/server.md). A benchmark, not a test: it prints figures.

    python benchmarks/scale.py [--database-url URL] [--orders 2000] [--senders 16]

Without ``--database-url`` it starts a throwaway PostgreSQL on loopback (Debian's
``postgresql`` package: ``apt-get install postgresql``), as the tests do.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.rules.schemes import VerifySpec  # noqa: E402
from engine.server.signing import sign  # noqa: E402

HOOKMAP = str(Path(sys.executable).parent / "hookmap")
SHOPIFY = VerifySpec("shopify")
ORDER = json.loads((ROOT / "examples" / "shopify" / "orders-create.json").read_bytes())
HEADERS = dict(
    line.split(": ", 1)
    for line in (ROOT / "examples" / "shopify" / "orders-create.headers").read_text().splitlines()
    if ": " in line and not line.startswith("#")
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{url}: the process exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


class Setup:
    """The shops file, the accounts (sandboxes) and the environment the servers run with."""

    def __init__(self, folder: Path, shops: int, accounts: int) -> None:
        self.folder = folder
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("HOOKMAP_", "SHOPIFY_", "WOOCOMMERCE_"))
        }
        self.sandboxes: list[tuple[subprocess.Popen[bytes], str, str]] = []
        lines = ["shops:"]
        self.shops = [f"shop{n:02d}" for n in range(shops)]
        for index in range(accounts):
            key = f"account-{index}-key"
            port = free_port()
            box = subprocess.Popen(
                [HOOKMAP, "sandbox", "--port", str(port), "--rate-limit", "100000"],
                env={**self.env, "HOOKMAP_API_KEY": key},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            root = f"http://127.0.0.1:{port}"
            wait_ready(f"{root}/sandbox/health", box)
            self.sandboxes.append((box, root, key))
        for n, shop in enumerate(self.shops):
            _, root, key = self.sandboxes[n % accounts]
            self.env[f"{shop.upper()}_KEY"] = key
            self.env[f"{shop.upper()}_SECRET"] = f"secret-of-{shop}"
            lines += [
                f"  {shop}:",
                "    ruleset: shopify",
                f"    api_key_env: {shop.upper()}_KEY",
                f"    api_url: {root}/api",
                f"    secret_env: {shop.upper()}_SECRET",
            ]
        self.shops_file = folder / "shops.yaml"
        self.shops_file.write_text("\n".join(lines) + "\n")

    def reset_sandboxes(self) -> None:
        for _, root, _ in self.sandboxes:
            httpx.delete(f"{root}/sandbox/events", timeout=5)

    def delivered(self) -> list[tuple[str, float, str]]:
        """(account root, arrival unix time, order id) of every event the accounts got."""
        out = []
        for _, root, _ in self.sandboxes:
            for event in httpx.get(f"{root}/sandbox/events", timeout=10).json():
                moment = time.mktime(time.strptime(event["received"][:19], "%Y-%m-%dT%H:%M:%S"))
                moment += float("0." + event["received"][20:23]) - time.timezone
                params = {p["name"]: p["value"] for p in event["body"]["params"]}
                out.append((root, moment, params.get("externalOrderId", "?")))
        return out

    def close(self) -> None:
        for box, _, _ in self.sandboxes:
            box.terminate()
        for box, _, _ in self.sandboxes:
            box.wait(10)


@contextlib.contextmanager
def servers(setup: Setup, data: str, count: int, rate: float) -> Iterator[list[Any]]:
    """``count`` hookmap serve processes on one store; yields [(process, base url)]."""
    started = []
    try:
        for _ in range(count):
            port = free_port()
            process = subprocess.Popen(
                [
                    HOOKMAP,
                    "serve",
                    "--rules",
                    str(ROOT / "rules" / "shopify"),
                    "--shops",
                    str(setup.shops_file),
                    "--data",
                    data,
                    "--port",
                    str(port),
                    "--rate",
                    str(rate),
                    "--log-level",
                    "warning",
                ],
                env=setup.env,
                stdout=subprocess.DEVNULL,
                stderr=open(setup.folder / f"serve-{port}.log", "wb"),  # noqa: SIM115
            )
            url = f"http://127.0.0.1:{port}"
            started.append((process, url))
            wait_ready(f"{url}/readyz", process)
        yield started
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process, _ in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)


def order(n: int, shop: str) -> tuple[bytes, dict[str, str]]:
    data = dict(ORDER, id=100000 + n)
    body = json.dumps(data).encode()
    headers = {k: v for k, v in HEADERS.items() if v != "PLACEHOLDER"}
    headers["X-Shopify-Webhook-Id"] = f"delivery-{n}"
    headers.update(sign(SHOPIFY, f"secret-of-{shop}".encode(), body))
    return body, headers


def post_all(
    urls: list[str], setup: Setup, numbers: range, senders: int, alive: threading.Event | None
) -> tuple[list[float], set[int], float]:
    """Post every order; a refused connection goes to the next server (as a load balancer
    or the platform's retry would). Returns ack latencies, accepted order numbers, time."""
    latencies: list[float] = []
    accepted: set[int] = set()
    lock = threading.Lock()

    def send(n: int, client: httpx.Client) -> None:
        shop = setup.shops[n % len(setup.shops)]
        body, headers = order(n, shop)
        for attempt in range(len(urls) * 3):
            url = urls[(n + attempt) % len(urls)]
            started = time.perf_counter()
            try:
                answer = client.post(f"{url}/hooks/shopify/{shop}", content=body, headers=headers)
            except httpx.HTTPError:
                time.sleep(0.05)
                continue
            if answer.status_code == 200:
                with lock:
                    latencies.append(time.perf_counter() - started)
                    accepted.add(n)
                return
        raise SystemExit(f"order {n}: no server accepted it")

    begin = time.perf_counter()
    clients = [httpx.Client(timeout=30) for _ in range(senders)]
    with concurrent.futures.ThreadPoolExecutor(senders) as pool:
        futures = [pool.submit(send, n, clients[n % senders]) for n in numbers]
        for future in futures:
            future.result()
    elapsed = time.perf_counter() - begin
    for client in clients:
        client.close()
    return latencies, accepted, elapsed


def wait_delivered(setup: Setup, expected: int, seconds: float = 600) -> float:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if len(setup.delivered()) >= expected:
            return time.monotonic()
        time.sleep(0.2)
    raise SystemExit(f"only {len(setup.delivered())} of {expected} events delivered")


def max_per_second(delivered: list[tuple[str, float, str]]) -> dict[str, int]:
    """The most requests each account received in any 1 s window (sliding)."""
    out: dict[str, int] = {}
    for account in {a for a, _, _ in delivered}:
        times = sorted(t for a, t, _ in delivered if a == account)
        best, start = 0, 0
        for end, moment in enumerate(times):
            while moment - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        out[account] = best
    return out


def run_scale(
    setup: Setup,
    database: str,
    counts: list[int],
    orders: int,
    senders: int,
    rate: float,
    reset: Any,
) -> None:
    print(
        f"{'N':>2} {'accepted/s':>11} {'ack p50':>8} {'ack p99':>8} {'delivered/s':>12} "
        f"{'max req/s per account':>22}"
    )
    for count in counts:
        reset()
        setup.reset_sandboxes()
        with servers(setup, database, count, rate) as running:
            urls = [url for _, url in running]
            latencies, accepted, elapsed = post_all(urls, setup, range(orders), senders, None)
            first = time.monotonic() - elapsed
            done = wait_delivered(setup, len(accepted))
        quantiles = statistics.quantiles(latencies, n=100)
        per_account = max_per_second(setup.delivered())
        print(
            f"{count:>2} {len(accepted) / elapsed:>11.0f} {quantiles[49] * 1000:>6.1f}ms "
            f"{quantiles[98] * 1000:>6.1f}ms {len(accepted) / (done - first):>12.0f} "
            f"{max(per_account.values()):>22}"
        )


def run_kill(
    setup: Setup, database: str, burst: int, senders: int, rate: float, reset: Any
) -> None:
    reset()
    setup.reset_sandboxes()
    with servers(setup, database, 3, rate) as running:
        urls = [url for _, url in running]
        victim, _ = running[1]
        killed_at: list[float] = []

        def kill_later() -> None:
            time.sleep(0.5)
            victim.send_signal(signal.SIGKILL)
            killed_at.append(time.time())

        threading.Thread(target=kill_later, daemon=True).start()
        _, accepted, _ = post_all(urls, setup, range(burst), senders, None)
        wait_delivered(setup, len(accepted), 300)
        time.sleep(2)  # anything sent twice would have arrived by now
    delivered = setup.delivered()
    seen = Counter(order_id for _, _, order_id in delivered)
    ids = {str(100000 + n) for n in accepted}
    lost = sorted(ids - set(seen))
    doubled = {order_id for order_id, n in seen.items() if n > 1}
    kill = killed_at[0] if killed_at else 0.0
    # a duplicate inside the window: its first arrival before the kill (the dead process
    # sent it, its "sent" never committed), the second after (released and sent again)
    inside = {
        o
        for o in doubled
        if min(t for _, t, i in delivered if i == o) <= kill + 1.0
        and max(t for _, t, i in delivered if i == o) >= kill
    }
    print(
        f"kill test: {burst} webhooks posted, {len(accepted)} acknowledged, one of 3 "
        f"processes SIGKILLed mid-burst"
    )
    print(
        f"  lost {len(lost)}, duplicated {len(doubled - inside)} outside the window, "
        f"{len(inside)} inside it (sends in flight when the process died)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="a PostgreSQL database to use (it is emptied)")
    parser.add_argument("--orders", type=int, default=2000)
    parser.add_argument("--senders", type=int, default=16)
    parser.add_argument("--rate", type=float, default=350.0, help="per CDP account")
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--kill-burst", type=int, default=600)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url, reset = database(stack, args.database_url)
        setup = Setup(folder, shops=20, accounts=4)
        stack.callback(setup.close)
        print(
            f"{os.uname().machine}, Python {sys.version.split()[0]}, {len(setup.shops)} "
            f"shops, {len(setup.sandboxes)} CDP accounts, limit {args.rate:g} req/s each"
        )
        counts = [int(n) for n in args.processes.split(",")]
        run_scale(setup, url, counts, args.orders, args.senders, args.rate, reset)
        run_kill(setup, url, args.kill_burst, args.senders, args.rate, reset)


def database(stack: contextlib.ExitStack, given: str | None) -> tuple[str, Any]:
    """A PostgreSQL URL and a function that empties it between runs."""
    import psycopg

    from tests.support.postgres import Cluster, find_bindir

    if given is None:
        cluster = Cluster.create(find_bindir())
        cluster.start()
        stack.callback(cluster.remove)
        stack.callback(cluster.stop)
        admin = cluster.admin_url()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE hookmap_scale")
        given = admin.rsplit("/", 1)[0] + "/hookmap_scale"

    def reset() -> None:
        with psycopg.connect(given, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
            conn.execute("CREATE SCHEMA public")

    return given, reset


if __name__ == "__main__":
    main()
