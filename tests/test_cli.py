"""The hookmap command as a user runs it: CliRunner for most, a few real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from engine.cli import main
from tests.conftest import ROOT

ORDER = "examples/shopify/orders-create.json"
POS = "examples/shopify/orders-create-pos.json"


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def test_validate_clean_rules_exit_0() -> None:
    code, out = run("validate", "rules/")
    assert code == 0
    assert "0 error(s), 0 warning(s); rule sets loaded: " in out
    assert "shopify" in out and "woocommerce" in out


def test_validate_reports_location_code_and_caret(tmp_path: Path) -> None:
    """An unknown function is found at load, at its column inside the expression."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "name: bad\ntopic: {header: X-Topic}\nrules:\n  - name: r\n    topics: a\n"
        "    events:\n      - type: custom\n        key: id\n"
        "        params:\n          when: to_timestmp(created)\n",
        encoding="utf-8",
    )
    code, out = run("validate", str(bad))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == (
        f"{bad}:10:17: error[E201]: unknown function 'to_timestmp' (did you mean 'to_epoch'?)"
    ) or lines[0].startswith(f"{bad}:10:17: error[E201]: unknown function 'to_timestmp'")
    assert lines[1] == "  10 |           when: to_timestmp(created)"
    assert lines[2].index("^") == lines[1].index("to_timestmp")


