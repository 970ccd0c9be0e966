#!/usr/bin/env python3
"""The rate limit shared through PostgreSQL (engine.server.store.pg_limiter), from several
processes at once: a benchmark, not a test.

    python benchmarks/ratelimit.py [--database URL] [--rate 350] [--seconds 5]
                                   [--processes 1,2,4] [--tasks 8]

For each process count N, N processes (released together at one moment) each run
``--tasks`` tasks that acquire a slot for ONE account as fast as the limiter lets them
(as a dispatcher's sends do), for ``--seconds``; every acquisition's time is recorded.
Printed per N, one ``name value`` line each:

* ``shared_N_per_s``: acquisitions per second, all processes together (the rate less
  the limiter's slack is the ceiling), ``shared_N_max_1s``: the most acquisitions in any
  1 s window (a sliding window starting at each acquisition): at most the rate when the
  limit holds, and ``shared_N_late_slots``: slots given up by a task that woke too late;
* ``local_N_per_s`` / ``local_N_max_1s``: the same with a limiter in each process
  (``LocalLimiter``, what a SQLite store gives), for contrast: N times the rate;
* ``capacity_N_per_s``: the shared limiter with a rate far above what it can give
  (1,000,000/s): how many slots per second the database hands out, one statement each.

The database is ``--database``, else ``HOOKMAP_DATABASE_URL``, else a throwaway cluster
started on loopback as the tests start one (tests/support/postgres.py; needs the Debian
``postgresql`` package). Every process shares this machine's cores with the database:
read the figures as what one machine gives.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.server.ratelimit import LocalLimiter, RateLimiter  # noqa: E402
from engine.server.store.location import DATABASE_URL_ENV  # noqa: E402
from engine.server.store.pg_limiter import SharedLimiter  # noqa: E402
from engine.server.store.postgres import Store  # noqa: E402

CAPACITY_RATE = 1_000_000.0


async def _acquire_for(
    limiter: RateLimiter, account: str, start: float, seconds: float, tasks: int
) -> list[float]:
    """Acquire from ``tasks`` tasks from ``start`` (unix time) for ``seconds``; the times."""
    await limiter.acquire(f"warm-up-{os.getpid()}")  # the pool opened before the start
    await asyncio.sleep(max(start - time.time(), 0))
    end = start + seconds
    times: list[float] = []

    async def task() -> None:
        while time.time() < end:
            await limiter.acquire(account)
            times.append(time.time())

    try:
        await asyncio.gather(*(task() for _ in range(tasks)))
    finally:
        await limiter.aclose()
    return [t for t in times if t < end]


def child(argv: Sequence[str]) -> None:
    """One measuring process: ``--child KIND URL ACCOUNT RATE START SECONDS TASKS``."""
    kind, url, account, rate, start, seconds, tasks = argv
    limiter: RateLimiter = (
        SharedLimiter(url, float(rate)) if kind == "shared" else LocalLimiter(float(rate), 1)
    )
    times = asyncio.run(_acquire_for(limiter, account, float(start), float(seconds), int(tasks)))
    late = limiter.late if isinstance(limiter, SharedLimiter) else 0
    print(json.dumps({"times": times, "late": late}))


def max_in_window(times: list[float], window: float = 1.0) -> int:
    """The most times in any window ``[t, t + window)`` starting at one of them."""
    times = sorted(times)
    best = first = 0
    for last, moment in enumerate(times):
        while times[first] <= moment - window:
            first += 1
        best = max(best, last - first + 1)
    return best


def run(
    kind: str, url: str, rate: float, processes: int, seconds: float, tasks: int
) -> tuple[list[float], int]:
    """Every acquisition time of ``processes`` processes released together, and how many
    slots they gave up for waking too late."""
    account = f"bench-{kind}-{processes}-{time.time_ns()}"
    start = time.time() + 2.0  # time enough for every process to start and connect
    args = [kind, url, account, str(rate), str(start), str(seconds), str(tasks)]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", *args], cwd=ROOT, stdout=subprocess.PIPE
        )
        for _ in range(processes)
    ]
    times: list[float] = []
    late = 0
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise SystemExit(f"benchmark: a {kind} process failed (exit {proc.returncode})")
        found = json.loads(out)
        times.extend(found["times"])
        late += found["late"]
    return times, late


@contextlib.contextmanager
def database(given: str | None) -> Iterator[str]:
    """The URL of a database to measure on (a throwaway cluster when none is given)."""
    if given:
        yield given
        return
    from tests.support import Unavailable
    from tests.support.postgres import Cluster, PostgresServer, find_bindir

    try:
        cluster = Cluster.create(find_bindir())
        cluster.start()
    except Unavailable as why:
        raise SystemExit(f"benchmark: no PostgreSQL: {why}") from None
    try:
        admin = PostgresServer(url="", admin_url=cluster.admin_url())
        yield admin.create_database("hookmap_bench")
    finally:
        cluster.stop()


def figure(name: str, value: float | int, digits: int = 1) -> None:
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    print(f"{name} {text}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--child"]:
        child(argv[1:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--database", default=os.environ.get(DATABASE_URL_ENV))
    parser.add_argument("--rate", type=float, default=350.0, help="the limit per account")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--processes", default="1,2,4", help="process counts, comma-separated")
    parser.add_argument("--tasks", type=int, default=8, help="acquiring tasks per process")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.processes.split(",")]

    with database(args.database) as url:
        Store(url).close()  # the schema (rate_limits) in place
        figure("rate", args.rate)
        figure("seconds", args.seconds)
        figure("tasks_per_process", args.tasks)
        for n in counts:
            shared, late = run("shared", url, args.rate, n, args.seconds, args.tasks)
            figure(f"shared_{n}_per_s", len(shared) / args.seconds)
            figure(f"shared_{n}_max_1s", max_in_window(shared))
            figure(f"shared_{n}_late_slots", late)
            local, _ = run("local", url, args.rate, n, args.seconds, args.tasks)
            figure(f"local_{n}_per_s", len(local) / args.seconds)
            figure(f"local_{n}_max_1s", max_in_window(local))
            capacity, _ = run("shared", url, CAPACITY_RATE, n, args.seconds, args.tasks)
            figure(f"capacity_{n}_per_s", len(capacity) / args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
