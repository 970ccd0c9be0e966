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
from typing import TYPE_CHECKING, Any

from engine.errors import StoreError, StoreUnavailable
from engine.events.encode import body_bytes
from engine.server import leases
from engine.server.ratelimit import LocalLimiter, RateLimiter
from engine.server.store import base
from engine.server.store.base import Closing, Instance
from engine.server.store.migrations import migrate
from engine.server.store.queries import (
    LANE_DUE,
    LANES_DUE,
    WEBHOOKS_DUE,
    Queries,
    webhook_from_row,
)
from engine.server.store.rows import (
    AddResult,
    NewEvent,
    RecordStats,
    StoredWebhook,
)
from engine.server.store.sqlite_outbox import OutboxWrites

#: the store's file in a data folder (``hookmap serve --data DIR``)
DB_NAME = "hookmap.sqlite3"
#: free space below which the store does not count as writable (readiness): room for
#: one more webhook of the default largest size (--max-body)
MIN_FREE_BYTES = 1024 * 1024

_NEW_EVENT_FIELDS = dataclasses.fields(NewEvent)


def _wire_text(event: NewEvent) -> str | None:
    """The event body as stored: the bytes it is sent as."""
    if event.body is None:
        return None
    return (event.wire if event.wire is not None else body_bytes(event.body)).decode()


def _remember_change(
    db: sqlite3.Connection, shop: str, change: tuple[str, str, float] | None, now: float
) -> None:
    """The values last sent for an entity (``changes:``), with the event that sends them."""
    if change is None:
        return
    entity, fingerprint, expire = change
    db.execute(
        "INSERT INTO changes (shop, entity, fingerprint, expires_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (shop, entity) DO UPDATE SET fingerprint = excluded.fingerprint,"
        " expires_at = excluded.expires_at",
        (shop, entity, fingerprint, now + expire),
    )


def _unusable(path: Path, exc: sqlite3.Error) -> str:
    """Why the file at ``path`` cannot be the store, and what to do, in one line."""
    text = str(exc)
    if "not a database" in text:
        why = "it is not a SQLite database (another file is in the way)"
    elif "malformed" in text or "corrupt" in text:
        why = "it is damaged (truncated or corrupt): restore a backup, or move it aside"
    elif "readonly" in text or "read-only" in text:
        why = "it is read-only, and the server writes to it"
    elif "unable to open" in text:
        why = "it cannot be opened (check the folder's permissions, or a folder in the way)"
    else:
        why = text
    return f"{path}: cannot use this file as hookmap's store: {why} (SQLite: {text})"


