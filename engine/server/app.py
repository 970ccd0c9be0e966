"""The webhook receiver: ``POST /hooks/{source}[/{shop}]`` plus health and metrics (ASGI).

What a request goes through, in order (each step answers before storing anything):

1. unknown source → 404; body over the limit → 413;
2. WooCommerce's creation ping (``webhook_id=N``) → 200, not stored;
3. signature → 401 when it fails (the log says why, never the body or a secret);
4. a repeated delivery id → 200 ``duplicate``, not processed again;
5. stored in SQLite and committed, and only then 200 ``accepted``.

Whatever happens after step 5 (bad JSON, no rule, a dropped event) is recorded against
the stored webhook: platforms disable subscriptions that keep failing, so a stored
webhook is never answered with an error. A webhook the store cannot take (the disk is
full) is answered 503 with ``Retry-After``: not acknowledged, so the platform sends it
again. A client that leaves in the middle of its body gets no answer and costs no more
than the one line ``engine.server.guard`` logs.

The admin paths (``/healthz``, ``/readyz``, ``/metrics``) are served beside the hooks, or
on a port of their own (``hookmap serve --admin-port``); with ``HOOKMAP_ADMIN_TOKEN`` set
they answer only ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Generic, Protocol, TypeVar

from engine.errors import BodyTooLarge, StoreUnavailable
from engine.server.intake import Source, is_woocommerce_ping, reason_label
from engine.server.metrics import Metrics
from engine.server.store.rows import AddResult

log = logging.getLogger("hookmap.server")

#: what answers a request the store cannot take: when to send it again, in seconds
STORE_RETRY_AFTER = 30
ADMIN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
#: seconds a readiness answer is reused
READINESS_TTL = 1.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")


class Inbox(Protocol):
    """Where accepted webhooks go: committed before the answer."""

    def add_webhook(
        self,
        source: str,
        headers: Mapping[str, str],
        body: bytes,
        delivery_id: str | None,
        received_at: float | None = None,
        *,
        shop: str = "",
    ) -> AddResult: ...


class Receiver(Protocol):
    """What the app serves (``engine.server.service.Service``): the sources it accepts,
    the store it commits to, its metrics, its readiness, and its processor to wake."""

    @property
    def sources(self) -> Mapping[tuple[str, str], Source]: ...

    @property
    def store(self) -> Inbox: ...

    @property
    def metrics(self) -> Metrics: ...

    def readiness(self) -> list[str]: ...

    def wake_processor(self) -> None: ...


async def read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(
    send: Send,
    status: int,
    body: Any,
    content_type: str = "application/json",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    data = (
        body
        if isinstance(body, bytes)
        else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    )
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(data)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def make_app(
    service: Receiver,
    *,
    hooks: bool = True,
    admin: bool = True,
    admin_token: str | None = None,
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI callable serving ``service`` (a plain coroutine function, as uvicorn wants).

    ``hooks`` and ``admin`` say which paths this port serves (the other answers 404);
    ``admin_token``, when given, is required as a Bearer token on the admin paths.
    """
    token = admin_token.encode() if admin_token else None
    shared = _AdminAnswers(
        _Shared(service.readiness, READINESS_TTL), _Shared(service.metrics.render)
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if hooks and path.startswith("/hooks/"):
            key = source_key(path[len("/hooks/") :])
            if method == "GET" and key in service.sources:
                await answer_challenge(scope, send)
                return
            if method != "POST":
                await respond(send, 405, {"error": "use POST"})
                return
            await receive_webhook(service, scope, receive, send, key)
        elif admin and path in ADMIN_PATHS:
            if token is not None and not _bearer_matches(scope, token):
                log.warning("refused %s from %s: no valid admin token", path, _client(scope))
                await respond(
                    send,
                    401,
                    {"error": "this path needs the admin token (Authorization: Bearer ...)"},
                    headers=((b"www-authenticate", b"Bearer"),),
                )
                return
            await answer_admin(path, send, shared)
        else:
            await respond(send, 404, {"error": "not found"})

    return app


class _Shared(Generic[T]):
    """A value computed in a worker thread, one computation at a time: a request that
    comes while one runs awaits its result, and one finished less than ``ttl`` seconds
    ago is reused.

    Readiness makes a synced write (``Store.writable``) and the metrics read the store
    under its lock: a flood of /readyz or /metrics must cost one of them at a time, not
    one per request, each holding a worker thread that intake's writes queue behind.
    """

    def __init__(self, compute: Callable[[], T], ttl: float = 0.0) -> None:
        self._compute, self._ttl = compute, ttl
        self._running: asyncio.Future[T] | None = None
        self._value: tuple[float, T] | None = None

    async def get(self) -> T:
        if self._value is not None and time.monotonic() - self._value[0] < self._ttl:
            return self._value[1]
        if self._running is None:
            running = self._running = asyncio.ensure_future(asyncio.to_thread(self._compute))
            running.add_done_callback(self._finished)
        # shielded: a client that leaves does not cancel what the others wait for
        return await asyncio.shield(self._running)

    def _finished(self, done: asyncio.Future[T]) -> None:
        self._running = None
        if not done.cancelled() and done.exception() is None:
            self._value = (time.monotonic(), done.result())


@dataclasses.dataclass(frozen=True)
class _AdminAnswers:
    readiness: _Shared[list[str]]
    metrics: _Shared[str]


async def answer_admin(path: str, send: Send, shared: _AdminAnswers) -> None:
    """``/healthz`` (alive), ``/readyz`` (rules loaded, store writable), ``/metrics``."""
    if path == "/healthz":
        await respond(send, 200, {"status": "ok"})
    elif path == "/readyz":
        problems = await shared.readiness.get()
        await respond(
            send,
            503 if problems else 200,
            {"status": "unready" if problems else "ready", "problems": problems},
        )
    else:
        text = await shared.metrics.get()
        await respond(send, 200, text, "text/plain; version=0.0.4; charset=utf-8")


def _bearer_matches(scope: Scope, token: bytes) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (constant time)."""
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            scheme, _, given = bytes(value).partition(b" ")
            return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)
    return False


def _client(scope: Scope) -> str:
    client = scope.get("client") or ("?", 0)
    return str(client[0])


_CHALLENGE = re.compile(r"[A-Za-z0-9._~-]{1,256}")


async def answer_challenge(scope: Scope, send: Send) -> None:
    """Echo ``?challenge=`` (Adobe I/O Events checks a webhook URL this way on registration).

    Only plain token characters are echoed, so the answer cannot carry markup.
    """
    query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
    value = (query.get("challenge") or [""])[0]
    if not _CHALLENGE.fullmatch(value):
        await respond(send, 405, {"error": "use POST (GET answers only ?challenge=)"})
        return
    await respond(send, 200, value, "text/plain; charset=utf-8")


async def receive_webhook(
    service: Receiver, scope: Scope, receive: Receive, send: Send, key: tuple[str, str] | None
) -> None:
    source = service.sources.get(key) if key is not None else None
    metrics = service.metrics
    if source is None:
        # one series for every unknown name: a label from the path would let anyone
        # grow /metrics without bound
        metrics.count(metrics.rejected, source="(unknown)", reason="unknown_source")
        shown = scope["path"][len("/hooks/") :][:80]
        log.warning("rejected webhook: unknown source %r", shown)
        await respond(send, 404, {"error": f"unknown source '{shown}'"})
        return
    name = source.label
    labels = {"source": source.name, **({"shop": source.shop} if source.shop else {})}
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > source.max_body:
        metrics.count(metrics.rejected, reason="too_large", **labels)
        log.warning(
            "rejected webhook for %s: body of %s bytes over %d", name, declared, source.max_body
        )
        await respond(send, 413, {"error": f"body over {source.max_body} bytes"})
        return
    try:
        body = await read_body(receive, source.max_body)
    except ConnectionError:  # the client left mid-body (engine.server.guard logs it)
        log.debug("client left while sending a webhook for %s", name)
        return
    except BodyTooLarge:
        metrics.count(metrics.rejected, reason="too_large", **labels)
        log.warning("rejected webhook for %s: body over %d bytes", name, source.max_body)
        await respond(send, 413, {"error": f"body over {source.max_body} bytes"})
        return
    scheme = source.ruleset.verify.scheme if source.ruleset.verify else None
    if scheme == "woocommerce" and is_woocommerce_ping(headers, body):
        # unsigned by design: answered, never stored or processed
        log.info("woocommerce ping for %s acknowledged", name)
        await respond(send, 200, {"status": "ping"})
        return
    verdict = source.verify(body, headers)
    if not verdict.ok:
        metrics.count(metrics.rejected, reason=reason_label(verdict), **labels)
        log.warning("rejected webhook for %s from %s: %s", name, _client(scope), verdict.reason)
        await respond(send, 401, {"error": "signature verification failed"})
        return
    delivery_id = source.delivery_id(body, headers)
    try:
        added = await asyncio.to_thread(
            functools.partial(service.store.add_webhook, shop=source.shop),
            source.name,
            source.storable(headers),
            body,
            delivery_id,
            time.time(),
        )
    except StoreUnavailable as exc:
        # not stored, so not acknowledged: the platform sends it again later
        metrics.count(metrics.rejected, reason="store_unavailable", **labels)
        log.warning("cannot store a webhook for %s, answered 503: %s", name, exc)
        await respond(
            send,
            503,
            {"error": "cannot store the webhook now; send it again later"},
            headers=((b"retry-after", str(STORE_RETRY_AFTER).encode()),),
        )
        return
    if added.duplicate:
        metrics.count(metrics.duplicates, **labels)
        log.info(
            "duplicate delivery %s for %s: webhook #%d already stored", delivery_id, name, added.id
        )
        await respond(send, 200, {"status": "duplicate", "id": added.id})
        return
    metrics.count(metrics.received, **labels)
    service.wake_processor()
    await respond(send, 200, {"status": "accepted", "id": added.id})


def source_key(rest: str) -> tuple[str, str] | None:
    """``shopify`` → ("shopify", ""), ``shopify/acme`` → ("shopify", "acme"); anything
    else names no source."""
    name, _, shop = rest.partition("/")
    if not name or "/" in shop:
        return None
    return name, shop
