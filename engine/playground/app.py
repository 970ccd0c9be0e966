"""The playground's ASGI app: the page, its static files, and the two JSON endpoints.

``GET /`` the page; ``GET /static/NAME`` its script and style; ``GET /api/catalog``
what there is to pick (``session.catalog``); ``POST /api/run`` one run
(``session.run``); both in a worker thread, so the server keeps answering.

It is meant for the person at this machine only: it listens on loopback unless told,
answers only requests whose ``Host`` is the address it listens on (a web page elsewhere
cannot reach it through a DNS name pointed at 127.0.0.1), and takes a run only as
``application/json``, which a page elsewhere cannot post without asking first.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Message, Receive, Send], Awaitable[None]]

STATIC = Path(__file__).parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
}
#: a run's request: rule files and a webhook, far below this
MAX_BODY = 8 * 1024 * 1024
#: nothing from elsewhere: the page runs offline, and nothing injected can load a script
_SECURITY = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


@dataclasses.dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"


def _json(value: Any, status: int = 200) -> _Reply:
    return _Reply(status, json.dumps(value, ensure_ascii=False).encode(), "application/json")


def loopback_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` headers a browser sends for this server: its address and loopback."""
    names = {host, "127.0.0.1", "localhost", "[::1]"}
    if ":" in host and not host.startswith("["):
        names.add(f"[{host}]")
    return frozenset(f"{name}:{port}" for name in names)


@dataclasses.dataclass(frozen=True)
class Handlers:
    """What the endpoints call: ``session.catalog`` and ``session.run`` with the
    playground's settings (given, not imported: the app serves, the session works)."""

    catalog: Callable[[], Any]
    run: Callable[[dict[str, Any]], Any]


class Playground:
    """The page's server side: what it calls, the page's files, the hosts it answers."""

    def __init__(self, handlers: Handlers, hosts: Iterable[str]) -> None:
        self.handlers = handlers
        self.hosts = frozenset(hosts)
        self.files = {
            p.name: (p.read_bytes(), _TYPES[p.suffix])
            for p in STATIC.iterdir()
            if p.suffix in _TYPES
        }

    def app(self) -> ASGIApp:
        async def asgi(scope: Message, receive: Receive, send: Send) -> None:
            await self._handle(scope, receive, send)

        return asgi

    async def _handle(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        raw, too_big = await _read(receive)
        reply = await self._route(scope["method"], scope["path"], headers, raw, too_big)
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [(b"content-type", reply.content_type.encode()), *_SECURITY],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})

    async def _route(
        self, method: str, path: str, headers: dict[str, str], raw: bytes, too_big: bool
    ) -> _Reply:
        if headers.get("host") not in self.hosts:
            return _Reply(403, b"the playground answers only on the address it listens on")
        if method == "GET" and path in ("/", "/index.html"):
            body, kind = self.files["index.html"]
            return _Reply(200, body, kind)
        if method == "GET" and path == "/favicon.ico":  # browsers ask; there is none
            return _Reply(204, b"")
        if method == "GET" and path.startswith("/static/"):
            found = self.files.get(path.removeprefix("/static/"))
            return _Reply(200, *found) if found else _Reply(404, b"no such file")
        if path == "/api/catalog" and method == "GET":
            return _json(await asyncio.to_thread(self.handlers.catalog))
        if path == "/api/run":
            if method != "POST":
                return _Reply(405, b"POST a JSON document")
            if not headers.get("content-type", "").startswith("application/json"):
                return _Reply(415, b"a run is posted as application/json")
            if too_big:
                return _Reply(413, b"the request is too large")
            try:
                request = json.loads(raw)
            except ValueError as exc:
                return _json({"error": f"the request is not JSON: {exc}"}, 400)
            if not isinstance(request, dict):
                return _json({"error": "the request must be a JSON object"}, 400)
            return _json(await asyncio.to_thread(self.handlers.run, request))
        return _Reply(404, b"not found")


async def _read(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= MAX_BODY:
            chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks), size > MAX_BODY
