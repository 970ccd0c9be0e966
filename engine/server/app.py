"""The webhook receiver: ``POST /hooks/{source}[/{shop}]`` plus health and metrics (ASGI).

What a request goes through, in order (each step answers before storing anything):

1. unknown source → 404; body over the limit → 413;
2. WooCommerce's creation ping (``webhook_id=N``) → 200, not stored;
3. signature → 401 when it fails (the log says why, never the body or a secret);
4. a repeated delivery id → 200 ``duplicate``, not processed again;
5. stored in SQLite and committed, and only then 200 ``accepted``.

Whatever happens after step 5 (bad JSON, no rule, a dropped event) is recorded against
the stored webhook: platforms disable subscriptions that keep failing, so a stored
webhook is never answered with an error.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Protocol

from engine.errors import BodyTooLarge
from engine.server.intake import Source, is_woocommerce_ping, reason_label
from engine.server.metrics import Metrics
from engine.server.store.rows import AddResult

log = logging.getLogger("hookmap.server")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


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
    send: Send, status: int, body: Any, content_type: str = "application/json"
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
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


def make_app(service: Receiver) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI callable serving ``service`` (a plain coroutine function, as uvicorn wants)."""

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
        if path.startswith("/hooks/"):
            key = source_key(path[len("/hooks/") :])
            if method == "GET" and key in service.sources:
                await answer_challenge(scope, send)
                return
            if method != "POST":
                await respond(send, 405, {"error": "use POST"})
                return
            await receive_webhook(service, scope, receive, send, key)
        elif path == "/healthz":
            await respond(send, 200, {"status": "ok"})
        elif path == "/readyz":
            problems = await asyncio.to_thread(service.readiness)
            await respond(
                send,
                503 if problems else 200,
                {"status": "unready" if problems else "ready", "problems": problems},
            )
        elif path == "/metrics":
            text = await asyncio.to_thread(service.metrics.render)
            await respond(send, 200, text, "text/plain; version=0.0.4; charset=utf-8")
        else:
            await respond(send, 404, {"error": "not found"})

    return app


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
        client = scope.get("client") or ("?", 0)
        log.warning("rejected webhook for %s from %s: %s", name, client[0], verdict.reason)
        await respond(send, 401, {"error": "signature verification failed"})
        return
    delivery_id = source.delivery_id(body, headers)
    added = await asyncio.to_thread(
        functools.partial(service.store.add_webhook, shop=source.shop),
        source.name,
        source.storable(headers),
        body,
        delivery_id,
        time.time(),
    )
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
