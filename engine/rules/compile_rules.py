"""Compile stage, the rule set's parts: rules, their events and params, and lookups.

Each part arrives as the loader read it (located values, already checked against the
schema) and leaves as an immutable ``engine.rules.model`` object, or as diagnostics: a
template an event extends is merged in first, expressions are compiled and checked for
the rule set's names, the catalogue is consulted for standard event types.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from engine.errors import Location, did_you_mean
from engine.events import catalogue
from engine.rules.compiling import CompileContext, empty
from engine.rules.demand import change_expressions
from engine.rules.env import interpolate
from engine.rules.expressions import Names, compile_expression
from engine.rules.model import (
    DEFAULT_CHANGES_EXPIRE,
    PLACEHOLDER,
    ChangeSpec,
    EventSpec,
    Expression,
    LookupSpec,
    ParamSpec,
    Rule,
    seconds,
    template_host,
)
from engine.rules.source import INVALID, LocatedDict


def expression(ctx: CompileContext, text: Any, names: Names) -> Expression | None:
    """``text`` compiled for the load's evaluator (None when absent or invalid)."""
    if text is None:
        return None
    return compile_expression(text, names, ctx.diagnostics, evaluator=ctx.evaluator)


def compile_lookups(
    ctx: CompileContext, raw: LocatedDict, names: Names, hosts: frozenset[str]
) -> list[LookupSpec]:
    out: list[LookupSpec] = []
    for name, spec in raw.items():
        if not isinstance(spec, LocatedDict) or not isinstance(spec.get("url"), str):
            continue
        url_loc = spec.value_locs["url"]
        url = ctx.interpolate_at(spec["url"], url_loc, f"lookup '{name}' url")
        host = template_host(url)
        if host is None:
            ctx.error(
                "E307",
                f"lookup '{name}': the URL must be http(s) with a fixed host "
                "(no {placeholder} in the host part)",
                url_loc,
            )
        elif host not in hosts:
            ctx.error(
                "E307",
                f"lookup '{name}': host '{host}' is not in the rule set's `hosts`",
                url_loc,
                hint=f"add '{host}' to hosts",
            )
        placeholders = set(PLACEHOLDER.findall(url))
        raw_args = spec.get("args")
        if not isinstance(raw_args, LocatedDict):
            raw_args = empty()
        # arguments may read lookups declared before this one, not after
        earlier = dataclasses.replace(names, lookups=frozenset(s.name for s in out))
        args: list[tuple[str, Expression]] = []
        for arg, text in raw_args.items():
            expr = expression(ctx, text, earlier)
            if expr is not None:
                args.append((arg, expr))
            if arg not in placeholders:
                ctx.error(
                    "E106",
                    f"lookup '{name}': argument '{arg}' is not used in the URL",
                    raw_args.key_locs[arg],
                )
        for missing in sorted(placeholders - set(raw_args)):
            ctx.error("E104", f"lookup '{name}': the URL's {{{missing}}} has no argument", url_loc)
        headers: list[tuple[str, str]] = []
        missing_env: list[str] = []
        for h, v in (spec.get("headers") or {}).items():
            value, missing = interpolate(str(v), ctx.env)
            if value.strip() and value.strip() not in ("Bearer", "Basic"):
                # an empty credential (`${TOKEN:-}` unset) sends no header: the API's
                # 401 then says what is missing, where an empty header is a protocol error
                headers.append((h, value))
            for env_name, offset in missing:
                # credentials: validate warns, `hookmap serve` refuses until they are set
                missing_env.append(env_name)
                loc = spec["headers"].value_locs[h]
                offset += ctx.quote_shift(loc)
                ctx.error(
                    "W303",
                    f"environment variable {env_name} is not set (lookup "
                    f"'{name}' header {h}): the server will not start without it",
                    Location(loc.file, loc.line, loc.col + offset),
                    severity="warning",
                )
        timeout = spec["timeout"]  # the schema's default when absent
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            ctx.error(
                "E103",
                f"lookup '{name}': timeout must be a positive number of seconds",
                spec.value_locs.get("timeout", spec.loc),
            )
            continue
        if any(spec[key] is None for key in ("retries", "cache_ttl", "not_found")):
            continue  # a value of the wrong type, reported already
        out.append(
            LookupSpec(
                name,
                url,
                tuple(args),
                tuple(headers),
                float(timeout),
                int(spec["retries"]),
                float(spec["cache_ttl"]),
                hosts,
                spec.loc,
                tuple(missing_env),
                spec["not_found"],
            )
        )
    return out


def compile_rule(
    ctx: CompileContext, raw: LocatedDict, loc: Location, names: Names, templates: LocatedDict
) -> Rule | None:
    name = raw.get("name")
    topics = raw.get("topics")
    if not name or not topics:
        return None
    events: list[EventSpec] = []
    for raw_event in raw.get("events") or ():
        if isinstance(raw_event, LocatedDict):
            event = _compile_event(ctx, raw_event, names, templates)
            if event is not None:
                events.append(event)
    when = expression(ctx, raw.get("when"), names)
    used: set[str] = set(when.lookups) if when else set()
    for event in events:
        exprs = [
            event.key,
            event.when,
            event.for_each,
            *(p.expr for p in event.params),
            *(e for _, e in event.contact),
            *change_expressions(event.changes),
        ]
        used.update(n for e in exprs if e is not None for n in e.lookups)
    return Rule(
        name=name,
        topics=tuple(str(t) for t in topics if t is not None),
        events=tuple(events),
        when=when,
        ignore=raw.get("ignore"),
        where=loc,
        lookups=frozenset(used),
    )


