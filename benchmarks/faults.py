#!/usr/bin/env python3
"""Fault cases against real ``hookmap`` processes on loopback: what holds, what breaks.

Each case starts its own ``hookmap sandbox`` (the local CDP) and ``hookmap serve`` in
fresh temporary data folders on free loopback ports, attacks or breaks them from the
outside (raw sockets, httpx, the ``hookmap`` command line, files), and prints one line:

    case  tried  held  lost  duplicated  note

* tried: attempts or requests the case made;
* held: how many behaved as a robust server should (the note says exactly what counts);
* lost: webhooks answered 2xx that never reached the sandbox and are parked nowhere an
  operator can see (not received/failed in ``hookmap webhooks``, no pending/dead/invalid
  event in ``hookmap events``);
* duplicated: events the sandbox accepted more than once (the same request body).

Nothing here imports ``engine``: the server is driven only through ``hookmap``, HTTP and
its data folder, so the script keeps working whatever the engine's layout becomes.
Signatures are computed here (HMAC-SHA256 for Shopify and WooCommerce, HTTP Basic for
PrestaShop, Bearer for commercetools, RSA-SHA256 over base64(body) for Adobe Commerce
webhooks, with a key pair made for the run). See benchmarks/FAULTS.md.

Run with the Python of hookmap's environment::

    python benchmarks/faults.py [--quick] [--case N]... [--json] [--seed S] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime
import email.utils
import functools
import hashlib
import hmac
import http.server
import itertools
import json
import os
import platform
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOOKMAP = str(Path(sys.executable).parent / "hookmap")
if not Path(HOOKMAP).exists():
    HOOKMAP = shutil.which("hookmap") or "hookmap"

API_KEY = "faults-api-key"
SHOPIFY_SECRET = "faults-shopify-secret"
WOO_SECRET = "faults-woocommerce-secret"
PRESTA_TOKEN = "hookmap:presta-" + uuid.uuid4().hex
PRESTA_WS_KEY = "WSKEY" + uuid.uuid4().hex.upper()
PRESTA_WS_AUTH = base64.b64encode(f"{PRESTA_WS_KEY}:".encode()).decode()
CT_TOKEN = "ct-push-" + uuid.uuid4().hex
TRACEBACK = b"Traceback (most recent call last)"
ASGI = b"Exception in ASGI application"  # uvicorn's line for an exception the app let out
#: Shopify gives a delivery 5 s in all: an acknowledgement later than that is a failure
ACK_SECONDS = 5.0
#: case 4: a connection that sends nothing useful must be closed within this
CLOSE_SECONDS = 20.0

_LOCK = threading.Lock()
_CHILDREN: list[subprocess.Popen[bytes]] = []
_MOUNTS: list[Path] = []
_ORDER_IDS = itertools.count(7_000_000_000_000 + random.randrange(10**9) * 1000)


class CaseError(Exception):
    """The case could not run as designed (a server did not start, ...)."""


class Skip(Exception):
    """The case needs an OS condition this run does not have."""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- processes ---------------------------------------------------------------------------


class Tap(threading.Thread):
    """Reads a child's output: counts bytes and patterns, keeps a capped copy on disk."""

    PATTERNS = (TRACEBACK, b"Too many open files", b" ERROR ", ASGI)

    def __init__(self, fd: int, path: Path, cap: int = 4 << 20) -> None:
        super().__init__(daemon=True)
        self.fd, self.path, self.cap = fd, path, cap
        self.total = 0
        self.counts = {p: 0 for p in self.PATTERNS}
        self.tail = b""
        self._lock = threading.Lock()

    def run(self) -> None:
        overlap = b""
        with self.path.open("wb") as out:
            while True:
                try:
                    chunk = os.read(self.fd, 1 << 20)
                except OSError:
                    break
                if not chunk:
                    break
                window = overlap + chunk
                with self._lock:
                    for p in self.PATTERNS:
                        # patterns straddling two reads are counted once: the overlap
                        # is shorter than any pattern
                        self.counts[p] += window.count(p) - overlap.count(p)
                    self.total += len(chunk)
                    self.tail = (self.tail + chunk)[-65536:]
                if out.tell() < self.cap:
                    out.write(chunk[: self.cap - out.tell()])
                    out.flush()
                overlap = window[-40:]
        os.close(self.fd)

    def count(self, pattern: bytes) -> int:
        with self._lock:
            return self.counts[pattern]

    def text(self) -> str:
        with self._lock:
            return self.tail.decode("utf-8", "replace")


@dataclasses.dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    tap: Tap

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.tap.join(5)
        with _LOCK:
            if self.proc in _CHILDREN:
                _CHILDREN.remove(self.proc)
        return self.proc.returncode


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every child: no proxy before loopback, the run's secrets."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.lower().endswith("_proxy") and not k.startswith("HOOKMAP_")
    }
    env.update(
        NO_PROXY="127.0.0.1,localhost",
        HOOKMAP_API_KEY=API_KEY,
        SHOPIFY_WEBHOOK_SECRET=SHOPIFY_SECRET,
        WOOCOMMERCE_WEBHOOK_SECRET=WOO_SECRET,
        PRESTASHOP_WEBHOOK_TOKEN=PRESTA_TOKEN,
        PRESTASHOP_WS_AUTH=PRESTA_WS_AUTH,
        COMMERCETOOLS_PUSH_TOKEN=CT_TOKEN,
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: dict[str, str],
    preexec: Callable[[], None] | None = None,
) -> Child:
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        list(argv),
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=write_fd,
        stderr=write_fd,
        start_new_session=True,  # its own process group: stopped as one, by its id
        preexec_fn=preexec,
    )
    os.close(write_fd)
    with _LOCK:
        _CHILDREN.append(proc)
    tap = Tap(read_fd, log)
    tap.start()
    return Child(name, proc, tap)


def kill_everything() -> None:
    """Stop every child this script started (by process group id) and unmount its mounts."""
    with _LOCK:
        procs, mounts = list(_CHILDREN), list(_MOUNTS)
        _CHILDREN.clear()
        _MOUNTS.clear()
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(max(0.1, deadline - time.monotonic()))
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
    for mount in mounts:
        unmount(mount)


def unmount(path: Path) -> None:
    run = subprocess.run(["umount", str(path)], capture_output=True, check=False)
    if run.returncode:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
    with _LOCK:
        if path in _MOUNTS:
            _MOUNTS.remove(path)


def mount_tmpfs(path: Path, size: str, read_only: bool = False) -> str | None:
    """Mount a tmpfs at ``path``; the reason when it cannot be done (not root, ...)."""
    if os.geteuid() != 0:
        return "not running as root (mount needs it)"
    if shutil.which("mount") is None:
        return "no mount command"
    path.mkdir(parents=True, exist_ok=True)
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode:
        return f"mount -t tmpfs failed: {run.stderr.strip() or run.returncode}"
    with _LOCK:
        _MOUNTS.append(path)
    return None


def remount_ro(path: Path) -> str | None:
    run = subprocess.run(
        ["mount", "-o", "remount,ro", str(path)], capture_output=True, text=True, check=False
    )
    return f"remount ro failed: {run.stderr.strip()}" if run.returncode else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nofile(limit: int) -> Callable[[], None]:
    def preexec() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return preexec


# -- HTTP --------------------------------------------------------------------------------


def client(timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=timeout)


@dataclasses.dataclass
class Reply:
    status: int | None  # None: no answer (timeout, reset)
    body: Any
    seconds: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def accepted(self) -> bool:
        """2xx and not a duplicate: the server says it stored a new webhook."""
        status = self.body.get("status") if isinstance(self.body, dict) else None
        return self.ok and status != "duplicate"

    @property
    def webhook_id(self) -> int | None:
        value = self.body.get("id") if isinstance(self.body, dict) else None
        return value if isinstance(value, int) else None


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> Reply:
    started = time.monotonic()
    try:
        with client(timeout) as c:
            r = c.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        return Reply(None, None, time.monotonic() - started, type(exc).__name__)
    try:
        parsed: Any = r.json()
    except ValueError:
        parsed = r.text
    return Reply(r.status_code, parsed, time.monotonic() - started)


def get(url: str, timeout: float = 5.0) -> Reply:
    started = time.monotonic()
    try:
        with client(timeout) as c:
            r = c.get(url)
    except httpx.HTTPError as exc:
        return Reply(None, None, time.monotonic() - started, type(exc).__name__)
    return Reply(r.status_code, r.text, time.monotonic() - started)


# -- webhooks, signed as each platform signs them -----------------------------------------


