"""The PostgreSQL store's delivery side: claiming due events, recording attempts, re-queuing
dead ones, and the contacts known per shop (mixed into
``engine.server.store.postgres.Store``, which owns the pool and its transactions).

The same semantics as SQLite's (``engine.server.store.sqlite_outbox``); what differs is
how servers sharing the database keep out of each other's way: ``claim_due`` locks the
rows it leases ``FOR UPDATE SKIP LOCKED``, so two servers claiming at once get disjoint
events, and neither waits for the other.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from engine.server.store.pg_queries import rows
from engine.server.store.queries import outbox_event
from engine.server.store.rows import OutboxEvent, Outcome, attempt_changes

if TYPE_CHECKING:
    import psycopg

#: The due events, oldest due first, locked for this transaction (others skip them), and
#: their lease, in one statement. The rows come back as they were before the lease.
_CLAIM = """
WITH due AS (
    SELECT id, webhook_id, event_type, api_version, body, attempts, contact, shop,
        next_attempt_at AS due_at
    FROM events WHERE state = 'pending' AND next_attempt_at <= %(now)s
    ORDER BY next_attempt_at, id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE events SET next_attempt_at = %(until)s, leased_by = %(owner)s
    WHERE id IN (SELECT id FROM due)
)
SELECT id, webhook_id, event_type, api_version, body, attempts, contact, shop
FROM due ORDER BY due_at, id
"""


def clean_text(value: str | None) -> str | None:
    """Text PostgreSQL can store: it refuses the NUL character, which outside text (a
    response body, a topic read from a webhook) may carry; it becomes U+FFFD."""
    return value if value is None or "\x00" not in value else value.replace("\x00", "\ufffd")


class OutboxWrites:
    """Writes of the outbox, each one statement committed alone (or a savepoint of a
    batch): ``_execute``, or the connection of ``_autocommit``."""

    _clock: Callable[[], float]
    _autocommit: Callable[[], AbstractContextManager[psycopg.Connection[Any]]]
    _execute: Callable[[str, Any], int]

    def remember_contact(self, key: str, contact_id: int | None, *, shop: str = "") -> None:
        """Note that ``shop``'s CDP account knows the contact ``key`` (its id when the answer
        gave one). Remembering a key again keeps the first time and fills in an id learnt
        later."""
        self._execute(
            "INSERT INTO contacts (shop, key, contact_id, created_at) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (shop, key) DO UPDATE SET"
            " contact_id = coalesce(excluded.contact_id, contacts.contact_id)",
            (shop, key, contact_id, self._clock()),
        )

    def claim_due(
        self, now: float, limit: int, lease: float, owner: str | None = None
    ) -> list[OutboxEvent]:
        """Take up to ``limit`` due events to send, pushing their next attempt ``lease`` ahead.

        Rows another server is claiming at this moment are skipped, not waited for; once
        leased, they are not due for anyone until the lease ends or ``owner`` is found
        gone (``release_leases``).
        """
        args = {"now": now, "limit": limit, "until": now + lease, "owner": owner}
        with self._autocommit() as db:
            found = rows(db, _CLAIM, args)
        return [outbox_event(r) for r in found]

    def release_leases(self, owner: str, now: float | None = None) -> int:
        """Make the pending events ``owner`` had claimed due now (it is gone, or stopped
        with sends cut short); how many."""
        now = self._clock() if now is None else now
        return self._execute(
            "UPDATE events SET next_attempt_at = least(next_attempt_at, %s), leased_by = NULL"
            " WHERE state = 'pending' AND leased_by = %s",
            (now, owner),
        )

    def release_webhooks(
        self, owner: str, now: float | None = None, *, lane: tuple[str, str] | None = None
    ) -> int:
        """Make the webhooks ``owner`` was processing (in one ``lane`` when given) due
        now; how many."""
        now = self._clock() if now is None else now
        where, args = ("", ()) if lane is None else (" AND source = %s AND shop = %s", lane)
        return self._execute(
            "UPDATE webhooks SET next_process_at = least(next_process_at, %s), leased_by = NULL"
            " WHERE state = 'received' AND leased_by = %s" + where,
            (now, owner, *args),
        )

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
        """Record one attempt and move the event on (``rows.attempt_changes``), in one
        statement; False when the event was no longer pending (the attempt is still kept)."""
        error = clean_text(error)
        text, changes = attempt_changes(
            outcome,
            status,
            error,
            clean_text(response),
            started_at + duration_ms / 1000,
            next_attempt_at,
        )
        sql = ", ".join(f"{column} = %s" for column in changes)
        args = tuple(changes.values())
        changed = self._execute(
            "WITH attempt AS (INSERT INTO attempts (event_id, started_at, duration_ms, status,"
            " error, response, outcome) VALUES (%s, %s, %s, %s, %s, %s, %s))"
            f" UPDATE events SET {sql}, attempts = attempts + 1, last_status = %s,"
            " leased_by = NULL WHERE id = %s AND state = 'pending'",
            (
                event_id,
                started_at,
                duration_ms,
                status,
                error,
                text,
                outcome,
                *args,
                status,
                event_id,
            ),
        )
        return changed == 1

    def retry(self, event_id: int) -> int:
        """Put one dead event back in the queue, due now, with a fresh retry schedule."""
        return self._requeue_dead("AND id = %s", (event_id,))

    def retry_dead(self, *, shop: str | None = None) -> int:
        """Put every dead event (of ``shop``) back in the queue; return how many."""
        if shop is None:
            return self._requeue_dead("", ())
        return self._requeue_dead("AND shop = %s", (shop,))

    def forget_expired_changes(self, now: float | None = None) -> int:
        """Drop the remembered values (``changes:``) that expired; how many."""
        now = self._clock() if now is None else now
        return self._execute("DELETE FROM changes WHERE expires_at <= %s", (now,))

    def _requeue_dead(self, extra: str, args: tuple[Any, ...]) -> int:
        return self._execute(
            "UPDATE events SET state = 'pending', attempts = 0, next_attempt_at = %s"
            f" WHERE state = 'dead' {extra}",
            (self._clock(), *args),
        )
