"""Running the playground: in the foreground (``hookmap playground``) or in a background
thread for the length of a ``with`` block (the browser tests)."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import uvicorn

from engine.playground.app import Handlers, Playground, loopback_hosts

#: where ``hookmap playground`` listens unless told (serve is 8000, the sandbox 8020)
PLAYGROUND_PORT = 8030
DEFAULT_HOST = "127.0.0.1"


@dataclasses.dataclass(frozen=True)
class RunningPlayground:
    host: str
    port: int

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


def _bind(host: str, port: int) -> socket.socket:
    # bound here rather than in uvicorn: the port (0: a free one) is known before serving,
    # and the app is told the Host it answers to. TCP_NODELAY needs IPPROTO_TCP spelled out
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _server(handlers: Handlers, host: str, port: int) -> uvicorn.Server:
    app = Playground(handlers, loopback_hosts(host, port)).app()
    # log_config=None: leave the host process's logging alone
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", log_config=None)
    return uvicorn.Server(config)


def serve(
    handlers: Handlers,
    host: str = DEFAULT_HOST,
    port: int = PLAYGROUND_PORT,
    printer: Callable[[str], object] = print,
) -> None:
    """Serve the playground in the foreground until interrupted."""
    sock = _bind(host, port)
    handle = RunningPlayground(host, sock.getsockname()[1])
    printer(f"playground on {handle.url} (Ctrl-C stops it; nothing is sent anywhere)")
    try:
        _server(handlers, host, handle.port).run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def running(
    handlers: Handlers, host: str = DEFAULT_HOST, port: int = 0, timeout: float = 10.0
) -> Iterator[RunningPlayground]:
    """Serve the playground in a background thread (port 0: a free one) while the block runs."""
    sock = _bind(host, port)
    handle = RunningPlayground(host, sock.getsockname()[1])
    server = _server(handlers, host, handle.port)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="hookmap-playground", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        # trust_env=False: a proxy from the environment must not sit before loopback
        with httpx.Client(trust_env=False, timeout=0.5) as client:
            while True:
                if not thread.is_alive():
                    raise RuntimeError("the playground stopped while starting")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{handle.url}static/playground.css").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the playground did not answer on {handle.url}")
                time.sleep(0.02)
        yield handle
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
