"""Enrichment: named HTTP lookups a rule set declares, for platforms that send only ids.

BigCommerce, Ecwid, PrestaShop and Stripe webhooks carry an id; the order itself
comes from the platform's API. A lookup is a GET to a URL template whose host is
fixed in the rule file and must be one of the rule set's ``hosts``; values from the
webhook only fill ``{placeholders}``, percent-encoded so they cannot add a path, a
query or another host. Expressions read the result with ``fetched('name')``.

Evaluation itself does no I/O: the pipeline asks a ``Fetcher`` for the lookups the
matched rules use before evaluating them. The server uses ``HttpFetcher``; rule tests
use ``MockFetcher`` with fixture files instead of the network, and dry-run an
``OfflineFetcher``, which calls the network only when asked (``--live``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from engine.errors import LookupFailed
from engine.rules.model import LookupSpec


class Fetcher(Protocol):
    def fetch(self, spec: LookupSpec, url: str) -> Any:
        """The JSON answer for ``url``, or ``LookupFailed``."""


class HttpFetcher:
    """GET with retries (backoff), a per-URL cache honouring each lookup's TTL."""

    def __init__(
        self, transport: httpx.BaseTransport | None = None, sleep: Any = time.sleep
    ) -> None:
        self._client = httpx.Client(transport=transport, follow_redirects=False)
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()
        self._sleep = sleep

    def close(self) -> None:
        self._client.close()

    def fetch(self, spec: LookupSpec, url: str) -> Any:
        key = f"{spec.name} {url}"
        if spec.cache_ttl > 0:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and hit[0] > time.monotonic():
                return hit[1]
        reason = "no attempt"
        for attempt in range(spec.retries + 1):
            if attempt:
                self._sleep(min(0.2 * 2**attempt, 5.0))
            try:
                response = self._client.get(url, headers=dict(spec.headers), timeout=spec.timeout)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                reason = f"HTTP {response.status_code}"
                continue
            if response.status_code == 404 and spec.not_found == "null":
                return None  # the rule set says a missing resource is an answer
            if response.status_code >= 300:
                # 404 for a deleted order is an answer too, but not one rules can use:
                # keep the webhook and say so (a replay after a fix can pick it up)
                raise LookupFailed(
                    spec.name, url, f"HTTP {response.status_code}: {response.text[:200]}"
                )
            try:
                value = response.json()
            except ValueError as exc:
                raise LookupFailed(spec.name, url, "answer is not JSON") from exc
            if spec.cache_ttl > 0:
                with self._lock:
                    self._cache[key] = (time.monotonic() + spec.cache_ttl, value)
            return value
        raise LookupFailed(spec.name, url, f"{reason} after {spec.retries + 1} attempt(s)")


class MockFetcher:
    """Answers from fixtures (dry-run ``--mock``, rule tests' ``mocks``), never the network.

    ``answers`` maps a lookup name to its JSON answer, or to ``{url: answer}`` when
    one webhook fetches the same lookup for several URLs.
    """

    def __init__(self, answers: Mapping[str, Any]) -> None:
        self.answers = dict(answers)
        self.calls: list[tuple[str, str]] = []

    def fetch(self, spec: LookupSpec, url: str) -> Any:
        self.calls.append((spec.name, url))
        if spec.name not in self.answers:
            raise LookupFailed(spec.name, url, "no mock given for this lookup")
        answer = self.answers[spec.name]
        if isinstance(answer, dict) and answer and all(k.startswith("http") for k in answer):
            if url not in answer:
                raise LookupFailed(spec.name, url, "no mock given for this URL")
            return answer[url]
        return answer


class OfflineFetcher:
    """Dry-run's fetcher: mocks first, the platform's API only when ``live`` is given.

    Without ``live`` a lookup that has no mock is not an error to stop at: it is noted in
    ``missing`` (name, URL) and answered null, so that one run names every lookup the
    webhook needs; the caller then shows what to mock instead of the events, which were
    made from null answers. Call ``reset`` before each webhook.
    """

    def __init__(self, answers: Mapping[str, Any], live: HttpFetcher | None = None) -> None:
        self.mocks = MockFetcher(answers)
        self.live = live
        self.missing: list[tuple[str, str]] = []

    def close(self) -> None:
        if self.live is not None:
            self.live.close()

    def reset(self) -> None:
        self.missing = []

    def fetch(self, spec: LookupSpec, url: str) -> Any:
        if spec.name in self.mocks.answers:
            return self.mocks.fetch(spec, url)
        if self.live is not None:
            return self.live.fetch(spec, url)
        self.missing.append((spec.name, url))
        return None
