"""The one place that wires the stages: webhook → topic → matching rules → events → checks.

``hookmap dry-run``, ``hookmap test`` and the server all call ``process``, so what a
webhook becomes cannot differ between them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from engine.decoders import Decoded, decode
from engine.errors import LookupFailed, Problem
from engine.evaluate import (
    EXPRESSION_ERRORS,
    Change,
    Produced,
    Skipped,
    describe_error,
    evaluate_rule,
    truthy,
)
from engine.events import checks, money
from engine.events.contacts import contact_request
from engine.events.encode import as_text, encode_request
from engine.lookups import Fetcher
from engine.results import EventResult, LookupTrace, Result, RuleTrace
from engine.rules.functions import EvalContext, make_options
from engine.rules.model import Rule, RuleSet
from engine.webhook import Webhook


def decode_body(webhook: Webhook) -> Any:
    """The body as data: JSON, or a form-encoded body as an object of strings."""
    return decode(webhook).data


def fetch_lookups(
    ruleset: RuleSet,
    needed: frozenset[str],
    data: Any,
    context: EvalContext,
    fetcher: Fetcher | None,
) -> tuple[dict[str, Any], list[LookupTrace]]:
    """Fetch the ``needed`` lookups in declaration order; raises ``LookupFailed``.

    A lookup whose argument is null or ``""`` on this webhook is not made: it cannot
    apply (a Stripe charge without a payment intent has no Checkout session to find,
    and asking again later would find none either). ``fetched()`` gives null for it,
    the rules' `when` and `ignore` say what that means, and the trace says why."""
    fetched: dict[str, Any] = {}
    traces: list[LookupTrace] = []
    for spec in ruleset.lookups:
        if spec.name not in needed:
            continue
        options = make_options(dataclasses.replace(context, fetched=dict(fetched)))
        values: dict[str, Any] = {}
        for arg, expr in spec.args:
            try:
                values[arg] = expr.search(data, options)
            except EXPRESSION_ERRORS as exc:
                raise LookupFailed(
                    spec.name, spec.url, f"argument '{arg}': {describe_error(exc)}"
                ) from exc
        missing = next((arg for arg, value in values.items() if value in (None, "")), None)
        if missing is not None:
            why = "null" if values[missing] is None else "empty"
            fetched[spec.name] = None
            reason = f"argument '{missing}' is {why}"
            traces.append(LookupTrace(spec.name, spec.url, None, reason))
            continue
        url = spec.build_url(values)
        if fetcher is None:
            raise LookupFailed(spec.name, url, "no way to fetch here (give a mock)")
        fetched[spec.name] = fetcher.fetch(spec, url)
        traces.append(LookupTrace(spec.name, url, fetched[spec.name]))
    return fetched, traces


def find_topic(ruleset: RuleSet, webhook: Webhook, body: Any, envelope: Any = None) -> str | None:
    if webhook.topic is not None:
        return webhook.topic
    if ruleset.topic_header:
        return webhook.headers.get(ruleset.topic_header)
    if ruleset.topic_expr is not None:
        context = EvalContext(
            root=body,
            headers=webhook.headers,
            vars=ruleset.vars,
            tables=ruleset.tables,
            envelope=envelope,
        )
        try:
            found = ruleset.topic_expr.search(body, make_options(context))
        except EXPRESSION_ERRORS:
            return None
        return None if found is None else str(found)
    return None


def _may_apply(rule: Rule, data: Any, context: EvalContext) -> bool:
    """Whether ``rule``, whose topic matches, can apply before lookups are fetched: its
    `when` is true or needs a lookup to tell (so no API is called for a rule that cannot
    apply). Errors are left for the real evaluation to report."""
    if rule.when is None or rule.when.lookups or not rule.lookups:
        return True
    try:
        return truthy(rule.when.search(data, make_options(context)))
    except EXPRESSION_ERRORS:
        return True


