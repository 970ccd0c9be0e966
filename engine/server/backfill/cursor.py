"""Where a backfill got to, kept beside the store: one small JSON file per backfill.

A backfill is named by its rule set, shop, platform, topic and window; its file in the
cursor folder (``<data>/backfill/`` by default) holds the position its platform gives
(``{"since_id": 42}``, ``{"page": 3}``) after the last page whose webhooks were committed,
and how many orders the runs so far went through. The file is written after the page's
webhooks are committed, atomically (a new file renamed over the old one): a run killed
in between finds the older position and fetches that page again, whose orders are then
already stored, so nothing is stored or sent twice. The cursor only saves fetching again.

While a run goes on it holds a lock on ``<file>.lock``, so a second run of the same
backfill is refused rather than raced.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import UsageError
from engine.server.backfill.source import Position

try:
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms hookmap runs on
    fcntl = None  # type: ignore[assignment]

#: the cursor folder inside a data folder
FOLDER = "backfill"


@dataclasses.dataclass(frozen=True)
class Saved:
    """A backfill's position and what the runs so far did."""

    key: str
    position: Position
    #: orders the runs so far went through (stored, or found stored already)
    orders: int
    pages: int
    updated_at: float
    #: the last run read the listing to its end (a run again fetches only what is newer)
    finished: bool = False

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class CursorFile:
    """The cursor of one backfill, at ``path``."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key

    @classmethod
    def in_folder(cls, folder: Path, key: str, name: str) -> CursorFile:
        """The file for ``key`` in ``folder``: ``name`` (readable) and a digest of the key."""
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        readable = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "backfill"
        return cls(folder / f"{readable}-{digest}.json", key)

    def load(self) -> Saved | None:
        """The saved cursor, or None when there is none."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise UsageError(f"cannot read the cursor {self.path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
            saved = Saved(
                key=str(data["key"]),
                position=dict(data["position"]),
                orders=int(data["orders"]),
                pages=int(data["pages"]),
                updated_at=float(data["updated_at"]),
                finished=bool(data.get("finished", False)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise UsageError(
                f"{self.path}: not a backfill cursor ({exc}); --restart starts afresh "
                "(nothing stored is stored or sent again)"
            ) from exc
        if saved.key != self.key:
            raise UsageError(f"{self.path}: the cursor of another backfill ({saved.key})")
        return saved

    def save(self, position: Position, orders: int, pages: int, finished: bool) -> Saved:
        """Write the cursor atomically and durably; the saved cursor."""
        saved = Saved(self.key, dict(position), orders, pages, time.time(), finished)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".new")
        with open(temporary, "w", encoding="utf-8") as out:
            json.dump(saved.as_dict(), out, indent=2, sort_keys=True)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
        return saved

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the backfill's lock while the block runs; ``UsageError`` when another run
        of the same backfill holds it."""
        if fcntl is None:  # pragma: no cover
            yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
                raise UsageError(
                    f"this backfill is running already (pid {owner}; {lock})"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode("ascii"))
            yield
        finally:
            os.close(fd)
