"""``hookmap serve``: the server, the processor and the dispatcher in one event loop.

* The ASGI app (``engine.server.app``) stores each accepted webhook and wakes the processor.
* The processor (``engine.server.processor``) turns stored webhooks into outbox events, in a
  worker thread, and wakes the dispatcher; on start it picks up whatever a crash left.
  Lookups go through one ``HttpFetcher``; a webhook whose lookup failed is put off and
  picked up again when due.
* The dispatcher (``engine.server.dispatch``) delivers the outbox.

Each listening port (the hooks, and the admin paths when ``admin_port`` is set) runs
uvicorn with ``engine.server.guard``'s protocol: idle, head and body timeouts and a
connection limit. While serving, repeated warnings are counted rather than repeated
(``engine.server.logs``).

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
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from engine.errors import HookmapError, RuleLoadError, StoreError
from engine.events.destination import RATE_LIMIT, Destination
from engine.lookups import Fetcher, HttpFetcher
from engine.rules import compiler
from engine.rules.codegen import COMPILED
from engine.rules.model import Evaluator, RuleSet
from engine.server import leases
from engine.server.app import make_app
from engine.server.dispatch import (
    DEFAULT_CONCURRENCY,
    DEFAULT_GRACE,
    DEFAULT_SCHEDULE,
    DEFAULT_TIMEOUT,
    Dispatcher,
)
from engine.server.guard import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    Limits,
    guarded,
)
from engine.server.intake import DEFAULT_MAX_BODY, Source, build_sources
from engine.server.logs import limited
from engine.server.metrics import Metrics
from engine.server.processor import LOOKUP_SCHEDULE, process_stored
from engine.server.store.sqlite import DB_NAME, Store

log = logging.getLogger("hookmap.service")

#: where ``hookmap serve`` listens unless told
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: the variable holding the token the admin paths require, when set
ADMIN_TOKEN_ENV = "HOOKMAP_ADMIN_TOKEN"
#: connections the admin port takes at once: a flood of /metrics cannot take more
ADMIN_MAX_CONNECTIONS = 16
#: seconds a readiness answer is reused (each look makes a synced write)
READINESS_TTL = 1.0


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    rules: tuple[str, ...]
    data_dir: Path = Path("hookmap-data")
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
    #: per connection (engine.server.guard): seconds before a request begins, for its
    #: head, for its body; connections at once (None: 1024, or the open-file limit - 64)
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_connections: int | None = None
    #: a port of its own for /healthz, /readyz and /metrics (None: beside the hooks)
    admin_port: int | None = None

    @property
    def limits(self) -> Limits:
        return Limits(
            self.idle_timeout, self.header_timeout, self.body_timeout, self.max_connections
        )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service installs its own, so that
    the dispatcher gets its grace period before the process exits."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
        self.sources, self.rulesets = self.load()
        self.store = Store(config.data_dir / DB_NAME)
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
        self._servers: list[uvicorn.Server] = []
        self._ready: tuple[float, bool] = (-READINESS_TTL, False)
        # a secret: read here, never logged
        self._admin_token = self.env.get(ADMIN_TOKEN_ENV) or None

    # -- rules ---------------------------------------------------------------------

    def load(self) -> tuple[dict[str, Source], dict[str, RuleSet]]:
        """Load and check the rules; raises with every diagnostic when they cannot serve."""
        result = compiler.load(list(self.config.rules), self.env, evaluator=self.config.evaluator)
        if not result.ok:
            raise RuleLoadError(result.diagnostics)
        sources = build_sources(result.rulesets, self.env, self.config.max_body)
        return sources, {r.name: r for r in result.rulesets}

    def reload(self) -> bool:
        """Swap in freshly loaded rules; on any problem keep the running ones."""
        try:
            sources, rulesets = self.load()
        except RuleLoadError as exc:
            for d in exc.diagnostics:
                log.error("reload refused: %s", d.render())
            log.error("reload refused: the running rules keep serving")
            return False
        except HookmapError as exc:
            log.error("reload refused: %s; the running rules keep serving", exc)
            return False
        self.sources, self.rulesets = sources, rulesets
        log.info("rules reloaded: %s", ", ".join(sorted(sources)))
        self.wake_processor()
        return True

    def _rule_mtimes(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for root in self.config.rules:
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
        if not self._writable():
            problems.append("database is not writable (a write failed, or the disk is full)")
        return problems

    def _writable(self) -> bool:
        """The store's write probe, reused for ``READINESS_TTL`` (a flood of /readyz must
        not become a flood of synced writes)."""
        at, ok = self._ready
        now = time.monotonic()
        if now - at >= READINESS_TTL:
            ok = self.store.writable()
            self._ready = (now, ok)
        return ok

    def _oldest_age(self) -> float | None:
        oldest = self.store.oldest_pending()
        ages = [a for a in (oldest.webhook_age, oldest.event_age) if a is not None]
        return max(ages) if ages else 0.0

    def wake_processor(self) -> None:
        if self._loop is not None and self._processor_wake is not None:
            self._loop.call_soon_threadsafe(self._processor_wake.set)

    # -- the loops ----------------------------------------------------------------------

    def process_pending(self, limit: int = 200) -> int:
        """Process stored webhooks that are due (a worker thread runs this).

        A webhook whose lookup failed is put off (``process_stored``) and comes back
        here once due: the processor loop looks at least once a second.
        """
        done = 0
        for webhook in self.store.webhooks_to_process(limit):
            outcome = process_stored(
                self.store,
                self.rulesets,
                webhook,
                fetcher=self.fetcher,
                schedule=self.config.lookup_schedule,
            )
            state = outcome.state
            self.metrics.count(self.metrics.processed, source=webhook.source, outcome=state)
            if outcome.result is not None:
                for event in outcome.result.dropped:
                    self.metrics.count(self.metrics.dropped, event_type=event.event_type)
            if outcome.error:
                log.warning(
                    "webhook #%d (%s) %s: %s", webhook.id, webhook.source, state, outcome.error
                )
            done += 1
        return done

    async def _processor(self, stop: asyncio.Event) -> None:
        assert self._processor_wake is not None and self._dispatcher_wake is not None
        while not stop.is_set():
            self._processor_wake.clear()
            try:
                done = await asyncio.to_thread(self.process_pending)
            except (sqlite3.Error, StoreError) as exc:
                # the disk is full or the file locked: what was stored stays, to be
                # processed once the store takes writes again (the loop must not die)
                log.warning("cannot process stored webhooks now: %s; trying again", exc)
                done = 0
            if done:
                self._dispatcher_wake.set()
                continue
            woken = asyncio.ensure_future(self._processor_wake.wait())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({woken, stopped}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            stopped.cancel()

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

    def _uvicorn(self, app: Any, host: str, port: int, limits: Limits, name: str) -> _Server:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=guarded(limits, name),
            log_level="warning",
            lifespan="off",
            access_log=False,
            log_config=None,  # keep the host process's logging as it is
        )
        return _Server(config)

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
        server = self._uvicorn(
            make_app(self, admin=admin_port is None, admin_token=token),
            host,
            port,
            self.config.limits,
            "hooks",
        )
        self._servers = [server]
        if admin_port is not None:
            admin_limits = dataclasses.replace(
                self.config.limits, max_connections=ADMIN_MAX_CONNECTIONS
            )
            app = make_app(self, hooks=False, admin_token=token)
            self._servers.append(self._uvicorn(app, host, admin_port, admin_limits, "admin"))
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                self._loop.add_signal_handler(sig, self.stop)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            self._loop.add_signal_handler(signal.SIGHUP, self.reload)
        stop_work = asyncio.Event()
        instance = leases.Instance(self.config.data_dir)
        self._release_gone(instance)
        dispatcher = Dispatcher(
            self.store,
            self.destination,
            transport=self.transport,
            concurrency=self.config.concurrency,
            rate_per_second=self.config.rate_per_second,
            timeout=self.config.timeout,
            schedule=self.config.schedule,
            on_result=self._on_result,
            grace_seconds=self.config.grace_seconds,
            owner=instance.id,
        )
        tasks = [
            asyncio.create_task(self._processor(stop_work), name="processor"),
            asyncio.create_task(
                dispatcher.run(stop_work, self._dispatcher_wake), name="dispatcher"
            ),
        ]
        if self.config.reload_watch:
            tasks.append(asyncio.create_task(self._watch(stop_work), name="watch"))
        serving = [asyncio.create_task(server.serve(sockets=[sock] if sock else None))]
        serving += [asyncio.create_task(s.serve()) for s in self._servers[1:]]
        while not all(s.started for s in self._servers) and not any(t.done() for t in serving):
            await asyncio.sleep(0.01)
        if all(s.started for s in self._servers):
            log.info(
                "serving %s on %s:%s%s, data in %s",
                ", ".join(sorted(self.sources)),
                host,
                port,
                "" if admin_port is None else f" (admin paths on port {admin_port})",
                self.config.data_dir,
            )
            if on_ready is not None:
                on_ready(self)
        else:  # one port could not be had: the others stop too
            self.stop()
        # returns once uvicorn has stopped taking and finished requests on every port
        await asyncio.gather(*serving)
        log.info("stopping: finishing sends in flight (grace %.0fs)", self.config.grace_seconds)
        stop_work.set()
        started = time.monotonic()
        await asyncio.gather(*tasks, return_exceptions=True)
        await dispatcher.aclose()
        # sends cut short at shutdown: due again for whichever server starts next
        self.store.release_leases(instance.id)
        instance.close()
        if self._own_fetcher is not None:
            self._own_fetcher.close()
        self.store.close()
        log.info("stopped in %.1fs; pending events stay queued", time.monotonic() - started)

    def _release_gone(self, instance: leases.Instance) -> None:
        """Events claimed by servers on this data folder that died (kill -9, a crash, a
        power cut) were cut short mid-send: due again now, not when their lease ends."""
        for other in instance.gone():
            released = self.store.release_leases(other)
            instance.forget(other)
            if released:
                log.warning(
                    "%d event(s) claimed by a server that stopped without finishing "
                    "(instance %s) are due again",
                    released,
                    other[:8],
                )

    def stop(self) -> None:
        """Begin a graceful shutdown (what SIGTERM does)."""
        for server in self._servers:
            server.should_exit = True


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
