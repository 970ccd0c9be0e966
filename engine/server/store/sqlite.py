"""Queue stage: one SQLite file holding every accepted webhook, its events and each attempt.

The server stores a webhook (``add_webhook``) before answering 2xx, processes it with
the rules (``record_result``), and the dispatcher sends the events it became
(``claim_due`` → HTTP → ``record_attempt``). The states::

    webhook  received ──record_result──▶ processed | failed (processing raised)
               │ ▲ └──fail_webhook: lookups still failing when the schedule is used up──▶ failed
               └─┘ defer_webhook: a lookup failed; process_attempts + 1, next_process_at later

    event    pending ──2xx──▶ sent
               │ ▲ └──4xx, or retries used up──▶ dead ──retry()──▶ pending
               └─┘ 408 / 429 / 5xx / network error: attempts + 1, next_attempt_at later
             invalid   the checks dropped it; kept with its problems, never sent

An event's identity is (webhook_id, rule, idx): processing the same webhook again
cannot create a second copy of an event.

The contacts the dispatcher created at the CDP are remembered by key (``contact_known``,
``remember_contact``), so each new customer is created once, before its first event.

Durability: WAL with ``synchronous=FULL`` syncs the log on every commit, so once a
write method returns its change survives kill -9 and power loss.

Read-only listings live in ``engine.server.store.queries``, the schema and its upgrades
in ``engine.server.store.migrations``, the row types in ``engine.server.store.rows``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from engine.errors import StoreError, StoreUnavailable
from engine.events.encode import body_bytes
from engine.server.store.migrations import migrate
from engine.server.store.queries import DUE_SQL, Queries, outbox_event
from engine.server.store.rows import (
    OUTCOMES,
    RESPONSE_LIMIT,
    AddResult,
    NewEvent,
    OutboxEvent,
    Outcome,
    RecordStats,
)

#: the store's file in a data folder (``hookmap serve --data DIR``)
DB_NAME = "hookmap.sqlite3"
#: free space below which the store does not count as writable (readiness)
MIN_FREE_BYTES = 4 * 1024 * 1024

_NEW_EVENT_FIELDS = dataclasses.fields(NewEvent)


def _wire_text(event: NewEvent) -> str | None:
    """The event body as stored: the bytes it is sent as."""
    if event.body is None:
        return None
    return (event.wire if event.wire is not None else body_bytes(event.body)).decode()


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


class Store(Queries):
    """The webhook store and event outbox, over one SQLite file.

    Threads: ONE connection opened with ``check_same_thread=False`` and guarded by a
    lock, rather than a connection per thread (threading.local). The server calls the
    store through ``asyncio.to_thread``, whose pool threads come and go: per-thread
    connections would multiply file handles and could not be closed by ``close()``
    (a connection belongs to the thread that opened it). SQLite lets one writer in at
    a time anyway, and every call here is a short indexed query, so the lock costs
    little. Other processes (the CLI) still coordinate through SQLite's own locking.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        # re-entrant: a batch() holds it while the writes inside take it again
        self._lock = threading.RLock()
        self._batch_depth = 0
        # isolation_level=None: no implicit transactions, every write says BEGIN itself
        self._conn = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        try:
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot use WAL journal mode (got {mode})")
            # per connection, not stored in the file: set on every open
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            migrate(self._conn)
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (and synced) before the block's caller returns.

        IMMEDIATE takes the write lock up front, so a read-then-write inside cannot be
        raced by another process. Inside ``batch()`` the block is a savepoint of the
        batch's transaction instead: all or nothing still, committed with the batch.
        """
        with self._lock:
            if self._batch_depth:
                self._conn.execute("SAVEPOINT write")
                try:
                    yield self._conn
                    self._conn.execute("RELEASE write")
                except BaseException:
                    self._conn.execute("ROLLBACK TO write")
                    self._conn.execute("RELEASE write")
                    raise
                return
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Every write inside, from this thread, in one transaction: one commit and one
        sync for many webhooks (replays). Each write stays all or nothing; a write that
        raises is undone alone, and what the batch did before it is kept. Nothing inside
        may read through another connection expecting to see the batch's writes before
        it ends; other threads wait for the batch (the connection's lock is held)."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._batch_depth += 1
            try:
                yield
            except BaseException:
                self._batch_depth -= 1
                self._conn.execute("COMMIT")  # what succeeded inside is kept
                raise
            self._batch_depth -= 1
            self._conn.execute("COMMIT")

    def add_webhook(
        self,
        source: str,
        headers: Mapping[str, str],
        body: bytes,
        delivery_id: str | None,
        received_at: float | None = None,
    ) -> AddResult:
        """Store a webhook as received (committed and synced before returning).

        When ``(source, delivery_id)`` is already stored, nothing is stored and the
        existing id comes back with ``duplicate=True``. ``StoreUnavailable`` when the
        write cannot be made now (a full disk): nothing is stored.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        when = self._clock() if received_at is None else received_at
        try:
            with self._write() as db:
                if delivery_id is not None:
                    row = db.execute(
                        "SELECT id FROM webhooks WHERE source = ? AND delivery_id = ?",
                        (source, delivery_id),
                    ).fetchone()
                    if row is not None:
                        return AddResult(row[0], True)
                # the body goes to webhook_bodies; the old column gets an empty blob
                cursor = db.execute(
                    "INSERT INTO webhooks (source, received_at, headers, body, delivery_id)"
                    " VALUES (?, ?, ?, x'', ?)",
                    (source, when, json.dumps(lowered, sort_keys=True), delivery_id),
                )
                assert cursor.lastrowid is not None
                db.execute(
                    "INSERT INTO webhook_bodies (webhook_id, body) VALUES (?, ?)",
                    (cursor.lastrowid, bytes(body)),
                )
                return AddResult(cursor.lastrowid, False)
        except sqlite3.OperationalError as exc:  # disk full, locked, read-only: not stored
            raise StoreUnavailable(f"{self.path.name}: {exc}") from exc

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
        ('invalid', 'dead') with the new outcome: fixed rules can turn them into
        pending ones. ``force=True`` (implies replay) also re-queues events already
        'sent': they will be sent again, which only an operator may decide.
        Pending events are never touched: one may be in flight right now.
        """
        now = self._clock()
        refresh = ("invalid", "dead", "sent") if force else ("invalid", "dead") if replay else ()
        states = ", ".join(f"'{s}'" for s in refresh)  # our own constants, not input
        inserted = requeued = 0
        with self._write() as db:
            if db.execute("SELECT 1 FROM webhooks WHERE id = ?", (webhook_id,)).fetchone() is None:
                raise StoreError(f"no webhook #{webhook_id}")
            for event in events:
                row = {
                    # the fields as they are: dataclasses.asdict would deep-copy the body
                    **{f.name: getattr(event, f.name) for f in _NEW_EVENT_FIELDS},
                    "webhook_id": webhook_id,
                    "body": _wire_text(event),
                    "state": "pending" if event.valid else "invalid",
                    "problems": json.dumps(event.problems, ensure_ascii=False),
                    "contact": _json_or_none(event.contact),
                    "due": now if event.valid else None,
                    "now": now,
                }
                # only the identity conflict is ignored (INSERT OR IGNORE would also hide
                # a CHECK or NOT NULL violation)
                cursor = db.execute(
                    "INSERT INTO events (webhook_id, rule, idx, event_type, api_version, body,"
                    " state, problems, contact, next_attempt_at, created_at) VALUES (:webhook_id,"
                    " :rule, :idx, :event_type, :api_version, :body, :state, :problems, :contact,"
                    " :due, :now)"
                    " ON CONFLICT (webhook_id, rule, idx) DO NOTHING",
                    row,
                )
                if cursor.rowcount:
                    inserted += 1
                elif refresh:
                    cursor = db.execute(
                        "UPDATE events SET event_type = :event_type, api_version = :api_version,"
                        " body = :body, state = :state, problems = :problems,"
                        " contact = :contact, attempts = 0,"
                        " next_attempt_at = :due, sent_at = NULL WHERE webhook_id = :webhook_id"
                        f" AND rule = :rule AND idx = :idx AND state IN ({states})",
                        row,
                    )
                    requeued += cursor.rowcount
            state = "processed" if error is None else "failed"
            db.execute(
                "UPDATE webhooks SET state = ?, topic = ?, summary = ?, error = ?,"
                " processed_at = ?, next_process_at = NULL WHERE id = ?",
                (state, topic, summary, error, now, webhook_id),
            )
        return RecordStats(inserted, requeued)

    def defer_webhook(
        self, webhook_id: int, error: str, next_at: float, *, restart: bool = False
    ) -> None:
        """Processing could not finish (a lookup failed): try again at ``next_at``.

        The webhook is (or, replayed, goes back to) 'received' with ``error`` saying why
        and ``process_attempts`` counted (``restart``: counted from 1 again, as a replay
        starts a fresh schedule); ``webhooks_to_process`` skips it until it is due.
        """
        attempts = "1" if restart else "process_attempts + 1"
        self._set_webhook(
            webhook_id,
            f"state = 'received', error = ?, process_attempts = {attempts}, next_process_at = ?",
            (error, next_at),
        )

    def fail_webhook(self, webhook_id: int, error: str) -> None:
        """Processing failed for good (retries used up): 'failed', keeping ``error``.

        An operator replays it (``hookmap replay``) once the cause is fixed.
        """
        self._set_webhook(
            webhook_id,
            "state = 'failed', error = ?, process_attempts = process_attempts + 1,"
            " next_process_at = NULL, processed_at = ?",
            (error, self._clock()),
        )

    def _set_webhook(self, webhook_id: int, assignments: str, args: tuple[Any, ...]) -> None:
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE webhooks SET {assignments} WHERE id = ?", (*args, webhook_id)
            )
            if cursor.rowcount == 0:
                raise StoreError(f"no webhook #{webhook_id}")

    def remember_contact(self, key: str, contact_id: int | None) -> None:
        """Note that the CDP knows the contact ``key`` (its id when the answer gave one).

        Remembering a key again keeps the first time and fills in an id learnt later.
        """
        with self._write() as db:
            db.execute(
                "INSERT INTO contacts (key, contact_id, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET"
                " contact_id = COALESCE(excluded.contact_id, contact_id)",
                (key, contact_id, self._clock()),
            )

    def claim_due(
        self, now: float, limit: int, lease: float, owner: str | None = None
    ) -> list[OutboxEvent]:
        """Take up to ``limit`` due events to send, pushing their next attempt ``lease`` ahead.

        The lease keeps a second dispatcher (another process, a CLI drain) from sending
        the same event while this one is in flight; if this process dies mid-send, the
        event falls due again when the lease ends, or at once when the next server
        start finds ``owner`` (its instance id, engine.server.leases) gone.
        """
        with self._write() as db:
            rows = db.execute(DUE_SQL, (now, limit)).fetchall()
            db.executemany(
                "UPDATE events SET next_attempt_at = ?, leased_by = ? WHERE id = ?",
                [(now + lease, owner, r["id"]) for r in rows],
            )
        return [outbox_event(r) for r in rows]

    def release_leases(self, owner: str, now: float | None = None) -> int:
        """Make the pending events ``owner`` had claimed due now (it is gone, or stopped
        with sends cut short); how many."""
        now = self._clock() if now is None else now
        with self._write() as db:
            cursor = db.execute(
                "UPDATE events SET next_attempt_at = min(next_attempt_at, ?), leased_by = NULL"
                " WHERE state = 'pending' AND leased_by = ?",
                (now, owner),
            )
        return cursor.rowcount

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
    ) -> bool:
        """Record one attempt and move the event on, in one transaction.

        'sent' sets ``sent_at``; 'retry' counts the attempt and sets ``next_attempt_at``
        (required); 'dead' stops the event. ``error`` is a connection error's text; for
        an HTTP error the status and response text become the event's ``last_error``.
        Returns False when the event was no longer pending (the attempt is still kept).
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        if outcome == "retry" and next_attempt_at is None:
            raise ValueError("a retry needs next_attempt_at")
        text = None if response is None else response[:RESPONSE_LIMIT]
        last_error = error
        if last_error is None and outcome != "sent":
            last_error = f"HTTP {status}: {text}" if text else f"HTTP {status}"
        with self._write() as db:
            db.execute(
                "INSERT INTO attempts (event_id, started_at, duration_ms, status, error,"
                " response, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event_id, started_at, duration_ms, status, error, text, outcome),
            )
            if outcome == "sent":
                sql = "state = 'sent', sent_at = ?, last_error = NULL"
                args: tuple[Any, ...] = (started_at + duration_ms / 1000,)
            elif outcome == "retry":
                sql, args = "next_attempt_at = ?, last_error = ?", (next_attempt_at, last_error)
            else:
                sql, args = "state = 'dead', next_attempt_at = NULL, last_error = ?", (last_error,)
            cursor = db.execute(
                f"UPDATE events SET {sql}, attempts = attempts + 1, last_status = ?,"
                " leased_by = NULL WHERE id = ? AND state = 'pending'",
                (*args, status, event_id),
            )
        return cursor.rowcount == 1

    def writable(self, min_free: int = MIN_FREE_BYTES) -> bool:
        """Whether a write succeeds now and the disk has ``min_free`` bytes for more
        (readiness): one real write, committed and synced (the header page rewritten)."""
        try:
            with self._write() as db:
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                db.execute(f"PRAGMA user_version = {version}")
            disk = os.statvfs(self.path.parent)
        except (sqlite3.Error, OSError):
            return False
        return disk.f_bavail * disk.f_frsize >= min_free

    def retry(self, event_id: int) -> int:
        """Put one dead event back in the queue, due now, with a fresh retry schedule."""
        return self._requeue_dead("AND id = ?", (event_id,))

    def retry_dead(self) -> int:
        """Put every dead event back in the queue; return how many."""
        return self._requeue_dead("", ())

    def _requeue_dead(self, extra: str, args: tuple[Any, ...]) -> int:
        with self._write() as db:
            cursor = db.execute(
                "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = ?"
                f" WHERE state = 'dead' {extra}",
                (self._clock(), *args),
            )
        return cursor.rowcount
