"""Who the server serves: one shop per rule set, or the shops a shops file lists.

Without a shops file every rule set is served once, at ``/hooks/{rule set}``, with the
secrets its ``verify`` names and the one CDP account of ``HOOKMAP_API_KEY`` (the shop
id is ``""``). With one, each shop is served at ``/hooks/{rule set}/{shop}`` with its own
secret, its own CDP account (``api_key_env``, ``api_url``), and its rule set tailored to
it: its vars and API version, and, when it names other variables for what the rule set
reads (``env:``, such as a BigCommerce store hash and token), the rule set loaded again
with those. A shop's secrets and key never serve another shop.
"""

from __future__ import annotations

import dataclasses
from collections import ChainMap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from engine.errors import RuleLoadError, ServeRefused
from engine.events.destination import Destination
from engine.rules.env import interpolate
from engine.rules.model import RuleSet
from engine.rules.shops import Shop
from engine.server.intake import Source, make_source

#: ``load(paths, env)``: the rule sets under ``paths`` read with ``env`` (the compiler's
#: ``load_or_raise``, with the service's evaluator)
Loader = Callable[[Sequence[str | Path], Mapping[str, str]], Sequence[RuleSet]]


@dataclasses.dataclass(frozen=True)
class Tenancy:
    """What is served, by (rule set name, shop id): the rule set each is processed with,
    the source its webhooks are received by (none when built only to process, as a
    replay does), and each shop's CDP account."""

    rulesets: Mapping[tuple[str, str], RuleSet]
    sources: Mapping[tuple[str, str], Source]
    destinations: Mapping[str, Destination]

    @property
    def shops(self) -> list[str]:
        """The shop ids served ("" when none is named)."""
        return sorted(self.destinations)


def single(
    rulesets: Sequence[RuleSet],
    env: Mapping[str, str],
    destination: Destination,
    max_body: int,
    *,
    receive: bool = True,
) -> Tenancy:
    """Every rule set served once, for the one CDP account; ``ServeRefused`` lists every
    rule set that cannot be served. ``receive=False``: to process only (no secrets read)."""
    problems: list[str] = []
    sources = {}
    for rs in rulesets:
        source = make_source(rs, env, max_body, problems) if receive else None
        if source is not None:
            sources[(rs.name, "")] = source
    if problems:
        raise ServeRefused(problems)
    return Tenancy({(rs.name, ""): rs for rs in rulesets}, sources, {"": destination})


def for_shops(
    rulesets: Sequence[RuleSet],
    shops: Sequence[Shop],
    env: Mapping[str, str],
    default: Destination,
    max_body: int,
    load: Loader,
    *,
    receive: bool = True,
) -> Tenancy:
    """Each shop served with its own secrets and CDP account; ``ServeRefused`` lists every
    shop that cannot be served (an unset variable, a rule set that fails for it).
    ``receive=False``: to process only (its rule sets and accounts; no secrets read)."""
    by_name = {rs.name: rs for rs in rulesets}
    problems: list[str] = []
    tailored: dict[tuple[str, str], RuleSet] = {}
    sources: dict[tuple[str, str], Source] = {}
    destinations: dict[str, Destination] = {}
    for shop in shops:
        found = len(problems)
        shop_env = _shop_env(shop, env, problems)
        key = env.get(shop.api_key_env)
        if not key:
            problems.append(f"shop '{shop.id}': {shop.api_key_env} is not set (its CDP API key)")
        ruleset = _tailored(by_name[shop.ruleset], shop, shop_env, load, problems)
        if ruleset is None or len(problems) > found:
            continue
        if receive:
            source = make_source(ruleset, shop_env, max_body, problems, shop.id)
            if source is None:
                continue
            sources[(ruleset.name, shop.id)] = source
        tailored[(ruleset.name, shop.id)] = ruleset
        destinations[shop.id] = Destination((shop.api_url or default.base_url).rstrip("/"), key)
    if problems:
        raise ServeRefused(problems)
    return Tenancy(tailored, sources, destinations)


def _shop_env(shop: Shop, env: Mapping[str, str], problems: list[str]) -> Mapping[str, str]:
    """``env`` as the shop's rule set sees it: each variable it names read from the shop's."""
    own: dict[str, str] = {}
    for wanted, holder in shop.env.items():
        if holder in env:
            own[wanted] = env[holder]
        else:
            problems.append(f"shop '{shop.id}': {holder} is not set (read for {wanted})")
    return ChainMap(own, dict(env))


def _tailored(
    base: RuleSet,
    shop: Shop,
    env: Mapping[str, str],
    load: Loader,
    problems: list[str],
) -> RuleSet | None:
    ruleset = base
    if shop.env:  # what it reads differs for this shop: its hosts, lookups and vars
        try:
            found = [rs for rs in load([base.root], env) if rs.name == base.name]
        except RuleLoadError as exc:
            errors = [d.render() for d in exc.diagnostics if d.severity == "error"]
            problems.append(f"shop '{shop.id}': rule set '{base.name}' fails: " + "; ".join(errors))
            return None
        ruleset = found[0]
    changes: dict[str, object] = {}
    if shop.vars:
        values = dict(ruleset.vars)
        for name, value in shop.vars.items():
            if isinstance(value, str):
                value, missing = interpolate(value, env)
                for variable, _ in missing:
                    problems.append(f"shop '{shop.id}': {variable} is not set (var '{name}')")
            values[name] = value
        changes["vars"] = values
    if shop.api_version is not None:
        changes["api_version"] = shop.api_version
    if ruleset.verify is not None and (shop.secret_envs or shop.public_key_envs):
        changes["verify"] = dataclasses.replace(
            ruleset.verify,
            secret_envs=shop.secret_envs or ruleset.verify.secret_envs,
            public_key_envs=shop.public_key_envs or ruleset.verify.public_key_envs,
        )
    return dataclasses.replace(ruleset, **changes) if changes else ruleset  # type: ignore[arg-type]
