"""Where the store is: a data folder (one SQLite file inside, the default), or a PostgreSQL
database shared by several servers (``postgresql://...``).

``hookmap serve --data DIR`` and every operator command (``status``, ``webhooks``,
``replay`` ...) take the same value; ``HOOKMAP_DATABASE_URL`` names a database when
``--data`` is not given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from engine.errors import StoreError, UsageError
from engine.server.store.base import Store
from engine.server.store.postgres import Store as PostgresStore
from engine.server.store.sqlite import DB_NAME
from engine.server.store.sqlite import Store as SqliteStore

DATABASE_URL_ENV = "HOOKMAP_DATABASE_URL"
_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(where: str | os.PathLike[str]) -> bool:
    return str(where).startswith(_SCHEMES)


def resolve(where: str | os.PathLike[str] | None, env: Mapping[str, str] | None = None) -> str:
    """The store a command uses: ``where`` if given, else ``HOOKMAP_DATABASE_URL``, else
    the folder ``hookmap-data``."""
    env = os.environ if env is None else env
    if where:
        return str(where)
    return env.get(DATABASE_URL_ENV) or "hookmap-data"


def open_store(where: str | os.PathLike[str], *, must_exist: bool = False) -> Store:
    """The store at ``where`` (a data folder or a PostgreSQL URL), its schema brought up to
    date. ``must_exist``: a data folder with no store yet is a usage error (operator
    commands look at a server's data; they do not start an empty one)."""
    if is_database_url(where):
        try:
            return PostgresStore(str(where), create=not must_exist)
        except StoreError as exc:
            raise UsageError(str(exc)) from exc
    path = Path(where) / DB_NAME
    if must_exist and not path.is_file():
        raise UsageError(
            f"no hookmap data in {where}/ (start 'hookmap serve --data {where}' first, or "
            "pass --data)"
        )
    try:
        return SqliteStore(path)
    except StoreError as exc:
        raise UsageError(str(exc)) from exc
