"""Both stores, for tests that hold them to the same semantics (a pytest plugin, registered
by ``tests/conftest.py``).

- ``backend`` (function, parametrised ``sqlite`` / ``postgresql``): where a store lives,
  as a `Backend`: a data folder in ``tmp_path``, or a fresh PostgreSQL database
  (``postgres_database``, which skips with its reason when no server can be had).

`Backend.query` reads through a connection of its own, so it sees what another process
would: only what is committed.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.server.store.base import Store
from engine.server.store.postgres import Store as PostgresStore
from engine.server.store.sqlite import DB_NAME
from engine.server.store.sqlite import Store as SqliteStore

BACKENDS = ("sqlite", "postgresql")


@dataclasses.dataclass(frozen=True)
class Backend:
    """One store's location: ``where`` is what ``--data`` takes (a folder or a URL)."""

    name: str
    where: str

    def open(self, clock: Callable[[], float] = time.time) -> Store:
        if self.name == "sqlite":
            return SqliteStore(Path(self.where) / DB_NAME, clock=clock)
        return PostgresStore(self.where, clock=clock)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` (``?`` placeholders) as another connection sees them."""
        if self.name == "sqlite":
            with sqlite3.connect(Path(self.where) / DB_NAME) as db:
                found = [tuple(r) for r in db.execute(sql, args).fetchall()]
            db.close()
            return found
        import psycopg

        with psycopg.connect(self.where) as conn:
            return [tuple(r) for r in conn.execute(sql.replace("?", "%s"), args).fetchall()]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A place for a store: a data folder, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "data"))
    return Backend("postgresql", request.getfixturevalue("postgres_database"))
