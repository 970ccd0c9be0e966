"""Running the sandbox: in the foreground (``hookmap sandbox``) or in a background thread
for the length of a ``with`` block (tests, the demo)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator

import click
import httpx
import uvicorn

from engine.events.destination import Destination, masked
from engine.sandbox.app import Printer, Sandbox
from engine.sandbox.settings import SandboxConfig

#: where ``hookmap sandbox`` listens unless told
SANDBOX_PORT = 8020


def serve(
    config: SandboxConfig,
    host: str = "127.0.0.1",
    port: int = SANDBOX_PORT,
    printer: Printer = click.echo,
) -> None:
    """Serve the sandbox in the foreground until interrupted, printing accepted events."""
    sandbox = Sandbox(config, printer)
    printer(
        f"sandbox on http://{host}:{port}/api (API key {masked(config.api_key)}); "
        f"events at http://{host}:{port}/sandbox/events"
    )
    uvicorn.Server(uvicorn.Config(sandbox.app(), host=host, port=port, log_level="warning")).run()


@dataclasses.dataclass(frozen=True)
class RunningSandbox:
    """A sandbox served in the background: where it listens and its state."""

    sandbox: Sandbox
    host: str
    port: int

    @property
    def root(self) -> str:
        """Where /sandbox/* lives, e.g. ``http://127.0.0.1:54321``."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The API base URL (what HOOKMAP_API_URL would be)."""
        return f"{self.root}/api"

    def destination(self) -> Destination:
        """A Destination pointing at this sandbox with its API key."""
        return Destination(self.url, self.sandbox.config.api_key)


@contextlib.contextmanager
def running(
    config: SandboxConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    printer: Printer | None = None,
    timeout: float = 5.0,
) -> Iterator[RunningSandbox]:
    """Serve a sandbox in a background thread (port 0: a free one) while the block runs."""
    sandbox = Sandbox(config, printer)
    # Binding here, not in uvicorn, tells us the free port before the server starts.
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it every response waits 40 ms for a delayed ACK (Nagle).
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    handle = RunningSandbox(sandbox, host, sock.getsockname()[1])
    # log_config=None: leave the host process's logging (pytest's, the CLI's) alone.
    server = uvicorn.Server(
        uvicorn.Config(
            sandbox.app(), host=host, port=handle.port, log_level="warning", log_config=None
        )
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="hookmap-sandbox", daemon=True
    )
    thread.start()
    try:
        _wait_healthy(handle, thread, timeout)
        yield handle
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()


def _wait_healthy(handle: RunningSandbox, thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    # trust_env=False: a proxy from the environment must not sit before loopback.
    with httpx.Client(trust_env=False, timeout=0.5) as client:
        while time.monotonic() < deadline:
            if not thread.is_alive():
                raise RuntimeError("the sandbox server stopped while starting")
            with contextlib.suppress(httpx.TransportError):
                if client.get(f"{handle.root}/sandbox/health").status_code == 200:
                    return
            time.sleep(0.02)
    raise RuntimeError(f"the sandbox did not answer on {handle.root} within {timeout} s")
