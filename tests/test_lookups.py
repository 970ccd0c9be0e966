"""Enrichment lookups: URL building, host allow-list, HTTP fetching with retries and cache,
mocks, and the pipeline fetching only what matched rules read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.errors import LookupFailed
from engine.lookups import HttpFetcher, MockFetcher
from engine.pipeline import process
from engine.rules import compiler
from engine.rules.model import LookupSpec
from engine.webhook import Webhook
from tests.support.http_stub import HttpStub, Reply

RULES = """
name: shop
topic: {expression: event}
verify: {scheme: none}
hosts: [api.shop.example]
lookups:
  order:
    url: https://api.shop.example/orders/{id}
    args: {id: order_id}
    headers: {Authorization: "Bearer ${SHOP_TOKEN:-t0ken}"}
    cache_ttl: 60
  lines:
    url: https://api.shop.example/orders/{id}/lines
    args: {id: "fetched('order').id"}
rules:
  - name: paid
    topics: order.paid
    events:
      - type: custom
        key: fetched('order').email
        params:
          total: fetched('order').total
          count: length(fetched('lines'))
  - name: other
    topics: order.note
    events:
      - type: custom
        key: email
        params: {note: note}
"""


@pytest.fixture
def ruleset(tmp_path: Path) -> Any:
    path = tmp_path / "shop.yaml"
    path.write_text(RULES, encoding="utf-8")
    loaded = compiler.load([path], env={})
    assert loaded.ok, [d.render() for d in loaded.diagnostics]
    return loaded.rulesets[0]


def spec(url: str = "https://api.shop.example/orders/{id}", **kw: Any) -> LookupSpec:
    return LookupSpec("order", url, (), hosts=frozenset({"api.shop.example"}), **kw)


def test_values_are_percent_encoded_so_they_cannot_change_the_path_or_host() -> None:
    url = spec().build_url({"id": "1/admin?x=@evil.example#f"})
    assert url == "https://api.shop.example/orders/1%2Fadmin%3Fx%3D%40evil.example%23f"


def test_a_null_argument_fails_the_lookup() -> None:
    with pytest.raises(LookupFailed, match="argument 'id' is null"):
        spec().build_url({"id": None})


def test_a_host_outside_the_allow_list_is_refused_at_run_time() -> None:
    other = LookupSpec("o", "https://evil.example/{id}", (), hosts=frozenset({"api.shop.example"}))
    with pytest.raises(LookupFailed, match="not in the rule set's hosts"):
        other.build_url({"id": 1})


def test_load_refuses_a_lookup_host_not_declared(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        RULES.replace("hosts: [api.shop.example]", "hosts: [other.example]"), encoding="utf-8"
    )
    codes = {d.code for d in compiler.load([path], env={}).diagnostics}
    assert "E307" in codes


def test_load_refuses_a_placeholder_in_the_host(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        RULES.replace(
            "https://api.shop.example/orders/{id}/lines", "https://{id}.shop.example/lines"
        ),
        encoding="utf-8",
    )
    diagnostics = compiler.load([path], env={}).diagnostics
    assert any(d.code == "E307" and "fixed host" in d.message for d in diagnostics)


def test_an_undefined_lookup_is_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        RULES.replace("length(fetched('lines'))", "length(fetched('line'))"), encoding="utf-8"
    )
    diagnostics = compiler.load([path], env={}).diagnostics
    assert [(d.code, d.hint) for d in diagnostics if d.code == "E306"] == [
        ("E306", "did you mean 'lines'?")
    ]


def test_pipeline_fetches_what_matched_rules_read_in_dependency_order(ruleset: Any) -> None:
    fetcher = MockFetcher(
        {
            "order": {"id": 9, "email": "a@example.com", "total": "5.00"},
            "lines": [{"sku": "A"}, {"sku": "B"}],
        }
    )
    result = process(
        ruleset, Webhook.make(json.dumps({"event": "order.paid", "order_id": 9})), fetcher=fetcher
    )
    assert fetcher.calls == [
        ("order", "https://api.shop.example/orders/9"),
        ("lines", "https://api.shop.example/orders/9/lines"),
    ]
    assert result.sent[0]["params"] == [
        {"name": "total", "value": "5.00"},
        {"name": "count", "value": "2"},
    ]
    assert [lk.name for lk in result.lookups] == ["order", "lines"]


def test_pipeline_fetches_nothing_for_rules_that_read_no_lookup(ruleset: Any) -> None:
    fetcher = MockFetcher({})
    body = {"event": "order.note", "email": "a@example.com", "note": "hi"}
    result = process(ruleset, Webhook.make(json.dumps(body)), fetcher=fetcher)
    assert fetcher.calls == []
    assert len(result.sent) == 1


def test_a_missing_mock_fails_the_webhook_not_the_process(ruleset: Any) -> None:
    with pytest.raises(LookupFailed, match="no mock given"):
        process(
            ruleset,
            Webhook.make(b'{"event": "order.paid", "order_id": 1}'),
            fetcher=MockFetcher({}),
        )


def _fetcher(handler: Any) -> HttpFetcher:
    return HttpFetcher(httpx.MockTransport(handler), sleep=lambda _s: None)


def test_http_fetcher_retries_server_errors_then_answers() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(503) if len(calls) < 3 else httpx.Response(200, json={"ok": 1})

    assert _fetcher(handler).fetch(spec(retries=2), "https://api.shop.example/orders/1") == {
        "ok": 1
    }
    assert len(calls) == 3


def test_http_fetcher_gives_up_after_its_retries() -> None:
    fetcher = _fetcher(lambda request: httpx.Response(500))
    with pytest.raises(LookupFailed, match="HTTP 500 after 2 attempt"):
        fetcher.fetch(spec(retries=1), "https://api.shop.example/orders/1")


def test_http_fetcher_does_not_retry_a_404() -> None:
    calls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(404, text="no such order")

    with pytest.raises(LookupFailed, match="HTTP 404: no such order"):
        _fetcher(handler).fetch(spec(retries=3), "https://api.shop.example/orders/1")
    assert len(calls) == 1


def test_http_fetcher_sends_the_declared_headers_and_caches_by_ttl() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"n": len(seen)})

    fetcher = _fetcher(handler)
    cached = spec(headers=(("Authorization", "Bearer k"),), cache_ttl=60)
    url = "https://api.shop.example/orders/1"
    assert fetcher.fetch(cached, url) == {"n": 1}
    assert fetcher.fetch(cached, url) == {"n": 1}
    assert seen == ["Bearer k"]
    assert fetcher.fetch(spec(), url) == {"n": 2}  # no TTL: asked again


def test_http_fetcher_reports_an_answer_that_is_not_json() -> None:
    fetcher = _fetcher(lambda request: httpx.Response(200, text="<html>"))
    with pytest.raises(LookupFailed, match="not JSON"):
        fetcher.fetch(spec(), "https://api.shop.example/orders/1")


def test_mock_fetcher_can_answer_per_url() -> None:
    mocks = MockFetcher({"order": {"https://api.shop.example/orders/1": {"id": 1}}})
    assert mocks.fetch(spec(), "https://api.shop.example/orders/1") == {"id": 1}
    with pytest.raises(LookupFailed, match="no mock given for this URL"):
        mocks.fetch(spec(), "https://api.shop.example/orders/2")


def test_a_404_reads_as_null_when_the_lookup_says_gone() -> None:
    fetcher = _fetcher(lambda request: httpx.Response(404, text="gone"))
    assert fetcher.fetch(spec(not_found="null"), "https://api.shop.example/orders/1") is None


def test_no_lookup_is_made_for_a_rule_whose_condition_is_false(tmp_path: Path) -> None:
    """A `when` that needs no lookup is checked first: no API call for a rule that cannot
    apply."""
    path = tmp_path / "shop.yaml"
    path.write_text(
        RULES.replace("topics: order.paid", "topics: order.paid\n    when: paid"), encoding="utf-8"
    )
    loaded = compiler.load([path], env={})
    assert loaded.ok
    fetcher = MockFetcher({})
    body = {"event": "order.paid", "order_id": 9, "paid": False}
    result = process(loaded.rulesets[0], Webhook.make(json.dumps(body)), fetcher=fetcher)
    assert fetcher.calls == []
    assert result.sent == []


def test_an_empty_credential_sends_no_header(tmp_path: Path) -> None:
    """`Bearer ${TOKEN:-}` unset sends no Authorization at all (the API's 401 says why)."""
    path = tmp_path / "shop.yaml"
    path.write_text(
        RULES.replace("Bearer ${SHOP_TOKEN:-t0ken}", "Bearer ${SHOP_TOKEN:-}"), encoding="utf-8"
    )
    loaded = compiler.load([path], env={})
    assert loaded.ok
    assert loaded.rulesets[0].lookups[0].headers == ()


LOOPBACK_RULES = """
name: loop
topic: {expression: event}
verify: {scheme: none}
hosts: [127.0.0.1]
lookups:
  order:
    url: http://127.0.0.1:PORT/api/orders/{id}.json?note={note}
    args: {id: order_id, note: note}
    headers: {Authorization: "Bearer s3cret"}
rules:
  - name: paid
    topics: order.paid
    events:
      - type: custom
        key: fetched('order').email
        params: {total: fetched('order').total}
"""


def _loopback_ruleset(tmp_path: Path, port: int, url_path: str = "/api/orders/{id}.json") -> Any:
    path = tmp_path / "loop.yaml"
    text = LOOPBACK_RULES.replace("PORT", str(port)).replace("/api/orders/{id}.json", url_path)
    path.write_text(text, encoding="utf-8")
    loaded = compiler.load([path], env={})
    assert loaded.ok, [d.render() for d in loaded.diagnostics]
    return loaded.rulesets[0]


@pytest.mark.parametrize(
    "value",
    ["..", ".", "1/../../admin", "%2e%2e", "%2E.", "．．", "‥", "..\\..", ".. "],
    ids=[
        *("dots", "dot", "slashes", "encoded", "half-encoded", "fullwidth", "leader"),
        *("backslash", "space"),
    ],
)
def test_a_value_that_makes_a_dot_segment_reaches_no_server(tmp_path: Path, value: str) -> None:
    """`..` as a whole path segment is resolved by HTTP (`/api/orders/..` is `/api/`):
    such a value, or one a server decodes or folds to it, is refused before any request,
    so the lookup's token never goes to another path of the host."""
    with HttpStub(lambda call: Reply(200, {"email": "a@b.c", "total": 1})) as api:
        ruleset = _loopback_ruleset(tmp_path, api.port, "/api/orders/{id}")
        body = {"event": "order.paid", "order_id": value, "note": ".."}
        fetcher = HttpFetcher(sleep=lambda _s: None)
        try:
            with pytest.raises(LookupFailed, match=r"path segment '\{id\}'.*refused"):
                process(ruleset, Webhook.make(json.dumps(body)), fetcher=fetcher)
        finally:
            fetcher.close()
        assert api.calls == []


def test_an_empty_path_argument_reaches_no_server_either(tmp_path: Path) -> None:
    """An empty segment (`/api/orders/`, the listing) is no lookup of this webhook: the
    lookup is not made, and the record says why, as for a null argument."""
    with HttpStub(lambda call: Reply(200, {"email": "a@b.c", "total": 1})) as api:
        ruleset = _loopback_ruleset(tmp_path, api.port, "/api/orders/{id}")
        body = {"event": "order.paid", "order_id": "", "note": ".."}
        fetcher = HttpFetcher(sleep=lambda _s: None)
        try:
            result = process(ruleset, Webhook.make(json.dumps(body)), fetcher=fetcher)
        finally:
            fetcher.close()
        assert api.calls == []
    (skipped,) = result.lookups
    assert skipped.skipped is not None and "'id'" in skipped.skipped


def test_dots_inside_a_segment_or_in_the_query_stay_data(tmp_path: Path) -> None:
    """`..` that is not a whole path segment (`...json`, a query value) is sent as it is:
    the server receives the declared path."""
    with HttpStub(lambda call: Reply(200, {"email": "a@b.c", "total": 1})) as api:
        ruleset = _loopback_ruleset(tmp_path, api.port)
        fetcher = HttpFetcher(sleep=lambda _s: None)
        try:
            for order_id in ("..", "a..b", "..a"):
                body = {"event": "order.paid", "order_id": order_id, "note": ".."}
                result = process(ruleset, Webhook.make(json.dumps(body)), fetcher=fetcher)
                assert [b["eventTypeKey"] for b in result.sent] == ["custom"]
        finally:
            fetcher.close()
    assert [c.target for c in api.calls] == [
        "/api/orders/...json?note=..",
        "/api/orders/a..b.json?note=..",
        "/api/orders/..a.json?note=..",
    ]


def test_a_lone_surrogate_in_an_argument_fails_the_lookup_not_the_process() -> None:
    """JSON may carry "\\ud800", which no URL can: the lookup fails with a reason."""
    with pytest.raises(LookupFailed, match="argument 'id' is not valid text"):
        spec().build_url({"id": "\ud800"})
