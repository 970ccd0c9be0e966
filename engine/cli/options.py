"""What the commands share: the options they take, how they load rules and stores, and
how they send what they stored."""

from __future__ import annotations

import asyncio
import datetime
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from engine.errors import Diagnostic, UsageError, did_you_mean
from engine.events.destination import API_KEY_ENV, RATE_LIMIT, Destination
from engine.rules import compiler
from engine.rules.codegen import COMPILED, INTERPRETER
from engine.rules.model import Evaluator, RuleSet
from engine.rules.shops import load_shops_or_raise
from engine.server import tenants
from engine.server.dispatch import Dispatcher
from engine.server.intake import DEFAULT_MAX_BODY
from engine.server.store import location
from engine.server.store.base import Store
from engine.server.store.location import DATABASE_URL_ENV
from engine.server.tenants import Tenancy
from engine.webhook import Webhook

DATA_HELP = (
    "Data folder of the server (SQLite file inside), or a PostgreSQL URL "
    "(postgresql://...) shared by several servers."
)

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
        envvar=["HOOKMAP_DATA", DATABASE_URL_ENV],
        help=DATA_HELP,
    )(func)


#: ``--shops FILE``: the shops a deployment serves (each its own secret and CDP account)
shops_option = click.option(
    "--shops",
    "shops_path",
    envvar="HOOKMAP_SHOPS",
    type=click.Path(exists=True, dir_okay=False),
    help="Shops file: each shop's rule set, secret and CDP account (docs/rules.md).",
)

#: ``--shop ID``: only what came for one shop
shop_option = click.option("--shop", help="Only this shop's (its id in the shops file).")


def open_store(data_dir: str, must_exist: bool = True) -> Store:
    """The store of ``--data`` (a folder or a PostgreSQL URL)."""
    return location.open_store(data_dir, must_exist=must_exist)


def parse_since(text: str, option: str = "--since") -> float:
    """``2h``, ``30m``, ``1d``, ``45s`` ago, or an ISO 8601 date-time / date (local time
    when it names no offset)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match:
        size = {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]
        return time.time() - float(match[1]) * size
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r}: use 2h, 30m, 1d or an ISO date-time") from exc
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def load_tenancy(
    rules_paths: Sequence[str],
    shops_path: str | None,
    env: Mapping[str, str] | None = None,
    *,
    only: str | None = None,
) -> Tenancy:
    """The rule sets each (rule set, shop) is processed with, and each shop's CDP account,
    for commands that process stored webhooks (replay) rather than receive them.
    ``only``: that shop of the shops file alone (the others' variables are not needed)."""
    env = os.environ if env is None else env
    evaluator = evaluator_from_context()

    def load(paths: Sequence[str | Path], env: Mapping[str, str]) -> tuple[RuleSet, ...]:
        return compiler.load_or_raise(paths, env, evaluator).rulesets

    rulesets = load(list(rules_paths), env)
    default = Destination.from_env(env)
    if shops_path is None:
        return tenants.single(rulesets, env, default, DEFAULT_MAX_BODY, receive=False)
    shops = load_shops_or_raise(shops_path, [rs.name for rs in rulesets])
    if only is not None:
        chosen = [s for s in shops if s.id == only]
        if not chosen:
            hint = did_you_mean(only, [s.id for s in shops])
            raise UsageError(f"no shop '{only}' in {shops_path}" + (f"; {hint}" if hint else ""))
        shops = tuple(chosen)
    return tenants.for_shops(rulesets, shops, env, default, DEFAULT_MAX_BODY, load, receive=False)


class Sender:
    """Sends what is due in a store to each shop's CDP account, as often as asked, through
    one dispatcher (one pooled HTTP client) on one event loop: a backfill sends after
    every page without setting up a client (and its TLS context) each time."""

    def __init__(self, store: Store, tenancy: Tenancy) -> None:
        single = tenancy.destinations.get("")
        if single is not None and not single.api_key:
            raise UsageError(f"{API_KEY_ENV} is not set: cannot send (use --no-send)")
        self._store = store
        self._tenancy = tenancy
        self._loop: asyncio.Runner | None = None
        self._dispatcher: Dispatcher | None = None
        # the limit the servers use: on a shared database, these sends count against
        # each CDP account's rate together with theirs
        self._limiter = store.rate_limiter(RATE_LIMIT)

    def __enter__(self) -> Sender:
        self._loop = asyncio.Runner()
        self._dispatcher = self._loop.run(self._open())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._dispatcher is not None
        try:
            self._loop.run(self._close(self._dispatcher))
        finally:
            self._loop.close()

    async def _open(self) -> Dispatcher:
        return Dispatcher(self._store, self._tenancy.destinations.get, limiter=self._limiter)

    async def _close(self, dispatcher: Dispatcher) -> None:
        try:
            await dispatcher.aclose()
        finally:
            await self._limiter.aclose()

    def send(self) -> dict[str, int]:
        """Send every due event (and the retries due within the drain's wait); the
        attempts' outcomes (sent / retry / dead)."""
        assert self._loop is not None and self._dispatcher is not None
        return dict(self._loop.run(self._dispatcher.drain()))


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