def test_validate_json_output_lists_diagnostics(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\napi_version: v3\ntopic: {header: X}\n", encoding="utf-8")
    code, out = run("validate", "--json", str(bad))
    assert code == 1
    doc = json.loads(out)
    assert [(d["code"], d["line"], d["col"]) for d in doc["diagnostics"]] == [("E106", 2, 14)]


def test_validate_missing_path_is_a_usage_error() -> None:
    code, _ = run("validate", "no/such/rules")
    assert code == 2


def test_dry_run_json_gives_the_exact_request_bodies() -> None:
    code, out = run("dry-run", "--rules", "rules/", "--json", ORDER)
    assert code == 0
    doc = json.loads(out)
    assert doc["dropped"] == []
    (event,) = doc["events"]
    assert event["eventTypeKey"] == "orderCreated"
    assert event["keyValue"] == "olivia.bennett@example.com"
    params = {p["name"]: p["value"] for p in event["params"]}
    assert params["totalCost"] == "161.78"
    assert all(isinstance(v, str) for v in params.values()), "v1 sends strings only"
    assert json.loads(params["items"])[0]["externalItemId"] == "49012345601011"
    assert doc["details"][0]["contact"] == {
        "by": "keyValue",
        "name": "keyValue",
        "value": "olivia.bennett@example.com",
    }


def test_dry_run_dropped_event_exits_1_with_every_problem() -> None:
    code, out = run("dry-run", "--rules", "rules/", "--json", POS)
    assert code == 1
    doc = json.loads(out)
    assert doc["events"] == []
    (dropped,) = doc["dropped"]
    assert dropped["rule"] == "order-created"
    assert {p["code"] for p in dropped["problems"] if p["severity"] == "error"} == {"V101", "V106"}


def test_dry_run_nothing_matched_exits_0_and_says_so() -> None:
    code, out = run("dry-run", "--rules", "rules/", "--topic", "orders/edited", ORDER)
    assert code == 0
    assert "no rule matches topic 'orders/edited': nothing to send" in out


def test_dry_run_bad_json_is_a_usage_error_with_line_and_column(tmp_path: Path) -> None:
    payload = tmp_path / "broken.json"
    payload.write_text('{\n  "id": 1,\n  "email": }\n', encoding="utf-8")
    code, out = run("dry-run", "--rules", "rules/", "--source", "shopify", str(payload))
    assert code == 2
    assert f"{payload}:3:12: invalid JSON" in out


def test_dry_run_missing_payload_is_a_usage_error() -> None:
    code, out = run("dry-run", "--rules", "rules/", "nope.json")
    assert code == 2
    assert "no such payload file: nope.json" in out


def test_dry_run_unknown_source_suggests_a_name() -> None:
    code, out = run("dry-run", "--rules", "rules/", "--source", "shopfy", ORDER)
    assert code == 2
    assert "did you mean 'shopify'?" in out


def test_dry_run_header_flag_overrides_the_headers_file() -> None:
    code, out = run(
        "dry-run", "--rules", "rules/", "-H", "X-Shopify-Topic: orders/fulfilled", "--json", ORDER
    )
    assert code == 0
    assert json.loads(out)["events"][0]["eventTypeKey"] == "orderDelivered"


def test_dry_run_explain_shows_rules_params_and_locations() -> None:
    code, out = run("dry-run", "--rules", "rules/", "--explain", ORDER)
    assert code == 0
    assert "rule order-created: matched: topic matched  [rules/shopify/orders.yaml:" in out
    assert (
        "rule order-fulfilled: skipped: topic 'orders/create' is not one of orders/fulfilled"
    ) in out
    assert 'totalCost = "161.78"  [sent] <- total_price  (rules/shopify/ruleset.yaml:' in out


def test_dry_run_curl_never_prints_the_api_key() -> None:
    """--curl shows the exact request; the key is read from the environment, not printed."""
    secret = "sk-test-0123456789abcdef"
    code, out = run(
        "dry-run",
        "--rules",
        "rules/",
        "--curl",
        ORDER,
        env={"HOOKMAP_API_KEY": secret, "HOOKMAP_API_URL": "https://cdp.test/api"},
    )
    assert code == 0
    assert secret not in out
    assert "curl -sS -X POST 'https://cdp.test/api/v1/event'" in out
    assert '-u "hookmap:$HOOKMAP_API_KEY"' in out
    body = out.split("<<'HOOKMAP_BODY'\n", 1)[1].split("\nHOOKMAP_BODY", 1)[0]
    assert json.loads(body)["eventTypeKey"] == "orderCreated"


def test_dry_run_several_payloads_in_one_json_document() -> None:
    code, out = run("dry-run", "--rules", "rules/", "--json", ORDER, POS)
    assert code == 1
    doc = json.loads(out)
    assert [len(r["events"]) for r in doc["results"]] == [1, 0]


def test_test_command_runs_declared_cases() -> None:
    code, out = run("test", "rules/")
    assert code == 0
    assert out.splitlines()[-1].endswith(" passed, 0 failed")


def test_test_command_shows_a_diff_and_exits_1(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "name: r\ntopic: {header: X-Topic}\nrules:\n  - name: one\n    topics: t\n"
        "    events:\n      - type: ping\n        key: email\n        params: {n: n}\n"
        "tests:\n  - name: wrong n\n    body: {email: a@example.com, n: 2}\n"
        "    headers: {X-Topic: t}\n    expect:\n      events:\n"
        "        - {eventTypeKey: ping, keyValue: a@example.com,\n"
        "           params: [{name: n, value: '3'}]}\n",
        encoding="utf-8",
    )
    code, out = run("test", str(rules))
    assert code == 1
    assert "FAIL r::wrong n" in out
    assert '-    "n": "3"' in out and '+    "n": "2"' in out
    assert out.splitlines()[-1] == "0 passed, 1 failed"


def test_schema_is_json_schema_that_accepts_the_shipped_rules() -> None:
    code, out = run("schema")
    assert code == 0
    schema = json.loads(out)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted((ROOT / "rules").rglob("*.yaml")):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        errors = [e.message for e in validator.iter_errors(document)]
        assert errors == [], path


def test_schema_rejects_an_unknown_key() -> None:
    schema = json.loads(run("schema")[1])
    errors = list(
        jsonschema.Draft202012Validator(schema).iter_errors(
            {"name": "x", "topic": {"header": "X"}, "rules": [{"name": "r", "topcs": "a"}]}
        )
    )
    assert errors


def test_docs_file_is_generated_from_the_schema() -> None:
    """docs/rules.md is what `hookmap docs` renders now (edit the declarations, not it)."""
    code, _ = run("docs", "--check")
    assert code == 0, "docs/rules.md is stale: run `hookmap docs`"


def test_unknown_command_suggests_one() -> None:
    code, out = run("dryrun")
    assert code == 2
    assert "did you mean 'dry-run'?" in out


# -- real processes ---------------------------------------------------------------

HOOKMAP = shutil.which("hookmap", path=str(Path(sys.executable).parent)) or ""


@pytest.fixture
def installed() -> str:
    if not HOOKMAP:
        pytest.skip("the hookmap command is not installed in this environment")
    return HOOKMAP


def test_installed_command_validates_and_tests(installed: str) -> None:
    done = subprocess.run(
        [installed, "validate", "rules/"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [installed, "test", "rules/"], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert done.returncode == 0
    assert done.stdout.splitlines()[-1].endswith("passed, 0 failed")


def test_installed_command_dry_run_json(installed: str) -> None:
    env = {**os.environ, "HOOKMAP_API_KEY": "never-printed-key"}
    done = subprocess.run(
        [
            installed,
            "dry-run",
            "--rules",
            "rules/",
            "--json",
            "--curl",
            "examples/woocommerce/order-created.json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "never-printed-key" not in done.stdout + done.stderr
    assert json.loads(done.stdout)["events"][0]["keyValue"] == "amelia.hughes@example.com"


def test_installed_command_usage_error_exit_2(installed: str) -> None:
    done = subprocess.run(
        [installed, "dry-run", "--rules", "rules/"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 2


def test_a_test_with_both_webhook_and_body_is_a_lint_error(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "name: r\ntopic: {header: X-Topic}\nrules: []\ntests:\n  - name: both\n"
        f"    webhook: {ROOT / 'docs/tour/order.json'}\n    body: {{a: 1}}\n"
        "    expect: {events: []}\n",
        encoding="utf-8",
    )
    code, out = run("validate", str(rules))
    assert code == 1
    assert "give only one of webhook, body" in out


def test_a_stray_expected_param_fails_the_test_instead_of_crashing(tmp_path: Path) -> None:
    rules = tmp_path / "r.yaml"
    rules.write_text(
        "name: r\ntopic: {header: X-Topic}\nrules:\n  - name: one\n    topics: t\n"
        "    events:\n      - type: ping\n        key: email\n        params: {n: n}\n"
        "tests:\n  - name: stray\n    body: {email: a@example.com, n: 2}\n"
        "    headers: {X-Topic: t}\n    expect:\n      events:\n"
        "        - {eventTypeKey: ping, keyValue: a@example.com, params: [null]}\n",
        encoding="utf-8",
    )
    code, out = run("test", str(rules))
    assert code == 1
    assert "FAIL r::stray" in out


def test_replay_since_goes_through_every_page_once(tmp_path: Path) -> None:
    """`replay --since` over more webhooks than a page: each processed once, one event
    each (the events' identity keeps a second replay from adding any)."""
    from engine.server.store.sqlite import DB_NAME, Store
    from engine.webhook import read_webhook_file

    example = read_webhook_file(ROOT / ORDER)
    data = tmp_path / "data"
    with Store(data / DB_NAME) as store:
        for n in range(205):  # a page is 200
            store.add_webhook("shopify", dict(example.headers), example.body, f"d{n}")
    env = {"SHOPIFY_PHONE_COUNTRY_CODE": ""}
    args = ("replay", "--data", str(data), "--rules", "rules/", "--since", "1d", "--no-send")
    code, out = run(*args, env=env)
    assert code == 0, out
    assert "205 webhook(s) replayed: 205 new event(s), 0 re-queued" in out
    code, out = run(*args, env=env)
    assert "205 webhook(s) replayed: 0 new event(s), 0 re-queued" in out
    with Store(data / DB_NAME) as store:
        counts = store.counts()
    assert counts["webhooks"]["processed"] == 205
    assert counts["events"]["pending"] == 205


def test_installed_command_dry_run_of_lone_surrogates(installed: str, tmp_path: Path) -> None:
    """JSON may hold "\\ud800", which no encoding can print or put in a URL: a lookup
    argument holding one fails that lookup, a param holding one drops its event with
    V114, and --json output carries it as the same escape; no traceback."""
    bigcommerce = tmp_path / "order.json"
    bigcommerce.write_text(
        '{"scope": "store/order/created", "store_id": "1", "producer": "stores/a\\udc00",'
        ' "data": {"type": "order", "id": 250}}',
        encoding="utf-8",
    )
    shopify = tmp_path / "orders-create.json"
    order = (ROOT / ORDER).read_text(encoding="utf-8")
    shopify.write_text(order.replace('"email": "', '"email": "\\ud800', 1), encoding="utf-8")
    shutil.copy(ROOT / ORDER.replace(".json", ".headers"), tmp_path / "orders-create.headers")
    env = {**os.environ, "BIGCOMMERCE_ACCESS_TOKEN": "t"}
    mocks = ["--mock", "order=examples/bigcommerce/api/order-250.json"]
    for args in (
        ["--rules", "rules/bigcommerce", *mocks, "-H", "X-Topic: a", str(bigcommerce)],
        ["--rules", "rules/shopify", "--json", str(shopify)],
    ):
        done = subprocess.run(
            [installed, "dry-run", *args], capture_output=True, cwd=ROOT, env=env, check=False
        )
        assert done.returncode == 1, done.stderr.decode()
        assert b"Traceback" not in done.stdout + done.stderr
        if "--json" in args:
            doc = json.loads(done.stdout)
            (dropped,) = doc["dropped"]
            assert {p["code"] for p in dropped["problems"]} >= {"V114"}
            assert doc["details"][0]["contact"]["value"].startswith("\ud800")
        else:
            assert b"argument 'store' is not valid text" in done.stdout + done.stderr