def process(
    ruleset: RuleSet,
    webhook: Webhook,
    body: Any = None,
    fetcher: Fetcher | None = None,
    changes: ChangeMemory | None = None,
) -> Result:
    """Turn one webhook into checked events.

    Raises ``PayloadError`` for an undecodable body and ``LookupFailed`` when a lookup
    the matching rules need cannot be answered. ``body`` may be given when the caller
    already decoded it; ``fetcher`` answers lookups (HTTP, or mocks); ``changes`` holds
    back an event whose ``changes:`` values equal the last ones sent for its entity.
    """
    decoded = decode(webhook, ruleset.decode) if body is None else Decoded(body, body)
    data = decoded.data
    topic = find_topic(ruleset, webhook, data, decoded.envelope)
    context = EvalContext(
        root=data,
        headers=webhook.headers,
        topic=topic,
        vars=ruleset.vars,
        tables=ruleset.tables,
        envelope=decoded.envelope,
    )
    matching = ruleset.matching(topic)
    needed: frozenset[str] = frozenset()
    if ruleset.lookups:
        needed = frozenset(
            n
            for rule, matches in zip(ruleset.rules, matching, strict=True)
            if matches and rule.lookups and _may_apply(rule, data, context)
            for n in rule.lookups
        )
    lookup_traces: list[LookupTrace] = []
    if needed:
        fetched, lookup_traces = fetch_lookups(ruleset, needed, data, context, fetcher)
        context = dataclasses.replace(context, fetched=fetched)
    options = make_options(context)

    checked: list[tuple[Rule, RuleTrace | None]] = []
    events: list[EventResult] = []
    skipped: list[str] = []
    for rule, matches in zip(ruleset.rules, matching, strict=True):
        if not matches:
            checked.append((rule, None))
            continue
        if rule.when is not None:
            try:
                ok = truthy(rule.when.search(data, options))
            except EXPRESSION_ERRORS as exc:
                checked.append(
                    (
                        rule,
                        RuleTrace(
                            rule.name,
                            False,
                            f"when `{rule.when.source}` failed: {describe_error(exc)}",
                            rule.where,
                        ),
                    )
                )
                continue
            if not ok:
                reason = f"when `{rule.when.source}` is false"
                checked.append((rule, RuleTrace(rule.name, False, reason, rule.where)))
                continue
        reason = "topic matched" + (f" and `{rule.when.source}` is true" if rule.when else "")
        checked.append((rule, RuleTrace(rule.name, True, reason, rule.where, rule.ignore)))
        for item in evaluate_rule(rule, data, options):
            if isinstance(item, Skipped):
                skipped.append(f"{rule.name}: {item.spec.type}: {item.reason}")
                continue
            event = finish(item, ruleset.api_version)
            if changes is not None and item.change is not None and event.ok:
                event = _unless_unchanged(event, item.change, changes)
            events.append(event)
    return Result(
        ruleset.name,
        ruleset.api_version,
        topic,
        tuple(events),
        tuple(checked),
        tuple(skipped),
        tuple(lookup_traces),
    )


class ChangeMemory(Protocol):
    """The last values sent per entity (``changes:``): the store's, for one shop."""

    def last(self, entity: str) -> str | None:
        """The fingerprint of the values last sent for ``entity`` (None: none remembered)."""


def _unless_unchanged(event: EventResult, change: Change, memory: ChangeMemory) -> EventResult:
    if memory.last(change.entity) != change.fingerprint:
        return event
    reason = f"unchanged: the same values as the last {event.event_type} sent for {change.entity}"
    return dataclasses.replace(event, held=reason)


def finish(item: Produced, version: Any) -> EventResult:
    """Check a produced event and build its request body."""
    key_value = item.key_value
    if key_value is not None and not isinstance(key_value, str):
        key_value = as_text(key_value)
    if key_value == "":
        key_value = None
    problems = list(item.problems)
    if item.aborted:  # `when` / `for_each` failed: nothing to check or send
        return EventResult(
            item.rule.name,
            item.index,
            item.spec.type,
            None,
            tuple(problems),
            None,
            item,
            item.spec.where,
        )
    params = money.normalize(item.spec.type, item.params)  # every amount in one form
    result = checks.check_event(item.spec.type, key_value, params, item.spec.identify_by)
    if result.problems:
        problems.extend(_locate(_not_again(result.problems, problems), item))
    body: dict[str, Any] | None
    raw: bytes | None = None
    try:
        body, raw = encode_request(item.spec.type, key_value, params, version)
        size = checks.check_body_size(raw)
    except UnicodeEncodeError:  # a lone surrogate ("\ud800" in the webhook's JSON)
        body = None
        size = Problem("V114", "a value holds a lone surrogate, which is not text UTF-8 can carry")
    except ValueError:  # a computed NaN or infinity: JSON cannot carry it
        body = None
        size = Problem("V114", "a value is NaN or infinite, which JSON cannot carry")
    if size is not None:
        problems.append(size)
    request = contact_request(dict(item.contact)) if item.contact else None
    if item.spec.contact and request is None:
        problems.append(
            Problem(
                "W105",
                "the contact to create has no email, phone or "
                "externalCustomerId on this webhook: none is created",
                "contact",
                "warning",
                item.spec.where,
            )
        )
    return EventResult(
        item.rule.name,
        item.index,
        item.spec.type,
        body,
        tuple(problems),
        result.contact,
        item,
        item.spec.where,
        request,
        raw,
        None,
        item.change,
    )


def _not_again(found: tuple[Problem, ...], evaluated: list[Problem]) -> tuple[Problem, ...]:
    """The checks' problems without "'date' is missing" for a param whose expression
    already failed: the failure says why, once (a bad date was reported twice)."""
    failed = {p.param for p in evaluated if p.severity == "error" and p.param}
    if not failed:
        return found
    return tuple(p for p in found if not (p.code == "V101" and p.param in failed))


def _locate(problems: tuple[Problem, ...], item: Produced) -> list[Problem]:
    """Attach the rule file location of the param each problem names."""
    where = item.spec.param_where
    out: list[Problem] = []
    for p in problems:
        if p.where is None:
            base = (p.param or "").split("[")[0].split(".")[0]
            # dataclasses.replace(p, where=...), which costs four times as much
            p = Problem(p.code, p.message, p.param, p.severity, where.get(base) or item.spec.where)
        out.append(p)
    return out
