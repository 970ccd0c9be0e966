"""Reading a shops file: every shop a deployment serves, checked and located like rule files.

The file is declared in ``engine.rules.schema_shops``; this module reads it (every problem
at ``file:line:col``) into ``Shop`` objects. What a shop's settings mean for serving it
(its secret, its key, its rule set tailored to it) is ``engine.server.tenants``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from engine.errors import Diagnostic, Location, RuleLoadError, did_you_mean, has_errors
from engine.rules.diagnostics import Diagnostics
from engine.rules.discovery import display
from engine.rules.loader import read_file
from engine.rules.model import ApiVersion
from engine.rules.schema_shops import SHOP_ID, SHOPS_FILE
from engine.rules.source import LocatedDict


@dataclasses.dataclass(frozen=True)
class Shop:
    """One shop's settings, as its shops file declares them (variables named, not read)."""

    id: str
    ruleset: str
    api_key_env: str
    api_url: str | None = None
    #: replace the rule set's verify.secret_env / public_key_env (None: keep the rule set's)
    secret_envs: tuple[str, ...] | None = None
    public_key_envs: tuple[str, ...] | None = None
    api_version: ApiVersion | None = None
    #: var name → value (``${ENV}`` not read yet)
    vars: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    #: a variable the rule set reads → the variable that holds this shop's value
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    where: Location | None = None


@dataclasses.dataclass(frozen=True)
class ShopsResult:
    shops: tuple[Shop, ...]
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def load_shops(path: str | Path, rulesets: Collection[str]) -> ShopsResult:
    """Read the shops file at ``path``; ``rulesets`` are the names a shop may use."""
    sink = Diagnostics()
    file = Path(path)
    doc = read_file(file, display(file), sink, SHOPS_FILE)
    shops: list[Shop] = []
    raw = doc.get("shops") if doc is not None else None
    if isinstance(raw, LocatedDict):
        for shop_id, settings in raw.items():
            if not isinstance(settings, LocatedDict):
                continue
            shop = _shop(shop_id, settings, raw.key_locs[shop_id], rulesets, sink)
            if shop is not None:
                shops.append(shop)
    return ShopsResult(tuple(shops), tuple(sink.items))


def load_shops_or_raise(path: str | Path, rulesets: Collection[str]) -> tuple[Shop, ...]:
    """Like ``load_shops``, raising ``RuleLoadError`` (every diagnostic) on an error."""
    result = load_shops(path, rulesets)
    if not result.ok:
        raise RuleLoadError(result.diagnostics)
    return result.shops


def _shop(
    shop_id: str,
    raw: LocatedDict,
    where: Location,
    rulesets: Collection[str],
    sink: Diagnostics,
) -> Shop | None:
    ok = True
    if not re.match(SHOP_ID, shop_id):
        sink.report("E106", f"shop id '{shop_id}' must match {SHOP_ID}", where)
        ok = False
    ruleset = raw.get("ruleset")
    if isinstance(ruleset, str) and ruleset not in rulesets:
        hint = did_you_mean(ruleset, rulesets) or (
            "loaded: " + ", ".join(sorted(rulesets)) if rulesets else "no rule set is loaded"
        )
        loc = raw.value_locs.get("ruleset", raw.loc)
        sink.report("E308", f"shop '{shop_id}': undefined rule set '{ruleset}'", loc, hint=hint)
        ok = False
    if not ok or not isinstance(ruleset, str) or not isinstance(raw.get("api_key_env"), str):
        return None  # what is missing or wrong was reported (by the loader or above)
    return Shop(
        id=shop_id,
        ruleset=ruleset,
        api_key_env=raw["api_key_env"],
        api_url=raw.get("api_url"),
        secret_envs=_names(raw.get("secret_env")),
        public_key_envs=_names(raw.get("public_key_env")),
        api_version=raw.get("api_version"),
        vars=dict(raw.get("vars") or {}),
        env=dict(raw.get("env") or {}),
        where=where,
    )


def _names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(str(v) for v in value if v is not None)
