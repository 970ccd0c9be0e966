"""dry-run and the platform's API: no network unless --live, and what to mock when it is off.

The Ecwid rule set fetches its orders; its API is a real HTTP stub on loopback here
(``ECWID_API_BASE``), so a call that should not be made would be seen, and a --live run
really goes over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import main
from tests.conftest import ROOT
from tests.support.http_stub import Call, HttpStub, Reply

WEBHOOK = "examples/ecwid/order-created.json"
API = ROOT / "examples" / "ecwid" / "api"


def answer(call: Call) -> Reply:
    """The store's API: the order and the profile from the fixture files."""
    if call.path.endswith("/orders/HM4Q7"):
        return Reply(200, json.loads((API / "order-HM4Q7.json").read_text(encoding="utf-8")))
    if call.path.endswith("/profile"):
        return Reply(200, json.loads((API / "profile-1003456.json").read_text(encoding="utf-8")))
    return Reply(404, {"errorMessage": "not found"})


@pytest.fixture
def api() -> Iterator[HttpStub]:
    with HttpStub(answer) as stub:
        yield stub


def dry_run(stub: HttpStub, *args: str) -> tuple[int, str]:
    env = {
        "ECWID_API_BASE": stub.url,
        "ECWID_API_HOST": "127.0.0.1",
        "ECWID_ACCESS_TOKEN": "secret-token-never-printed",
    }
    result = CliRunner().invoke(
        main, ["dry-run", "--rules", "rules/ecwid", *args], env=env, catch_exceptions=False
    )
    assert "secret-token-never-printed" not in result.output
    return result.exit_code, result.output


def test_without_mocks_no_api_is_called_and_each_lookup_to_mock_is_named(api: HttpStub) -> None:
    """Offline by default: exit 1, and the exact --mock option for every lookup needed."""
    code, out = dry_run(api, WEBHOOK)
    assert (code, api.calls) == (1, [])
    assert f"NO ANSWER lookup order: GET {api.url}/api/v3/1003456/orders/HM4Q7" in out
    assert "pass --mock order=FILE" in out and "pass --mock profile=FILE" in out
    assert out.rstrip().endswith(
        "not evaluated: no answer for lookup(s) order, profile: "
        "pass --mock order=FILE --mock profile=FILE, or --live"
    )
    assert "SEND" not in out and "DROP" not in out  # nothing made from null answers


def test_the_json_document_names_the_lookups_to_mock(api: HttpStub) -> None:
    """--json carries the same: which lookup, its URL, and the option, not an empty list."""
    code, out = dry_run(api, "--json", WEBHOOK)
    doc = json.loads(out)
    assert (code, api.calls, doc["events"], doc["webhook"]) == (1, [], [], WEBHOOK)
    assert doc["needs_mock"] == [
        {
            "lookup": "order",
            "url": f"{api.url}/api/v3/1003456/orders/HM4Q7",
            "option": "--mock order=FILE",
        },
        {
            "lookup": "profile",
            "url": f"{api.url}/api/v3/1003456/profile",
            "option": "--mock profile=FILE",
        },
    ]


def test_a_mock_for_one_lookup_leaves_only_the_other_to_name(api: HttpStub) -> None:
    code, out = dry_run(api, "--mock", f"order={API / 'order-HM4Q7.json'}", "--json", WEBHOOK)
    assert (code, api.calls) == (1, [])
    assert [m["lookup"] for m in json.loads(out)["needs_mock"]] == ["profile"]


def test_with_every_mock_the_events_are_shown_and_no_api_is_called(api: HttpStub) -> None:
    code, out = dry_run(
        api,
        "--mock",
        f"order={API / 'order-HM4Q7.json'}",
        "--mock",
        f"profile={API / 'profile-1003456.json'}",
        WEBHOOK,
    )
    assert (code, api.calls) == (0, [])
    assert "SEND orderCreated" in out


def test_live_calls_the_api_with_the_token_for_what_is_not_mocked(api: HttpStub) -> None:
    """--live: the lookups without a mock go to the platform, with its credentials."""
    code, out = dry_run(api, "--live", "--mock", f"profile={API / 'profile-1003456.json'}", WEBHOOK)
    assert code == 0, out
    assert [c.path for c in api.calls] == ["/api/v3/1003456/orders/HM4Q7"]
    assert api.calls[0].header("Authorization") == "Bearer secret-token-never-printed"
    assert f"lookup order: GET {api.url}/api/v3/1003456/orders/HM4Q7" in out
    assert "SEND orderCreated" in out


def test_live_with_the_api_down_suggests_a_mock_in_text_and_json(tmp_path: Path) -> None:
    """A failed live lookup says so and how to answer it from a file instead, in both forms."""
    with HttpStub(lambda call: Reply(503, "down")) as down:
        code, out = dry_run(down, "--live", WEBHOOK)
        assert code == 1
        assert "failed: HTTP 503 after 3 attempt(s)" in out
        assert "answer it from a file instead: --mock order=FILE" in out
        code, out = dry_run(down, "--live", "--json", WEBHOOK)
    doc = json.loads(out)
    assert code == 1
    assert doc["lookup_failed"] == {
        "lookup": "order",
        "url": f"{down.url}/api/v3/1003456/orders/HM4Q7",
        "reason": "HTTP 503 after 3 attempt(s)",
        "option": "--mock order=FILE",
    }
