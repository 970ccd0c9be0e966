"""Which files form which rule set.

A path is a rule file, a rule-set folder (it holds ``ruleset.yaml``; all its ``*.yaml``
files form one set), or a folder of those (searched recursively). A file
``NAME.tests.yaml`` beside ``NAME.yaml`` adds tests to that rule set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from engine.errors import UsageError

RULESET_FILE = "ruleset.yaml"


@dataclasses.dataclass(frozen=True)
class Group:
    """The files of one rule set; ``folder`` is set for the folder form.

    ``texts``, when set, holds each file's text (same order as ``files``), read instead of
    the file: rules edited in the playground, or the copy a server recorded of the rules
    it runs. Locations, and the fixtures tests name, still go by the file's path.
    """

    files: tuple[Path, ...]
    folder: Path | None = None
    texts: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.texts is not None and len(self.texts) != len(self.files):
            raise ValueError("a rule set's texts must match its files one for one")

    def text_of(self, index: int) -> str | None:
        """The given text of file ``index``, or None to read the file."""
        return None if self.texts is None else self.texts[index]


def discover(paths: Sequence[str | Path]) -> list[Group]:
    groups: list[Group] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            groups.append(Group(_with_tests(path)))
        elif path.is_dir():
            groups.extend(_discover_dir(path))
        else:
            raise UsageError(f"no such file or folder: {raw}")
    return groups


def _yaml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))


def _with_tests(path: Path) -> tuple[Path, ...]:
    tests = path.with_name(f"{path.stem}.tests{path.suffix}")
    return (path, tests) if tests.is_file() and not path.stem.endswith(".tests") else (path,)


def _discover_dir(folder: Path) -> list[Group]:
    if (folder / RULESET_FILE).is_file():
        files = [folder / RULESET_FILE] + [p for p in _yaml_files(folder) if p.name != RULESET_FILE]
        return [Group(tuple(files), folder)]
    groups: list[Group] = []
    for path in _yaml_files(folder):
        if path.stem.endswith(".tests"):
            continue
        groups.append(Group(_with_tests(path)))
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        groups.extend(_discover_dir(sub))
    return groups


def display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
