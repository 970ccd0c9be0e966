"""``hookmap serve``: the server, the processor and the dispatcher in one event loop.

* The ASGI app (``engine.server.app``) stores each accepted webhook and wakes the processor.
* The processor (``engine.server.processor``) turns stored webhooks into outbox events, in
  lanes (``engine.server.lanes``: one per rule set and shop, each in a worker thread), and
  wakes the dispatcher; on start it picks up whatever a crash left. Lookups go through one
  ``HttpFetcher``; a webhook whose lookup failed is put off and picked up again when due.
* The dispatcher (``engine.server.dispatch``) delivers the outbox.

Each port (``engine.server.listeners``: hooks, and admin when ``admin_port`` is set) has
idle, head and body timeouts and a connection limit (``engine.server.guard``); repeated
warnings are counted, not repeated (``engine.server.logs``).

SIGTERM / SIGINT: uvicorn stops taking requests and finishes the ones in flight, then
sends in flight get the grace period and the rest stay pending. SIGHUP (or a changed
rule file with ``--reload``) reloads the rules: a rule set that fails validation is
refused with its diagnostics, and the running rules keep serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from engine.errors import HookmapError, RuleLoadError, StoreError
from engine.events.destination import RATE_LIMIT, Destination
from engine.lookups import Fetcher, HttpFetcher
from engine.rules import compiler
from engine.rules.codegen import COMPILED
from engine.rules.discovery import Group
from engine.rules.model import Evaluator, RuleSet
from engine.rules.shops import load_shops_or_raise
from engine.server import running, tenants
from engine.server.app import make_app
from engine.server.dispatch import (
    DEFAULT_CONCURRENCY,
    DEFAULT_GRACE,
    DEFAULT_SCHEDULE,
    DEFAULT_TIMEOUT,
    Dispatcher,
)
from engine.server.guard import DEFAULT_LIMITS, Limits
from engine.server.housekeeping import keep_house, release_gone
from engine.server.intake import DEFAULT_MAX_BODY, Source
from engine.server.lanes import DEFAULT_LANES, Lane, Lanes
from engine.server.listeners import ADMIN_TOKEN_ENV, Listeners
from engine.server.logs import limited
from engine.server.metrics import Metrics
from engine.server.processor import LOOKUP_SCHEDULE, process_stored
from engine.server.ratelimit import RateLimiter
from engine.server.store.base import Instance, Store
from engine.server.store.location import open_store
from engine.server.tenants import Tenancy

log = logging.getLogger("hookmap.service")

#: how long processing one webhook may take before another server may take it over (its
#: lookups' timeouts and retries are far shorter); a server found gone frees it at once
PROCESS_LEASE = 600.0
#: webhooks a lane claims at once: it gives its worker back after them
LANE_BATCH = 20

#: where ``hookmap serve`` listens unless told
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    rules: tuple[str, ...]
    #: the data folder (the SQLite store inside), or a PostgreSQL URL shared by servers
    data_dir: Path | str = Path("hookmap-data")
    #: the shops file (each shop its own secret and CDP account); None: one shop per set
    shops: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    concurrency: int = DEFAULT_CONCURRENCY
    rate_per_second: float = RATE_LIMIT
    timeout: float = DEFAULT_TIMEOUT
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    grace_seconds: float = DEFAULT_GRACE
    reload_watch: bool = False
    #: compiled expressions (default) or jmespath's interpreter (same results, slower)
    evaluator: Evaluator = COMPILED
    #: delays before processing again a webhook whose lookup failed
    lookup_schedule: tuple[float, ...] = LOOKUP_SCHEDULE
    #: per connection: idle, head and body timeouts, connections at once (guard.Limits)
    limits: Limits = DEFAULT_LIMITS
    #: a port of its own for /healthz, /readyz and /metrics (None: beside the hooks)
    admin_port: int | None = None
    #: (rule set, shop) lanes processed at once, each in a worker of its own
    lanes: int = DEFAULT_LANES


class Service:
    """Everything ``hookmap serve`` runs, around one store and one set of rules."""

    def __init__(
        self,
        config: ServiceConfig,
        destination: Destination,
        env: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.config = config
        self.destination = destination
        self.env = os.environ if env is None else env
        self.transport = transport
        self.metrics = Metrics()
        self.tenancy, self.loaded_from = self.load()
        self.store: Store = open_store(config.data_dir)
        #: this process as a running server (while ``run`` runs): what it claims is its
        self.instance: Instance | None = None
        #: the send rate per CDP account: shared by every server on a shared store
        self.limiter: RateLimiter = self.store.rate_limiter(config.rate_per_second)
        # one client for the service's life: its connections and cache serve every webhook
        self._own_fetcher: HttpFetcher | None = None
        if fetcher is None:
            fetcher = self._own_fetcher = HttpFetcher()
        self.fetcher = fetcher
        self.metrics.gauge(
            "hookmap_queue_depth", "Events waiting to be sent.", self.store.pending_depth
        )
        self.metrics.gauge(
            "hookmap_oldest_pending_seconds",
            "Age of the oldest unsent event or unprocessed webhook.",
            self._oldest_age,
        )
        self._processor_wake: asyncio.Event | None = None
        self._dispatcher_wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._mtimes = self._rule_mtimes()
        self._listeners: Listeners | None = None
        self._store_errors: tuple[type[Exception], ...] = (*self.store.errors, StoreError)
        #: lanes whose last batch a failed write cut short: their claims to release
        self._stale_lanes: set[Lane] = set()
        # a secret: read here, never logged
        self._admin_token = self.env.get(ADMIN_TOKEN_ENV) or None

    # -- rules ---------------------------------------------------------------------

    def load(self) -> tuple[Tenancy, tuple[Group, ...]]:
        """Load and check the rules (and the shops); raises with every diagnostic, or every
        reason a rule set or a shop cannot be served. Also gives the files and texts the
        rules were read from (``engine.server.running``)."""
        loaded = compiler.load_or_raise(list(self.config.rules), self.env, self.config.evaluator)
        rulesets = loaded.rulesets
        if self.config.shops is None:
            single = tenants.single(rulesets, self.env, self.destination, self.config.max_body)
            return single, loaded.sources
        shops = load_shops_or_raise(self.config.shops, [rs.name for rs in rulesets])
        tenancy = tenants.for_shops(
            rulesets, shops, self.env, self.destination, self.config.max_body, self._load_rules
        )
        return tenancy, loaded.sources

    def _load_rules(
        self, paths: Sequence[str | Path], env: Mapping[str, str]
    ) -> tuple[RuleSet, ...]:
        return compiler.load_or_raise(paths, env, self.config.evaluator).rulesets

    @property
    def sources(self) -> Mapping[tuple[str, str], Source]:
        """What the app accepts, by (rule set name, shop id)."""
        return self.tenancy.sources

    @property
    def rulesets(self) -> Mapping[tuple[str, str], RuleSet]:
        return self.tenancy.rulesets

    def destination_for(self, shop: str) -> Destination | None:
        """The CDP account ``shop``'s events go to (None: no such shop is configured)."""
        return self.tenancy.destinations.get(shop)

    def reload(self) -> bool:
        """Swap in freshly loaded rules; on any problem keep the running ones."""
        try:
            tenancy, loaded_from = self.load()
        except RuleLoadError as exc:
            for d in exc.diagnostics:
                log.error("reload refused: %s", d.render())
            log.error("reload refused: the running rules keep serving")
            return False
        except HookmapError as exc:
            log.error("reload refused: %s; the running rules keep serving", exc)
            return False
        self.tenancy, self.loaded_from = tenancy, loaded_from
        self._record_rules()
        log.info("rules reloaded: %s", tenancy.served())
        self.wake_processor()
        return True

    def _record_rules(self) -> None:
        """Say in the data folder which rules this server runs (``hookmap diff
        --against-running`` reads it)."""
        if self.instance is not None:
            running.record(
                self.config.data_dir, self.instance.id, self.config.rules, self.loaded_from
            )

    def _rule_mtimes(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for root in (*self.config.rules, *([self.config.shops] if self.config.shops else [])):
            path = Path(root)
            files = [path] if path.is_file() else list(path.rglob("*.y*ml"))
            for file in files:
                with contextlib.suppress(OSError):
                    out[str(file)] = file.stat().st_mtime
        return out

    # -- state for the app ------------------------------------------------------------

    def readiness(self) -> list[str]:
        """What stops the service from being ready (empty when ready)."""
        problems = []
        if not self.sources:
            problems.append("no rule sets loaded")
        if not self.store.writable():
            problems.append("database is not writable (a write failed, or the disk is full)")
        return problems

    def _oldest_age(self) -> float | None:
        oldest = self.store.oldest_pending()
        ages = [a for a in (oldest.webhook_age, oldest.event_age) if a is not None]
        return max(ages) if ages else 0.0

    def wake_processor(self) -> None:
        if self._loop is not None and self._processor_wake is not None:
            self._loop.call_soon_threadsafe(self._processor_wake.set)

    # -- the loops ----------------------------------------------------------------------

    def process_lane(self, lane: Lane, stopping: Callable[[], bool] = bool) -> int:
        """Process one batch of a lane's due webhooks, in order (a lane worker runs this).

        A webhook whose lookup failed is put off (``process_stored``) and comes back
        once due: the lanes look at least once a second.
        """
        owner = self.instance.id if self.instance is not None else None
        try:
            return self._drain(lane, owner, stopping)
        except self._store_errors as exc:
            # the disk is full or the file locked: what was stored stays, and what the
            # lane had taken is released by the next look for due lanes (_due_lanes)
            log.warning("cannot process the webhooks of %s now: %s; trying again", lane[0], exc)
            self._stale_lanes.add(lane)
            return 0

    def _due_lanes(self, busy: Collection[Lane]) -> list[Lane]:
        """The lanes with webhooks due and no worker now. First the webhooks a lane had
        taken when a write failed are made due again (not in 10 minutes, as their lease
        says): no worker holds that lane any more."""
        owner = self.instance.id if self.instance is not None else None
        for lane in self._stale_lanes - set(busy):
            if owner is not None:
                self.store.release_webhooks(owner, lane=lane)
            self._stale_lanes.discard(lane)
        return [lane for lane in self.store.due_lanes(time.time()) if lane not in busy]

    def _drain(self, lane: Lane, owner: str | None, stopping: Callable[[], bool]) -> int:
        done = 0
        rulesets = self.rulesets
        claimed = self.store.claim_webhooks(
            time.time(), LANE_BATCH, PROCESS_LEASE, owner, lane=lane
        )
        for webhook in claimed:
            if stopping():
                break  # the rest stays claimed by this server: released as it stops
            outcome = process_stored(
                self.store,
                rulesets,
                webhook,
                fetcher=self.fetcher,
                schedule=self.config.lookup_schedule,
            )
            state = outcome.state
            labels = _shop_label(webhook.shop)
            self.metrics.count(
                self.metrics.processed, source=webhook.source, outcome=state, **labels
            )
            if outcome.result is not None:
                for event in outcome.result.dropped:
                    self.metrics.count(self.metrics.dropped, event_type=event.event_type, **labels)
            if outcome.error:
                where = f"{webhook.source}/{webhook.shop}" if webhook.shop else webhook.source
                log.warning("webhook #%d (%s) %s: %s", webhook.id, where, state, outcome.error)
            done += 1
            self._wake_dispatcher()  # each event goes out as soon as it is stored
        return done

    def _wake_dispatcher(self) -> None:
        if self._loop is not None and self._dispatcher_wake is not None:
            self._loop.call_soon_threadsafe(self._dispatcher_wake.set)

    async def _processor(self, stop: asyncio.Event) -> None:
        assert self._processor_wake is not None
        lanes = Lanes(
            self._due_lanes,
            self.process_lane,
            self.config.lanes,
            errors=self._store_errors,
        )
        await lanes.run(stop, self._processor_wake, self.config.grace_seconds)

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            current = self._rule_mtimes()
            if current != self._mtimes:
                self._mtimes = current
                log.info("rule files changed: reloading")
                self.reload()

    def _on_result(self, event_type: str, outcome: str, status: int | None, latency: float) -> None:
        self.metrics.count(self.metrics.events, event_type=event_type, outcome=outcome)
        self.metrics.observe(latency, outcome=outcome)

    async def run(
        self,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        sock: socket.socket | None = None,
        on_ready: Callable[[Any], None] | None = None,
    ) -> None:
        """Serve until SIGTERM/SIGINT (or ``self.stop()``); then shut down gracefully."""
        with limited():
            await self._run(host, port, sock, on_ready)

    async def _run(
        self,
        host: str,
        port: int,
        sock: socket.socket | None,
        on_ready: Callable[[Any], None] | None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._processor_wake = asyncio.Event()
        self._dispatcher_wake = asyncio.Event()
        admin_port = self.config.admin_port
        token = self._admin_token
        self._listeners = Listeners(
            make_app(self, admin=admin_port is None, admin_token=token),
            host,
            port,
            self.config.limits,
            admin_port,
            make_app(self, hooks=False, admin_token=token),
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.add_signal_handler(sig, self.stop)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            self._loop.add_signal_handler(signal.SIGHUP, self.reload)
        stop_work = asyncio.Event()
        instance = self.instance = self.store.instance()
        release_gone(self.store, instance, self._forget_running)
        self._record_rules()
        dispatcher = Dispatcher(
            self.store,
            self.destination_for,
            transport=self.transport,
            concurrency=self.config.concurrency,
            rate_per_second=self.config.rate_per_second,
            timeout=self.config.timeout,
            schedule=self.config.schedule,
            on_result=self._on_result,
            grace_seconds=self.config.grace_seconds,
            owner=instance.id,
            limiter=self.limiter,
        )
        tasks = [
            asyncio.create_task(self._processor(stop_work), name="processor"),
            asyncio.create_task(
                keep_house(self.store, instance, stop_work, self._forget_running), name="servers"
            ),
            asyncio.create_task(
                dispatcher.run(stop_work, self._dispatcher_wake), name="dispatcher"
            ),
        ]
        if self.config.reload_watch:
            tasks.append(asyncio.create_task(self._watch(stop_work), name="watch"))
        if await self._listeners.start(sock):
            log.info(
                "serving %s on %s:%s%s, data in %s",
                self.tenancy.served(),
                host,
                port,
                "" if admin_port is None else f" (admin paths on port {admin_port})",
                self.store.describe(),
            )
            if on_ready is not None:
                on_ready(self)
        # returns once uvicorn has stopped taking and finished requests on every port
        await self._listeners.wait()
        log.info("stopping: finishing sends in flight (grace %.0fs)", self.config.grace_seconds)
        stop_work.set()
        started = time.monotonic()
        await asyncio.gather(*tasks, return_exceptions=True)
        await dispatcher.aclose()
        await self.limiter.aclose()
        # sends cut short at shutdown: due again for whichever server starts next
        self.store.release_leases(instance.id)
        self.store.release_webhooks(instance.id)
        running.forget(self.config.data_dir, instance.id)
        instance.close()
        self.instance = None
        if self._own_fetcher is not None:
            self._own_fetcher.close()
        self.store.close()
        log.info("stopped in %.1fs; pending events stay queued", time.monotonic() - started)

    def _forget_running(self, server: str) -> None:
        """A server found gone leaves no record of its rules (``hookmap diff``)."""
        running.forget(self.config.data_dir, server)

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does)."""
        if self._listeners is not None:
            self._listeners.stop()


def serve(
    config: ServiceConfig,
    destination: Destination,
    host: str,
    port: int,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run ``hookmap serve`` in the foreground until SIGTERM/SIGINT."""
    service = Service(config, destination, env)
    asyncio.run(service.run(host, port))


def _shop_label(shop: str) -> dict[str, str]:
    """The ``shop`` metrics label, for a server that serves named shops."""
    return {"shop": shop} if shop else {}
