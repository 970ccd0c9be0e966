"""Shared pieces for the server tests: signed example webhooks, a served ``Service`` in a
background thread, ``hookmap serve`` as a subprocess, and bounded waiting.

Not collected by pytest (no ``test_`` prefix); the tests import it as
``from tests.helpers_server import ...``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from engine.events.destination import Destination
from engine.rules.schemes import VerifySpec
from engine.server.service import Service, ServiceConfig
from engine.server.signing import sign
from engine.server.store.sqlite import Store
from engine.webhook import Webhook, read_webhook_file
from tests.conftest import ROOT

T = TypeVar("T")

API_KEY = "server-test-api-key"
SHOPIFY_SECRET = "shopify-test-secret-do-not-log"
WOOCOMMERCE_SECRET = "woocommerce-test-secret-do-not-log"
SECRETS = {
    "SHOPIFY_WEBHOOK_SECRET": SHOPIFY_SECRET,
    "WOOCOMMERCE_WEBHOOK_SECRET": WOOCOMMERCE_SECRET,
}
SHOPIFY = VerifySpec("shopify")
WOOCOMMERCE = VerifySpec("woocommerce")
#: retries in tenths of a second instead of minutes
FAST_SCHEDULE = (0.05, 0.05, 0.1)
HOOKMAP = str(Path(sys.executable).parent / "hookmap")
#: the two shipped rule sets these tests sign for (others may need secrets of their own)
RULES = (str(ROOT / "rules" / "shopify"), str(ROOT / "rules" / "woocommerce.yaml"))


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    check: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy (returned), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(interval)


# -- webhooks --------------------------------------------------------------------------


def example(name: str) -> Webhook:
    """A bundled example, e.g. ``shopify/orders-create``, with its .headers file."""
    folder = ROOT / "examples"
    path = folder / f"{name}.json"
    return read_webhook_file(path if path.is_file() else folder / f"{name}.txt")


def signed(
    body: bytes,
    headers: Mapping[str, str],
    spec: VerifySpec = SHOPIFY,
    secret: str = SHOPIFY_SECRET,
) -> dict[str, str]:
    """``headers`` (placeholders dropped) plus the signature the platform would send."""
    out = {k: v for k, v in headers.items() if v != "PLACEHOLDER"}
    out.update({k.lower(): v for k, v in sign(spec, secret.encode(), body).items()})
    return out


def signed_example(name: str, **replace: str) -> tuple[bytes, dict[str, str]]:
    """An example's body and signed headers; ``replace`` overrides headers (``_`` → ``-``)."""
    webhook = example(name)
    headers = dict(webhook.headers)
    headers.update({k.replace("_", "-").lower(): v for k, v in replace.items()})
    woo = name.startswith("woocommerce/")
    spec, secret = (WOOCOMMERCE, WOOCOMMERCE_SECRET) if woo else (SHOPIFY, SHOPIFY_SECRET)
    return webhook.body, signed(webhook.body, headers, spec, secret)


def shopify_order(order_id: int, delivery_id: str) -> tuple[bytes, dict[str, str]]:
    """orders-create.json as order ``order_id`` and delivery ``delivery_id``, signed."""
    webhook = example("shopify/orders-create")
    data = json.loads(webhook.body)
    data["id"] = order_id
    body = json.dumps(data).encode()
    headers = {**webhook.headers, "x-shopify-webhook-id": delivery_id}
    return body, signed(body, headers)


def param(event_body: Mapping[str, Any], name: str) -> Any:
    """The value of one v1 param of an event body (None when absent)."""
    return next((p["value"] for p in event_body.get("params", []) if p["name"] == name), None)


def settled(store: Store) -> bool:
    """Nothing left to do: every webhook processed, no event pending."""
    counts = store.counts()
    return counts["webhooks"]["received"] == 0 and counts["events"]["pending"] == 0


# -- the server in a thread ------------------------------------------------------------


