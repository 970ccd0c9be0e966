"""What the commands share: the options they take, and how they load rules and stores."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from engine.errors import Diagnostic, StoreError, UsageError, did_you_mean
from engine.rules import compiler
from engine.rules.codegen import COMPILED, INTERPRETER
from engine.rules.model import Evaluator, RuleSet
from engine.server.store.sqlite import DB_NAME, Store
from engine.webhook import Webhook

DATA_HELP = "Data folder of the server (SQLite file inside)."

#: ``--rules PATH`` (repeatable), shared by every command that loads rules
rules_option = click.option(
    "--rules",
    "rules_paths",
    multiple=True,
    required=True,
    type=click.Path(exists=True),
    help="Rule file or folder (repeatable).",
)


def evaluator_from_context() -> Evaluator:
    """The evaluator ``hookmap --interpreter`` chose (compiled by default)."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    chosen = ((root.obj if root else None) or {}).get("evaluator")
    return chosen if isinstance(chosen, Evaluator) else COMPILED


def choose_evaluator(interpreter: bool) -> Evaluator:
    """The evaluator for ``hookmap [--interpreter]``."""
    return INTERPRETER if interpreter else COMPILED


def data_option(func: Any) -> Any:
    return click.option(
        "--data",
        "data_dir",
        default="hookmap-data",
        show_default=True,
        envvar="HOOKMAP_DATA",
        type=click.Path(file_okay=False),
        help=DATA_HELP,
    )(func)


def open_store(data_dir: str, must_exist: bool = True) -> Store:
    path = Path(data_dir) / DB_NAME
    if must_exist and not path.is_file():
        raise UsageError(
            f"no hookmap data in {data_dir}/ (start 'hookmap serve --data "
            f"{data_dir}' first, or pass --data)"
        )
    try:
        return Store(path)
    except StoreError as exc:
        raise UsageError(str(exc)) from exc


def print_diagnostics(diagnostics: Sequence[Diagnostic], stream: Any = None) -> None:
    for d in diagnostics:
        click.echo(d.render(), file=stream or sys.stderr)


def diagnostic_order(d: Diagnostic) -> tuple[str, int, int]:
    loc = d.location
    return (loc.file, loc.line, loc.col) if loc else ("", 0, 0)


def load_clean(paths: Sequence[str]) -> compiler.LoadResult:
    """Load rules for a command that needs them clean (dry-run, test)."""
    result = compiler.load(list(paths), evaluator=evaluator_from_context())
    if not result.ok:
        print_diagnostics(result.diagnostics)
        errors = sum(1 for d in result.diagnostics if d.severity == "error")
        raise UsageError(f"the rules have {errors} error(s): run 'hookmap validate' for details")
    return result


def pick_ruleset(rulesets: Sequence[RuleSet], source: str | None, webhook: Webhook) -> RuleSet:
    """The rule set named by --source, the only one, or the one whose topic header is present."""
    names = [r.name for r in rulesets]
    if source is not None:
        for ruleset in rulesets:
            if ruleset.name == source:
                return ruleset
        hint = did_you_mean(source, names)
        raise UsageError(
            f"no rule set named '{source}' (have: {', '.join(names) or 'none'})"
            + (f"; {hint}" if hint else "")
        )
    if len(rulesets) == 1:
        return rulesets[0]
    if not rulesets:
        raise UsageError("no rule sets found")
    by_header = [r for r in rulesets if r.topic_header and r.topic_header in webhook.headers]
    if len(by_header) == 1:
        return by_header[0]
    raise UsageError(f"several rule sets ({', '.join(names)}): choose one with --source")