def _json_or_none(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


class Store(Closing, OutboxWrites, Queries):
    """The webhook store and event outbox, over one SQLite file.

    Threads: ONE connection opened with ``check_same_thread=False`` and guarded by a
    lock, rather than a connection per thread (threading.local). The server calls the
    store through ``asyncio.to_thread``, whose pool threads come and go: per-thread
    connections would multiply file handles and could not be closed by ``close()``
    (a connection belongs to the thread that opened it). SQLite lets one writer in at
    a time anyway, and every call here is a short indexed query, so the lock costs
    little. Other processes (the CLI) still coordinate through SQLite's own locking.
    """

    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(
        self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        # re-entrant: a batch() holds it while the writes inside take it again
        self._lock = threading.RLock()
        self._batch_depth = 0
        try:
            # isolation_level=None: no implicit transactions, every write says BEGIN itself
            self._conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(_unusable(self.path, exc)) from None
        self._conn.row_factory = sqlite3.Row
        try:
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StoreError(f"{self.path}: cannot use WAL journal mode (got {mode})")
            # per connection, not stored in the file: set on every open
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            migrate(self._conn)
        except sqlite3.Error as exc:
            self._conn.close()
            raise StoreError(_unusable(self.path, exc)) from None
        except BaseException:
            self._conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()

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
        *,
        shop: str = "",
    ) -> AddResult:
        """Store a webhook as received (committed and synced before returning).

        When ``(source, shop, delivery_id)`` is already stored, nothing is stored and the
        existing id comes back with ``duplicate=True``. ``StoreUnavailable`` when the
        write cannot be made now (a full disk): nothing is stored.
        """
        lowered = {k.lower(): v for k, v in headers.items()}
        when = self._clock() if received_at is None else received_at
        try:
            with self._write() as db:
                if delivery_id is not None:
                    row = db.execute(
                        "SELECT id FROM webhooks WHERE source = ? AND shop = ? AND delivery_id = ?",
                        (source, shop, delivery_id),
                    ).fetchone()
                    if row is not None:
                        return AddResult(row[0], True)
                # the body goes to webhook_bodies; the old column gets an empty blob
                cursor = db.execute(
                    "INSERT INTO webhooks (source, shop, received_at, headers, body, delivery_id)"
                    " VALUES (?, ?, ?, ?, x'', ?)",
                    (source, shop, when, json.dumps(lowered, sort_keys=True), delivery_id),
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
            found = db.execute("SELECT shop FROM webhooks WHERE id = ?", (webhook_id,)).fetchone()
            if found is None:
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
                    "shop": found[0],
                }
                # only the identity conflict is ignored (INSERT OR IGNORE would also hide
                # a CHECK or NOT NULL violation)
                cursor = db.execute(
                    "INSERT INTO events (webhook_id, rule, idx, event_type, api_version, body,"
                    " state, problems, contact, next_attempt_at, created_at, shop) VALUES"
                    " (:webhook_id, :rule, :idx, :event_type, :api_version, :body, :state,"
                    " :problems, :contact, :due, :now, :shop)"
                    " ON CONFLICT (webhook_id, rule, idx) DO NOTHING",
                    row,
                )
                if cursor.rowcount:
                    inserted += 1
                    _remember_change(db, row["shop"], event.change, now)
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
                    if cursor.rowcount:
                        _remember_change(db, row["shop"], event.change, now)
            state = "processed" if error is None else "failed"
            db.execute(
                "UPDATE webhooks SET state = ?, topic = ?, summary = ?, error = ?,"
                " processed_at = ?, next_process_at = NULL, leased_by = NULL WHERE id = ?",
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
            f"state = 'received', error = ?, process_attempts = {attempts}, next_process_at = ?,"
            " leased_by = NULL",
            (error, next_at),
        )

    def fail_webhook(self, webhook_id: int, error: str) -> None:
        """Processing failed for good (retries used up): 'failed', keeping ``error``.

        An operator replays it (``hookmap replay``) once the cause is fixed.
        """
        self._set_webhook(
            webhook_id,
            "state = 'failed', error = ?, process_attempts = process_attempts + 1,"
            " next_process_at = NULL, leased_by = NULL, processed_at = ?",
            (error, self._clock()),
        )

    def _set_webhook(self, webhook_id: int, assignments: str, args: tuple[Any, ...]) -> None:
        with self._write() as db:
            cursor = db.execute(
                f"UPDATE webhooks SET {assignments} WHERE id = ?", (*args, webhook_id)
            )
            if cursor.rowcount == 0:
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

        A lease keeps a second server from processing the same webhook meanwhile; recording
        its result (or putting it off) ends the lease, and a server found gone has its
        leases released (``release_leases``).
        """
        with self._write() as db:
            if lane is None:
                rows = db.execute(f"{WEBHOOKS_DUE} LIMIT ?", (now, limit)).fetchall()
            else:
                rows = db.execute(f"{LANE_DUE} LIMIT ?", (now, *lane, limit)).fetchall()
            db.executemany(
                "UPDATE webhooks SET next_process_at = ?, leased_by = ? WHERE id = ?",
                [(now + lease, owner, r["id"]) for r in rows],
            )
        return [webhook_from_row(r) for r in rows]

    def due_lanes(self, now: float) -> list[tuple[str, str]]:
        with self._read() as db:
            return [(r[0], r[1]) for r in db.execute(LANES_DUE, (now,))]

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

    def instance(self) -> Instance:
        """This process as a server on the data folder (a lock file: engine.server.leases)."""
        return leases.Instance(self.path.parent)

    def servers(self) -> tuple[list[tuple[str, str]], list[str]]:
        return leases.survey(self.path.parent)

    def describe(self) -> str:
        return str(self.path)

    def rate_limiter(self, rate: float, burst: float | None = None) -> RateLimiter:
        """In this process: one server per data folder sends (a second one shares the
        file but not the limiter: share a PostgreSQL store to share the limit)."""
        return LocalLimiter(rate, burst)


if TYPE_CHECKING:  # mypy holds this class to the interface every store implements
    _IS_A_STORE: type[base.Store] = Store
