"""Mutated rule files never crash the loader: every problem comes back located.

A seeded fuzzer (``tests/support/mutations.py``) edits one file of a shipped rule set,
by text or by YAML structure, and loads the copy as ``hookmap validate`` does. Whatever
the edit, loading must return (no exception) and every diagnostic must name a file of
the copy, a line inside it and a column, and render. 3,000 mutations found 45 crashes
before the fixes (a NUL, an unknown tag, an impossible date, a merge key bringing in a
list key); the seeds here are a fixed few hundred of the same mutations, fast enough for
every run. ``tests/data/lint/`` pins each crash found as a lint case with its exact
diagnostics.
"""

from __future__ import annotations

import dataclasses
import traceback
from pathlib import Path

import pytest

from engine.errors import Diagnostic
from engine.rules.compiler import LoadResult, load
from tests.support.mutations import Mutant, make_mutant

#: 240 mutations, half by text and half by structure (about 7 s)
SEEDS = range(240)


@dataclasses.dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    result: LoadResult | None
    crash: str | None


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> list[Outcome]:
    """Every seed's mutant loaded once, as ``hookmap validate`` loads it."""
    base = tmp_path_factory.mktemp("mutants")
    out = []
    for seed in SEEDS:
        folder = base / str(seed)
        folder.mkdir()
        mutant = make_mutant(seed, folder)
        try:
            out.append(Outcome(mutant, load([mutant.path], env={}), None))
        except Exception:
            out.append(Outcome(mutant, None, traceback.format_exc(limit=-3)))
    return out


def _name(mutant: Mutant) -> str:
    return f"seed {mutant.seed} ({mutant.kind}, {mutant.victim.name})"


def _problems(mutant: Mutant, diagnostics: tuple[Diagnostic, ...]) -> list[str]:
    """What is wrong with the diagnostics of one mutant (empty when all is well)."""
    files = {str(p) for p in mutant.path.parent.rglob("*.yaml")}
    out = []
    for d in diagnostics:
        loc = d.location
        if loc is None:
            out.append(f"unlocated: {d.render()}")
            continue
        if loc.file not in files:
            out.append(f"located outside the rule set ({loc.file}): {d.render()}")
            continue
        lines = Path(loc.file).read_text(encoding="utf-8", errors="replace").splitlines()
        if not (1 <= loc.line <= len(lines) + 1 and loc.col >= 1):
            out.append(f"located past the file's end: {d.render()}")
    return out


def test_loading_a_mutated_rule_set_never_raises(outcomes: list[Outcome]) -> None:
    """No mutation makes the loader raise (45 of 3,000 did before)."""
    crashes = [f"{_name(o.mutant)} raised:\n{o.crash}" for o in outcomes if o.crash]
    assert not crashes, "\n".join(crashes)


def test_every_diagnostic_of_a_mutant_is_located_in_it(outcomes: list[Outcome]) -> None:
    """Each diagnostic names a file of the mutated copy, a line inside it and a column."""
    failures = [
        f"{_name(o.mutant)}: {problem}"
        for o in outcomes
        if o.result is not None
        for problem in _problems(o.mutant, o.result.diagnostics)
    ]
    assert not failures, "\n".join(failures)


def test_the_mutations_reach_the_loader_and_the_compiler(outcomes: list[Outcome]) -> None:
    """The fuzzer is not idle: its mutants give YAML, schema, unreadable-value and
    expression errors, and some still load (a harmless edit)."""
    results = [o.result for o in outcomes if o.result is not None]
    codes = {d.code for r in results for d in r.diagnostics}
    assert {"E101", "E102", "E103", "E109"} <= codes
    assert codes & {"E201", "E202", "E203"}
    assert 0 < sum(bool(r.rulesets) for r in results) < len(outcomes)
