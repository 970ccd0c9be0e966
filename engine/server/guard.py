"""Connections that slow or hostile clients cannot hold open: timeouts and a limit.

uvicorn closes a keep-alive connection that stays idle after a response, and caps a
request head's size (h11: 16 KiB), but it has no timeout for a connection that never
sends a request, for a request head that never ends, or for a body sent a byte a second,
and it accepts connections until the process runs out of file descriptors (400 idle
sockets under ``ulimit -n 256`` once made every signed order time out). This is its h11
protocol with each of those bounded, per connection:

* idle: no request begins within ``idle_timeout`` of the connection (or of the previous
  response): closed quietly, as keep-alive connections are;
* head: the request line and headers are not complete within ``header_timeout`` of
  their first byte: answered 408 and closed;
* body: the body is not complete within ``body_timeout`` of the head: answered 408 (or
  closed, if the app already answered) and closed; nothing was stored;
* limit: at ``max_connections`` open at once, a new connection takes the place of the
  one idle longest (or of one stuck in its head for over a second), which is closed;
  when every connection is busy, it is answered 503 with ``Retry-After: 1`` and closed
  at once, before it can hold a file descriptor.

Each of these, and a client that disconnects in the middle of its body, is one log line
(``hookmap.guard``; repeats are counted by ``engine.server.logs``), never a traceback.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
from collections.abc import Callable
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from engine.server.logs import GUARD

log = logging.getLogger(GUARD)

#: seconds a connection may wait before its request begins; a request head may take;
#: a body may take after its head
DEFAULT_IDLE_TIMEOUT = 5.0
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 15.0
#: connections open at once, unless the open-file limit leaves room for fewer
DEFAULT_MAX_CONNECTIONS = 1024
#: file descriptors kept for everything else (the store, the CDP and lookup clients, logs)
FD_RESERVE = 64


def connection_limit(wanted: int | None = None) -> int:
    """``wanted``, or by default 1024 or the open-file limit less ``FD_RESERVE``."""
    if wanted is not None:
        return wanted
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return DEFAULT_MAX_CONNECTIONS
    return max(1, min(DEFAULT_MAX_CONNECTIONS, soft - FD_RESERVE))


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one listening port allows each connection (``hookmap serve`` options)."""

    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    #: None: ``connection_limit()``'s default
    max_connections: int | None = None


#: what ``hookmap serve`` allows unless told
DEFAULT_LIMITS = Limits()


