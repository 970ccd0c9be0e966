"""What every store does, whatever holds it: the interface the server and the CLI use.

Two stores implement it with the same semantics: ``engine.server.store.sqlite`` (one
file in a data folder, the default) and ``engine.server.store.postgres`` (a database
shared by any number of processes on any number of machines). The test suite runs its
store tests against both.

Semantics every store keeps:

* ``add_webhook`` has committed the webhook durably when it returns (the server answers
  2xx only after it); a repeated ``(source, shop, delivery_id)`` stores nothing.
* An event's identity is ``(webhook_id, rule, idx)``, the ledger: processing a webhook
  again, in any process, never creates a second copy of an event.
* ``claim_due`` and ``claim_webhooks`` lease what they hand out to one owner (a running
  server instance), so two processes never send one event or process one webhook at the
  same time; a lease ends by itself, or at once when its owner is found gone
  (``Instance.gone``).
* Contacts created at a CDP account are remembered per shop (``remember_contact``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Protocol

from engine.server.ratelimit import RateLimiter
from engine.server.store.rows import (
    AddResult,
    EventRow,
    NewEvent,
    Oldest,
    OutboxEvent,
    Outcome,
    RecordStats,
    StoredWebhook,
    WebhookDetail,
)


class Instance(Protocol):
    """This server process, while it runs: an id others can tell alive or gone."""

    id: str

    def gone(self) -> list[str]:
        """The ids of other instances that stopped without finishing."""

    def forget(self, other: str) -> None:
        """Drop what records a gone instance (its leases released already)."""

    def close(self) -> None:
        """This instance stops: it is gone from the records, not found dead later."""


class Closing:
    """``with store:`` for either store: ``close()`` on the way out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Store:
        return self  # type: ignore[return-value]  # a Store's own class inherits this

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Store(Protocol):
    """Webhooks, their events, each attempt, the contacts known, and the servers running."""

    #: what its operations raise when the database fails (callers retry or report these)
    errors: tuple[type[Exception], ...]

    # -- life -------------------------------------------------------------------------

    def close(self) -> None: ...

    def __enter__(self) -> Store: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def batch(self) -> AbstractContextManager[None]:
        """Every write inside in one transaction (replays); each stays all or nothing."""

    def writable(self) -> bool:
        """Whether a write can be committed now (readiness): by making one, not by
        taking a lock only (a full disk takes locks and refuses the write)."""

    def instance(self) -> Instance:
        """Register this process as a running server instance."""

    def servers(self) -> tuple[list[tuple[str, str]], list[str]]:
        """(id, pid) of the servers running (``pid@host`` where they run on several
        machines), and the ids of those that stopped without finishing (their claims are
        taken back by the next server that looks)."""

    def describe(self) -> str:
        """Where the store is, for messages (never a password)."""

    def rate_limiter(self, rate: float, burst: float | None = None) -> RateLimiter:
        """The send rate per CDP account, for every server that shares this store."""

    # -- intake and processing ----------------------------------------------------------

    def add_webhook(
        self,
        source: str,
        headers: Mapping[str, str],
        body: bytes,
        delivery_id: str | None,
        received_at: float | None = None,
        *,
        shop: str = "",
    ) -> AddResult:
        """Store a webhook as received, committed durably before returning; an already
        stored delivery id comes back as a duplicate. ``StoreUnavailable`` when the write
        cannot be made now (disk full, read-only, the database unreachable)."""

    def claim_webhooks(
        self,
        now: float,
        limit: int,
        lease: float,
        owner: str | None = None,
        *,
        lane: tuple[str, str] | None = None,
    ) -> list[StoredWebhook]:
        """Take up to ``limit`` webhooks due for processing (of one ``lane``, a source and
        shop, when given), oldest first, leasing them ``lease`` s."""

    def due_lanes(self, now: float) -> list[tuple[str, str]]:
        """The (source, shop) pairs with webhooks due, the longest waiting first."""

    def webhooks_to_process(
        self, limit: int = 100, now: float | None = None
    ) -> list[StoredWebhook]:
        """The webhooks due for processing (read only: nothing is leased)."""

    def record_result(
        self,
        webhook_id: int,
        topic: str | None,
        summary: str | None,
        events: Sequence[NewEvent],
        error: str | None = None,
        *,
        replay: bool = False,
        force: bool = False,
    ) -> RecordStats: ...

    def defer_webhook(
        self, webhook_id: int, error: str, next_at: float, *, restart: bool = False
    ) -> None: ...

    def fail_webhook(self, webhook_id: int, error: str) -> None: ...

    # -- delivery -------------------------------------------------------------------------

    def claim_due(
        self, now: float, limit: int, lease: float, owner: str | None = None
    ) -> list[OutboxEvent]: ...

    def due_events(self, now: float, limit: int) -> list[OutboxEvent]: ...

    def next_due_at(self) -> float | None: ...

    def release_leases(self, owner: str, now: float | None = None) -> int:
        """Make the pending events ``owner`` had claimed due now; how many."""

    def release_webhooks(
        self, owner: str, now: float | None = None, *, lane: tuple[str, str] | None = None
    ) -> int:
        """Make the webhooks ``owner`` was processing (in one ``lane`` when given) due
        now; how many."""

    def record_attempt(
        self,
        event_id: int,
        outcome: Outcome,
        status: int | None,
        error: str | None,
        response: str | None,
        started_at: float,
        duration_ms: float,
        next_attempt_at: float | None = None,
    ) -> bool: ...

    def contact_known(self, key: str, *, shop: str = "") -> bool: ...

    def last_change(self, entity: str, *, shop: str = "", now: float | None = None) -> str | None:
        """The fingerprint of the values last sent for ``entity`` (``changes:``), None when
        none is remembered or it expired. ``record_result`` remembers it with the event."""

    def remember_contact(self, key: str, contact_id: int | None, *, shop: str = "") -> None: ...

    def forget_expired_changes(self, now: float | None = None) -> int:
        """Drop the remembered values (``changes:``) that expired; how many."""

    # -- operators ----------------------------------------------------------------------

    def retry(self, event_id: int) -> int: ...

    def retry_dead(self, *, shop: str | None = None) -> int: ...

    def get_webhook(self, webhook_id: int) -> WebhookDetail | None: ...

    def list_webhooks(
        self,
        state: str | None = None,
        source: str | None = None,
        limit: int = 50,
        *,
        shop: str | None = None,
    ) -> list[StoredWebhook]: ...

    def list_events(
        self, state: str | None = None, limit: int = 50, *, shop: str | None = None
    ) -> list[EventRow]: ...

    def iter_webhooks_since(
        self,
        since: float,
        *,
        source: str | None = None,
        shop: str | None = None,
        page: int = 200,
    ) -> Iterator[list[StoredWebhook]]: ...

    def count_webhooks_since(
        self, since: float, *, source: str | None = None, shop: str | None = None
    ) -> int: ...

    def counts(self, *, shop: str | None = None) -> dict[str, dict[str, int]]: ...

    def pending_depth(self) -> int: ...

    def oldest_pending(self) -> Oldest: ...
