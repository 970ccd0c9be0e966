"""Reading webhooks from files and the destination settings."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from engine.errors import PayloadError, UsageError
from engine.events.destination import DEFAULT_API_URL, Destination, masked
from engine.pipeline import decode_body
from engine.webhook import Webhook, parse_header_lines, parse_json, read_webhook_file


def test_header_lines_are_lower_cased_and_comments_skipped() -> None:
    lines = ["# a comment", "", "X-Shopify-Topic: orders/create", "Content-Type: a: b"]
    assert parse_header_lines(lines, "h") == {
        "x-shopify-topic": "orders/create",
        "content-type": "a: b",
    }


def test_a_header_line_without_colon_is_located() -> None:
    with pytest.raises(UsageError, match=r"^h:2: expected 'Name: value'"):
        parse_header_lines(["A: b", "no colon here"], "h")


def test_body_file_reads_its_headers_file(tmp_path: Path) -> None:
    body = tmp_path / "order.json"
    body.write_bytes(b'{"id": 1}')
    (tmp_path / "order.headers").write_text("X-Topic: t\n", encoding="utf-8")
    webhook = read_webhook_file(body)
    assert webhook.body == b'{"id": 1}'
    assert webhook.headers == {"x-topic": "t"}
    assert read_webhook_file(body, use_sidecar=False).headers == {}


def test_a_missing_body_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        read_webhook_file(tmp_path / "nope.json")


def test_invalid_json_reports_line_and_column() -> None:
    with pytest.raises(PayloadError, match=r"^b:2:8: invalid JSON"):
        parse_json(b'{"a": 1,\n  "b": }', "b")


def test_nan_and_infinity_are_not_json() -> None:
    """Python's json reads them; JSON has no such values, so they are refused."""
    with pytest.raises(PayloadError, match="NaN is not a JSON value"):
        parse_json(b'{"total": NaN}', "b")
    with pytest.raises(PayloadError, match="Infinity"):
        parse_json(b"[Infinity]", "b")


def test_a_utf8_bom_is_accepted() -> None:
    assert parse_json('\ufeff{"a": "é"}'.encode(), "b") == {"a": "é"}


def test_form_encoded_bodies_decode_to_an_object() -> None:
    webhook = Webhook.make(
        b"webhook_id=42&x=", {"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert decode_body(webhook) == {"webhook_id": "42", "x": ""}


def test_destination_defaults_to_the_vendor_url_and_basic_auth() -> None:
    dest = Destination.from_env({"HOOKMAP_API_KEY": "k3y"})
    assert dest.base_url == DEFAULT_API_URL
    assert dest.event_url("v2") == "https://esputnik.com/api/v2/event"
    auth = dest.headers()["Authorization"]
    assert base64.b64decode(auth.split()[1]).decode() == "hookmap:k3y"
    assert "k3y" not in repr(dest)


def test_destination_url_from_the_environment_without_trailing_slash() -> None:
    dest = Destination.from_env({"HOOKMAP_API_URL": "http://127.0.0.1:8020/api/"})
    assert dest.event_url("v1") == "http://127.0.0.1:8020/api/v1/event"
    assert "Authorization" not in dest.headers()


def test_masked_never_shows_a_character_of_the_secret() -> None:
    assert masked("abc") == "****"
    assert masked(None) == "<unset>"