def _compile_event(
    ctx: CompileContext, raw: LocatedDict, names: Names, templates: LocatedDict
) -> EventSpec | None:
    event_type = raw.get("type")
    params: dict[str, tuple[Any, Location, LocatedDict]] = {}
    contact_raw = raw.get("contact") if isinstance(raw.get("contact"), LocatedDict) else None
    key_text = raw.get("key")
    identify_by = list(raw.get("identify_by") or ())
    base_name = raw.get("extends")
    if base_name is not None:
        base = templates.get(base_name)
        if not isinstance(base, LocatedDict):
            ctx.error(
                "E304",
                f"undefined template '{base_name}'",
                raw.value_locs["extends"],
                _hint(base_name, templates),
            )
        else:
            for pname, pvalue in (base.get("params") or {}).items():
                params[pname] = (pvalue, base["params"].key_locs[pname], base["params"])
            key_text = key_text if "key" in raw.key_locs else base.get("key")
            identify_by = identify_by or list(base.get("identify_by") or ())
            if "contact" not in raw.key_locs and isinstance(base.get("contact"), LocatedDict):
                contact_raw = base["contact"]
    own = raw.get("params")
    if isinstance(own, LocatedDict):
        for pname, pvalue in own.items():
            params[pname] = (pvalue, own.key_locs[pname], own)
    if not isinstance(event_type, str):
        return None

    compiled: list[ParamSpec] = []
    for pname, (pvalue, ploc, _owner) in params.items():
        spec = _compile_param(ctx, pname, pvalue, ploc, names)
        if spec is not None:
            compiled.append(spec)
    key = expression(ctx, key_text, names)
    type_loc = raw.value_locs.get("type", raw.loc)
    for finding in catalogue.static_check(
        event_type, list(params), key_text is not None, identify_by
    ):
        where = params[finding.param][1] if finding.param in params else type_loc
        ctx.error(finding.code, finding.message, where, finding.hint, finding.severity)
    contact: list[tuple[str, Expression]] = []
    for field, text in (contact_raw or {}).items():
        expr = expression(ctx, text, names)
        if expr is not None:
            contact.append((field, expr))
    if contact_raw is not None and not {"email", "phone", "externalCustomerId"} & set(contact_raw):
        ctx.error(
            "E104",
            "contact needs at least one of email, phone, externalCustomerId",
            contact_raw.loc,
        )
    return EventSpec(
        type=event_type,
        params=tuple(compiled),
        key=key,
        when=expression(ctx, raw.get("when"), names),
        for_each=expression(ctx, raw.get("for_each"), names),
        identify_by=tuple(identify_by),
        where=raw.loc,
        contact=tuple(contact),
        changes=_compile_changes(ctx, raw, names),
    )


def _compile_changes(ctx: CompileContext, raw: LocatedDict, names: Names) -> ChangeSpec | None:
    """``changes:`` as a list of expressions, or the mapping with ``key`` and ``expire``."""
    found = raw.get("changes")
    if found is None or found is INVALID:
        return None
    where = raw.value_locs.get("changes", raw.loc)
    texts, key, expire = found, None, DEFAULT_CHANGES_EXPIRE
    if isinstance(found, LocatedDict):
        texts, key, expire = found.get("values") or [], found.get("key"), found["expire"]
    values = [expression(ctx, text, names) for text in texts]
    if not values:
        ctx.error("E104", "changes needs at least one expression (the values to compare)", where)
    if None in values or not values or expire is None:
        return None  # each problem reported already
    return ChangeSpec(
        tuple(v for v in values if v is not None),
        expression(ctx, key, names),
        seconds(expire),
        where,
    )


def _compile_param(
    ctx: CompileContext, name: str, value: Any, loc: Location, names: Names
) -> ParamSpec | None:
    if isinstance(value, LocatedDict):
        expr = expression(ctx, value.get("expr"), names)
        if "expr" in value.key_locs and expr is None:
            return None
        return ParamSpec(
            name=name,
            expr=expr,
            const=value.get("const"),
            required=bool(value.get("required")),
            default=value.get("default"),
            has_default="default" in value.key_locs,
            on_null=value.get("on_null") or "omit",
            on_empty=value.get("on_empty") or "keep",
            where=loc,
        )
    if isinstance(value, str):
        expr = expression(ctx, value, names)
        return None if expr is None else ParamSpec(name=name, expr=expr, where=loc)
    if value is INVALID:
        return None  # its type error is reported already
    if value is None:
        ctx.error("E103", f"param '{name}' has no value (give an expression or `const`)", loc)
        return None
    return ParamSpec(name=name, expr=None, const=value, where=loc)


def _hint(name: str, pool: Mapping[str, Any]) -> str | None:
    return did_you_mean(name, pool)
