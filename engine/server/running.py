"""What each running server serves: the rule files it loaded, and their texts as loaded.

``hookmap diff --against-running`` compares new rules with the rules a server runs now.
Paths alone would not say that: a rule file edited since the server loaded it (the very
change about to be diffed) reads differently on disk than in the server. So each server
writes, beside its lock file in ``<data>/servers/`` (``engine.server.leases``), a
``<id>.rules.json`` holding the paths it was given and, for every rule set, its files and
their texts, and writes it again after each reload. The file goes when the server stops,
or when the next server to start finds its lock gone.

Nothing secret is in it: rule files name environment variables, never their values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import UsageError
from engine.rules.discovery import Group
from engine.server import leases
from engine.server.store.location import is_database_url

SUFFIX = ".rules.json"
#: the version of the file's layout, for a reader of a file a newer hookmap wrote
FORMAT = 1


@dataclasses.dataclass(frozen=True)
class RunningRules:
    """The rules one running server loaded."""

    server: str
    pid: str
    loaded_at: float
    #: the --rules paths it was started with
    paths: tuple[str, ...]
    #: every rule set's files (absolute paths) and their texts as the server read them
    groups: tuple[Group, ...]


def _folder(data: Path | str) -> Path | None:
    """Where a server on the store ``data`` keeps its record: beside its lock, in a data
    folder's ``servers/``; None for a database shared by servers on other machines."""
    return None if is_database_url(data) else Path(data) / leases.FOLDER


def _path(folder: Path, server: str) -> Path:
    return folder / f"{server}{SUFFIX}"


def record(data: Path | str, server: str, paths: Sequence[str], groups: Sequence[Group]) -> None:
    """Write what server ``server`` on the store ``data`` loaded (atomically: a reader
    never sees half a file); nothing on a database."""
    folder = _folder(data)
    if folder is None:
        return
    doc = {
        "format": FORMAT,
        "pid": os.getpid(),
        "loaded_at": time.time(),
        "paths": [str(Path(p).resolve()) for p in paths],
        "rulesets": [
            {
                "folder": None if g.folder is None else str(g.folder.resolve()),
                "files": [
                    {"path": str(f.resolve()), "text": g.text_of(i)} for i, f in enumerate(g.files)
                ],
            }
            for g in groups
        ],
    }
    folder.mkdir(parents=True, exist_ok=True)
    target = _path(folder, server)
    temporary = target.with_suffix(".new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(doc, out, ensure_ascii=False)
    os.replace(temporary, target)


def forget(data: Path | str, server: str) -> None:
    """Remove the record of a server on the store ``data`` that stopped (or is gone)."""
    folder = _folder(data)
    if folder is None:
        return
    with contextlib.suppress(FileNotFoundError):
        _path(folder, server).unlink()


def _group(raw: Any) -> Group:
    files = raw["files"]
    texts = tuple(f["text"] for f in files)
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("a rule file's text is missing")
    folder = None if raw.get("folder") is None else Path(raw["folder"])
    return Group(tuple(Path(f["path"]) for f in files), folder, texts)


def read_running(data: Path | str) -> list[RunningRules]:
    """The rules of every server running on the store ``data`` now (lock held), oldest
    record first. Raises ``UsageError`` when none runs, or one runs without a readable
    record (started by a hookmap that did not write one), or ``data`` is a database.

    ``data`` as given (``str``): ``Path`` would fold a URL's ``//`` and hide the scheme.
    """
    if is_database_url(data):
        raise UsageError(
            "--against-running reads the rules a server records in its data folder; servers "
            "on a shared database keep no such record: compare with --against OLD_RULES"
        )
    data_dir = Path(data)
    running, _ = leases.survey(data_dir)
    if not running:
        raise UsageError(
            f"no hookmap server is running on {data_dir}/ (none holds a lock in "
            f"{data_dir / leases.FOLDER}/): start 'hookmap serve --data {data_dir}', "
            "or compare with --against OLD_RULES"
        )
    out: list[RunningRules] = []
    for server, pid in running:
        path = _path(data_dir / leases.FOLDER, server)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("format") != FORMAT:
                raise ValueError(f"format {doc.get('format')!r}, expected {FORMAT}")
            groups = tuple(_group(g) for g in doc["rulesets"])
            paths = tuple(str(p) for p in doc["paths"])
            loaded_at = float(doc["loaded_at"])
        except FileNotFoundError:
            raise UsageError(
                f"the server running on {data_dir}/ (pid {pid}) has not recorded its rules "
                f"({path.name} is missing: a hookmap from before 'diff', or still starting):"
                " restart it, or compare with --against OLD_RULES"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"cannot read {path}: {exc}") from exc
        out.append(RunningRules(server, pid, loaded_at, paths, groups))
    return sorted(out, key=lambda r: r.loaded_at)
