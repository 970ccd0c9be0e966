"""The ports ``hookmap serve`` listens on: the hooks, and the admin paths beside them or
on a port of their own, each a uvicorn server with ``engine.server.guard``'s protocol.

The admin port takes at most ``ADMIN_MAX_CONNECTIONS`` connections, so a flood of
``/metrics`` there cannot hold the descriptors webhooks need; ``HOOKMAP_ADMIN_TOKEN``
makes the admin paths ask for a Bearer token wherever they are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from engine.server.guard import Limits, guarded

#: the variable holding the token the admin paths require, when set
ADMIN_TOKEN_ENV = "HOOKMAP_ADMIN_TOKEN"
#: connections the admin port takes at once: a flood of /metrics cannot take more
ADMIN_MAX_CONNECTIONS = 16


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service installs its own, so that
    the dispatcher gets its grace period before the process exits."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn(app: Any, host: str, port: int, limits: Limits, name: str) -> QuietServer:
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
    return QuietServer(config)


class Listeners:
    """The hooks port (and the admin port when given), started and stopped together."""

    def __init__(
        self,
        hooks_app: Any,
        host: str,
        port: int,
        limits: Limits,
        admin_port: int | None = None,
        admin_app: Any = None,
    ) -> None:
        """``hooks_app`` on ``port``; ``admin_app`` on ``admin_port`` when one is given
        (the ASGI apps of ``engine.server.app.make_app``)."""
        self.servers = [_uvicorn(hooks_app, host, port, limits, "hooks")]
        if admin_port is not None:
            admin_limits = dataclasses.replace(limits, max_connections=ADMIN_MAX_CONNECTIONS)
            self.servers.append(_uvicorn(admin_app, host, admin_port, admin_limits, "admin"))
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, sock: socket.socket | None = None) -> bool:
        """Serve every port (the hooks on ``sock`` when given); whether all started.

        When one cannot start (its port is taken) the others are stopped too.
        """
        first, *others = self.servers
        self._tasks = [asyncio.create_task(first.serve(sockets=[sock] if sock else None))]
        self._tasks += [asyncio.create_task(s.serve()) for s in others]
        while not self.started and not any(t.done() for t in self._tasks):
            await asyncio.sleep(0.01)
        if not self.started:
            self.stop()
        return self.started

    @property
    def started(self) -> bool:
        return all(s.started for s in self.servers)

    async def wait(self) -> None:
        """Until every port has stopped taking and finished its requests."""
        await asyncio.gather(*self._tasks)

    def stop(self) -> None:
        """Stop taking requests on every port (uvicorn finishes those in flight)."""
        for server in self.servers:
            server.should_exit = True
