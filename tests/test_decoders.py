"""Body decoders: form, JWT, Pub/Sub push, CloudEvents, and unwrapping JSON strings."""

from __future__ import annotations

import base64
import json

import pytest

from engine.decoders import decode
from engine.errors import PayloadError
from engine.rules.model import Decode
from engine.webhook import Webhook


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_body(claims: dict[str, object]) -> bytes:
    header = _b64url(b'{"alg":"RS256","typ":"JWT"}')
    payload = _b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.c2lnbmF0dXJl".encode()


def test_auto_reads_json_and_form_bodies() -> None:
    assert decode(Webhook.make(b'{"a": 1}')).data == {"a": 1}
    form = Webhook.make(b"webhook_id=42", {"Content-Type": "application/x-www-form-urlencoded"})
    assert decode(form).data == {"webhook_id": "42"}


def test_jwt_claims_with_nested_json_strings_are_unwrapped_in_order() -> None:
    """Wix: claims.data is JSON text whose data and identity are JSON text again."""
    inner = {"id": "evt-1", "actionEvent": {"body": {"order": {"number": "10001"}}}}
    claims = {
        "data": json.dumps(
            {
                "eventType": "wix.ecom.v1.order_approved",
                "data": json.dumps(inner),
                "identity": json.dumps({"x": 1}),
            }
        ),
        "iat": 1,
        "exp": 2,
    }
    spec = Decode("jwt", ("data", "data.data", "data.identity"))
    decoded = decode(Webhook.make(jwt_body(claims)), spec)
    assert decoded.data["data"]["eventType"] == "wix.ecom.v1.order_approved"
    assert decoded.data["data"]["data"]["actionEvent"]["body"]["order"]["number"] == "10001"
    assert decoded.data["data"]["identity"] == {"x": 1}
    assert decoded.envelope is decoded.data


def test_a_body_that_is_not_a_jwt_says_so() -> None:
    with pytest.raises(PayloadError, match="not a compact JWT"):
        decode(Webhook.make(b'{"a": 1}'), Decode("jwt"))


def test_unwrap_names_the_missing_path() -> None:
    with pytest.raises(PayloadError, match=r"data\.data: missing"):
        decode(Webhook.make(b'{"data": {}}'), Decode("json", ("data.data",)))


def test_unwrap_of_a_string_that_is_not_json_is_located() -> None:
    with pytest.raises(PayloadError, match=r"data: not a JSON string"):
        decode(Webhook.make(b'{"data": "{oops"}'), Decode("json", ("data",)))


def test_pubsub_push_decodes_message_data_and_keeps_the_envelope() -> None:
    message = {"type": "OrderCreated", "order": {"id": "o-1"}}
    envelope = {
        "message": {
            "data": base64.b64encode(json.dumps(message).encode()).decode(),
            "messageId": "m-1",
            "attributes": {"a": "b"},
        },
        "subscription": "projects/p/subscriptions/s",
    }
    decoded = decode(Webhook.make(json.dumps(envelope)), Decode("pubsub"))
    assert decoded.data == message
    assert decoded.envelope["message"]["messageId"] == "m-1"


def test_pubsub_with_bad_base64_is_located() -> None:
    envelope = {"message": {"data": "%%%"}}
    with pytest.raises(PayloadError, match=r"message\.data: not base64"):
        decode(Webhook.make(json.dumps(envelope)), Decode("pubsub"))


def test_pubsub_without_message_data_says_so() -> None:
    with pytest.raises(PayloadError, match="not a Pub/Sub push"):
        decode(Webhook.make(b'{"message": {}}'), Decode("pubsub"))


def test_structured_cloudevent_gives_its_data() -> None:
    event = {
        "specversion": "1.0",
        "type": "com.commercetools.order.message.OrderCreated",
        "id": "e-1",
        "data": {"order": {"id": "o-1"}},
    }
    decoded = decode(Webhook.make(json.dumps(event)), Decode("cloudevents"))
    assert decoded.data == {"order": {"id": "o-1"}}
    assert decoded.envelope["type"].endswith("OrderCreated")


def test_cloudevent_data_base64_is_decoded() -> None:
    event = {
        "specversion": "1.0",
        "type": "t",
        "data_base64": base64.b64encode(b'{"x": 1}').decode(),
    }
    assert decode(Webhook.make(json.dumps(event)), Decode("cloudevents")).data == {"x": 1}


def test_binary_cloudevent_takes_attributes_from_ce_headers() -> None:
    webhook = Webhook.make(
        b'{"x": 1}', {"ce-specversion": "1.0", "ce-type": "t", "Content-Type": "application/json"}
    )
    decoded = decode(webhook, Decode("cloudevents"))
    assert decoded.data == {"x": 1}
    assert decoded.envelope["type"] == "t"


def test_a_json_body_without_specversion_is_not_a_cloudevent() -> None:
    with pytest.raises(PayloadError, match="not a CloudEvent"):
        decode(Webhook.make(b'{"type": "t"}'), Decode("cloudevents"))
