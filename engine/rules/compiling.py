"""What compiling one rule set shares: the environment, the diagnostics, the evaluator.

The compiler and the modules it hands parts to (``compile_rules``: rules, events,
params and lookups; ``fixtures``: rule tests) report through one ``CompileContext`` and
read ``${ENV}`` through it, located at the character where each variable stands.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import Location, Severity
from engine.rules.diagnostics import Diagnostics
from engine.rules.env import interpolate
from engine.rules.model import Evaluator
from engine.rules.source import LocatedDict


class CompileContext:
    """The environment, the diagnostics sink and the evaluator of one load."""

    def __init__(
        self,
        env: Mapping[str, str],
        diagnostics: Diagnostics,
        evaluator: Evaluator,
        with_tests: bool = True,
    ) -> None:
        self.env = env
        self.diagnostics = diagnostics
        self.evaluator = evaluator
        #: whether the rule tests are compiled (their fixtures read) too
        self.with_tests = with_tests

    def error(
        self,
        code: str,
        message: str,
        loc: Location | None,
        hint: str | None = None,
        severity: Severity = "error",
    ) -> None:
        """Report a diagnostic (an error unless ``severity`` says otherwise)."""
        self.diagnostics.report(code, message, loc, severity, hint)

    def quote_shift(self, loc: Location) -> int:
        """1 when the scalar at ``loc`` is quoted: its value starts after the quote."""
        line = self.diagnostics.line(loc) or ""
        return 1 if line[loc.col - 1 : loc.col] in ("'", '"') else 0

    def interpolate_at(self, text: str, loc: Location, what: str) -> str:
        """``text`` with ``${ENV}`` read; each unset variable is an E303 at its place."""
        value, missing = interpolate(text, self.env)
        for env_name, offset in missing:
            offset += self.quote_shift(loc)
            self.error(
                "E303",
                f"environment variable {env_name} is not set ({what}; give a "
                f"default with ${{{env_name}:-value}})",
                Location(loc.file, loc.line, loc.col + offset),
            )
        return value


def empty() -> LocatedDict:
    """An empty mapping standing for an absent one (no locations to look up)."""
    out = LocatedDict()
    out.key_locs, out.value_locs = {}, {}
    return out
