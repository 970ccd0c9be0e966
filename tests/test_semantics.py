"""Engine semantics as data, in the spirit of the JMESPath compliance suite.

Each ``tests/data/semantics/*.yaml`` file is a list of suites::

    - ruleset: {...}          # an inline rule set, written to a temp .yaml file and loaded
      cases:
        - name: what the case shows
          body: {...}         # the webhook body (sent as JSON bytes)
          headers: {...}      # optional request headers
          topic: ...          # optional: the caller's topic override (--topic)
          sent: [...]         # exact request bodies of the events that would be sent
          dropped:            # exact list of events not sent, in order, each with the
            - eventTypeKey: orderCreated   # multiset of its problems (errors and warnings)
              problems: [[V101, totalCost], [V106, null]]
          matched: [rule names]           # optional: the rules that matched, in order
          summary_contains: "..."         # optional: a part of Result.summary()
          warnings: [[W106, phone]]       # optional: the warnings of the sent events
          xfail: "BUG: ..."               # optional: the case shows a reported engine bug

``sent`` and ``dropped`` default to ``[]``: a case that leaves them out says that
nothing is sent or dropped, so an unexpected event always fails.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.errors import PayloadError
from engine.pipeline import process
from engine.results import Result
from engine.rules.compiler import load
from engine.rules.model import RuleSet
from engine.webhook import Webhook

DATA = Path(__file__).parent / "data" / "semantics"
#: The environment every suite's rule set is compiled with (vars read it).
ENV = {"HOOKMAP_SHOP_URL": "https://env.example", "HOOKMAP_EMPTY": ""}
CASE_KEYS = {
    "name",
    "body",
    "headers",
    "topic",
    "sent",
    "dropped",
    "matched",
    "summary_contains",
    "warnings",
    "xfail",
}


def _suites() -> list[tuple[str, int, dict[str, Any]]]:
    out = []
    for path in sorted(DATA.glob("*.yaml")):
        for index, suite in enumerate(yaml.safe_load(path.read_text(encoding="utf-8"))):
            out.append((path.stem, index, suite))
    return out


SUITES = _suites()
CASES = [
    pytest.param(
        stem,
        index,
        case,
        id=f"{stem}[{index}]: {case['name']}",
        # a case that shows an engine bug says so: it must fail until the bug is fixed
        marks=[pytest.mark.xfail(strict=True, reason=case["xfail"])] if "xfail" in case else [],
    )
    for stem, index, suite in SUITES
    for case in suite["cases"]
]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, int], RuleSet]:
    """Compile each suite's rule set once, on first use."""
    folder = tmp_path_factory.mktemp("semantics")
    cache: dict[tuple[str, int], RuleSet] = {}
    suites = {(stem, index): suite for stem, index, suite in SUITES}

    def get(stem: str, index: int) -> RuleSet:
        if (stem, index) not in cache:
            path = folder / f"{stem}-{index}.yaml"
            path.write_text(
                yaml.safe_dump(suites[stem, index]["ruleset"], sort_keys=False), encoding="utf-8"
            )
            result = load([path], env=ENV)
            rendered = "\n".join(d.render() for d in result.diagnostics)
            assert not result.diagnostics, f"the suite's rule set does not load:\n{rendered}"
            (cache[stem, index],) = result.rulesets
        return cache[stem, index]

    return get


def test_suites_are_found_and_case_names_are_unique() -> None:
    """Every data file holds suites and no two cases share an id."""
    assert {stem for stem, _, _ in SUITES} >= {"topics", "rules", "params", "encoding", "checks"}
    ids = [param.id for param in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) > 50


def test_cases_use_only_known_keys() -> None:
    """A misspelled case key would silently assert nothing: refuse it."""
    for param in CASES:
        case = param.values[2]
        assert isinstance(case, dict)
        assert set(case) <= CASE_KEYS, f"{param.id}: unknown keys {set(case) - CASE_KEYS}"
        assert "body" in case, param.id


def _problems(problems: Any) -> Counter[tuple[str, str | None]]:
    return Counter((code, param) for code, param in problems)


