"""The PostgreSQL store: one database shared by any number of servers on any number of
machines, with the semantics of the SQLite store (``engine.server.store.base``).

``hookmap serve --data postgresql://user@host/db`` (or ``HOOKMAP_DATABASE_URL``); the
extra ``pip install 'hookmap[postgresql]'`` brings psycopg 3 and its pool. This module
imports without them and says so when a store is opened.

What servers sharing the database share: every webhook and event, the (webhook, rule,
index) ledger, the contacts known per shop, the leases (``claim_due`` and
``claim_webhooks`` lock what they lease ``FOR UPDATE SKIP LOCKED``: two servers never get
the same rows), who is running (``engine.server.store.pg_servers``) and the send rate
per CDP account (``engine.server.store.pg_limiter``).

Durability: ``add_webhook`` commits with ``synchronous_commit`` at least ``on`` (a
database configured ``off`` is overridden for the store's sessions), so once it returns
the webhook is on the database's disk and the server may answer 2xx.

Threads: the store is called from worker threads (``asyncio.to_thread``); each call takes
a connection from a ``psycopg_pool.ConnectionPool`` for its transaction. A ``batch()``
keeps one connection for the thread that opened it, and every call of that thread inside
goes through it.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from engine.errors import StoreError, StoreUnavailable
from engine.events.encode import body_bytes
from engine.server.ratelimit import RateLimiter
from engine.server.store import base, pg_servers
from engine.server.store.base import Closing, Instance
from engine.server.store.pg_connect import POOL_MAX, POOL_MIN, connect, redacted
from engine.server.store.pg_limiter import SharedLimiter
from engine.server.store.pg_outbox import OutboxWrites, clean_text
from engine.server.store.pg_queries import (
    WEBHOOK_COLUMNS,
    WEBHOOKS_DUE_WHERE,
    Queries,
    rows,
)
from engine.server.store.queries import webhook_from_row
from engine.server.store.rows import AddResult, NewEvent, RecordStats, StoredWebhook

if TYPE_CHECKING:
    import psycopg

_NEW_EVENT_FIELDS = dataclasses.fields(NewEvent)

#: A webhook and its body in one statement (all or nothing, committed alone); nothing
#: when the delivery id is stored already.
_ADD = """
WITH added AS (
    INSERT INTO webhooks (source, shop, received_at, headers, delivery_id)
    VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (source, shop, delivery_id) WHERE delivery_id IS NOT NULL DO NOTHING
    RETURNING id
), body AS (
    INSERT INTO webhook_bodies (webhook_id, body) SELECT id, %s FROM added
)
SELECT id FROM added
"""

#: The due webhooks (of one lane, when ``{lane}`` is filled in), oldest first, locked
#: (others skip them) and leased, in one statement; the rows come back as they were
#: before the lease, with their bodies.
_CLAIM = """
WITH due AS (
    SELECT {columns} FROM webhooks w WHERE {due}{lane}
    ORDER BY w.id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE webhooks SET next_process_at = %(until)s, leased_by = %(owner)s
    WHERE id IN (SELECT id FROM due)
)
SELECT due.*, b.body AS raw_body FROM due JOIN webhook_bodies b ON b.webhook_id = due.id
ORDER BY due.id
"""
_CLAIM_WEBHOOKS = _CLAIM.format(columns=WEBHOOK_COLUMNS, due=WEBHOOKS_DUE_WHERE, lane="")
_CLAIM_LANE = _CLAIM.format(
    columns=WEBHOOK_COLUMNS,
    due=WEBHOOKS_DUE_WHERE,
    lane=" AND w.source = %(source)s AND w.shop = %(shop)s",
)
#: the lanes (source, shop) with webhooks due, the one whose oldest waited longest first
_LANES_DUE = (
    f"SELECT w.source, w.shop FROM webhooks w WHERE {WEBHOOKS_DUE_WHERE}"
    " GROUP BY w.source, w.shop ORDER BY min(w.id)"
)


def _first_line(exc: Exception) -> str:
    """An error's first line (psycopg adds the statement and context below it)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _wire_text(event: NewEvent) -> str | None:
    """The event body as stored: the bytes it is sent as."""
    if event.body is None:
        return None
    return (event.wire if event.wire is not None else body_bytes(event.body)).decode()


