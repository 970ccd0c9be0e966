"""Which servers on a PostgreSQL store are alive, so that what a dead one held is taken back.

The same job as SQLite's lock files (``engine.server.leases``), with what PostgreSQL
offers: each running server holds a session-level advisory lock, on a connection of its
own kept for nothing else, and has a row in ``servers`` (id, lock key, pid, host, start
time). The lock lives exactly as long as that connection: when the process ends, however
it ends (SIGKILL, a crash), its connection closes and the database drops the lock. An
advisory lock that can be taken therefore belongs to a server that is gone; the others
release its leases (``Store.release_leases``) and forget its row.

The lock is taken before the row is written, so no server can ever see a row whose lock
is free while its server lives. A machine that vanishes without closing its connections
(a power cut, a network partition) is found gone once the database notices the connection
is dead: the connection asks for TCP keepalives (``KEEPALIVES``) for that.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from typing import TYPE_CHECKING, Any

from engine.server.store.pg_schema import LOCK_SPACE

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

#: Server-side TCP keepalives of a server's lock connection (seconds; sessions may set
#: them): a dead peer's lock is dropped after about idle + interval × count.
KEEPALIVES = {"tcp_keepalives_idle": 10, "tcp_keepalives_interval": 5, "tcp_keepalives_count": 3}


def survey(
    pool: ConnectionPool[Any], me: str | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """The servers in the ``servers`` table (but ``me``): (id, "pid@host") of those whose
    lock is held, and the ids of those whose lock is free (they stopped without
    finishing). Looks only: a lock taken to look is dropped when the look ends."""
    running: list[tuple[str, str]] = []
    stopped: list[str] = []
    with pool.connection() as conn, conn.transaction():
        found = conn.execute(
            # the transaction-level lock, taken only to see if it can be, ends with it
            "SELECT id, pid, host, pg_try_advisory_xact_lock(%s, lock_key) FROM servers"
            " WHERE id IS DISTINCT FROM %s ORDER BY started_at, id",
            (LOCK_SPACE, me),
        ).fetchall()
    for server_id, pid, host, free in found:
        if free:
            stopped.append(server_id)
        else:
            running.append((server_id, f"{pid}@{host}"))
    return running, stopped


class Instance:
    """This server, for as long as it runs: an id, and the lock that says it is alive."""

    def __init__(self, conninfo: str, pool: ConnectionPool[Any]) -> None:
        import psycopg  # psycopg is optional: the store that makes this checked for it

        self.id = uuid.uuid4().hex
        self._pool = pool
        self._conn: psycopg.Connection[Any] | None = psycopg.connect(conninfo, autocommit=True)
        try:
            conn = self._conn
            for name, value in KEEPALIVES.items():
                conn.execute("SELECT set_config(%s, %s, false)", (name, str(value)))
            if conn.info.server_version >= 140000:
                # the connection idles on purpose: a timeout closing it would make this
                # server look gone while it runs
                conn.execute("SELECT set_config('idle_session_timeout', '0', false)")
            row = conn.execute("SELECT nextval('server_keys')").fetchone()
            assert row is not None
            self.key = int(row[0])
            conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_SPACE, self.key))
            conn.execute(
                "INSERT INTO servers (id, lock_key, pid, host, started_at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (self.id, self.key, os.getpid(), socket.gethostname(), time.time()),
            )
        except BaseException:
            self._conn.close()
            raise

    def gone(self) -> list[str]:
        """The ids of other servers whose lock nobody holds any more."""
        return survey(self._pool, self.id)[1]

    def forget(self, other: str) -> None:
        """Remove the row of a server that is gone (its leases released)."""
        with self._pool.connection() as conn:
            conn.execute("DELETE FROM servers WHERE id = %s", (other,))

    def close(self) -> None:
        """This server stops: its row goes, then its lock (with its connection)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        import psycopg

        try:
            conn.execute("DELETE FROM servers WHERE id = %s", (self.id,))
        except psycopg.Error:
            pass  # the connection is lost, and the lock with it: the others forget the row
        finally:
            conn.close()
