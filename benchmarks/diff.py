"""How `hookmap diff` fares over many stored webhooks: a benchmark, not a test.

    python benchmarks/diff.py [--count 100000]

Stores ``--count`` copies of the bundled Shopify order (each its own delivery id) in a
fresh data folder, copies the shipped Shopify rules with one param changed (so both
sides are evaluated and every event differs), then runs ``hookmap diff --since 1d
--json`` in a child process, as an operator or CI would, and prints the wall time,
webhooks per second and the child's peak memory (max RSS). A diff pages through the
store and keeps counts and a few examples, never the events: its memory should not
grow with ``--count`` (run it with two counts to see).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.server.store.sqlite import DB_NAME, Store  # noqa: E402
from engine.webhook import read_webhook_file  # noqa: E402

EXAMPLE = ROOT / "examples" / "shopify" / "orders-create.json"
RULES = ROOT / "rules" / "shopify"


def fill(data: Path, count: int) -> None:
    example = read_webhook_file(EXAMPLE)
    with Store(data / DB_NAME) as store, store.batch():
        for n in range(count):
            store.add_webhook("shopify", dict(example.headers), example.body, f"bench-{n}")


def changed_rules(folder: Path) -> Path:
    """The Shopify rules with totalCost read from the subtotal instead."""
    target = folder / "shopify"
    shutil.copytree(RULES, target)
    ruleset = target / "ruleset.yaml"
    text = ruleset.read_text(encoding="utf-8")
    ruleset.write_text(text.replace("totalCost: total_price", "totalCost: subtotal_price"))
    return target


def diff(data: Path, new: Path) -> tuple[float, dict[str, object]]:
    command = [sys.executable, "-c", "from engine.cli import main; main()", "diff"]
    command += ["--rules", str(new), "--against", str(RULES), "--data", str(data)]
    command += ["--since", "1d", "--json"]
    env = {**os.environ, "SHOPIFY_PHONE_COUNTRY_CODE": ""}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"hookmap diff failed ({done.returncode}):\n{done.stderr}")
    return seconds, json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="webhooks to store")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hookmap-diff-") as folder:
        data = Path(folder) / "data"
        start = time.perf_counter()
        fill(data, args.count)
        took = time.perf_counter() - start
        size = (data / DB_NAME).stat().st_size / 1e6
        print(f"stored {args.count} webhooks ({size:.0f} MB) in {took:.1f} s")
        seconds, doc = diff(data, changed_rules(Path(folder)))
        totals = doc["totals"]
        print(f"diff: {seconds:.1f} s, {args.count / seconds:.0f} webhooks/s, events {totals}")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KB on Linux
        print(f"peak memory of the diff (max RSS): {peak / 1024:.0f} MB")


if __name__ == "__main__":
    main()