def _run(ruleset: RuleSet, case: dict[str, Any]) -> Result:
    webhook = Webhook.make(
        json.dumps(case["body"], ensure_ascii=False).encode("utf-8"),
        case.get("headers") or {},
        case.get("topic"),
    )
    return process(ruleset, webhook)


@pytest.mark.parametrize(("stem", "index", "case"), CASES)
def test_semantics_case(
    compiled: Callable[[str, int], RuleSet], stem: str, index: int, case: dict[str, Any]
) -> None:
    """The webhook becomes exactly the declared sent and dropped events."""
    result = _run(compiled(stem, index), case)
    assert result.sent == case.get("sent", [])
    dropped = [
        {
            "eventTypeKey": event.event_type,
            "problems": _problems((p.code, p.param) for p in event.problems),
        }
        for event in result.dropped
    ]
    expected = [
        {"eventTypeKey": want["eventTypeKey"], "problems": _problems(want["problems"])}
        for want in case.get("dropped", [])
    ]
    assert dropped == expected, "\n".join(
        f"{p.code} {p.param}: {p.message}" for e in result.dropped for p in e.problems
    )
    if "warnings" in case:
        sent = [e for e in result.events if e.ok and e.held is None]
        warnings = ((p.code, p.param) for e in sent for p in e.warnings)
        assert _problems(warnings) == _problems(case["warnings"])
    if "matched" in case:
        assert [r.rule for r in result.rules if r.matched] == case["matched"]
    if "summary_contains" in case:
        assert case["summary_contains"] in result.summary()


# -- non-finite numbers -------------------------------------------------------------------

NON_FINITE_RULESET = """\
name: non-finite
api_version: {version}
topic: {{header: X-Topic}}
rules:
  - name: r
    topics: t
    events:
      - type: custom
        key: email
        params: {{total: total, obj: obj}}
      - type: computed
        key: email
        params:
          obj: "{{x: to_number(big)}}"
"""


def _non_finite(tmp_path: Path, version: str) -> RuleSet:
    path = tmp_path / f"non-finite-{version}.yaml"
    path.write_text(NON_FINITE_RULESET.format(version=version), encoding="utf-8")
    (ruleset,) = load([path], env=ENV).rulesets
    return ruleset


@pytest.mark.parametrize(
    "raw",
    [
        b'{"email": "a@example.com", "total": NaN}',
        b'{"email": "a@example.com", "obj": {"x": Infinity}}',
        b'{"email": "a@example.com", "total": -Infinity}',
    ],
    ids=["NaN scalar", "Infinity in an object", "-Infinity"],
)
def test_nan_and_infinity_bodies_are_refused_as_invalid_json(tmp_path: Path, raw: bytes) -> None:
    """NaN and Infinity are not JSON: the body is a PayloadError, not an event with "nan"."""
    with pytest.raises(PayloadError):
        process(_non_finite(tmp_path, "v1"), Webhook.make(raw, {"X-Topic": "t"}))


def test_computed_infinity_in_a_v2_object_drops_the_event(tmp_path: Path) -> None:
    """to_number('1e999') inside a v2 object param: that event is dropped, not sent as JSON."""
    body = b'{"email": "a@example.com", "big": "1e999"}'
    result = process(_non_finite(tmp_path, "v2"), Webhook.make(body, {"X-Topic": "t"}))
    assert [e.event_type for e in result.dropped] == ["computed"]
    assert [e["eventTypeKey"] for e in result.sent] == ["custom"]


def test_computed_infinity_in_a_v1_object_drops_the_event(tmp_path: Path) -> None:
    """to_number('1e999') inside a v1 object param: that event is dropped, process() goes on."""
    body = b'{"email": "a@example.com", "big": "1e999"}'
    result = process(_non_finite(tmp_path, "v1"), Webhook.make(body, {"X-Topic": "t"}))
    assert [e.event_type for e in result.dropped] == ["computed"]
    assert [e["eventTypeKey"] for e in result.sent] == ["custom"]
