"""`hookmap playground`: the page served on loopback, driven in a real headless Chromium
(typing into it, reading what it shows), and its JSON endpoint over real HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from click.testing import CliRunner

from engine.cli import main
from engine.playground.run import RunningPlayground, running
from engine.playground.session import Settings, handlers
from tests.conftest import ROOT
from tests.support.http_stub import HttpStub, Reply

if TYPE_CHECKING:
    from playwright.sync_api import Page

OUTPUT = ROOT / "tests-output"
SHOPIFY = ROOT / "rules" / "shopify"
ORDER = ROOT / "examples" / "shopify" / "orders-create.json"


@pytest.fixture
def cdp() -> Iterator[HttpStub]:
    """Where HOOKMAP_API_URL points: a stub that would record anything sent to it."""
    with HttpStub(lambda call: Reply(200, {"ok": True})) as stub:
        yield stub


@pytest.fixture
def playground(cdp: HttpStub) -> Iterator[RunningPlayground]:
    env = {"HOOKMAP_API_URL": f"{cdp.url}/api", "SHOPIFY_PHONE_COUNTRY_CODE": ""}
    settings = Settings(rules=("rules/shopify",), webhooks=("examples/shopify",), env=env)
    with running(handlers(settings)) as served:
        yield served


def post(served: RunningPlayground, doc: Any, **headers: str) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.post(f"{served.url}api/run", json=doc, headers=headers)


def shopify_files(change: tuple[str, str] | None = None) -> list[dict[str, str]]:
    files = []
    for name in ("ruleset.yaml", "orders.yaml", "checkouts.yaml", "tests.yaml"):
        text = (SHOPIFY / name).read_text(encoding="utf-8")
        if change and name == "ruleset.yaml":
            text = text.replace(*change)
        files.append({"path": f"rules/shopify/{name}", "text": text})
    return files


def order_webhook(**replace: str) -> dict[str, str]:
    body = ORDER.read_text(encoding="utf-8")
    for old, new in replace.items():
        body = body.replace(old, new)
    headers = ORDER.with_suffix(".headers").read_text(encoding="utf-8")
    return {"headers": headers, "body": body, "topic": "", "mocks": ""}


# -- the endpoint ----------------------------------------------------------------------


def test_a_run_gives_the_events_the_report_and_the_rule_tests(
    playground: RunningPlayground, cdp: HttpStub
) -> None:
    answer = post(playground, {"files": shopify_files(), "webhook": order_webhook()}).json()
    assert answer["error"] is None and answer["diagnostics"] == []
    assert answer["result"]["summary"] == "1 event(s) to send, 0 dropped"
    (card,) = answer["cards"]
    assert (card["eventTypeKey"], card["sent"], card["rule"]) == (
        "orderCreated",
        True,
        "order-created",
    )
    assert card["curl"].startswith(f"curl -sS -X POST '{cdp.url}/api/v1/event'")
    assert '"hookmap:$HOOKMAP_API_KEY"' in card["curl"]
    traces = {p["name"]: p for p in card["params"]}
    assert traces["totalCost"]["expression"] == "total_price"
    assert traces["totalCost"]["value"] == "161.78"
    assert answer["tests"]["failed"] == [] and answer["tests"]["passed"] > 10
    assert "SEND orderCreated #0 (rule order-created" in answer["report"]
    assert cdp.calls == [], "the playground never sends"


def test_rules_edited_as_text_get_the_diagnostics_validate_prints(
    playground: RunningPlayground, tmp_path: Path
) -> None:
    """The same text saved in a file and linted by `hookmap validate` gives the same lines."""
    text = "name: t\ntopic: {header: X-T}\nrules:\n  - name: r\n    topics: a\n    events:\n"
    text += (
        "      - type: custom\n        key: upper(x, y)\n        params: {a: lookup('nope', b)}\n"
    )
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    answer = post(playground, {"files": [{"path": str(path), "text": text}]}).json()
    rendered = [d["rendered"] for d in answer["diagnostics"]]
    errors = sum(1 for d in answer["diagnostics"] if d["severity"] == "error")
    assert errors >= 2 and answer["error"].startswith(f"the rules have {errors} error(s)")
    validate = CliRunner().invoke(main, ["validate", str(path)])
    assert validate.exit_code == 1
    assert validate.output.startswith("\n".join(rendered) + "\n")
    assert re.search(rf"{re.escape(str(path))}:8:14: error\[E202\]", rendered[0])


def test_bad_webhooks_and_mocks_are_said_where(playground: RunningPlayground) -> None:
    files = shopify_files()
    answer = post(
        playground, {"files": files, "webhook": order_webhook(**{'"id"': '"id" x'})}
    ).json()
    assert re.match(r"webhook:\d+:\d+: invalid JSON", answer["error"])
    bad_headers = {**order_webhook(), "headers": "X-Shopify-Topic orders/create"}
    answer = post(playground, {"files": files, "webhook": bad_headers}).json()
    assert answer["error"].startswith("headers:1: expected 'Name: value'")
    answer = post(playground, {"files": files, "webhook": {**order_webhook(), "mocks": "{"}}).json()
    assert answer["error"].startswith("lookup answers (mocks): not JSON")


LOOKUPS = """name: t
topic: {header: X-T}
hosts: [127.0.0.1]
lookups:
  order: {url: "http://127.0.0.1:${API_PORT}/orders/{id}", args: {id: id}, retries: 0}
  customer: {url: "http://127.0.0.1:${API_PORT}/customers/{id}", args: {id: id}, retries: 0}
