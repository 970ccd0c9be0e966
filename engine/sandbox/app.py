"""A local stand-in of the CDP: try and test the whole flow without an account.

It answers ``POST /api/v1/event`` and ``/api/v2/event`` as the service documents
(``shared/reference/esputnik-api.md``): HTTP Basic auth with the API key as password,
the event limits, 413 over 20 KB, 429 over the rate limit, and, for the four order
events, the catalogue's checks (``engine.events.checks``), so an order the service would
silently ignore is refused here with a 400 naming why. It also keeps the contact and
order resources hookmap's flows touch, and can be broken on purpose (500s, 429s,
latency) to try retries. Everything accepted or refused can be read back::

    from engine.sandbox.run import running
    from engine.sandbox.settings import SandboxConfig
    with running(SandboxConfig(api_key="test")) as box:
        # HOOKMAP_API_URL=box.url, HOOKMAP_API_KEY=test (or box.destination())
        ...
        box.sandbox.events()   # or GET {box.root}/sandbox/events

From a shell, ``engine.sandbox.run.serve(SandboxConfig(api_key=...), port=8020)`` (the
CLI's ``hookmap sandbox``) runs until Ctrl-C, printing one line per accepted event.
Control endpoints (no auth): ``GET /sandbox/events|contacts|orders|requests|config|
health``, ``DELETE /sandbox/events`` (forget everything), ``POST /sandbox/config``
(``{"fail_rate": 1}`` and back to ``0``, etc.: changes behaviour live).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import json
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from engine.events.catalogue import is_identifier
from engine.events.checks import check_body_size
from engine.sandbox import checks
from engine.sandbox.settings import SandboxConfig

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]
Printer = Callable[[str], object]

DUPLICATE_WINDOW = 60.0  # seconds: v1/contact answers 409 to a repeat within a minute
MAX_READ = 1024 * 1024  # stop buffering a body here: it is far over every limit anyway


@dataclasses.dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


def _text(status: int, message: str) -> _Reply:
    return _Reply(status, message.encode())


def _json(value: Any, status: int = 200) -> _Reply:
    return _Reply(status, json.dumps(value, ensure_ascii=False).encode(), "application/json")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


class Sandbox:
    """The fake CDP's settings and memory; ``app()`` serves it over ASGI.

    The server's thread writes and tests read from theirs, so every access to the
    state goes through one lock, and readers get copies.
    """

    def __init__(self, config: SandboxConfig, printer: Printer | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config
        self._printer = printer
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._rng = random.Random(self._config.seed)
        self._events: list[dict[str, Any]] = []
        self._contacts: list[dict[str, Any]] = []
        self._orders: dict[str, Any] = {}
        self._requests: list[dict[str, Any]] = []
        self._recent: dict[str, float] = {}  # v1/contact body → when, for the 409
        self._windows: dict[str, deque[float]] = {}  # path → request times in the last second

    @property
    def config(self) -> SandboxConfig:
        with self._lock:
            return self._config

    def events(self) -> list[dict[str, Any]]:
        """Accepted events, oldest first: ``{received, version, body}``."""
        with self._lock:
            return [dict(e) for e in self._events]

    def contacts(self) -> list[dict[str, Any]]:
        """Known contacts: ``{id, email, sms, externalCustomerId, data}``."""
        with self._lock:
            return [dict(c) for c in self._contacts]

    def orders(self) -> list[Any]:
        """Orders accepted by v1/orders, by externalOrderId (upserted)."""
        with self._lock:
            return list(self._orders.values())

    def requests(self) -> list[dict[str, Any]]:
        """Every /api request, refused ones included: ``{time, method, path, status, ...}``."""
        with self._lock:
            return [dict(r) for r in self._requests]

    def configure(self, **changes: Any) -> SandboxConfig:
        """Change live settings (ValueError on a bad one); returns the new config."""
        with self._lock:
            self._config = dataclasses.replace(self._config, **changes)
            return self._config

    def reset(self) -> None:
        """Forget events, contacts, orders and requests; the config stays."""
        with self._lock:
            self._clear()

    def app(self) -> ASGIApp:
        """The ASGI callable to serve (uvicorn or any ASGI 3 server)."""

        # A plain coroutine function: uvicorn takes a bound method for an ASGI 2 app.
        async def asgi(scope: Message, receive: Receive, send: Send) -> None:
            await self._handle(scope, receive, send)

        return asgi

    # -- HTTP -----------------------------------------------------------------------

    async def _handle(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here
        raw, too_big = await _read_body(receive)
        method, path = scope["method"], scope["path"]
        if path.startswith("/sandbox/"):
            reply = self._control(method, path, raw)
        else:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            reply = await self._api(method, path, raw, too_big, headers.get("authorization"))
            self._record(method, path, raw, reply)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(b"content-type", reply.content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})

    async def _api(
        self, method: str, path: str, raw: bytes, too_big: bool, auth: str | None
    ) -> _Reply:
        handlers: dict[str, Callable[[bytes], _Reply]] = {
            "/api/v1/event": lambda b: self._event("v1", b),
            "/api/v2/event": lambda b: self._event("v2", b),
            "/api/v1/contact": self._contact,
            "/api/v1/contacts": self._contact_batch,
            "/api/v1/orders": self._order_batch,
        }
        handler = handlers.get(path)
        if handler is None:
            return _text(404, f"Not found: {path}")
        if method != "POST":
            return _text(405, "Method not allowed")
        with self._lock:
            config = self._config
        if config.delay_seconds:
            await asyncio.sleep(config.delay_seconds)
        if not checks.authorized(auth, config.api_key):
            return _text(401, "Unauthorized: HTTP Basic auth with the API key as password")
        with self._lock:
            injected = self._injected(path)
        if injected is not None:
            return injected
        if too_big:
            return _text(413, "Payload Too Large")
        return handler(raw)

    def _injected(self, path: str) -> _Reply | None:
        """A 429 over the rate limit, or an injected failure (called under the lock)."""
        now = time.monotonic()
        window = self._windows.setdefault(path, deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) >= self._config.rate_limit:
            return _text(429, "Too many requests")
        window.append(now)
        # Draw only when a rate is set, so a seed gives the same run whatever else is set.
        if self._config.throttle_rate and self._rng.random() < self._config.throttle_rate:
            return _text(429, "Too many requests")
        if self._config.fail_rate and self._rng.random() < self._config.fail_rate:
            return _text(500, "Internal Server Error (injected by the sandbox)")
        return None

    def _record(self, method: str, path: str, raw: bytes, reply: _Reply) -> None:
        entry: dict[str, Any] = {"time": _now(), "method": method, "path": path}
        entry.update(status=reply.status, body=raw[:MAX_READ].decode("utf-8", "replace"))
        if reply.status >= 400:
            entry["reason"] = reply.body.decode("utf-8", "replace")
        with self._lock:
            self._requests.append(entry)

    def _control(self, method: str, path: str, raw: bytes) -> _Reply:
        reads: dict[str, Callable[[], Any]] = {
            "/sandbox/events": self.events,
            "/sandbox/contacts": self.contacts,
            "/sandbox/orders": self.orders,
            "/sandbox/requests": self.requests,
            "/sandbox/config": lambda: self.config.public(),
            "/sandbox/health": lambda: {"status": "ok"},
        }
        if method == "GET" and path in reads:
            return _json(reads[path]())
        if method == "DELETE" and path == "/sandbox/events":
            self.reset()
            return _json({"status": "reset"})
        if method == "POST" and path == "/sandbox/config":
            return self._set_config(raw)
        return _text(404, f"Not found: {method} {path}")

    def _set_config(self, raw: bytes) -> _Reply:
        changes, problem = checks.json_object(raw)
        problem = problem or checks.settings_problem(changes)
        if problem is not None:
            return _text(400, problem)
        try:
            return _json(self.configure(**changes).public())
        except ValueError as exc:  # out of range: the config's own check
            return _text(400, str(exc))

    # -- resources --------------------------------------------------------------------

    def _event(self, version: str, raw: bytes) -> _Reply:
        size = check_body_size(raw)
        if size is not None:
            return _text(413, f"Payload Too Large: {size.message}")
        body, problem = checks.json_object(raw)
        problem = problem or checks.event_problem(body, version)
        if problem is not None:
            return _text(400, problem)
        event_type, key_value = body["eventTypeKey"], body.get("keyValue")
        params = [(p["name"], p["value"]) for p in body.get("params") or []]
        with self._lock:
            if (
                self._config.strict_contacts
                and event_type in checks.ORDER_EVENTS
                and not self._known(key_value, params)
            ):
                return _text(400, "Contact not found: events are accepted for existing contacts")
            received = _now()
            self._events.append({"received": received, "version": version, "body": body})
        if self._printer is not None:
            self._printer(
                f"{received} {version} {event_type} {key_value or '-'} {len(params)} params"
            )
        return _Reply(200)

    def _contact(self, raw: bytes) -> _Reply:
        body, problem = checks.json_object(raw)
        problem = problem or checks.contact_problem(body)
        if problem is not None:
            return _text(400, problem)
        fingerprint, now = json.dumps(body, sort_keys=True), time.monotonic()
        with self._lock:
            self._recent = {k: t for k, t in self._recent.items() if now - t < DUPLICATE_WINDOW}
            if fingerprint in self._recent:
                return _text(409, "Conflict: the same request was made less than a minute ago")
            self._recent[fingerprint] = now
            return _json({"id": self._remember(body)})

    def _contact_batch(self, raw: bytes) -> _Reply:
        contacts, problem = checks.batch(raw, "contacts", 3000)
        if problem is not None:
            return _text(400, problem)
        with self._lock:
            for contact in contacts:
                # The service imports asynchronously and reports bad ones later: skip them.
                if checks.contact_problem(contact) is None:
                    self._remember(contact)
        return _json({"asyncSessionId": str(uuid.uuid4())})

    def _order_batch(self, raw: bytes) -> _Reply:
        orders, problem = checks.batch(raw, "orders", 1000)
        if problem is not None:
            return _text(400, problem)
        failed = []
        with self._lock:
            for order in orders:
                error = checks.order_problem(order)
                if error is not None:
                    failed.append({"order": order, "error": error})
                    continue
                self._orders[str(order["externalOrderId"])] = order
                # v1/orders creates the order's contact, so events may follow for it.
                channels = [
                    {"type": t, "value": order[k]}
                    for t, k in (("email", "email"), ("sms", "phone"))
                    if order.get(k)
                ]
                if channels or order.get("externalCustomerId"):
                    ext = order.get("externalCustomerId")
                    self._remember({"channels": channels, "externalCustomerId": ext})
        return _json({"failedOrders": failed})

    # -- contacts (called under the lock) ---------------------------------------------

    def _remember(self, data: dict[str, Any]) -> int:
        """Add or update the contact matched by email, phone or externalCustomerId; its id."""
        channels = [c for c in data.get("channels") or [] if isinstance(c, dict)]
        emails = [c["value"] for c in channels if c.get("type") == "email"]
        phones = [c["value"] for c in channels if c.get("type") == "sms"]
        ext = str(data["externalCustomerId"]) if data.get("externalCustomerId") else None
        keys = [*emails, *phones, *([ext] if ext else [])]
        contact = next(
            (c for c in self._contacts if any(checks.identifies(c, k) for k in keys)), None
        )
        if contact is None:
            contact = {"id": len(self._contacts) + 1, "email": [], "sms": []}
            contact["externalCustomerId"] = None
            self._contacts.append(contact)
        # Replaced, never mutated in place: readers hold shallow copies.
        contact["email"] = sorted({*contact["email"], *emails})
        contact["sms"] = sorted({*contact["sms"], *phones})
        contact["externalCustomerId"] = ext or contact["externalCustomerId"]
        contact["data"] = data
        return int(contact["id"])

    def _known(self, key_value: str | None, params: Sequence[tuple[str, Any]]) -> bool:
        candidates: list[str | int] = [key_value] if key_value else []
        candidates += [v for n, v in params if is_identifier(n) and isinstance(v, str | int)]
        return any(checks.identifies(c, str(v)) for c in self._contacts for v in candidates)


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The request body (cut at MAX_READ) and whether it was cut."""
    body, too_big, more = bytearray(), False, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk: bytes = message.get("body", b"")
        too_big = too_big or len(body) + len(chunk) > MAX_READ
        if not too_big:
            body += chunk
        more = message.get("more_body", False)
    return bytes(body), too_big


async def _lifespan(receive: Receive, send: Send) -> None:
    # Answering lifespan keeps uvicorn from logging that the app does not support it.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
