"""How fast `hookmap replay` goes over many stored webhooks: a benchmark, not a test.

    python benchmarks/replay.py [--count 20000]

Stores ``--count`` copies of the bundled Shopify order (each its own delivery id) in a
fresh data folder, then runs ``hookmap replay --since 1d --no-send`` over them in a
child process, as an operator would, and prints the wall time, webhooks per second and
the child's peak memory (max RSS). A second replay of the same webhooks follows: it
adds no event (events are identified by webhook, rule and index).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.server.service import DB_NAME  # noqa: E402
from engine.server.store.sqlite import Store  # noqa: E402
from engine.webhook import read_webhook_file  # noqa: E402

EXAMPLE = ROOT / "examples" / "shopify" / "orders-create.json"


def fill(data: Path, count: int) -> None:
    example = read_webhook_file(EXAMPLE)
    with Store(data / DB_NAME) as store:
        for n in range(count):
            store.add_webhook("shopify", dict(example.headers), example.body, f"bench-{n}")


def replay(data: Path) -> tuple[float, str]:
    command = [sys.executable, "-c", "from engine.cli import main; main()"]
    command += ["replay", "--data", str(data)]
    command += ["--rules", str(ROOT / "rules"), "--since", "1d", "--no-send"]
    env = {**os.environ, "SHOPIFY_PHONE_COUNTRY_CODE": ""}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=20000, help="webhooks to store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hookmap-replay-") as folder:
        data = Path(folder)
        start = time.perf_counter()
        fill(data, args.count)
        print(f"stored {args.count} webhooks in {time.perf_counter() - start:.1f} s")
        for label in ("replay", "replay again"):
            seconds, said = replay(data)
            print(f"{label}: {seconds:.1f} s, {args.count / seconds:.0f} webhooks/s ({said})")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KB on Linux
        print(f"peak memory of a replay (max RSS): {peak / 1024:.0f} MB")


if __name__ == "__main__":
    main()