rules:
  - name: r
    topics: a
    events:
      - type: custom
        key: fetched('order').email
        params: {total: fetched('order').total, name: fetched('customer').name}
"""


def test_lookups_without_an_answer_are_named_not_made_from_nulls(cdp: HttpStub) -> None:
    """As dry-run without --mock: every lookup the webhook needs and has no answer for is
    named with its URL and how to give it, in one run, and no events are shown; with
    --live, the page's answers still come first and only the others reach the API."""
    with HttpStub(lambda call: Reply(200, {"name": "Ada"})) as api:
        env = {"HOOKMAP_API_URL": f"{cdp.url}/api", "API_PORT": str(api.port)}
        files = [{"path": "t.yaml", "text": LOOKUPS}]
        webhook = {"headers": "X-T: a", "body": '{"id": 7}', "mocks": ""}
        with running(handlers(Settings(env=env))) as served:
            answer = post(served, {"files": files, "webhook": webhook}).json()
            assert "no answer for lookup(s) order (GET http://127.0.0.1:" in answer["error"]
            assert '{"order": ..., "customer": ...}' in answer["error"]
            needs = [n["lookup"] for n in answer["result"]["needs_mock"]]
            assert needs == ["order", "customer"] and answer["cards"] == []
            assert answer["result"]["explain"]["rules"][0]["matched"] is True
            assert answer["result"]["summary"] == (
                "not evaluated: no answer for lookup(s) order, customer under Lookup answers"
            )
            order = '{"order": {"email": "a@example.com", "total": 5}}'
            answer = post(served, {"files": files, "webhook": {**webhook, "mocks": order}})
            assert [n["lookup"] for n in answer.json()["result"]["needs_mock"]] == ["customer"]
        assert api.calls == [], "no API is called without --live"
        with running(handlers(Settings(env=env, live=True))) as served:
            answer = post(served, {"files": files, "webhook": {**webhook, "mocks": order}}).json()
        assert answer["error"] is None
        params = {p["name"]: p["value"] for p in answer["cards"][0]["params"]}
        assert params == {"total": 5, "name": "Ada"}
        assert [c.path for c in api.calls] == ["/customers/7"]


def test_credentials_in_the_environment_stay_out_of_the_rules(cdp: HttpStub) -> None:
    text = "name: t\ntopic: {header: X-T}\nvars:\n  k: ${SHOP_API_TOKEN:-withheld}\n"
    text += "  c: ${SHOP_COUNTRY:-none}\nrules:\n  - name: r\n    topics: a\n    events:\n"
    text += "      - type: custom\n        key: id\n        params: {k: var('k'), c: var('c')}\n"
    env = {"SHOP_API_TOKEN": "tok-do-not-show", "SHOP_COUNTRY": "UA"}
    with running(handlers(Settings(env=env))) as served:
        webhook = {"headers": "X-T: a", "body": '{"id": 1}'}
        answer = post(served, {"files": [{"path": "t.yaml", "text": text}], "webhook": webhook})
    assert "tok-do-not-show" not in answer.text
    params = {p["name"]: p["value"] for p in answer.json()["cards"][0]["params"]}
    assert params == {"k": "withheld", "c": "UA"}


def test_only_loopback_hosts_and_json_posts_are_answered(playground: RunningPlayground) -> None:
    with httpx.Client(trust_env=False, timeout=5) as client:
        evil = client.get(playground.url, headers={"Host": f"evil.example:{playground.port}"})
        assert evil.status_code == 403
        form = client.post(
            f"{playground.url}api/run", content=b"{}", headers={"Content-Type": "text/plain"}
        )
        assert form.status_code == 415
        page = client.get(playground.url)
        assert (
            page.status_code == 200
            and "default-src 'self'" in page.headers["content-security-policy"]
        )
        assert all(
            u.startswith("/static/") for u in re.findall(r'(?:src|href)="([^"]+)"', page.text)
        )
        catalog = client.get(f"{playground.url}api/catalog").json()
    assert [r["name"] for r in catalog["rulesets"]] == ["shopify"]
    assert "examples/shopify/orders-create.json" in [w["name"] for w in catalog["webhooks"]]


