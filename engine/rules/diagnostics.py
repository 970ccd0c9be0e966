"""Where every diagnostic of a load goes: one sink, which adds the source line for the caret.

The loader (shape and types), the expression checks (syntax, functions, names) and the
compiler (references, the catalogue) all report through one ``Diagnostics``: each says
what is wrong and where, and the sink looks the line up in the rule file it was read
from, so every diagnostic renders the same way (``file:line:col``, the line, a ``^``).
"""

from __future__ import annotations

from collections.abc import Iterator

from engine.errors import Diagnostic, Location, Severity
from engine.rules.source import SourceFile


class Diagnostics:
    """The diagnostics of one load, in the order found, and the files they point into."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self._sources: dict[str, SourceFile] = {}

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def add_source(self, source: SourceFile) -> None:
        """Make ``source``'s lines available to the diagnostics located in it."""
        self._sources[source.path] = source

    def line(self, loc: Location | None) -> str | None:
        """The source line at ``loc``, when its file was read in this load."""
        if loc is None or loc.file not in self._sources:
            return None
        return self._sources[loc.file].line(loc.line)

    def report(
        self,
        code: str,
        message: str,
        loc: Location | None,
        severity: Severity = "error",
        hint: str | None = None,
    ) -> None:
        """One diagnostic at ``loc`` (None: not located, such as an unreadable file)."""
        self.items.append(Diagnostic(code, message, loc, severity, self.line(loc), hint))

    def since(self, mark: int) -> list[Diagnostic]:
        """The diagnostics reported after ``len(self)`` was ``mark``."""
        return self.items[mark:]