@dataclasses.dataclass
class ServedService:
    """A ``Service`` running in a background thread on a loopback port."""

    service: Service
    port: int
    thread: threading.Thread
    errors: list[BaseException]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """Where /healthz, /readyz and /metrics are: the admin port, or beside the hooks."""
        admin = self.service.config.admin_port
        return self.url if admin is None else f"http://127.0.0.1:{admin}"

    @property
    def admin_headers(self) -> dict[str, str]:
        """The admin token's header when the service was given one."""
        token = self.service.env.get("HOOKMAP_ADMIN_TOKEN")
        return {"authorization": f"Bearer {token}"} if token else {}

    @property
    def store(self) -> Store:
        return self.service.store

    def hook(self, source: str) -> str:
        return f"{self.url}/hooks/{source}"

    def stop(self, timeout: float = 15.0) -> None:
        """What SIGTERM does, then wait for the thread (bounded)."""
        if not self.thread.is_alive():
            return
        self.service.stop()
        deadline = time.monotonic() + timeout
        while self.thread.is_alive() and time.monotonic() < deadline:
            # The processor sleeps up to 1 s between looks at the stop flag: waking it
            # lets the test go on at once (the loop may already be closed: ignore that).
            with contextlib.suppress(RuntimeError):
                self.service.wake_processor()
            self.thread.join(0.05)
        if self.thread.is_alive():
            raise AssertionError(f"the service did not stop within {timeout} s")


@contextlib.contextmanager
def serving(
    destination: Destination,
    data_dir: Path,
    rules: tuple[str, ...] = RULES,
    env: Mapping[str, str] | None = None,
    **config: Any,
) -> Iterator[ServedService]:
    """Run ``Service(...).run()`` in a thread with its own event loop until the block ends.

    Fast defaults for tests (a tiny retry schedule, short timeouts); ``config`` overrides
    any ``ServiceConfig`` field.
    """
    settings: dict[str, Any] = {
        "schedule": FAST_SCHEDULE,
        "timeout": 2.0,
        "grace_seconds": 2.0,
        **config,
    }
    service = Service(
        ServiceConfig(rules=rules, data_dir=data_dir, **settings),
        destination,
        env=dict(SECRETS if env is None else env),
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    ready = threading.Event()
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(service.run("127.0.0.1", port, sock=sock, on_ready=lambda _: ready.set()))
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=main, name="hookmap-service", daemon=True)
    served = ServedService(service, port, thread, errors)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not ready.wait(0.02):
            if not thread.is_alive() or time.monotonic() > deadline:
                raise AssertionError(f"the service did not start: {errors}")
        with httpx.Client(trust_env=False, timeout=2, headers=served.admin_headers) as client:
            wait_until(
                lambda: client.get(f"{served.admin_url}/readyz").status_code == 200,
                what="/readyz",
            )
        yield served
    finally:
        served.stop()
        sock.close()
    if errors:
        raise errors[0]


# -- hookmap serve as a subprocess -----------------------------------------------------


def serve_env(api_url: str | None, **extra: str) -> dict[str, str]:
    """The environment for ``hookmap serve``: ours, never the caller's HOOKMAP_* or secrets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HOOKMAP_", "SHOPIFY_", "WOOCOMMERCE_"))
    }
    env.update(SECRETS)
    env["HOOKMAP_API_KEY"] = API_KEY
    if api_url is not None:
        env["HOOKMAP_API_URL"] = api_url
    env.update(extra)
    return env


@dataclasses.dataclass
class ServeProcess:
    """``hookmap serve`` running as a child process, its stderr going to ``log``."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hook(self, source: str) -> str:
        return f"{self.url}/hooks/{source}"

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=1) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"hookmap serve exited early:\n{self.output()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        return
                time.sleep(0.05)
        raise AssertionError(f"hookmap serve not ready within {timeout} s:\n{self.output()}")

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait (SIGKILL if it does not stop in ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise


@contextlib.contextmanager
def serve_process(
    data_dir: Path,
    env: Mapping[str, str],
    log: Path,
    *args: str,
    port: int | None = None,
    rules: tuple[str, ...] = RULES,
) -> Iterator[ServeProcess]:
    """Start ``hookmap serve`` on a free loopback port; always stopped when the block ends."""
    port = free_port() if port is None else port
    command = [HOOKMAP, "serve", *(a for r in rules for a in ("--rules", r))]
    command += ["--port", str(port), "--data", str(data_dir)]
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [*command, *args], cwd=ROOT, env=dict(env), stdout=sink, stderr=subprocess.STDOUT
        )
    running = ServeProcess(proc, port, log)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
