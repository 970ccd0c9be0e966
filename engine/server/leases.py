"""Which servers on a data folder are alive, so a restart takes back what a dead one held.

Claiming an event to send leases it (``Store.claim_due`` pushes its next attempt a
minute ahead) so that a second dispatcher on the same folder cannot send it as well. A
server killed mid-send leaves its leases behind, and they would end by themselves only
a minute later. So each running server holds an exclusive lock on a file of its own in
``<data>/servers/``, named by its instance id, and claims events under that id; the
operating system drops the lock when the process dies, however it dies. A starting
server tries every other file's lock: one it gets belonged to a server that is gone,
whose leases are released at once (``Store.release_leases``) and whose file is removed.

Where ``fcntl`` does not exist (Windows), nothing is locked and leases simply run out.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms hookmap serves from
    fcntl = None  # type: ignore[assignment]

FOLDER = "servers"


def _try_lock(fd: int) -> bool:
    assert fcntl is not None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def survey(data_dir: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """The servers that locked a file in ``data_dir``: (id, pid) of those running, and
    the ids of those that stopped without finishing (their claims are taken back at the
    next start). Looks only: takes nothing back, removes nothing."""
    running: list[tuple[str, str]] = []
    stopped: list[str] = []
    if fcntl is None:
        return running, stopped
    for path in sorted((data_dir / FOLDER).glob("*.lock")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if _try_lock(fd):
                stopped.append(path.stem)
            else:
                pid = os.read(fd, 32).decode("ascii", "replace").strip()
                running.append((path.stem, pid or "?"))
        finally:
            os.close(fd)
    return running, stopped


class Instance:
    """This server, for as long as it runs: an id, and the lock that says it is alive."""

    def __init__(self, data_dir: Path) -> None:
        self.id = uuid.uuid4().hex
        self.folder = data_dir / FOLDER
        self.path = self.folder / f"{self.id}.lock"
        self._fd: int | None = None
        if fcntl is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        # locked under a temporary name, then renamed: no other server can ever see the
        # file unlocked and take this one for dead
        temporary = self.folder / f"{self.id}.new"
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        if not _try_lock(fd):  # a fresh random name: cannot be held
            os.close(fd)
            raise RuntimeError(f"{temporary} is locked")
        os.write(fd, f"{os.getpid()}\n".encode())  # for a person looking
        os.replace(temporary, self.path)
        self._fd = fd

    def gone(self) -> list[str]:
        """The ids of servers that locked a file here and no longer hold it."""
        return survey(self.folder.parent)[1]

    def forget(self, other: str) -> None:
        """Remove the file of a server that is gone (its leases released)."""
        with contextlib.suppress(FileNotFoundError):
            (self.folder / f"{other}.lock").unlink()

    def close(self) -> None:
        """This server stops: its file goes, then its lock."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None
