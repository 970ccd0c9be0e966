"""Prometheus metrics for the server, in the text exposition format (version 0.0.4).

A handful of counters, one histogram and gauges read at scrape time: small enough
that a dependency would cost more than these lines. Thread-safe: the dispatcher and
the request handlers update it from the event loop, the processor from a thread.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable

Labels = tuple[tuple[str, str], ...]

#: dispatch latency buckets, seconds (the CDP answers in tens of milliseconds)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Counter:
    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self.values: dict[Labels, float] = defaultdict(float)

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        self.values[tuple(sorted(labels.items()))] += amount

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, value in sorted(self.values.items()):
            yield f"{self.name}{_labels(labels)} {value:g}"


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...]) -> None:
        self.name, self.help, self.buckets = name, help_text, buckets
        self.counts: dict[Labels, list[int]] = {}
        self.sums: dict[Labels, float] = defaultdict(float)

    def observe(self, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sums[key] += value

    def lines(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for labels, counts in sorted(self.counts.items()):
            running = 0
            for bound, count in zip((*self.buckets, float("inf")), counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else f"{bound:g}"
                yield f"{self.name}_bucket{_labels((*labels, ('le', le)))} {running}"
            yield f"{self.name}_sum{_labels(labels)} {self.sums[labels]:g}"
            yield f"{self.name}_count{_labels(labels)} {running}"


class Metrics:
    """The server's metrics; ``gauges`` are read when scraped (queue depth, oldest age)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received = Counter(
            "hookmap_webhooks_received_total", "Webhooks accepted and stored, by source."
        )
        self.rejected = Counter(
            "hookmap_webhooks_rejected_total",
            "Webhooks refused (not stored), by source and reason.",
        )
        self.duplicates = Counter(
            "hookmap_webhooks_duplicate_total",
            "Repeated deliveries acknowledged without processing.",
        )
        self.processed = Counter(
            "hookmap_webhooks_processed_total",
            "Stored webhooks turned into events, by source and outcome.",
        )
        self.events = Counter(
            "hookmap_events_total",
            "Delivery attempts by event type and outcome (sent, retry, dead).",
        )
        self.dropped = Counter(
            "hookmap_events_invalid_total",
            "Events dropped by the checks (never sent), by event type.",
        )
        self.latency = Histogram(
            "hookmap_dispatch_seconds", "Time for one send to the CDP, by outcome.", LATENCY_BUCKETS
        )
        self.gauges: dict[str, tuple[str, Callable[[], float | None]]] = {}

    def count(self, counter: Counter, amount: float = 1.0, /, **labels: str) -> None:
        with self._lock:
            counter.inc(amount, **labels)

    def observe(self, value: float, **labels: str) -> None:
        with self._lock:
            self.latency.observe(value, **labels)

    def gauge(self, name: str, help_text: str, read: Callable[[], float | None]) -> None:
        self.gauges[name] = (help_text, read)

    def render(self) -> str:
        with self._lock:
            lines: list[str] = []
            for metric in (
                self.received,
                self.rejected,
                self.duplicates,
                self.processed,
                self.events,
                self.dropped,
            ):
                lines.extend(metric.lines())
            lines.extend(self.latency.lines())
        for name, (help_text, read) in sorted(self.gauges.items()):
            value = read()
            lines += [
                f"# HELP {name} {help_text}",
                f"# TYPE {name} gauge",
                f"{name} {0 if value is None else value:g}",
            ]
        return "\n".join(lines) + "\n"