def test_the_command_has_help() -> None:
    result = CliRunner().invoke(main, ["playground", "--help"])
    assert result.exit_code == 0 and "Nothing is sent to the CDP" in result.output


# -- in the browser ------------------------------------------------------------------------


def _wait_status(page: Page, text: str) -> None:
    # a locator assertion, not wait_for_function: the page's CSP forbids eval, rightly
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_contain_text(text)


def test_the_page_live_as_you_type(
    playground: RunningPlayground, cdp: HttpStub, page: Page
) -> None:
    """Pick the Shopify rules and an example order, see the event; type a typo into the
    rules and see the located diagnostic with its caret; type the order's total away and
    see the event dropped with its problem; a screenshot is kept in tests-output/."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(playground.url)
    page.locator("#ruleset option").nth(1).wait_for(state="attached")
    page.select_option("#ruleset", label="shopify")
    page.select_option("#example", label="examples/shopify/orders-create.json")
    _wait_status(page, "1 event(s) to send, 0 dropped")
    card = page.locator("#events article").first
    assert card.locator(".badge").inner_text() == "SEND"
    assert "orderCreated #0" in card.locator("h3").inner_text()
    assert "rule tests: " in page.locator("#tests").inner_text()
    assert f"curl -sS -X POST '{cdp.url}/api/v1/event'" in card.locator(".curl").inner_text()

    # a call left open, typed into the rules: the diagnostic, located, with the caret
    page.select_option("#file", label="rules/shopify/ruleset.yaml")
    editor = page.locator("#rules")
    text = editor.input_value()
    offset = text.index("totalCost: total_price") + len("totalCost: total_price")
    editor.evaluate("(area, at) => { area.focus(); area.setSelectionRange(at, at); }", offset)
    page.keyboard.type("(")
    _wait_status(page, "error(s) in the rules")
    diagnostic = page.locator("#diagnostics .diagnostic").first.inner_text()
    line = text[:offset].count("\n") + 1
    assert diagnostic.startswith(f"rules/shopify/ruleset.yaml:{line}:"), diagnostic
    assert "error[E203]" in diagnostic and diagnostic.splitlines()[-1].strip() == "^"
    page.keyboard.press("Backspace")
    _wait_status(page, "1 event(s) to send, 0 dropped")

    # the order's total typed away: dropped, with the problem and where the param is
    body = page.locator("#body")
    body.fill(body.input_value().replace('"total_price": "161.78"', '"total_price": null'))
    _wait_status(page, "1 event(s) dropped")
    dropped = page.locator("#events article.drop").first
    assert dropped.locator(".badge").inner_text() == "DROP"
    problems = dropped.locator(".problems").inner_text()
    assert "error[V101] totalCost" in problems and "rules/shopify/ruleset.yaml:" in problems
    OUTPUT.mkdir(exist_ok=True)
    page.set_viewport_size({"width": 1600, "height": 1000})
    page.screenshot(path=str(OUTPUT / "playground.png"), full_page=True)
    assert (OUTPUT / "playground.png").stat().st_size > 10_000
    assert errors == [] and cdp.calls == []


PASTED = """name: pasted
topic: {header: X-Topic}
rules:
  - name: signup
    topics: customer.created
    events:
      - type: customerSignedUp
        key: email
        params:
          name: upper(first)
"""


def test_rules_and_a_webhook_pasted_in(playground: RunningPlayground, page: Page) -> None:
    """Paste your own: a rule set of one file and a webhook typed in; a diagnostic clicked
    puts the cursor at its line and column."""
    page.goto(playground.url)
    page.locator("#ruleset option").nth(1).wait_for(state="attached")
    page.select_option("#ruleset", label="(paste your own)")
    page.select_option("#example", label="(paste your own)")
    page.locator("#rules").fill(PASTED.replace("upper(first)", "upper(first, last)"))
    page.locator("#headers").fill("X-Topic: customer.created")
    page.locator("#body").fill("")
    page.locator("#body").press_sequentially('{"email": "ann@example.com", "first": "Ann"}')
    _wait_status(page, "1 error(s) in the rules")
    diagnostic = page.locator("#diagnostics .diagnostic").first
    assert diagnostic.inner_text().startswith("playground.yaml:10:17: error[E202]")
    diagnostic.click()
    assert page.locator("#caret").inner_text() == "line 10, column 17"
    page.locator("#rules").fill(PASTED)
    _wait_status(page, "1 event(s) to send, 0 dropped")
    card = page.locator("#events article").first
    assert "customerSignedUp #0" in card.locator("h3").inner_text()
    card.locator("details.trace summary").click()
    row = card.locator("table.params tr").nth(1).inner_text().split("\t")
    assert row == ["name", '"ANN"', "sent", "upper(first)", "playground.yaml:10:11"]
