"""How the PostgreSQL store connects: the optional extra it needs, its pool and the settings
of the pool's sessions, and how a database is named in messages (never with a password).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.errors import StoreError, UsageError
from engine.server.store.pg_schema import migrate

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

EXTRA_MISSING = "PostgreSQL stores need the postgresql extra: pip install 'hookmap[postgresql]'"
#: connections each process keeps open at least, and at most: intake, processing and
#: delivery take one for each call, for a few milliseconds
POOL_MIN = 1
POOL_MAX = 10
#: seconds a call waits for a free connection before failing (the caller retries or
#: answers 5xx, and the platform delivers again)
POOL_TIMEOUT = 30.0
#: seconds to wait for the database when the store is opened
CONNECT_TIMEOUT = 10


def redacted(conninfo: str) -> str:
    """Where a database is, for messages: ``postgresql://user@host:port/db``, never a
    password (whether the URL or a ``key=value`` string held one)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(conninfo)
    except Exception:  # unparsable: say nothing of what it holds
        return "postgresql://(unreadable connection string)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{parts.get('host') or ''}{port}/{parts.get('dbname') or ''}"


def first_line(exc: BaseException) -> str:
    """An error's first line (libpq's messages run on; none holds the password)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _durable(conn: psycopg.Connection[Any]) -> None:
    """Each pooled connection commits durably, whatever the database's default: the
    server answers 2xx once ``add_webhook`` has committed, so that commit must be on disk.
    A stronger setting (remote_write, remote_apply) is kept."""
    row = conn.execute("SELECT current_setting('synchronous_commit')").fetchone()
    if row is not None and row[0] == "off":
        conn.execute("SET synchronous_commit = on")


def connect(
    conninfo: str, *, create: bool, pool_min: int = POOL_MIN, pool_max: int = POOL_MAX
) -> ConnectionPool[Any]:
    """Bring the schema up to date (``create=False``: refuse a database without it), then
    open the store's pool. Every failure is a ``StoreError`` naming the database."""
    try:
        import psycopg
        from psycopg_pool import ConnectionPool
    except ImportError as exc:
        raise UsageError(f"{EXTRA_MISSING} ({exc})") from None
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            migrate(conn, create=create)
        pool: ConnectionPool[Any] = ConnectionPool(
            conninfo,
            open=False,
            min_size=pool_min,
            max_size=pool_max,
            kwargs={"autocommit": True},
            configure=_durable,
            # a connection broken since its last use (the database restarted) is replaced
            # before a call gets it, instead of failing that call
            check=ConnectionPool.check_connection,
            name="hookmap",
            timeout=POOL_TIMEOUT,
        )
        try:
            pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except BaseException:
            pool.close()
            raise
    except (psycopg.Error, StoreError) as exc:
        raise StoreError(f"{redacted(conninfo)}: {first_line(exc)}") from None
    return pool
