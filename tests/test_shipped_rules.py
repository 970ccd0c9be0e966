"""The shipped rule sets: they load clean, and their declared rule tests pass.

The cases are the ones ``hookmap test rules/`` runs, through the same runner.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from engine import ruletests
from engine.events.encode import body_bytes
from engine.lookups import MockFetcher
from engine.pipeline import process
from engine.rules import compiler
from engine.server.processor import new_events
from tests.conftest import ROOT

RULES = ROOT / "rules"
LOADED = compiler.load([RULES])


def test_shipped_rules_load_without_any_diagnostic() -> None:
    """No error and no warning in rules/ (the linter is held to its own standard)."""
    assert [d.render() for d in LOADED.diagnostics] == []
    names = {r.name for r in LOADED.rulesets}
    assert {"shopify", "woocommerce"} <= names
    folders = {
        p.name.removesuffix(".yaml")
        for p in RULES.iterdir()
        if p.is_dir() or (p.suffix == ".yaml" and ".tests" not in p.name)
    }
    assert folders <= names, "every rule file or folder under rules/ loads"


def _cases() -> list[Any]:
    return [
        pytest.param(rs, case, id=f"{rs.name}::{case.name}")
        for rs in LOADED.rulesets
        for case in rs.tests
    ]


@pytest.mark.parametrize(("ruleset", "case"), _cases())
def test_rule_case(ruleset: Any, case: Any) -> None:
    """Each declared rule test passes."""
    outcome = ruletests.run_case(ruleset, case)
    assert outcome.passed, "\n".join(outcome.failures)


PLATFORMS = sorted(p.name for p in (ROOT / "examples").iterdir() if p.is_dir())


@pytest.mark.parametrize("platform", PLATFORMS)
def test_every_example_webhook_is_covered_by_a_rule_test(platform: str) -> None:
    """No bundled example webhook is left without a test of what it becomes."""
    tests = [c for rs in LOADED.rulesets for c in rs.tests if c.body_file]
    used = {Path(c.body_file).name for c in tests if f"examples/{platform}/" in c.body_file}
    examples = {
        p.name
        for p in (ROOT / "examples" / platform).iterdir()
        if p.is_file() and p.suffix in (".json", ".txt", ".jwt")
    }
    assert examples - used == set()


def test_a_broken_expectation_fails_with_a_readable_diff() -> None:
    """The runner reports a wrong expected value as a diff, not a bare False."""
    ruleset = LOADED.get("shopify")
    assert ruleset is not None
    case = next(c for c in ruleset.tests if c.name.startswith("orders/create becomes"))
    broken = dict(case.expect)
    event = dict(broken["events"][0])
    event["keyValue"] = "someone.else@example.com"
    broken["events"] = [event]
    outcome = ruletests.run_case(ruleset, dataclasses.replace(case, expect=broken))
    assert not outcome.passed
    text = "\n".join(outcome.failures)
    assert '-  "keyValue": "someone.else@example.com"' in text
    assert '+  "keyValue": "olivia.bennett@example.com"' in text


def test_expected_warnings_are_held_to_what_the_events_carry() -> None:
    """`warnings:` fails for a warning the events do not carry, and `[]` for one they do."""
    ruleset = LOADED.get("woocommerce")
    assert ruleset is not None
    case = next(c for c in ruleset.tests if "(555) 555-5555" in c.name)
    assert ruletests.run_case(ruleset, case).passed
    for wrong in ([{"code": "W106", "param": "email"}], ["W105"], []):
        expect = {**case.expect, "warnings": wrong}
        outcome = ruletests.run_case(ruleset, dataclasses.replace(case, expect=expect))
        assert not outcome.passed, wrong
        assert "phone() dropped '(555) 555-5555': not a valid number for US" in "".join(
            outcome.failures
        )


@pytest.mark.parametrize(("ruleset", "case"), _cases())
def test_each_event_is_encoded_once_as_it_is_stored(ruleset: Any, case: Any) -> None:
    """The bytes encoded while checking an event are what body_bytes writes (the store
    keeps them rather than encoding the body again)."""
    result = process(ruleset, ruletests.webhook_for(case), fetcher=MockFetcher(case.mocks))
    for event in result.events:
        if event.body is None:
            assert event.wire is None
        else:
            assert event.wire == body_bytes(event.body)
            assert next(
                e.wire for e in new_events(result) if (e.rule, e.idx) == (event.rule, event.index)
            ) == body_bytes(event.body)


def test_an_invalid_phone_is_neither_sent_nor_made_the_new_contacts_sms_channel() -> None:
    """BigCommerce's documented 1234567890: no phone param, no sms channel in v1/contact,
    and a W106 located at the rule's phone param that --explain marks as dropped."""
    ruleset = LOADED.get("bigcommerce")
    assert ruleset is not None
    case = next(c for c in ruleset.tests if "1234567890" in c.name)
    result = process(ruleset, ruletests.webhook_for(case), fetcher=MockFetcher(case.mocks))
    (event,) = result.events
    assert event.ok and event.body is not None
    assert "phone" not in {p["name"] for p in event.body["params"]}
    assert event.contact_request is not None
    assert event.contact_request["channels"] == [
        {"type": "email", "value": "jordan.ellis@example.net"}
    ]
    (warning,) = [p for p in event.warnings if p.code == "W106"]
    assert (warning.param, warning.message) == (
        "phone",
        "phone() dropped '1234567890': not a valid number for US",
    )
    assert warning.where is not None and warning.where.file.endswith("orders.yaml")
    (trace,) = [t for t in event.traces if t.name == "phone"]
    assert (trace.value, trace.outcome, trace.where) == (None, "dropped", warning.where)
