"""One HTTP stub for the tests: a real HTTP/1.1 server on loopback that answers each request
with a function of it and records every exchange.

Platform APIs (BigCommerce, PrestaShop, a shop that is down) and a CDP that answers with
queued statuses are all this server with a different ``answer``::

    with HttpStub(lambda call: Reply(503, "down")) as api:
        ...api.url...
        assert [c.path for c in api.calls] == ["/orders/5"]

``answer`` receives the request as a ``Call`` (its ``status`` not set yet) and returns a
``Reply``; a body that is not bytes or text is sent as JSON, and ``headers`` go with it
(a platform's ``Link``, ``Retry-After`` or rate-limit headers).
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any


@dataclasses.dataclass(frozen=True)
class Call:
    """One request the stub answered, and the status it answered with."""

    method: str
    #: the request target as sent: path and query
    target: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return urllib.parse.parse_qs(urllib.parse.urlsplit(self.target).query)

    def header(self, name: str) -> str | None:
        """A request header by name, in any case."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = b""
    content_type: str | None = None
    #: more response headers (``Retry-After``...)
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, self.content_type or "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), self.content_type or "text/plain; charset=utf-8"
        return json.dumps(self.body).encode(), self.content_type or "application/json"


Answer = Callable[[Call], Reply]


class HttpStub:
    """A loopback HTTP server in a background thread while the ``with`` block runs."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                call = Call(self.command, self.path, dict(self.headers.items()), body)
                reply = stub.answer(call)
                with stub._lock:
                    stub.calls.append(dataclasses.replace(call, status=reply.status))
                raw, content_type = reply.encoded()
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(raw)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the calls are recorded instead."""

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="http-stub", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, no trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HttpStub:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