def _remember_change(
    db: psycopg.Connection[Any], shop: str, change: tuple[str, str, float] | None, now: float
) -> None:
    """The values last sent for an entity (``changes:``), with the event that sends them."""
    if change is None:
        return
    entity, fingerprint, expire = change
    db.execute(
        "INSERT INTO changes (shop, entity, fingerprint, expires_at) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (shop, entity) DO UPDATE SET fingerprint = excluded.fingerprint,"
        " expires_at = excluded.expires_at",
        (shop, entity, fingerprint, now + expire),
    )


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


class _Batch(threading.local):
    """The connection of the batch this thread has open (None: none is)."""

    conn: psycopg.Connection[Any] | None = None


class Store(Closing, OutboxWrites, Queries):
    """The webhook store and event outbox, in a PostgreSQL database (see the module)."""

    def __init__(
        self,
        conninfo: str,
        *,
        clock: Callable[[], float] = time.time,
        create: bool = True,
        pool_min: int = POOL_MIN,
        pool_max: int = POOL_MAX,
    ) -> None:
        """Bring the schema up to date and open the pool. ``create=False``: a database
        without hookmap's tables is refused (``StoreError``) rather than set up."""
        self.conninfo = conninfo
        self._pool = connect(conninfo, create=create, pool_min=pool_min, pool_max=pool_max)
        import psycopg  # there: connect() checked

        self.errors: tuple[type[Exception], ...] = (psycopg.Error,)
        #: a write that may succeed later: the server down or unreachable, the disk full,
        #: no connection free in time (the pool's timeout), a read-only standby
        self._unavailable: tuple[type[Exception], ...] = (
            psycopg.OperationalError,
            psycopg.errors.ReadOnlySqlTransaction,
        )
        self._clock = clock
        self._batch = _Batch()

    def close(self) -> None:
        self._pool.close()

    # -- transactions ------------------------------------------------------------------

    @contextmanager
    def _read(self, snapshot: bool = False) -> Iterator[psycopg.Connection[Any]]:
        """A connection to read from (the batch's, inside one); ``snapshot``: the queries
        inside see one snapshot (a read-only repeatable-read transaction)."""
        if self._batch.conn is not None:
            yield self._batch.conn
            return
        with self._pool.connection() as conn:
            if not snapshot:
                yield conn
                return
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                yield conn

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection[Any]]:
        """One write transaction, committed before the block's caller returns; inside
        ``batch()`` a savepoint of the batch's transaction (all or nothing still)."""
        if self._batch.conn is not None:
            with self._batch.conn.transaction():
                yield self._batch.conn
            return
        with self._pool.connection() as conn, conn.transaction():
            yield conn

    @contextmanager
    def _autocommit(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection whose every statement commits alone (one round trip each, no
        BEGIN or COMMIT); inside ``batch()`` a savepoint of the batch's transaction."""
        if self._batch.conn is not None:
            with self._batch.conn.transaction():
                yield self._batch.conn
            return
        with self._pool.connection() as conn:
            yield conn

    def _execute(self, sql: str, args: Any) -> int:
        """One write statement, committed alone; how many rows it changed."""
        with self._autocommit() as db:
            return db.execute(sql, args).rowcount

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every write inside, from this thread, in one transaction: one commit for many
        webhooks (replays). Each write stays all or nothing (a savepoint); a write that
        raises is undone alone, and what the batch did before it is kept, also when the
        batch ends with an exception. Reads inside, from this thread, see the batch's
        writes; other threads and processes see them at its end, and are not held up."""
        if self._batch.conn is not None:  # nested: part of the batch already open
            yield
            return
        caught: BaseException | None = None
        with self._pool.connection() as conn:
            self._batch.conn = conn
            try:
                with conn.transaction():
                    try:
                        yield
                    except BaseException as exc:
                        caught = exc  # what succeeded inside is kept: committed here
            finally:
                self._batch.conn = None
        if caught is not None:
            raise caught

    # -- intake and processing ---------------------------------------------------------

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
        """Store a webhook as received (committed durably before returning).

        When ``(source, shop, delivery_id)`` is already stored, nothing is stored and the
        existing id comes back with ``duplicate=True``; two servers receiving the same
        delivery at once store it once.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        when = self._clock() if received_at is None else received_at
        text = json.dumps(lowered, sort_keys=True)
        try:
            with self._autocommit() as db:
                added = (source, shop, when, text, delivery_id, bytes(body))
                row = db.execute(_ADD, added).fetchone()
                if row is not None:
                    return AddResult(int(row[0]), False)
                # the delivery was stored before (or by another server that committed first)
                found = db.execute(
                    "SELECT id FROM webhooks WHERE source = %s AND shop = %s AND delivery_id = %s",
                    (source, shop, delivery_id),
                ).fetchone()
        except self._unavailable as exc:  # not stored: the caller answers "send it later"
            raise StoreUnavailable(f"{redacted(self.conninfo)}: {_first_line(exc)}") from exc
        if found is None:
            raise StoreError(f"webhook {source}/{shop} {delivery_id!r}: neither stored nor found")
        return AddResult(int(found[0]), True)

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
    ) -> RecordStats:
        """Store what processing a webhook produced, in one transaction.

        Inserts the events not stored yet (an existing identity is left alone) and
        marks the webhook 'processed', or 'failed' when ``error`` is given.
        ``replay=True`` also refreshes existing events that never reached the CDP
        ('invalid', 'dead') with the new outcome; ``force=True`` (implies replay) also
        re-queues events already 'sent'. Pending events are never touched: one may be
        in flight right now.
        """
        now = self._clock()
        refresh = ("invalid", "dead", "sent") if force else ("invalid", "dead") if replay else ()
        inserted = requeued = 0
        with self._write() as db:
            found = db.execute(
                "SELECT shop FROM webhooks WHERE id = %s FOR UPDATE", (webhook_id,)
            ).fetchone()
            if found is None:
                raise StoreError(f"no webhook #{webhook_id}")
            for event in events:
                row = {
                    **{f.name: getattr(event, f.name) for f in _NEW_EVENT_FIELDS},
                    "webhook_id": webhook_id,
                    "body": _wire_text(event),
                    "state": "pending" if event.valid else "invalid",
                    "problems": json.dumps(event.problems, ensure_ascii=False),
                    "contact": _json_or_none(event.contact),
                    "due": now if event.valid else None,
                    "now": now,
                    "shop": found[0],
                    "refresh": list(refresh),
                }
                # only the identity conflict is ignored (a CHECK or NOT NULL still raises)
                cursor = db.execute(
                    "INSERT INTO events (webhook_id, rule, idx, event_type, api_version, body,"
                    " state, problems, contact, next_attempt_at, created_at, shop) VALUES"
                    " (%(webhook_id)s, %(rule)s, %(idx)s, %(event_type)s, %(api_version)s,"
                    " %(body)s, %(state)s, %(problems)s, %(contact)s, %(due)s, %(now)s,"
                    " %(shop)s) ON CONFLICT (webhook_id, rule, idx) DO NOTHING",
                    row,
                )
                if cursor.rowcount:
                    inserted += 1
                    _remember_change(db, found[0], event.change, now)
                elif refresh:
                    cursor = db.execute(
                        "UPDATE events SET event_type = %(event_type)s,"
                        " api_version = %(api_version)s, body = %(body)s, state = %(state)s,"
                        " problems = %(problems)s, contact = %(contact)s, attempts = 0,"
                        " next_attempt_at = %(due)s, sent_at = NULL"
                        " WHERE webhook_id = %(webhook_id)s AND rule = %(rule)s"
                        " AND idx = %(idx)s AND state = ANY(%(refresh)s)",
                        row,
                    )
                    requeued += cursor.rowcount
                    if cursor.rowcount:
                        _remember_change(db, found[0], event.change, now)
            state = "processed" if error is None else "failed"
            db.execute(
                "UPDATE webhooks SET state = %s, topic = %s, summary = %s, error = %s,"
                " processed_at = %s, next_process_at = NULL, leased_by = NULL WHERE id = %s",
                (state, clean_text(topic), clean_text(summary), clean_text(error), now, webhook_id),
            )
        return RecordStats(inserted, requeued)

    def defer_webhook(
        self, webhook_id: int, error: str, next_at: float, *, restart: bool = False
    ) -> None:
        """Processing could not finish (a lookup failed): try again at ``next_at``, counted
        in ``process_attempts`` (``restart``: from 1 again, as a replay starts afresh)."""
        attempts = "1" if restart else "process_attempts + 1"
        self._set_webhook(
            webhook_id,
            f"state = 'received', error = %s, process_attempts = {attempts},"
            " next_process_at = %s, leased_by = NULL",
            (clean_text(error), next_at),
        )

    def fail_webhook(self, webhook_id: int, error: str) -> None:
        """Processing failed for good (retries used up): 'failed', keeping ``error``."""
        self._set_webhook(
            webhook_id,
            "state = 'failed', error = %s, process_attempts = process_attempts + 1,"
            " next_process_at = NULL, leased_by = NULL, processed_at = %s",
            (clean_text(error), self._clock()),
        )

    def _set_webhook(self, webhook_id: int, assignments: str, args: tuple[Any, ...]) -> None:
        changed = self._execute(
            f"UPDATE webhooks SET {assignments} WHERE id = %s", (*args, webhook_id)
        )
        if changed == 0:
            raise StoreError(f"no webhook #{webhook_id}")

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
        shop, when given), oldest first, leasing them ``lease`` seconds.

        Webhooks another server is claiming at this moment are skipped, not waited for;
        recording the result (or putting it off) ends the lease.
        """
        args: dict[str, Any] = {"now": now, "limit": limit, "until": now + lease}
        args["owner"] = owner
        query = _CLAIM_WEBHOOKS
        if lane is not None:
            query = _CLAIM_LANE
            args["source"], args["shop"] = lane
        with self._autocommit() as db:
            found = rows(db, query, args)
        return [webhook_from_row(r) for r in found]

    def due_lanes(self, now: float) -> list[tuple[str, str]]:
        with self._read() as db:
            found = rows(db, _LANES_DUE, {"now": now})
        return [(r["source"], r["shop"]) for r in found]

    # -- the servers ---------------------------------------------------------------------

    def writable(self) -> bool:
        """Whether a write can be committed now: the database answers, is no read-only
        standby, and takes writes (readiness checks)."""
        try:
            with self._pool.connection(timeout=5.0) as conn:
                row = conn.execute(
                    "SELECT NOT pg_is_in_recovery()"
                    " AND current_setting('transaction_read_only') = 'off'"
                ).fetchone()
        except self.errors:
            return False
        return bool(row and row[0])

    def instance(self) -> Instance:
        """This process as a server on the database (an advisory lock: pg_servers)."""
        return pg_servers.Instance(self.conninfo, self._pool)

    def servers(self) -> tuple[list[tuple[str, str]], list[str]]:
        return pg_servers.survey(self._pool)

    def describe(self) -> str:
        return redacted(self.conninfo)

    def rate_limiter(self, rate: float, burst: float | None = None) -> RateLimiter:
        """Shared by every server on this database, per CDP account (pg_limiter)."""
        return SharedLimiter(self.conninfo, rate, burst)


if TYPE_CHECKING:  # mypy holds this class to the interface every store implements
    _IS_A_STORE: type[base.Store] = Store