def _raw_response(status: int, text: str, extra: str = "") -> bytes:
    """A complete response written without h11 (whose state may not allow one yet)."""
    reason = {408: "Request Timeout", 503: "Service Unavailable"}[status]
    body = f"{text}\n".encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol with the idle, head and body timeouts and the limit above.

    A connection is in one phase at a time: ``idle`` (waiting for a request), ``head``
    (its first bytes came), ``body`` (the head is complete, the body is not), ``app``
    (the request is complete: the app is answering), ``closed``.
    """

    limits: ClassVar[Limits] = Limits()
    max_connections: ClassVar[int] = DEFAULT_MAX_CONNECTIONS
    #: the port's name in log lines ("hooks", "admin")
    port_name: ClassVar[str] = "hooks"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = "idle"
        self._since = self.loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._seen: object = None
        self._refused = False

    # -- asyncio's protocol interface -----------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.server_state.connections) >= self.max_connections and not self._make_room():
            # every connection is busy: answered and closed before it holds a descriptor
            self._refused = True
            transport.write(_raw_response(503, "too many connections", "retry-after: 1\r\n"))
            transport.close()
            log.warning(
                "refused a connection on the %s port from %s: %d connections open, the limit "
                "(--max-connections)",
                self.port_name,
                _peer(transport),
                len(self.server_state.connections),
            )
            return
        super().connection_made(transport)
        self._arm(self.limits.idle_timeout, self._idle_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._cancel()
        if self._phase == "body":
            log.info(
                "client %s disconnected while sending its body: nothing stored",
                _peer(self.transport),
            )
        self._phase = "closed"
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self._phase == "closed":
            return
        if self._phase == "idle":
            self._enter("head")
            self._arm(self.limits.header_timeout, self._head_expired)
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or self._phase == "closed":
            return
        if self.cycle is self._seen:  # no pipelined request began
            if self._phase == "body" and self.conn.their_state is h11.SEND_BODY:
                return  # answered early (413): the body still has its deadline
            # the idle timer replaces uvicorn's keep-alive timer (same role, our setting)
            self._unset_keepalive_if_required()
            self._enter("idle")
            self._arm(self.limits.idle_timeout, self._idle_expired)
        self._follow()

    def _make_room(self) -> bool:
        """At the limit: close the connection idle longest (or the oldest one still in
        its head after a second), which loses nothing; False when none is (all busy).

        400 idle sockets then cost a new webhook nothing: it takes an idle one's place.
        """
        now = self.loop.time()
        idle: list[tuple[float, GuardedProtocol]] = []
        heads: list[tuple[float, GuardedProtocol]] = []
        for other in self.server_state.connections:
            if not isinstance(other, GuardedProtocol) or other._phase == "closed":
                continue
            if other._phase == "idle":
                idle.append((other._since, other))
            elif other._phase == "head" and now - other._since > 1.0:
                heads.append((other._since, other))
        victims = idle or heads
        if not victims:
            return False
        _, victim = min(victims, key=lambda pair: pair[0])
        log.info(
            "at the connection limit (%d): closed the %s connection from %s to make room",
            self.max_connections,
            "idle" if victim._phase == "idle" else "slow",
            _peer(victim.transport),
        )
        victim._close(None)
        return True

    # -- phases ---------------------------------------------------------------------------

    def _follow(self) -> None:
        """Move on when a request's head or body has just been completed."""
        cycle = self.cycle
        if cycle is None or self._phase == "closed":
            return
        if cycle is not self._seen:  # a request head was completed
            self._seen = cycle
            self._cancel()
            if cycle.more_body:
                self._phase = "body"
                self._arm(self.limits.body_timeout, self._body_expired)
            else:
                self._phase = "app"
        elif self._phase == "body" and (
            not cycle.more_body or self.conn.their_state is not h11.SEND_BODY
        ):
            self._cancel()
            if cycle.response_complete:  # answered early, and now the body is in
                self._unset_keepalive_if_required()
                self._enter("idle")
                self._arm(self.limits.idle_timeout, self._idle_expired)
            else:
                self._phase = "app"

    def _enter(self, phase: str) -> None:
        self._phase = phase
        self._since = self.loop.time()

    def _idle_expired(self) -> None:
        self._close(None)

    def _head_expired(self) -> None:
        log.warning(
            "closed a connection from %s: its request head was not complete within %g s "
            "(--header-timeout)",
            _peer(self.transport),
            self.limits.header_timeout,
        )
        self._close(_raw_response(408, "request head not complete in time"))

    def _body_expired(self) -> None:
        log.warning(
            "closed a connection from %s: its request body was not complete within %g s "
            "(--body-timeout); nothing stored",
            _peer(self.transport),
            self.limits.body_timeout,
        )
        answered = self.cycle is not None and self.cycle.response_started
        self._close(None if answered else _raw_response(408, "request body not complete in time"))

    def _close(self, answer: bytes | None) -> None:
        self._cancel()  # a connection closed to make room still has its idle timer
        self._phase = "closed"
        if self.transport.is_closing():
            return
        if answer is not None:
            self.transport.write(answer)
        self.transport.close()

    def _arm(self, seconds: float, then: Callable[[], None]) -> None:
        self._cancel()
        self._timer = self.loop.call_later(seconds, then)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _peer(transport: asyncio.BaseTransport | None) -> str:
    peer = transport.get_extra_info("peername") if transport is not None else None
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"


def guarded(limits: Limits, port_name: str = "hooks") -> type[GuardedProtocol]:
    """The protocol class for one listening port (uvicorn's ``Config(http=...)``)."""

    class Guarded(GuardedProtocol):
        pass

    Guarded.limits = limits
    Guarded.max_connections = connection_limit(limits.max_connections)
    Guarded.port_name = port_name
    return Guarded
