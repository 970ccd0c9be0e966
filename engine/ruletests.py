"""Rule tests: cases declared beside the rules, run through the same pipeline as the server.

One runner serves ``hookmap test`` and the project's pytest suite (Benthos runs its
config tests the same way).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from typing import Any

from engine.errors import HookmapError, Location
from engine.events.encode import to_json
from engine.lookups import MockFetcher
from engine.pipeline import process
from engine.results import Result
from engine.rules.model import RuleSet, RuleTest
from engine.webhook import Webhook


@dataclasses.dataclass(frozen=True)
class CaseOutcome:
    ruleset: str
    name: str
    failures: tuple[str, ...]
    where: Location | None

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def id(self) -> str:
        return f"{self.ruleset}::{self.name}"


def webhook_for(case: RuleTest) -> Webhook:
    """The webhook a test case describes (file bytes, or the inline body as JSON)."""
    raw = case.raw if case.raw is not None else to_json(case.body).encode("utf-8")
    headers = dict(case.headers)
    if case.raw is None:
        headers.setdefault("content-type", "application/json")
    origin = case.body_file or f"test '{case.name}' body"
    return Webhook(raw, headers, case.topic, origin)


class SentChanges:
    """What ``changes:`` compares with in a rule test: the events its ``before:`` webhooks
    sent, remembered as the server remembers them."""

    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def last(self, entity: str) -> str | None:
        return self._last.get(entity)

    def remember(self, result: Result) -> None:
        for event in result.events:
            change = event.change
            if event.ok and event.held is None and change is not None:
                self._last[change.entity] = change.fingerprint


def run_case(ruleset: RuleSet, case: RuleTest) -> CaseOutcome:
    fetcher = MockFetcher(case.mocks)
    changes = SentChanges()
    try:
        for name, raw, headers in case.before:
            earlier = process(
                ruleset, Webhook(raw, headers, case.topic, name), fetcher=fetcher, changes=changes
            )
            changes.remember(earlier)
        result = process(ruleset, webhook_for(case), fetcher=fetcher, changes=changes)
    except HookmapError as exc:
        return CaseOutcome(
            ruleset.name, case.name, (f"webhook could not be processed: {exc}",), case.where
        )
    failures = check_expectations(case.expect, result)
    return CaseOutcome(ruleset.name, case.name, tuple(failures), case.where)


def run_all(rulesets: list[RuleSet] | tuple[RuleSet, ...]) -> list[CaseOutcome]:
    return [run_case(rs, case) for rs in rulesets for case in rs.tests]


def check_expectations(expect: dict[str, Any] | Any, result: Result) -> list[str]:
    failures: list[str] = []
    if expect.get("unmatched") and result.matched:
        matched = [r.rule for r in result.rules if r.matched]
        failures.append(f"expected no rule to match, but {', '.join(matched)} matched")
    if expect.get("unmatched") is False and not result.matched:
        failures.append(f"expected a rule to match: {result.summary()}")
    if expect.get("ignored") and not result.ignored:
        failures.append(f"expected the webhook to be ignored: {result.summary()}")
    if "events" in expect:
        failures.extend(
            _compare_events(expect["events"] or [], result.sent, expect.get("match") or "exact")
        )
    failures.extend(_compare_dropped(expect.get("dropped"), result))
    if "warnings" in expect:
        failures.extend(_compare_warnings(expect["warnings"] or [], result))
    failures.extend(_compare_held(expect.get("held"), result))
    return failures


def _compare_held(expected: Any, result: Result) -> list[str]:
    held = result.held
    if not expected:
        return [f"unexpected held-back event: {e.event_type} from rule '{e.rule}'" for e in held]
    failures: list[str] = []
    if len(expected) != len(held):
        failures.append(f"expected {len(expected)} held-back event(s), got {len(held)}")
    for index, (want, have) in enumerate(zip(expected, held, strict=False)):
        if not isinstance(want, dict):
            failures.append(f"held {index}: must be a mapping")
            continue
        for key, got in (("eventTypeKey", have.event_type), ("rule", have.rule)):
            if key in want and want[key] != got:
                failures.append(f"held {index}: {key} {got!r}, expected {want[key]!r}")
    return failures


def _compare_warnings(expected: list[Any], result: Result) -> list[str]:
    """Each expected warning on one of the events sent; none at all for ``[]``."""
    sent = [e for e in result.events if e.ok and e.held is None]
    got = [(p.code, p.param, p.message) for e in sent for p in e.warnings]
    listed = "; ".join(f"{c} {p or ''}: {m}" for c, p, m in got) or "none"
    if not expected:
        return [] if not got else [f"expected no warning on the events sent, got {listed}"]
    failures = []
    for want in expected:
        code, param = _code_and_param(want)
        if not any(c == code and (param is None or p == param) for c, p, _ in got):
            failures.append(
                f"expected warning {code}{f'({param})' if param else ''} on an event sent, "
                f"got {listed}"
            )
    return failures


def _code_and_param(problem: Any) -> tuple[Any, Any]:
    """``W106`` or ``{code: W106, param: phone}`` as (code, param or None)."""
    if isinstance(problem, dict):
        return problem.get("code"), problem.get("param")
    return problem, None


def _normalise(expected: Any, actual: Any) -> Any:
    """Decode a v1 JSON-string param when the test wrote the value natively."""
    if isinstance(actual, str) and not isinstance(expected, str):
        try:
            return json.loads(actual)
        except ValueError:
            return actual
    return actual


def _params(event: dict[str, Any]) -> dict[Any, Any]:
    # an entry that is not {name, value} (a stray `- ` in YAML) is kept under its own
    # repr, so the comparison fails with a visible diff instead of crashing
    out: dict[Any, Any] = {}
    for p in event.get("params") or ():
        if isinstance(p, dict):
            out[p.get("name")] = p.get("value")
        else:
            out[repr(p)] = None
    return out


def _view(expected: dict[str, Any], actual: dict[str, Any], subset: bool) -> dict[str, Any]:
    """``actual`` reduced to what ``expected`` compares, params decoded as written."""
    want = _params(expected)
    have = _params(actual)
    view: dict[str, Any] = {}
    for key, value in actual.items():
        if key == "params" or (subset and key not in expected):
            continue
        view[key] = value
    params = {}
    for name, value in have.items():
        if subset and name not in want:
            continue
        params[name] = _normalise(want.get(name), value)
    view["params"] = params
    return view


def _compare_events(expected: list[Any], actual: list[dict[str, Any]], mode: str) -> list[str]:
    failures: list[str] = []
    if len(expected) != len(actual):
        failures.append(f"expected {len(expected)} event(s) to be sent, got {len(actual)}")
    for index, (want, have) in enumerate(zip(expected, actual, strict=False)):
        if not isinstance(want, dict):
            failures.append(f"event {index}: the expected event must be a mapping")
            continue
        want_view = {k: v for k, v in want.items() if k != "params"}
        want_view["params"] = _params(want)
        have_view = _view(want, have, subset=mode == "subset")
        if want_view != have_view:
            failures.append(
                f"event {index} ({have.get('eventTypeKey')}) differs:\n"
                + diff(want_view, have_view)
            )
    for index in range(len(expected), len(actual)):
        failures.append(f"unexpected event {index}:\n{json.dumps(actual[index], indent=2)}")
    return failures


def _compare_dropped(expected: Any, result: Result) -> list[str]:
    dropped = result.dropped
    if not expected:
        return [
            f"unexpected dropped event: {e.event_type} from rule '{e.rule}': "
            + "; ".join(
                f"{p.code} {p.param or ''}: {p.message}"
                for p in e.problems
                if p.severity == "error"
            )
            for e in dropped
        ]
    failures: list[str] = []
    if len(expected) != len(dropped):
        failures.append(f"expected {len(expected)} dropped event(s), got {len(dropped)}")
    for index, (want, have) in enumerate(zip(expected, dropped, strict=False)):
        if not isinstance(want, dict):
            failures.append(f"dropped {index}: must be a mapping")
            continue
        if "eventTypeKey" in want and want["eventTypeKey"] != have.event_type:
            failures.append(
                f"dropped {index}: eventTypeKey {have.event_type!r}, "
                f"expected {want['eventTypeKey']!r}"
            )
        if "rule" in want and want["rule"] != have.rule:
            failures.append(f"dropped {index}: rule {have.rule!r}, expected {want['rule']!r}")
        got = {(p.code, p.param) for p in have.problems}
        for problem in want.get("problems") or ():
            code, param = _code_and_param(problem)
            if not any(c == code and (param is None or p == param) for c, p in got):
                listed = ", ".join(
                    f"{c}({p})" if p else c
                    for c, p in sorted(got, key=lambda x: (x[0], x[1] or ""))
                )
                failures.append(
                    f"dropped {index}: expected problem {code}"
                    f"{f'({param})' if param else ''}, got {listed}"
                )
    return failures


def diff(expected: Any, actual: Any) -> str:
    """A unified diff of two values as pretty JSON."""
    left = json.dumps(expected, indent=2, ensure_ascii=False, sort_keys=True).splitlines()
    right = json.dumps(actual, indent=2, ensure_ascii=False, sort_keys=True).splitlines()
    lines = difflib.unified_diff(left, right, "expected", "actual", lineterm="", n=2)
    return "\n".join("    " + line for line in lines)