def read_headers(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip():
                out[name.strip()] = value.strip()
    return out


@functools.cache
def _example_raw(rel: str) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    path = ROOT / "examples" / rel
    headers = read_headers(path.with_suffix(".headers"))
    return path.read_bytes(), tuple((k, v) for k, v in headers.items() if v != "PLACEHOLDER")


def example(rel: str) -> tuple[Any, dict[str, str]]:
    """A bundled example: its parsed body (a fresh copy) and headers without placeholders."""
    raw, headers = _example_raw(rel)
    return json.loads(raw), dict(headers)


def b64_hmac(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@dataclasses.dataclass
class Hook:
    """One webhook ready to post: where, bytes, headers, and the externalOrderId it makes."""

    source: str
    body: bytes
    headers: dict[str, str]
    key: str | None


def shopify_order(order_id: int | None = None) -> Hook:
    data, headers = example("shopify/orders-create.json")
    oid = next(_ORDER_IDS) if order_id is None else order_id
    data["id"] = oid
    data["name"] = f"#{oid % 100000}"
    body = json.dumps(data).encode()
    headers["X-Shopify-Webhook-Id"] = str(uuid.uuid4())
    headers["X-Shopify-Hmac-Sha256"] = b64_hmac(SHOPIFY_SECRET, body)
    return Hook("shopify", body, headers, str(oid))


def woocommerce_order() -> Hook:
    data, headers = example("woocommerce/order-created.json")
    oid = next(_ORDER_IDS) % 10**9
    data["id"] = oid
    body = json.dumps(data).encode()
    headers["X-WC-Webhook-Delivery-ID"] = uuid.uuid4().hex
    headers["X-WC-Webhook-Signature"] = b64_hmac(WOO_SECRET, body)
    return Hook("woocommerce", body, headers, str(oid))


def presta_auth() -> str:
    return "Basic " + base64.b64encode(PRESTA_TOKEN.encode()).decode()


def prestashop_order(order_id: Any = 24, currency: Any = None) -> Hook:
    data, headers = example("prestashop/order-add.json")
    data["data"]["id"] = order_id
    if currency is not None:
        data["data"]["id_currency"] = currency
    body = json.dumps(data).encode()
    headers["Authorization"] = presta_auth()
    return Hook("prestashop", body, headers, str(order_id))


def commercetools_order() -> Hook:
    data, headers = example("commercetools/order-created.json")
    body = json.dumps(data).encode()
    headers["Authorization"] = f"Bearer {CT_TOKEN}"
    return Hook("commercetools", body, headers, "HM-100231")


class RsaKey:
    """A key pair made for the run: the server gets the public half (Adobe Commerce)."""

    def __init__(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )

    def sign_b64(self, body: bytes) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        message = base64.b64encode(body)  # Commerce webhooks sign base64(body)
        return base64.b64encode(
            self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        ).decode()


def magento_order(key: RsaKey) -> Hook:
    data, headers = example("magento/webhook-order-save-after-new.json")
    increment = f"{next(_ORDER_IDS) % 10**9:09d}"
    data["data"]["order"]["increment_id"] = increment
    body = json.dumps(data).encode()
    headers["x-adobe-commerce-webhook-signature"] = key.sign_b64(body)
    return Hook("magento-webhooks", body, headers, increment)


# -- the sandbox and the server ------------------------------------------------------------


@dataclasses.dataclass
class Sandbox:
    child: Child
    port: int

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events(self) -> list[dict[str, Any]]:
        with client(30) as c:
            value = c.get(f"{self.root}/sandbox/events").json()
        return value if isinstance(value, list) else []

    def configure(self, **settings: Any) -> None:
        with client() as c:
            c.post(f"{self.root}/sandbox/config", json=settings).raise_for_status()


@dataclasses.dataclass
class Server:
    child: Child
    port: int
    data: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def send(self, hook: Hook, timeout: float = 10.0) -> Reply:
        return post(f"{self.url}/hooks/{hook.source}", hook.body, hook.headers, timeout)


def wait_http(url: str, child: Child, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not child.alive():
            raise CaseError(f"{child.name} exited ({child.proc.returncode}): {last_lines(child)}")
        if get(url, 1.0).status == 200:
            return
        time.sleep(0.1)
    raise CaseError(f"{child.name} did not answer {url} within {seconds:.0f} s")


def last_lines(child: Child, n: int = 3) -> str:
    lines = [line for line in child.tap.text().splitlines() if line.strip()]
    return " | ".join(lines[-n:])


class Lab:
    """One case's temporary folder and processes; closing it stops them all."""

    def __init__(self, ctx: Context, name: str) -> None:
        self.ctx = ctx
        self.dir = Path(tempfile.mkdtemp(prefix=f"hookmap-faults-{name}-"))
        self.children: list[Child] = []
        self.mounts: list[Path] = []

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        for c in reversed(self.children):
            c.stop(timeout=8)
        for m in self.mounts:
            unmount(m)
        if self.ctx.keep:
            say(f"  (kept {self.dir})")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def spawn(self, name: str, argv: Sequence[str], **kw: Any) -> Child:
        env = child_env(kw.pop("env", None))
        c = spawn(name, argv, self.dir / f"{name}.log", env, **kw)
        self.children.append(c)
        return c

    def sandbox(self, *extra: str) -> Sandbox:
        port = free_port()
        c = self.spawn(
            f"sandbox-{port}", [HOOKMAP, "sandbox", "--port", str(port), "--rate-limit", "2000"]
        )
        box = Sandbox(c, port)
        wait_http(f"{box.root}/sandbox/health", c)
        return box

    def serve(
        self,
        rules: Sequence[str],
        api_url: str,
        data: Path | None = None,
        env: dict[str, str] | None = None,
        extra: Sequence[str] = (),
        preexec: Callable[[], None] | None = None,
        wait: bool = True,
    ) -> Server:
        port = free_port()
        data = data or self.dir / f"data-{port}"
        data.mkdir(parents=True, exist_ok=True)
        argv = [HOOKMAP, "serve", "--port", str(port), "--data", str(data)]
        for r in rules:
            argv += ["--rules", r]
        c = self.spawn(
            f"serve-{port}",
            [*argv, *extra],
            env={"HOOKMAP_API_URL": api_url, **(env or {})},
            preexec=preexec,
        )
        srv = Server(c, port, data)
        if wait:
            wait_http(f"{srv.url}/healthz", c)
        return srv

    def mount(self, name: str, size: str) -> tuple[Path, str | None]:
        path = self.dir / name
        problem = mount_tmpfs(path, size)
        if problem is None:
            self.mounts.append(path)
        return path, problem


def hookmap(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HOOKMAP, *args],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def status(data: Path) -> dict[str, Any]:
    run = hookmap("status", "--json", "--data", str(data))
    try:
        value = json.loads(run.stdout)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def idle(data: Path) -> bool:
    """Nothing left to process or send (received webhooks, pending events)."""
    s = status(data)
    return bool(s) and s["webhooks"].get("received", 0) == 0 and s["events"].get("pending", 0) == 0


# -- accounting: lost and duplicated -----------------------------------------------------


def order_key(event: dict[str, Any]) -> str | None:
    body = event.get("body") if "body" in event else event
    params = body.get("params") if isinstance(body, dict) else None
    if isinstance(params, list):
        for p in params:
            if isinstance(p, dict) and p.get("name") == "externalOrderId":
                return str(p.get("value"))
    if isinstance(params, dict) and "externalOrderId" in params:
        return str(params["externalOrderId"])
    return None


def duplicates(events: Sequence[dict[str, Any]]) -> int:
    seen = collections.Counter(json.dumps(e.get("body"), sort_keys=True) for e in events)
    return sum(n - 1 for n in seen.values() if n > 1)


@dataclasses.dataclass
class Ledger:
    """Webhooks the server answered 2xx (accepted as new), by the order key they carry."""

    accepted: dict[str, int | None] = dataclasses.field(default_factory=dict)

    def record(self, hook: Hook, reply: Reply) -> None:
        if reply.accepted and hook.key is not None:
            self.accepted[hook.key] = reply.webhook_id


def wait_delivered(
    box: Sandbox, keys: Sequence[str], seconds: float, data: Path | None = None
) -> list[dict[str, Any]]:
    """Poll the sandbox until every key arrived, the server is idle, or time is up."""
    deadline = time.monotonic() + seconds
    last_status = 0.0
    while True:
        events = box.events()
        got = {order_key(e) for e in events}
        if all(k in got for k in keys) or time.monotonic() > deadline:
            return events
        if data is not None and time.monotonic() - last_status > 2.0:
            last_status = time.monotonic()
            if idle(data):
                time.sleep(0.5)
                return box.events()
        time.sleep(0.3)


def parked(data: Path) -> tuple[dict[int, str], dict[int, list[str]]] | None:
    """Each webhook's state and its events' states, from ``hookmap webhooks`` / ``events``."""
    hooks = hookmap("webhooks", "--data", str(data), "--limit", "1000000")
    events = hookmap("events", "--data", str(data), "--limit", "1000000")
    if hooks.returncode or events.returncode:
        return None
    states: dict[int, str] = {}
    for line in hooks.stdout.splitlines():
        m = re.match(r"#(\d+)\s+\S+\s+\S+\s+(received|processed|failed)\b", line)
        if m:
            states[int(m[1])] = m[2]
    per: dict[int, list[str]] = collections.defaultdict(list)
    for line in events.stdout.splitlines():
        m = re.match(r"#(\d+)\s+webhook #(\d+)\s+\S+\s+(pending|sent|dead|invalid)\b", line)
        if m:
            per[int(m[2])].append(m[3])
    return states, dict(per)


def lost(ledger: Ledger, events: Sequence[dict[str, Any]], data: Path) -> int:
    """Accepted webhooks not in the sandbox and not parked anywhere visible."""
    delivered = {order_key(e) for e in events}
    missing = {k: w for k, w in ledger.accepted.items() if k not in delivered}
    if not missing:
        return 0
    seen = parked(data)
    if seen is None or any(w is None for w in missing.values()):
        # no per-webhook view: fall back on the totals of `hookmap status --json`
        s = status(data)
        visible = 0
        if s:
            visible = sum(s["webhooks"].get(k, 0) for k in ("received", "failed"))
            visible += sum(s["events"].get(k, 0) for k in ("pending", "dead", "invalid"))
        return max(0, len(missing) - visible)
    states, per = seen
    count = 0
    for w in missing.values():
        assert w is not None
        visible = states.get(w) in ("received", "failed") or any(
            s in ("pending", "dead", "invalid") for s in per.get(w, [])
        )
        count += not visible
    return count


# -- stand-ins: a PrestaShop webservice, a black hole, a CDP that says Retry-After ---------


class _Quiet(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away is not news here


class StandIn:
    """A small HTTP server in a thread; ``answer(method, path, headers, body)`` replies."""

    def __init__(
        self, answer: Callable[[str, str, dict[str, str], bytes], tuple[int, dict[str, str], bytes]]
    ) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                entry = {
                    "time": time.time(),
                    "method": self.command,
                    "path": self.path,
                    "headers": headers,
                    "body": body,
                }
                with _LOCK:
                    outer.requests.append(entry)
                status, extra, data = answer(self.command, self.path, headers, body)
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **extra}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Quiet(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self) -> list[dict[str, Any]]:
        with _LOCK:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def prestashop_webservice() -> StandIn:
    """Answers the five lookups of rules/prestashop from examples/prestashop/api/."""
    api = ROOT / "examples" / "prestashop" / "api"

    def answer(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(parts.query)
        m = re.fullmatch(r"/api/orders/(\d+)", parts.path)
        if m:
            order = json.loads((api / "orders-24.json").read_bytes())
            order["order"]["id"] = int(m[1])
            return 200, {}, json.dumps(order).encode()
        m = re.fullmatch(r"/api/(currencies|countries)/(\d+)", parts.path)
        if m and (api / f"{m[1]}-{m[2]}.json").exists():
            return 200, {}, (api / f"{m[1]}-{m[2]}.json").read_bytes()
        if parts.path in ("/api/customers", "/api/addresses"):
            ident = (query.get("filter[id]") or ["[]"])[0].strip("[]")
            fixture = {"/api/customers": "customers-7.json", "/api/addresses": "addresses-12.json"}
            if ident.isdigit():
                return 200, {}, (api / fixture[parts.path]).read_bytes()
            return 200, {}, b"[]"
        return 404, {}, b'{"errors": [{"code": 404, "message": "not found"}]}'

    return StandIn(answer)


def presta_env(ws: str) -> dict[str, str]:
    host = urllib.parse.urlsplit(ws).hostname or "127.0.0.1"
    return {"PRESTASHOP_BASE_URL": ws, "PRESTASHOP_HOST": host}


class BlackHole:
    """Accepts TCP connections and never answers (a platform API that hangs)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self.stopped = False
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with _LOCK:
                self.held.append(conn)

    def close(self) -> None:
        self.stopped = True
        self.sock.close()
        with _LOCK:
            for c in self.held:
                c.close()


# -- the cases ---------------------------------------------------------------------------


@dataclasses.dataclass
class Context:
    quick: bool
    keep: bool
    seed: int
    fuzz_runs: int | None


@dataclasses.dataclass
class Outcome:
    case: int
    name: str
    tried: int = 0
    held: int = 0
    lost: int = 0
    duplicated: int = 0
    note: str = ""
    skipped: str | None = None
    error: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


def case1(ctx: Context) -> Outcome:
    """Idle sockets past the server's file limit, then signed orders.

    held = a signed Shopify order answered 2xx within 5 s while 400 idle connections
    (that never send a byte) are open to a server started with ulimit -n 256."""
    limit, n_idle, n_orders = 256, 400, 10 if ctx.quick else 20
    out = Outcome(1, "idle-sockets")
    with Lab(ctx, "case1") as lab:
        box = lab.sandbox()
        srv = lab.serve(["rules/shopify"], f"{box.root}/api", preexec=nofile(limit))
        ledger = Ledger()
        first = shopify_order()
        reply = srv.send(first)
        if not reply.ok:
            raise CaseError(f"sanity order answered {reply.status}")
        ledger.record(first, reply)
        before, started = srv.child.tap.total, time.monotonic()
        emfile_before = srv.child.tap.count(b"Too many open files")
        socks = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(n_idle)]
        time.sleep(1.0)
        hooks = [shopify_order() for _ in range(n_orders)]
        with concurrent.futures.ThreadPoolExecutor(n_orders) as pool:
            replies = list(pool.map(lambda h: srv.send(h, timeout=ACK_SECONDS), hooks))
        for h, r in zip(hooks, replies, strict=True):
            ledger.record(h, r)
        out.tried = n_orders
        out.held = sum(r.ok and r.seconds <= ACK_SECONDS for r in replies)
        window = time.monotonic() - started
        closed = 0
        for s in socks:
            s.setblocking(False)
            try:
                closed += s.recv(1) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed += 1
        growth = srv.child.tap.total - before
        emfile = srv.child.tap.count(b"Too many open files") - emfile_before
        tracebacks = srv.child.tap.count(TRACEBACK)
        for s in socks:
            s.close()
        time.sleep(1.5)
        after = shopify_order()
        recovered = srv.send(after, timeout=ACK_SECONDS)
        ledger.record(after, recovered)
        events = wait_delivered(box, list(ledger.accepted), 30, srv.data)
        out.lost = lost(ledger, events, srv.data)
        out.duplicated = duplicates(events)
        statuses = collections.Counter(str(r.status or r.error) for r in replies)
        out.note = (
            f"held = order acked 2xx <= {ACK_SECONDS:.0f} s with {n_idle} idle sockets open, "
            f"server ulimit -n {limit}; answers {dict(statuses)}; server closed {closed}/"
            f"{n_idle} idle sockets in {window:.1f} s; log +{growth / 1e6:.1f} MB "
            f"({growth / 1e6 / window:.1f} MB/s, {emfile} 'Too many open files', "
            f"{tracebacks} tracebacks); after closing them: {recovered.status or recovered.error}"
        )
        out.details = {"log_bytes": growth, "window_s": window, "emfile": emfile}
    return out


def case2(ctx: Context) -> Outcome:
    """Lookups that hang (a PrestaShop API that accepts and never answers).

    held = a Shopify order posted after two such PrestaShop webhooks reaches the sandbox
    within 5 s of its 2xx."""
    out = Outcome(2, "hung-lookups")
    window, every, tail = (16.0, 4.0, 6.0) if ctx.quick else (100.0, 8.0, 60.0)
    hole = BlackHole()
    try:
        with Lab(ctx, "case2") as lab:
            box = lab.sandbox()
            ws = f"http://127.0.0.1:{hole.port}"
            srv = lab.serve(
                ["rules/shopify", "rules/prestashop"], f"{box.root}/api", env=presta_env(ws)
            )
            ledger = Ledger()
            for n in (9001, 9002):
                hook = prestashop_order(n)
                reply = srv.send(hook)
                if not reply.ok:
                    raise CaseError(f"PrestaShop webhook answered {reply.status} {reply.body}")
            acked: dict[str, float] = {}
            first_seen: dict[str, float] = {}
            start = time.monotonic()
            next_post = start
            while time.monotonic() - start < window + tail:
                now = time.monotonic()
                if now >= next_post and now - start < window:
                    hook = shopify_order()
                    reply = srv.send(hook)
                    ledger.record(hook, reply)
                    if reply.ok and hook.key:
                        acked[hook.key] = time.time()
                    next_post += every
                for e in box.events():
                    k = order_key(e)
                    if k in acked and k not in first_seen:
                        first_seen[k] = received_at(e)
                if now - start >= window and all(k in first_seen for k in acked):
                    break
                time.sleep(0.25)
            latencies = {k: first_seen[k] - acked[k] for k in first_seen}
            out.tried = len(acked)
            out.held = sum(v <= ACK_SECONDS for v in latencies.values())
            events = box.events()
            out.lost = lost(ledger, events, srv.data)
            out.duplicated = duplicates(events)
            waited = max(0.0, time.monotonic() - start)
            shown = ", ".join(f"{v:.1f}" for v in sorted(latencies.values())) or "-"
            waiting = [time.time() - acked[k] for k in acked if k not in first_seen]
            out.note = (
                f"held = Shopify order in the sandbox <= {ACK_SECONDS:.0f} s after its 2xx, "
                f"2 PrestaShop webhooks' API hanging; delivered {len(latencies)}/{len(acked)} "
                f"in {waited:.0f} s, latencies {shown} s"
                + (
                    f"; {len(waiting)} still waiting after {min(waiting):.0f}-{max(waiting):.0f} s"
                    if waiting
                    else ""
                )
                + f"; black hole got {len(hole.held)} connections"
            )
            out.details = {"latencies": latencies}
            srv.child.stop(timeout=5)  # a processor stuck in a lookup may not stop at once
    finally:
        hole.close()
    return out


def received_at(event: dict[str, Any]) -> float:
    text = str(event.get("received", ""))
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


def case3(ctx: Context) -> Outcome:
    """Captured webhooks posted again.

    held = the replay is refused or answered as a duplicate, and the order reached the
    sandbox once. Shopify and WooCommerce: the same signed body with a fresh (unsigned)
    delivery-id header; Adobe Commerce webhooks and PrestaShop: the same request again."""
    out = Outcome(3, "replay")
    try:
        key = RsaKey()
    except ImportError as exc:
        key = None
        say(f"  case 3: no Magento replay ({exc})")
    ws = prestashop_webservice()
    try:
        with Lab(ctx, "case3") as lab:
            box = lab.sandbox()
            rules = ["rules/shopify", "rules/woocommerce.yaml", "rules/prestashop"]
            env = presta_env(ws.url)
            if key is not None:
                rules.append("rules/magento/webhooks")
                env["MAGENTO_WEBHOOK_PUBLIC_KEY"] = key.public_pem
            srv = lab.serve(rules, f"{box.root}/api", env=env)
            originals = [shopify_order(), woocommerce_order(), prestashop_order(next(_ORDER_IDS))]
            if key is not None:
                originals.append(magento_order(key))
            ledger = Ledger()
            for hook in originals:
                reply = srv.send(hook)
                if not reply.accepted:
                    raise CaseError(f"{hook.source} original answered {reply.status} {reply.body}")
                ledger.record(hook, reply)
            keys = [h.key for h in originals if h.key]
            before = collections.Counter(order_key(e) for e in wait_delivered(box, keys, 30))
            results = []
            for hook in originals:
                headers = dict(hook.headers)
                if hook.source == "shopify":
                    headers["X-Shopify-Webhook-Id"] = str(uuid.uuid4())
                elif hook.source == "woocommerce":
                    headers["X-WC-Webhook-Delivery-ID"] = uuid.uuid4().hex
                replay = Hook(hook.source, hook.body, headers, hook.key)
                results.append((hook, srv.send(replay)))
            time.sleep(1.0)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not idle(srv.data):
                time.sleep(0.5)
            events = box.events()
            after = collections.Counter(order_key(e) for e in events)
            parts = []
            for hook, reply in results:
                once = before[hook.key] == 1 and after[hook.key] == 1
                refused = not reply.accepted
                out.held += refused and once
                said = reply.body.get("status") if isinstance(reply.body, dict) else None
                parts.append(
                    f"{hook.source} {reply.status}{' ' + str(said) if said else ''}"
                    f" sent x{after[hook.key]}"
                )
            out.tried = len(results)
            out.lost = lost(ledger, events, srv.data)
            out.duplicated = duplicates(events)
            out.note = "held = replay refused or 'duplicate' and sent once; " + "; ".join(parts)
    finally:
        ws.close()
    return out


def case4(ctx: Context) -> Outcome:
    """Connections that never finish: no header, body or idle timeout.

    held = the server closes the connection (or answers it) within 20 s while the
    client sends nothing more, or trickles one byte a second."""
    out = Outcome(4, "timeouts")
    scale = 1 if ctx.quick else 5
    kinds = {
        "idle": 10 * scale,
        "half-headers": 10 * scale,
        "slow-headers": 3 if ctx.quick else 10,
        "half-body": 30 if ctx.quick else 300,
        "slow-body": 3 if ctx.quick else 10,
        "keep-alive-idle": 3 if ctx.quick else 10,
    }
    with Lab(ctx, "case4") as lab:
        box = lab.sandbox()
        srv = lab.serve(["rules/shopify"], f"{box.root}/api")
        hook = shopify_order()
        head = (
            f"POST /hooks/shopify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"X-Shopify-Topic: orders/create\r\nX-Shopify-Hmac-Sha256: "
            f"{hook.headers['X-Shopify-Hmac-Sha256']}\r\nContent-Length: {len(hook.body)}\r\n\r\n"
        ).encode()
        conns: list[tuple[str, socket.socket, bytes]] = []  # kind, socket, bytes to trickle
        for kind, n in kinds.items():
            for _ in range(n):
                s = socket.create_connection(("127.0.0.1", srv.port))
                trickle = b""
                if kind == "half-headers":
                    s.sendall(head[:40])
                elif kind == "slow-headers":
                    trickle = head
                elif kind == "half-body":
                    s.sendall(head + hook.body[: len(hook.body) // 10])
                elif kind == "slow-body":
                    s.sendall(head)
                    trickle = hook.body
                elif kind == "keep-alive-idle":
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                conns.append((kind, s, trickle))
        started = time.monotonic()
        closed_at: dict[int, float] = {}
        answered: dict[int, bytes] = {}
        sel = selectors.DefaultSelector()
        for i, (_, s, _t) in enumerate(conns):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        sent = [0] * len(conns)
        next_tick = started
        while time.monotonic() - started < CLOSE_SECONDS + 2 and len(closed_at) < len(conns):
            if time.monotonic() >= next_tick:
                next_tick += 1.0
                for i, (_, s, trickle) in enumerate(conns):
                    if trickle and i not in closed_at and sent[i] < len(trickle):
                        with contextlib.suppress(OSError):
                            s.send(trickle[sent[i] : sent[i] + 1])
                            sent[i] += 1
            for keyed, _mask in sel.select(timeout=0.1):
                i = keyed.data
                try:
                    chunk = conns[i][1].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if chunk:
                    answered[i] = answered.get(i, b"") + chunk
                    if conns[i][0] != "keep-alive-idle" and i not in closed_at:
                        closed_at[i] = time.monotonic() - started  # answered: it let go
                    continue
                closed_at.setdefault(i, time.monotonic() - started)
                sel.unregister(conns[i][1])
        per: collections.Counter[str] = collections.Counter()
        total: collections.Counter[str] = collections.Counter()
        worst: dict[str, float] = {}
        for i, (kind, s, _t) in enumerate(conns):
            total[kind] += 1
            when = closed_at.get(i)
            if when is not None and when <= CLOSE_SECONDS:
                per[kind] += 1
                worst[kind] = max(worst.get(kind, 0.0), when)
            s.close()
        sel.close()
        out.tried = len(conns)
        out.held = sum(per.values())
        out.note = f"held = closed or answered <= {CLOSE_SECONDS:.0f} s; " + ", ".join(
            f"{k} {per[k]}/{total[k]}" + (f" (by {worst[k]:.1f} s)" if k in worst else "")
            for k in kinds
        )
        events = box.events()
        out.duplicated = duplicates(events)
    return out


def case5(ctx: Context) -> Outcome:
    """A CDP that answers 429 with Retry-After: 3600.

    held = the event is not tried again within the observation window (40 s; 16 s with
    --quick): Retry-After asked for an hour. One event is told "3600", the other an
    HTTP-date an hour ahead."""
    out = Outcome(5, "retry-after")
    watch = 16.0 if ctx.quick else 40.0
    arrivals: dict[str, list[float]] = collections.defaultdict(list)
    forms: dict[str, str] = {}

    def answer(
        method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/v1/contact"):
            return 200, {}, b'{"id": 1}'
        if path.endswith("/v1/event"):
            try:
                k = order_key(json.loads(body)) or "?"
            except ValueError:
                k = "?"
            with _LOCK:
                arrivals[k].append(time.monotonic())
            if forms.get(k) == "http-date":
                value = email.utils.formatdate(time.time() + 3600, usegmt=True)
            else:
                value = "3600"
            return 429, {"Retry-After": value}, b"Too many requests"
        return 404, {}, b"{}"

    cdp = StandIn(answer)
    try:
        with Lab(ctx, "case5") as lab:
            srv = lab.serve(["rules/shopify"], f"{cdp.url}/api")
            hooks = [shopify_order(), shopify_order()]
            forms[str(hooks[0].key)] = "seconds"
            forms[str(hooks[1].key)] = "http-date"
            ledger = Ledger()
            for hook in hooks:
                reply = srv.send(hook)
                ledger.record(hook, reply)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not all(arrivals.get(str(h.key)) for h in hooks):
                time.sleep(0.2)
            firsts = {k: v[0] for k, v in arrivals.items() if v}
            end = max(firsts.values(), default=time.monotonic()) + watch
            while time.monotonic() < end:
                time.sleep(0.5)
            parts = []
            for hook in hooks:
                times = arrivals.get(str(hook.key), [])
                held = len(times) == 1
                out.held += held
                gaps = [b - a for a, b in itertools.pairwise(times)]
                parts.append(
                    f"{forms[str(hook.key)]}: {len(times)} attempt(s) in {watch:.0f} s"
                    + (f", retried after {', '.join(f'{g:.1f}' for g in gaps)} s" if gaps else "")
                )
            out.tried = len(hooks)
            out.lost = lost(ledger, [], srv.data)
            out.note = f"held = no retry within {watch:.0f} s of a 429 asking 3600 s; " + "; ".join(
                parts
            )
    finally:
        cdp.close()
    return out


def case6(ctx: Context) -> Outcome:
    """Credentials at rest: the data folder after a PrestaShop (Basic) and a commercetools
    (Bearer) webhook.

    held = none of the platform's credential forms (the token, its base64, the Bearer
    token, the webservice key) appears in any byte of any file in the data folder."""
    out = Outcome(6, "credentials-at-rest")
    ws = prestashop_webservice()
    try:
        with Lab(ctx, "case6") as lab:
            box = lab.sandbox()
            srv = lab.serve(
                ["rules/prestashop", "rules/commercetools/commercetools.yaml"],
                f"{box.root}/api",
                env=presta_env(ws.url),
            )
            ledger = Ledger()
            hooks = [prestashop_order(next(_ORDER_IDS) % 10**6), commercetools_order()]
            for hook in hooks:
                ledger.record(hook, srv.send(hook))
            events = wait_delivered(box, [h.key for h in hooks if h.key], 30, srv.data)
            out.lost = lost(ledger, events, srv.data)
            out.duplicated = duplicates(events)
            srv.child.stop()
            password = PRESTA_TOKEN.split(":", 1)[1]
            forms = {
                "prestashop": {
                    "webhook password": password,
                    "Basic credentials (base64)": presta_auth().split()[1],
                    "webservice key": PRESTA_WS_KEY,
                    "webservice Basic (base64)": PRESTA_WS_AUTH,
                },
                "commercetools": {"Bearer token": CT_TOKEN},
            }
            blobs = {p: p.read_bytes() for p in srv.data.rglob("*") if p.is_file()}
            log = (lab.dir / f"{srv.child.name}.log").read_bytes()
            parts = []
            for name, found in forms.items():
                hits = sorted(
                    {
                        f"{label} in {path.name}"
                        for label, secret in found.items()
                        for path, blob in blobs.items()
                        if secret.encode() in blob
                    }
                )
                in_log = [label for label, secret in found.items() if secret.encode() in log]
                out.tried += 1
                out.held += not hits
                parts.append(
                    f"{name}: {'; '.join(hits) if hits else 'none found'}"
                    + (f" (log: {', '.join(in_log)})" if in_log else "")
                )
            got = {order_key(e) for e in events}
            parts.append(f"delivered {sum(h.key in got for h in hooks)}/{len(hooks)}")
            out.note = "held = no credential form in the data folder's files; " + "; ".join(parts)
    finally:
        ws.close()
    return out


def case7(ctx: Context) -> Outcome:
    """Disconnects mid-body, then a full disk.

    held = a client that goes away mid-body leaves no traceback or ERROR line in the
    log; a post on a full disk is answered 5xx (or stored) with no traceback; /readyz
    says 503 while the disk is full. The disk part needs root (a 2 MB tmpfs)."""
    out = Outcome(7, "disconnects-disk-full")
    n_disc = 10 if ctx.quick else 50
    n_full = 5 if ctx.quick else 10
    parts = []
    with Lab(ctx, "case7") as lab:
        box = lab.sandbox()
        srv = lab.serve(["rules/shopify"], f"{box.root}/api")
        hook = shopify_order()
        head = (
            f"POST /hooks/shopify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(hook.body)}\r\n\r\n"
        ).encode()
        clean = 0
        tap = srv.child.tap
        for i in range(n_disc):
            tb, err = tap.count(TRACEBACK), tap.count(b" ERROR ")
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(head + hook.body[: len(hook.body) // 2])
            time.sleep(0.05)
            if i % 2:  # half with a reset, half with an orderly close
                s.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            s.close()
            time.sleep(0.25)
            clean += tap.count(TRACEBACK) == tb and tap.count(b" ERROR ") == err
        out.tried += n_disc
        out.held += clean
        parts.append(
            f"disconnect mid-body: {clean}/{n_disc} without traceback/ERROR "
            f"(log has {tap.count(TRACEBACK)} tracebacks)"
        )
        srv.child.stop()

        disk, problem = lab.mount("disk", "2m")
        if problem is not None:
            out.skipped = f"disk-full part skipped: {problem}"
            parts.append(out.skipped)
        else:
            full = lab.serve(["rules/shopify"], f"{box.root}/api", data=disk / "data")
            ledger = Ledger()
            first = shopify_order()
            ledger.record(first, full.send(first))
            ballast = disk / "ballast"
            with ballast.open("wb") as f, contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            answers = []
            clean = 0
            ftap = full.child.tap
            for _ in range(n_full):
                tb, asgi = ftap.count(TRACEBACK), ftap.count(ASGI)
                h = shopify_order()
                r = full.send(h)
                ledger.record(h, r)
                time.sleep(0.2)
                no_tb = ftap.count(TRACEBACK) == tb and ftap.count(ASGI) == asgi
                ok = r.ok or (r.status is not None and r.status >= 500 and no_tb)
                clean += ok and no_tb
                answers.append(str(r.status or r.error))
            ready = get(f"{full.url}/readyz")
            out.tried += n_full + 1
            out.held += clean + (ready.status == 503)
            ballast.unlink()
            events = wait_delivered(box, list(ledger.accepted), 30, full.data)
            out.lost = lost(ledger, events, full.data)
            out.duplicated = duplicates(events)
            parts.append(
                f"full disk: {clean}/{n_full} posts answered cleanly (answers "
                f"{dict(collections.Counter(answers))}, {ftap.count(ASGI)} "
                f"'Exception in ASGI application'); /readyz {ready.status} while full"
            )
            full.child.stop()
    out.note = "held = " + "; ".join(parts)
    return out


def case8(ctx: Context) -> Outcome:
    """Path traversal through a lookup argument (PrestaShop ids from the webhook body).

    held = every request the webhook causes stays on its lookup's path: /api/orders/<one
    segment>, /api/currencies/<one segment>, /api/countries/<one segment>, /api/customers,
    /api/addresses."""
    out = Outcome(8, "lookup-traversal")
    ws = prestashop_webservice()
    allowed = re.compile(r"/api/(orders|currencies|countries)/[^/]+|/api/customers|/api/addresses")
    try:
        with Lab(ctx, "case8") as lab:
            box = lab.sandbox()
            srv = lab.serve(["rules/prestashop"], f"{box.root}/api", env=presta_env(ws.url))
            attempts: list[tuple[str, Any, Any]] = [("order id '..'", "..", None)]
            attempts.append(("order id '.'", ".", None))
            attempts.append(("currency id '..'", 24, ".."))
            parts = []
            for label, oid, cur in attempts:
                start = len(ws.seen())
                reply = srv.send(prestashop_order(oid, cur))
                settled, count = time.monotonic(), start
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    now_count = len(ws.seen())
                    if now_count != count:
                        count, settled = now_count, time.monotonic()
                    elif now_count > start and time.monotonic() - settled > 1.5:
                        break
                    time.sleep(0.1)
                mine = ws.seen()[start:]
                escaped = [
                    r for r in mine if not allowed.fullmatch(urllib.parse.urlsplit(r["path"]).path)
                ]
                out.tried += 1
                out.held += not escaped
                shown = ", ".join(
                    f"GET {urllib.parse.urlsplit(r['path']).path}"
                    + (" with Authorization" if "authorization" in r["headers"] else "")
                    for r in escaped
                )
                parts.append(f"{label} ({reply.status}): {shown or 'stayed on path'}")
            out.duplicated = duplicates(box.events())
            out.note = "held = requests stay on the lookup's path; " + "; ".join(parts)
    finally:
        ws.close()
    return out


def case9(ctx: Context) -> Outcome:
    """Broken SQLite files under serve, status and webhooks.

    held = no traceback, and: status/webhooks print a result or a one-line error;
    serve exits non-zero with a message, or runs and /readyz says 503, or runs, says
    ready and acknowledges a signed order."""
    out = Outcome(9, "broken-sqlite")
    with Lab(ctx, "case9") as lab:
        box = lab.sandbox()
        good = lab.dir / "good"
        srv = lab.serve(["rules/shopify"], f"{box.root}/api", data=good)
        for _ in range(3):
            srv.send(shopify_order())
        wait_delivered(box, [], 0)
        time.sleep(1.5)
        srv.child.stop()
        db = good / "hookmap.sqlite3"
        valid = db.read_bytes()
        rng = random.Random(ctx.seed)
        variants: dict[str, Callable[[Path], str | None]] = {}

        def writer(content: bytes) -> Callable[[Path], str | None]:
            def make(folder: Path) -> str | None:
                (folder / "hookmap.sqlite3").write_bytes(content)
                return None

            return make

        variants["truncated-half"] = writer(valid[: len(valid) // 2])
        variants["truncated-100-bytes"] = writer(valid[:100])
        variants["garbage"] = writer(rng.randbytes(65536))
        variants["text-file"] = writer(b"this is not a database\n")
        variants["header-then-garbage"] = writer(valid[:100] + rng.randbytes(len(valid) - 100))

        def foreign(folder: Path) -> str | None:
            with contextlib.closing(sqlite3.connect(folder / "hookmap.sqlite3")) as conn:
                conn.execute("CREATE TABLE webhooks (x)")
                conn.execute("INSERT INTO webhooks VALUES (1)")
                conn.execute("PRAGMA user_version = 2")
                conn.commit()
            return None

        def future(folder: Path) -> str | None:
            (folder / "hookmap.sqlite3").write_bytes(valid)
            with contextlib.closing(sqlite3.connect(folder / "hookmap.sqlite3")) as conn:
                conn.execute("PRAGMA user_version = 999")
                conn.commit()
            return None

        def directory(folder: Path) -> str | None:
            (folder / "hookmap.sqlite3").mkdir()
            return None

        def read_only(folder: Path) -> str | None:
            if os.geteuid() == 0:
                problem = mount_tmpfs(folder, "8m")
                if problem:
                    return problem
                lab.mounts.append(folder)
                (folder / "hookmap.sqlite3").write_bytes(valid)
                (folder / "servers").mkdir()
                return remount_ro(folder)
            (folder / "hookmap.sqlite3").write_bytes(valid)
            (folder / "hookmap.sqlite3").chmod(0o444)
            folder.chmod(0o555)
            return None

        variants.update(
            {
                "foreign-schema": foreign,
                "future-version": future,
                "directory": directory,
                "read-only": read_only,
            }
        )

        def one(name: str, make: Callable[[Path], str | None]) -> list[tuple[str, bool, str]]:
            rows = []
            for command in ("status", "webhooks"):
                folder = lab.dir / f"{name}-{command}"
                folder.mkdir()
                problem = make(folder)
                if problem:
                    rows.append((f"{name}/{command}", True, f"skipped: {problem}"))
                    continue
                argv = [command, "--data", str(folder)] + (
                    ["--json"] if command == "status" else []
                )
                run = hookmap(*argv, timeout=30)
                text = run.stdout + run.stderr
                tb = "Traceback" in text
                last = (run.stderr.strip().splitlines() or [""])[-1][:90]
                rows.append((f"{name}/{command}", not tb, f"rc {run.returncode} {last}"))
            folder = lab.dir / f"{name}-serve"
            folder.mkdir()
            problem = make(folder)
            if problem:
                rows.append((f"{name}/serve", True, f"skipped: {problem}"))
                return rows
            s = lab.serve(["rules/shopify"], f"{box.root}/api", data=folder, wait=False)
            deadline = time.monotonic() + 15
            verdict, what = False, "no answer"
            while time.monotonic() < deadline:
                if not s.child.alive():
                    s.child.tap.join(3)
                    rc = s.child.proc.returncode
                    tb = s.child.tap.count(TRACEBACK) > 0
                    verdict = rc != 0 and not tb
                    what = (
                        f"exit {rc}"
                        + (" with traceback" if tb else "")
                        + f": {last_lines(s.child, 1)[:90]}"
                    )
                    break
                ready = get(f"{s.url}/readyz", 1.0)
                if ready.status is not None:
                    if ready.status == 503:
                        verdict, what = True, "runs, /readyz 503"
                    else:
                        r = s.send(shopify_order())
                        verdict, what = (
                            r.ok,
                            f"runs, /readyz {ready.status}, order {r.status or r.error}",
                        )
                    time.sleep(0.5)
                    tb = s.child.tap.count(TRACEBACK) > 0
                    verdict = verdict and not tb
                    what += " with traceback" if tb else ""
                    break
                time.sleep(0.2)
            s.child.stop(timeout=5)
            rows.append((f"{name}/serve", verdict, what))
            return rows

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(one, n, m) for n, m in variants.items()]
            rows = [row for f in futures for row in f.result()]
        out.tried = len(rows)
        out.held = sum(ok for _, ok, _ in rows)
        bad = [f"{name} ({what})" for name, ok, what in rows if not ok]
        out.note = (
            "held = no traceback; status/webhooks a result or a one-line error; serve a clean "
            "refusal, /readyz 503, or working; not held: " + ("; ".join(bad) or "none")
        )
        out.details = {"rows": rows}
    return out


# -- case 10: a mutation fuzzer over the shipped rule files -------------------------------

VALUE_LINE = re.compile(r"^(\s*(?:- )?[A-Za-z_$][\w.$-]*:)[ \t]+(\S.*)$")
TAGS = (
    "!!python/object:os.system",
    "!!python/object/apply:os.system",
    "!!python/name:os.system",
    "!custom",
    "!!binary",
    "!!set",
    "!!omap",
    "!!pairs",
    "!!timestamp",
    "!!int",
    "!!float",
    "!!bool",
    "!!null",
    "!!seq",
    "!!map",
    "!!merge",
    "!!value",
    "!<tag:example.com,2000:x>",
)
BAD_DATES = ("2026-13-45", "2026-02-30", "2026-00-00", "9999-99-99", "2026-01-01 25:61:61")
SWAPS = (
    "[]", "{}", "[1, 2]", "{a: 1}", "123", "-1", "1e999", "true", "null", "~", "''", ".nan",
    ".inf", "0x1F", "[[[[]]]]", "[{a: [b]}]", "0o17", "1_000", "2026-01-01", "12:30:00",
)  # fmt: skip
COMPLEX_KEYS = ("? [a, b]\n{i}: 1\n", "[a, b]: 1\n", "{{a: 1}}: 2\n", "? {{x: [1]}}\n{i}: y\n")


def _lines(data: bytes) -> list[str]:
    return data.decode("utf-8", "surrogateescape").splitlines(keepends=True)


def _join(lines: Sequence[str]) -> bytes:
    return "".join(lines).encode("utf-8", "surrogateescape")


def _value_line(lines: Sequence[str], rng: random.Random) -> int | None:
    found = [i for i, line in enumerate(lines) if VALUE_LINE.match(line.rstrip("\r\n"))]
    return rng.choice(found) if found else None


def _set_value(data: bytes, rng: random.Random, value: str) -> bytes:
    lines = _lines(data)
    i = _value_line(lines, rng)
    if i is None:
        return data
    m = VALUE_LINE.match(lines[i].rstrip("\r\n"))
    assert m is not None
    lines[i] = f"{m[1]} {value}\n"
    return _join(lines)


def _insert_line(data: bytes, rng: random.Random, make: Callable[[str], str]) -> bytes:
    lines = _lines(data)
    if not lines:
        return data
    i = rng.randrange(len(lines))
    indent = re.match(r"[ ]*", lines[i])
    pad = indent[0] if indent else ""
    lines.insert(i, pad + make(pad))
    return _join(lines)


def m_flip(d: bytes, r: random.Random) -> bytes:
    if not d:
        return d
    b = bytearray(d)
    b[r.randrange(len(b))] ^= r.randrange(1, 256)
    return bytes(b)


def m_nul(d: bytes, r: random.Random) -> bytes:
    p = r.randrange(len(d) + 1)
    return d[:p] + b"\0" + d[p:]


def m_tag(d: bytes, r: random.Random) -> bytes:
    lines = _lines(d)
    i = _value_line(lines, r)
    if i is None:
        return d
    m = VALUE_LINE.match(lines[i].rstrip("\r\n"))
    assert m is not None
    lines[i] = f"{m[1]} {r.choice(TAGS)} {m[2]}\n"
    return _join(lines)


def m_date(d: bytes, r: random.Random) -> bytes:
    return _set_value(d, r, r.choice(BAD_DATES))


def m_delete(d: bytes, r: random.Random) -> bytes:
    lines = _lines(d)
    if lines:
        del lines[r.randrange(len(lines))]
    return _join(lines)


def m_duplicate(d: bytes, r: random.Random) -> bytes:
    lines = _lines(d)
    if lines:
        i = r.randrange(len(lines))
        lines.insert(i, lines[i])
    return _join(lines)


def m_swap(d: bytes, r: random.Random) -> bytes:
    return _set_value(d, r, r.choice(SWAPS))


def m_complex_key(d: bytes, r: random.Random) -> bytes:
    pattern = r.choice(COMPLEX_KEYS)
    return _insert_line(d, r, lambda pad: pattern.format(i=pad))


def m_alias(d: bytes, r: random.Random) -> bytes:
    return _set_value(d, r, r.choice(("*nowhere", "&a [*a]", "&b {k: *b}", "&c [1, *c]")))


def m_surrogate(d: bytes, r: random.Random) -> bytes:
    return _set_value(d, r, r.choice(('"\\ud800"', '"x\\udfff"', '"\\ud83d"')))


def m_deep(d: bytes, r: random.Random) -> bytes:
    n = r.choice((50, 300, 2000))
    return _set_value(d, r, "[" * n + "]" * n)


def m_bigint(d: bytes, r: random.Random) -> bytes:
    return _set_value(d, r, "1" * r.choice((4301, 5000, 50000)))


def m_merge(d: bytes, r: random.Random) -> bytes:
    value = r.choice(("1", "[1, 2]", "*nowhere", "{}", "[{}]", "null"))
    return _insert_line(d, r, lambda pad: f"<<: {value}\n")


def m_tab(d: bytes, r: random.Random) -> bytes:
    lines = _lines(d)
    indented = [i for i, line in enumerate(lines) if line.startswith(" ")]
    if indented:
        i = r.choice(indented)
        lines[i] = "\t" + lines[i].lstrip(" ")
    return _join(lines)


def m_bom(d: bytes, r: random.Random) -> bytes:
    lines = _lines(d)
    lines.insert(r.randrange(len(lines) + 1), "\ufeff")
    return _join(lines)


def m_crlf(d: bytes, r: random.Random) -> bytes:
    return d.replace(b"\n", b"\r\n")


def m_bad_utf8(d: bytes, r: random.Random) -> bytes:
    p = r.randrange(len(d) + 1)
    return d[:p] + r.choice((b"\xff\xfe", b"\xc3", b"\xed\xa0\x80")) + d[p:]


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "byte-flip": m_flip,
    "nul": m_nul,
    "unknown-tag": m_tag,
    "invalid-date": m_date,
    "delete-line": m_delete,
    "duplicate-line": m_duplicate,
    "type-swap": m_swap,
    "complex-key": m_complex_key,
    "alias": m_alias,
    "lone-surrogate": m_surrogate,
    "deep-nesting": m_deep,
    "huge-int": m_bigint,
    "merge-key": m_merge,
    "tab-indent": m_tab,
    "bom": m_bom,
    "crlf": m_crlf,
    "bad-utf8": m_bad_utf8,
}


@dataclasses.dataclass
class Unit:
    """A rule file to mutate and what to validate: its rule-set folder, or the file."""

    file: Path  # relative to ROOT

    @property
    def folder_set(self) -> bool:
        return (ROOT / self.file.parent / "ruleset.yaml").exists()


def corpus() -> list[Unit]:
    files = sorted(p.relative_to(ROOT) for p in (ROOT / "rules").rglob("*.yaml"))
    return [Unit(f) for f in files if "tests" not in f.name]


def apply(data: bytes, ops: Sequence[tuple[str, int]]) -> bytes:
    for name, op_seed in ops:
        data = MUTATIONS[name](data, random.Random(op_seed))
    return data


def lay_out(unit: Unit, mutated: bytes, where: Path, alone: bool = False) -> Path:
    """Write the mutated file (with its rule-set folder unless ``alone``); the target."""
    where.mkdir(parents=True)
    if unit.folder_set and not alone:
        folder = where / unit.file.parent.name
        shutil.copytree(ROOT / unit.file.parent, folder)
        (folder / unit.file.name).write_bytes(mutated)
        return folder
    target = where / unit.file.name
    target.write_bytes(mutated)
    return target


EXC_LINE = re.compile(r"([A-Za-z_]\w*\.)*[A-Za-z_]\w*(Error|Exception|Exit|Interrupt)\b")


def crash_signature(text: str) -> str | None:
    """``ExcType at file:function`` of the last traceback in ``text``, or None."""
    if "Traceback (most recent call last)" not in text:
        return None
    block = text[text.rindex("Traceback (most recent call last)") :]
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', block)
    lines = [line for line in block.splitlines() if line.strip()]
    named = [line for line in lines if EXC_LINE.match(line)]
    exc = named[-1] if named else lines[-1]
    where = f"{Path(frames[-1][0]).name}:{frames[-1][1]}" if frames else "?"
    return f"{exc.split(':')[0].strip()} at {where}"


def tail_of(text: str, n: int = 3) -> list[str]:
    """The last frame's code line and the exception (up to ``n`` lines from it)."""
    if "Traceback (most recent call last)" not in text:
        return []
    block = text[text.rindex("Traceback (most recent call last)") :]
    lines = [line.rstrip() for line in block.splitlines() if line.strip()]
    at = max((i for i, line in enumerate(lines) if EXC_LINE.match(line)), default=len(lines) - 1)
    frames = [i for i in range(at) if lines[i].lstrip().startswith("File ")]
    code = [lines[frames[-1]].strip()] if frames else []
    return code + lines[at : at + n]


def validate(target: Path, timeout: float = 30.0) -> tuple[str, str]:
    """(verdict, output): verdict 'ok', 'hang' or the crash signature."""
    try:
        run = subprocess.run(
            [HOOKMAP, "validate", str(target)],
            cwd=target.parent,
            env=child_env(),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "hang", ""
    # the traceback is on stderr; stdout (diagnostics printed before it) only if not
    text = run.stderr if TRACEBACK.decode() in run.stderr else run.stdout + run.stderr
    return crash_signature(text) or "ok", text


@dataclasses.dataclass
class Crash:
    run: int
    unit: Unit
    ops: list[tuple[str, int]]
    signature: str
    tail: list[str]


def minimize(crash: Crash, scratch: Path, budget: int) -> tuple[bytes, bool, list[str], int]:
    """Fewer ops, then fewer lines, keeping the signature: (bytes, alone, ops, runs used)."""
    counter = itertools.count()
    used = 0

    def check(data: bytes, alone: bool) -> bool:
        nonlocal used
        used += 1
        verdict, _ = validate(lay_out(crash.unit, data, scratch / f"m{next(counter)}", alone))
        return verdict == crash.signature

    original = (ROOT / crash.unit.file).read_bytes()
    ops = crash.ops
    if len(ops) > 1:
        for op in ops:
            if used < budget and check(apply(original, [op]), False):
                ops = [op]
                break
    data = apply(original, ops)
    alone = crash.unit.folder_set and used < budget and check(data, True)
    lines = _lines(data)
    chunks = 2
    while len(lines) > 1 and used < budget:
        size = max(1, len(lines) // chunks)
        removed = False
        for start in range(0, len(lines), size):
            if used >= budget:
                break
            candidate = lines[:start] + lines[start + size :]
            if candidate and check(_join(candidate), alone):
                lines, removed = candidate, True
                chunks = max(chunks - 1, 2)
                break
        if not removed:
            if size == 1:
                break
            chunks = min(len(lines), chunks * 2)
    return _join(lines), alone or not crash.unit.folder_set, [n for n, _ in ops], used


def surrogate_probes(work: Path) -> list[tuple[str, str]]:
    """dry-run on bodies with a lone surrogate (JSON escape): (label, verdict)."""
    api = "examples/prestashop/api"
    mocks = [
        f"order={api}/orders-24.json",
        f"customer={api}/customers-7.json",
        f"address={api}/addresses-12.json",
        f"currency={api}/currencies-1.json",
    ]
    data, _ = example("prestashop/order-add.json")
    shop, _ = example("shopify/orders-create.json")
    probes: list[tuple[str, str]] = []
    for label, rules, doc, field in (
        ("prestashop data.id", "rules/prestashop", data, ("data", "id")),
        ("prestashop data.id_currency", "rules/prestashop", data, ("data", "id_currency")),
        ("shopify email (not a lookup)", "rules/shopify", shop, ("email",)),
    ):
        doc = json.loads(json.dumps(doc))
        node = doc
        for k in field[:-1]:
            node = node[k]
        node[field[-1]] = "SURROGATE"
        path = work / f"probe-{len(probes)}.json"
        path.write_text(json.dumps(doc).replace('"SURROGATE"', '"\\ud800"'))
        argv = ["dry-run", "--rules", rules]
        if "prestashop" in rules:
            for m in mocks:
                argv += ["--mock", m]
        if "shopify" in rules:
            argv += ["--topic", "orders/create"]
        run = hookmap(*argv, str(path), timeout=60)
        text = run.stdout + run.stderr
        probes.append((label, crash_signature(text) or f"ok (rc {run.returncode})"))
    return probes


def case10(ctx: Context) -> Outcome:
    """Mutated rule files under ``hookmap validate``, and lone surrogates under dry-run.

    held = the run's output has no traceback (and it ends within 30 s)."""
    out = Outcome(10, "validate-fuzz")
    runs = ctx.fuzz_runs or (100 if ctx.quick else 3000)
    keep, budget = (5, 12) if ctx.quick else (20, 40)
    units = corpus()
    crash_dir = Path(tempfile.mkdtemp(prefix="hookmap-faults-crashes-"))
    work = Path(tempfile.mkdtemp(prefix="hookmap-faults-fuzz-"))
    names = sorted(MUTATIONS)

    def one(i: int) -> tuple[int, Unit, list[tuple[str, int]], str, list[str]]:
        rng = random.Random(f"{ctx.seed}:{i}")
        unit = rng.choice(units)
        ops = [(rng.choice(names), rng.randrange(2**32)) for _ in range(rng.randint(1, 3))]
        mutated = apply((ROOT / unit.file).read_bytes(), ops)
        where = work / f"run-{i}"
        verdict, text = validate(lay_out(unit, mutated, where))
        shutil.rmtree(where, ignore_errors=True)
        return i, unit, ops, verdict, tail_of(text)

    crashes: list[Crash] = []
    hangs = 0
    try:
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            for i, unit, ops, verdict, tail in pool.map(one, range(runs)):
                if verdict == "hang":
                    hangs += 1
                elif verdict != "ok":
                    crashes.append(Crash(i, unit, ops, verdict, tail))
        by_sig: dict[str, list[Crash]] = collections.defaultdict(list)
        for c in crashes:
            by_sig[c.signature].append(c)
        # one of each signature first, then more of the signatures seen most
        chosen: list[Crash] = []
        for group in itertools.zip_longest(*by_sig.values()):
            chosen += [c for c in group if c is not None]
        chosen = chosen[:keep]
        with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            reduced = list(
                pool.map(
                    lambda nc: minimize(nc[1], work / f"min-{nc[0]}", budget), enumerate(chosen)
                )
            )
        saved = []
        for n, (c, (data, alone, ops_kept, used)) in enumerate(
            zip(chosen, reduced, strict=True), 1
        ):
            name = f"crash-{n:02d}-{'-'.join(ops_kept)}.yaml"
            (crash_dir / name).write_bytes(data)
            (crash_dir / name.replace(".yaml", ".txt")).write_text(
                f"seed {ctx.seed} run {c.run}\nfrom {c.unit.file}\nops {c.ops}\n"
                f"kept ops {ops_kept}, {len(_lines(data))} line(s)\n"
                f"reproduce: hookmap validate {name}"
                + ("" if alone else f"  (in place of {c.unit.file} in a copy of its folder)")
                + f"\nsignature {c.signature}\n"
                + "\n".join(c.tail)
                + "\n"
            )
            saved.append(
                {
                    "file": name,
                    "from": str(c.unit.file),
                    "ops": ops_kept,
                    "signature": c.signature,
                    "tail": c.tail,
                    "alone": alone,
                    "lines": len(_lines(data)),
                    "runs": used,
                }
            )
        probes = surrogate_probes(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kinds: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for c in crashes:
        for op, _ in c.ops:
            kinds[c.signature][op] += 1
    bad_probes = [(label, v) for label, v in probes if not v.startswith("ok")]
    out.tried = runs + len(probes)
    out.held = runs - len(crashes) - hangs + len(probes) - len(bad_probes)
    sigs = "; ".join(f"{s} x{len(g)}" for s, g in sorted(by_sig.items(), key=lambda x: -len(x[1])))
    out.note = (
        f"held = no traceback, ends < 30 s; seed {ctx.seed}: {len(crashes)}/{runs} validate "
        f"runs crashed, {hangs} hung ({sigs or 'none'}); dry-run lone surrogate: "
        + ", ".join(f"{label} {v}" for label, v in probes)
        + f"; minimized crashes in {crash_dir}"
    )
    out.details = {
        "seed": ctx.seed,
        "crash_dir": str(crash_dir),
        "saved": saved,
        "signatures": {s: dict(k) for s, k in kinds.items()},
        "probes": probes,
    }
    return out


# -- case 11: operations endpoints on the hooks port ---------------------------------------

FLOOD = """
import asyncio, sys, time, httpx
url, seconds, conc = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
count = 0
async def main():
    global count
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(trust_env=False, timeout=10) as c:
        async def one():
            global count
            while time.monotonic() < end:
                try:
                    await c.get(url)
                    count += 1
                except httpx.HTTPError:
                    await asyncio.sleep(0.01)
        await asyncio.gather(*(one() for _ in range(conc)))
asyncio.run(main())
print(count)
"""


def _intake_phase(url: str, seconds: float, ledger: Ledger) -> float:
    """Signed Shopify orders from 8 concurrent senders for ``seconds``: accepted per second.

    The orders are built and signed before the clock starts, so the senders only post."""
    hooks = iter([shopify_order() for _ in range(int(seconds * 800))])
    took = asyncio.run(_intake(url, seconds, 8, ledger, hooks))
    return took[0] / took[1] if took[1] else 0.0


async def _intake(
    url: str, seconds: float, senders: int, ledger: Ledger, hooks: Iterator[Hook]
) -> tuple[int, float]:
    accepted = 0
    started = time.monotonic()
    end = started + seconds
    async with httpx.AsyncClient(trust_env=False, timeout=10) as c:

        async def one() -> None:
            nonlocal accepted
            for hook in hooks:
                if time.monotonic() >= end:
                    return
                try:
                    r = await c.post(
                        f"{url}/hooks/shopify", content=hook.body, headers=hook.headers
                    )
                except httpx.HTTPError:
                    continue
                body = (
                    r.json()
                    if r.headers.get("content-type", "").startswith("application/json")
                    else {}
                )
                reply = Reply(r.status_code, body, 0.0)
                ledger.record(hook, reply)
                accepted += reply.accepted

        await asyncio.gather(*(one() for _ in range(senders)))
    return accepted, min(seconds, time.monotonic() - started)


def case11(ctx: Context) -> Outcome:
    """/metrics, /readyz, /healthz on the hooks port, and a /metrics flood.

    held = each operations endpoint refuses an unauthenticated request on the hooks
    port (not 200); and intake under a /metrics flood keeps >= 80% of its rate. Run twice:
    serve as it starts by default (admin paths beside the hooks), then with --admin-port
    (the flood goes to the admin port)."""
    out = Outcome(11, "ops-endpoints")
    seconds, rounds = (2.0, 2) if ctx.quick else (5.0, 3)
    parts = []
    with Lab(ctx, "case11") as lab:
        box = lab.sandbox()
        for variant in ("defaults", "--admin-port"):
            admin = free_port() if variant == "--admin-port" else None
            extra = ["--admin-port", str(admin)] if admin is not None else []
            srv = lab.serve(["rules/shopify"], f"{box.root}/api", extra=extra, wait=False)
            ops = f"http://127.0.0.1:{admin}" if admin is not None else srv.url
            wait_http(f"{ops}/healthz", srv.child)
            paths = ("/metrics", "/readyz", "/healthz")
            answers = {p: get(f"{srv.url}{p}").status for p in paths}
            out.tried += len(answers)
            out.held += sum(s != 200 for s in answers.values())
            ledger = Ledger()
            _intake_phase(srv.url, 1.0, ledger)  # warm up
            base_rates, flood_rates, scraped = [], [], 0
            for _ in range(rounds):  # alternated, so a drift of the machine hits both alike
                base_rates.append(_intake_phase(srv.url, seconds, ledger))
                flood = subprocess.Popen(
                    [sys.executable, "-c", FLOOD, f"{ops}/metrics", str(seconds + 0.5), "16"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    env=child_env(),
                    start_new_session=True,
                )
                with _LOCK:
                    _CHILDREN.append(flood)
                time.sleep(0.5)
                flood_rates.append(_intake_phase(srv.url, seconds, ledger))
                scraped += int((flood.communicate(timeout=60)[0] or b"0").strip() or 0)
                with _LOCK:
                    _CHILDREN.remove(flood)
            base, flooded = sum(base_rates) / rounds, sum(flood_rates) / rounds
            scraped_rate = scraped / (rounds * (seconds + 0.5))
            ratio = flooded / base if base else 0.0
            out.tried += 1
            out.held += ratio >= 0.8
            events = wait_delivered(box, list(ledger.accepted), 30 if ctx.quick else 90, srv.data)
            out.lost += lost(ledger, events, srv.data)
            out.duplicated = duplicates(events)
            delivered = len({order_key(e) for e in events} & set(ledger.accepted))
            parts.append(
                f"{variant}: {', '.join(f'{p} {s}' for p, s in answers.items())}; intake "
                f"{base:.0f}/s alone, {flooded:.0f}/s under {scraped_rate:.0f} /metrics/s "
                f"({ratio:.0%}); delivered {delivered}/{len(ledger.accepted)}"
            )
            srv.child.stop()
    out.note = (
        "held = ops endpoint not 200 unauthenticated on the hooks port, intake under "
        f"flood >= 80% ({rounds} rounds of {seconds:.0f} s each); " + "; ".join(parts)
    )
    return out


CASES: dict[int, Callable[[Context], Outcome]] = {
    1: case1,
    2: case2,
    3: case3,
    4: case4,
    5: case5,
    6: case6,
    7: case7,
    8: case8,
    9: case9,
    10: case10,
    11: case11,
}
#: cases that mostly wait (timeouts, retries): run beside the others unless --serial
WAITING = {2, 4, 5}


def run_case(n: int, ctx: Context) -> Outcome:
    started = time.monotonic()
    say(f"case {n}: {(CASES[n].__doc__ or '').strip().splitlines()[0]}")
    try:
        out = CASES[n](ctx)
    except Skip as exc:
        out = Outcome(n, CASES[n].__name__, skipped=str(exc), note=f"skipped: {exc}")
    except (CaseError, OSError, httpx.HTTPError, subprocess.SubprocessError) as exc:
        out = Outcome(n, CASES[n].__name__, error=f"{type(exc).__name__}: {exc}")
        out.note = f"error: {out.error}"
    out.details["seconds"] = round(time.monotonic() - started, 1)
    say(f"case {n}: done in {out.details['seconds']:.0f} s")
    return out


def line(o: Outcome) -> str:
    return f"{o.case:<5} {o.tried:>6} {o.held:>6} {o.lost:>5} {o.duplicated:>11}  {o.note}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", type=int, action="append", choices=sorted(CASES))
    parser.add_argument("--quick", action="store_true", help="smaller counts (3-4 minutes)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--seed", type=int, default=20261128, help="fuzzer and garbage seed")
    parser.add_argument("--fuzz-runs", type=int, help="validate runs in case 10")
    parser.add_argument("--serial", action="store_true", help="no case beside another")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv)
    ctx = Context(args.quick, args.keep, args.seed, args.fuzz_runs)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < min(hard, 4096):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    chosen = sorted(set(args.case or CASES))
    results: dict[int, Outcome] = {}
    started = time.monotonic()
    background = [] if args.serial else [n for n in chosen if n in WAITING]
    pool = concurrent.futures.ThreadPoolExecutor(max(1, len(background)))
    try:
        futures = {n: pool.submit(run_case, n, ctx) for n in background}
        for n in chosen:
            if n not in futures:
                results[n] = run_case(n, ctx)
        for n, f in futures.items():
            while not f.done():  # a wait that Ctrl-C can interrupt
                time.sleep(0.2)
            results[n] = f.result()
    except KeyboardInterrupt:
        say("interrupted: stopping every process this run started")
        kill_everything()
        pool.shutdown(wait=False, cancel_futures=True)
        # the cases still running fail fast once their processes are gone; give their
        # cleanup (temporary folders, mounts) a moment, then leave whatever is left
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(not f.done() for f in futures.values()):
            time.sleep(0.2)
        kill_everything()
        sys.stdout.flush()
        os._exit(130)
    finally:
        kill_everything()
    pool.shutdown()
    outcomes = [results[n] for n in chosen]
    ran = [o for o in outcomes if o.error is None]
    summary = {
        "cases": len(outcomes),
        "fully_held": sum(o.tried > 0 and o.held == o.tried for o in ran),
        "tried": sum(o.tried for o in ran),
        "held": sum(o.held for o in ran),
        "lost": sum(o.lost for o in ran),
        "duplicated": sum(o.duplicated for o in ran),
        "errors": sum(o.error is not None for o in outcomes),
        "skipped_parts": [o.case for o in outcomes if o.skipped],
        "seconds": round(time.monotonic() - started, 1),
    }
    environment = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "quick": args.quick,
        "seed": args.seed,
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }
    if args.json:
        print(
            json.dumps(
                {
                    "environment": environment,
                    "cases": [dataclasses.asdict(o) for o in outcomes],
                    "summary": summary,
                },
                indent=2,
                default=str,
            )
        )
    else:
        print(f"{'case':<5} {'tried':>6} {'held':>6} {'lost':>5} {'duplicated':>11}  note")
        for o in outcomes:
            print(line(o))
        print(
            f"summary: {summary['fully_held']}/{summary['cases']} cases fully held; tried "
            f"{summary['tried']}, held {summary['held']}, lost {summary['lost']}, duplicated "
            f"{summary['duplicated']}, errors {summary['errors']}; {environment['machine']}, "
            f"Python {environment['python']}, {environment['date']}, load "
            f"{'/'.join(map(str, environment['load_average']))}, "
            f"{summary['seconds']:.0f} s{' (quick)' if args.quick else ''}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
