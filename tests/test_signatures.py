"""Request signature checks: every scheme signed, tampered, re-keyed, malformed and stale.

Expected signatures in the known-answer tests are computed here with ``hmac``/``hashlib``
directly (or taken from a published vector), not with ``engine.signatures.sign``, so a
wrong formula cannot pass by agreeing with itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

import pytest

from engine.errors import HookmapError
from engine.signatures import (
    VERIFY_KEYS,
    SecretError,
    Verdict,
    VerifySpec,
    parse_verify,
    resolve_secrets,
    sign,
    verify,
)

BODY = b'{"id":820982911946154508,"email":"jon@example.com","total_price":"199.00"}'
SECRET = b"s3cr3t-hook-key-OLD"
NEW_SECRET = b"s3cr3t-hook-key-NEW"
NOW = 1_700_000_000.0


def whsec(raw: bytes) -> bytes:
    return b"whsec_" + base64.b64encode(raw)


# (spec, how a secret is written for it): one entry per scheme and secret form.
CASES: dict[str, tuple[VerifySpec, Callable[[bytes], bytes]]] = {
    "shopify": (VerifySpec("shopify", ("SHOPIFY_SECRET",)), bytes),
    "woocommerce": (VerifySpec("woocommerce", ("WC_SECRET",)), bytes),
    "hmac": (VerifySpec("hmac", ("GH",), header="X-Hub-Signature-256", prefix="sha256="), bytes),
    "timestamped": (VerifySpec("timestamped", ("STRIPE_SECRET",)), bytes),
    "standard-webhooks-whsec": (VerifySpec("standard-webhooks", ("SW",)), whsec),
    "standard-webhooks-raw": (VerifySpec("standard-webhooks", ("BC_SECRET",)), bytes),
}
SIGNATURE_HEADER = {
    "shopify": "X-Shopify-Hmac-Sha256",
    "woocommerce": "X-WC-Webhook-Signature",
    "hmac": "X-Hub-Signature-256",
    "timestamped": "Stripe-Signature",
    "standard-webhooks-whsec": "webhook-signature",
    "standard-webhooks-raw": "webhook-signature",
}
TIMESTAMPED = ("timestamped", "standard-webhooks-whsec", "standard-webhooks-raw")
params = pytest.mark.parametrize("case", list(CASES))


def signed(case: str, secret: bytes = SECRET, body: bytes = BODY) -> dict[str, str]:
    spec, form = CASES[case]
    return {k.lower(): v for k, v in sign(spec, form(secret), body, now=NOW).items()}


def check(
    case: str, headers: dict[str, str], body: bytes = BODY, secrets: tuple[bytes, ...] = (SECRET,)
) -> Verdict:
    spec, form = CASES[case]
    return verify(spec, [form(s) for s in secrets], body, headers, now=NOW)


# -- every scheme ------------------------------------------------------------------------


@params
def test_correctly_signed_request_verifies(case: str) -> None:
    verdict = check(case, signed(case))
    assert verdict.ok, verdict.reason
    assert verdict.scheme == CASES[case][0].scheme


@params
def test_tampered_body_fails(case: str) -> None:
    verdict = check(case, signed(case), body=BODY.replace(b"199.00", b"1.00"))
    assert (verdict.ok, verdict.reason) == (False, "signature mismatch")


@params
def test_wrong_secret_fails(case: str) -> None:
    verdict = check(case, signed(case), secrets=(NEW_SECRET,))
    assert (verdict.ok, verdict.reason) == (False, "signature mismatch")


@params
def test_missing_signature_header_fails_naming_it(case: str) -> None:
    headers = signed(case)
    del headers[SIGNATURE_HEADER[case].lower()]
    verdict = check(case, headers)
    assert not verdict.ok
    assert verdict.reason == f"missing header {SIGNATURE_HEADER[case]}"


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp"])
def test_standard_webhooks_missing_id_or_timestamp_fails_naming_it(name: str) -> None:
    headers = signed("standard-webhooks-whsec")
    del headers[name]
    assert check("standard-webhooks-whsec", headers).reason == f"missing header {name}"


@params
@pytest.mark.parametrize("signer", [SECRET, NEW_SECRET])
def test_rotation_either_old_or_new_secret_verifies(case: str, signer: bytes) -> None:
    verdict = check(case, signed(case, secret=signer), secrets=(SECRET, NEW_SECRET))
    assert verdict.ok, verdict.reason
    assert verdict.reason.endswith(f"(secret {1 if signer == SECRET else 2} of 2)")


@params
def test_header_names_are_case_insensitive(case: str) -> None:
    spec, form = CASES[case]
    headers = {k.upper(): v for k, v in sign(spec, form(SECRET), BODY, now=NOW).items()}
    assert verify(spec, [form(SECRET)], BODY, headers, now=NOW).ok


@params
def test_no_secret_fails_without_raising(case: str) -> None:
    assert check(case, signed(case), secrets=()).reason == "no secret configured"


MALFORMED = [
    ("shopify", "x-shopify-hmac-sha256", "not base64!!"),
    ("shopify", "x-shopify-hmac-sha256", ""),
    ("woocommerce", "x-wc-webhook-signature", "%%%"),
    ("hmac", "x-hub-signature-256", "sha1=" + "ab" * 32),
    ("hmac", "x-hub-signature-256", "sha256=" + "zz" * 32),
    ("timestamped", "stripe-signature", "t=1700000000"),
    ("timestamped", "stripe-signature", "t=soon,v1=" + "ab" * 32),
    ("timestamped", "stripe-signature", "v1=" + "ab" * 32),
    ("timestamped", "stripe-signature", "garbage"),
    ("timestamped", "stripe-signature", "t=1700000000,v1=xyz"),
    ("standard-webhooks-whsec", "webhook-signature", "v1a,AAAA"),
    ("standard-webhooks-whsec", "webhook-signature", "v1,@@@@"),
    ("standard-webhooks-whsec", "webhook-timestamp", "1700000000.5"),
    ("standard-webhooks-raw", "webhook-timestamp", "-1"),
]


@pytest.mark.parametrize(("case", "header", "value"), MALFORMED)
def test_malformed_header_fails_without_raising(case: str, header: str, value: str) -> None:
    verdict = check(case, {**signed(case), header: value})
    assert not verdict.ok
    assert verdict.reason.startswith("malformed"), verdict.reason


def test_signature_of_the_wrong_length_says_so() -> None:
    """A sha1 signature checked as sha256 is a config hint, not a bare mismatch."""
    sha1 = base64.b64encode(hmac.digest(SECRET, BODY, "sha1")).decode()
    verdict = check("shopify", {"x-shopify-hmac-sha256": sha1})
    assert verdict.reason == "signature is 20 bytes, sha256 gives 32"


@pytest.mark.parametrize("case", TIMESTAMPED)
@pytest.mark.parametrize(
    ("offset", "reason"),
    [
        (301, "timestamp outside tolerance (301 s > 300 s)"),
        (-301, "timestamp outside tolerance (301 s in the future > 300 s)"),
        (300, None),
        (-300, None),
    ],
)
def test_timestamp_tolerance_past_and_future(case: str, offset: int, reason: str | None) -> None:
    spec, form = CASES[case]
    verdict = verify(spec, [form(SECRET)], BODY, signed(case), now=NOW + offset)
    assert verdict.ok is (reason is None)
    assert reason is None or verdict.reason == reason


def test_custom_tolerance_is_used() -> None:
    spec = VerifySpec("timestamped", ("S",), tolerance_seconds=10)
    headers = sign(spec, SECRET, BODY, now=NOW)
    assert verify(spec, [SECRET], BODY, headers, now=NOW + 10).ok
    assert "(11 s > 10 s)" in verify(spec, [SECRET], BODY, headers, now=NOW + 11).reason


def test_scheme_none_accepts_anything() -> None:
    verdict = verify(VerifySpec("none"), [], BODY, {})
    assert verdict.ok and verdict.scheme == "none"
    assert sign(VerifySpec("none"), SECRET, BODY) == {}


# -- generic hmac: algorithm x encoding x prefix -------------------------------------------


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
@pytest.mark.parametrize("prefix", ["", "sha256="])
def test_generic_hmac_algorithms_encodings_and_prefix(
    algorithm: str, encoding: str, prefix: str
) -> None:
    spec = parse_verify(
        {
            "scheme": "hmac",
            "secret_env": "S",
            "header": "X-Signature",
            "algorithm": algorithm,
            "encoding": encoding,
            "prefix": prefix,
        }
    )[0]
    assert spec is not None
    mac = hmac.new(SECRET, BODY, getattr(hashlib, algorithm))
    value = mac.hexdigest() if encoding == "hex" else base64.b64encode(mac.digest()).decode()
    assert sign(spec, SECRET, BODY) == {"X-Signature": prefix + value}
    assert verify(spec, [SECRET], BODY, {"x-signature": prefix + value}).ok
    if encoding == "hex":  # hex case is not significant
        assert verify(spec, [SECRET], BODY, {"x-signature": prefix + value.upper()}).ok
    if prefix:
        verdict = verify(spec, [SECRET], BODY, {"x-signature": value})
        assert verdict.reason == "malformed signature header (no 'sha256=' prefix)"
    other = "base64" if encoding == "hex" else "hex"
    wrong = parse_verify(
        {
            "scheme": "hmac",
            "secret_env": "S",
            "header": "X-Signature",
            "algorithm": algorithm,
            "encoding": other,
            "prefix": prefix,
        }
    )[0]
    assert wrong is not None
    assert not verify(wrong, [SECRET], BODY, {"x-signature": prefix + value}).ok


# -- known answers -----------------------------------------------------------------------


def test_shopify_known_answer_base64_hmac_sha256_of_raw_body() -> None:
    expected = base64.b64encode(hmac.new(SECRET, BODY, hashlib.sha256).digest()).decode()
    spec = CASES["shopify"][0]
    assert sign(spec, SECRET, BODY) == {"X-Shopify-Hmac-Sha256": expected}
    assert verify(spec, [SECRET], BODY, {"x-shopify-hmac-sha256": expected}).ok


def test_woocommerce_known_answer_base64_hmac_sha256_of_raw_body() -> None:
    expected = base64.b64encode(hmac.new(SECRET, BODY, hashlib.sha256).digest()).decode()
    assert sign(CASES["woocommerce"][0], SECRET, BODY) == {"X-WC-Webhook-Signature": expected}


def test_stripe_known_answer_hex_hmac_of_t_dot_body_with_secret_used_verbatim() -> None:
    """Stripe keys the HMAC with the whole ``whsec_...`` string (not base64-decoded)."""
    secret = b"whsec_test_secret"
    expected = hmac.new(secret, b"1700000000." + BODY, hashlib.sha256).hexdigest()
    spec = CASES["timestamped"][0]
    assert sign(spec, secret, BODY, now=NOW) == {"Stripe-Signature": f"t=1700000000,v1={expected}"}
    header = f"t=1700000000,v1={'0' * 64},v1={expected},v0={'1' * 64}"
    assert verify(spec, [secret], BODY, {"stripe-signature": header}, now=NOW).ok


def test_standard_webhooks_published_vector_with_whsec_secret() -> None:
    """The spec's test vector (standard-webhooks libraries/python/tests test_sign_function)."""
    secret = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    headers = {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    spec = VerifySpec("standard-webhooks", ("SW",))
    assert verify(spec, [secret], body, headers, now=1614265330).ok
    assert sign(spec, secret, body, now=1614265330, msg_id=headers["webhook-id"]) == headers


def test_standard_webhooks_raw_secret_is_the_key_as_is() -> None:
    """BigCommerce: the app client secret itself is the HMAC key (no base64 step)."""
    secret = b"bc-client-secret"
    msg = b"msg_1.1700000000." + BODY
    expected = base64.b64encode(hmac.new(secret, msg, hashlib.sha256).digest()).decode()
    spec = VerifySpec("standard-webhooks", ("BC",))
    headers = sign(spec, secret, BODY, now=NOW, msg_id="msg_1")
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert verify(spec, [secret], BODY, headers, now=NOW).ok


def test_standard_webhooks_svix_header_names_and_signature_lists() -> None:
    headers = {
        k.replace("webhook-", "svix-"): v for k, v in signed("standard-webhooks-whsec").items()
    }
    headers["svix-signature"] = (
        "v1a,AAAA v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= " + (headers["svix-signature"])
    )
    assert check("standard-webhooks-whsec", headers).ok


# -- what a reason may say --------------------------------------------------------------------


@params
def test_reason_never_contains_secret_body_or_signature(case: str) -> None:
    good = signed(case)
    attempts = [
        check(case, good, body=BODY + b" "),
        check(case, good, secrets=(NEW_SECRET,)),
        check(case, {}),
        check(case, {k: v + "x" for k, v in good.items()}),
    ]
    if case in TIMESTAMPED:
        attempts.append(verify(CASES[case][0], [CASES[case][1](SECRET)], BODY, good, now=NOW + 999))
    secrets = [SECRET, NEW_SECRET, CASES[case][1](SECRET)]
    for verdict in attempts:
        assert not verdict.ok
        assert not any(s.decode() in verdict.reason for s in secrets)
        assert BODY.decode() not in verdict.reason and "jon@example.com" not in verdict.reason
        for value in good.values():
            assert value not in verdict.reason


# -- config ----------------------------------------------------------------------------------


def test_parse_verify_builds_spec_with_defaults_and_rotation() -> None:
    spec, errors = parse_verify({"scheme": "shopify", "secret_env": ["NEW", "OLD"]})
    assert errors == []
    assert spec == VerifySpec("shopify", ("NEW", "OLD"))
    assert (spec.header, spec.encoding, spec.algorithm) == (
        "X-Shopify-Hmac-Sha256",
        "base64",
        "sha256",
    )


def test_parse_verify_reads_every_key() -> None:
    spec, errors = parse_verify(
        {
            "scheme": "timestamped",
            "secret_env": "S",
            "header": "X-Sig",
            "algorithm": "sha512",
            "encoding": "base64",
            "tolerance": 60,
        }
    )
    assert errors == []
    assert spec == VerifySpec("timestamped", ("S",), "X-Sig", "sha512", "base64", "", 60)


def test_parse_verify_scheme_none_needs_no_secret() -> None:
    assert parse_verify({"scheme": "none"}) == (VerifySpec("none"), [])


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"scheme": "shopfiy", "secret_env": "S"},
            "unknown scheme 'shopfiy' in verify.scheme (did you mean 'shopify'?)",
        ),
        ({"secret_env": "S"}, "verify.scheme is required"),
        ({"scheme": "shopify"}, "verify.secret_env is required for scheme 'shopify'"),
        ({"scheme": "shopify", "secret_env": ""}, "verify.secret_env must be"),
        ({"scheme": "shopify", "secret_env": ["A", 3]}, "verify.secret_env must be"),
        ({"scheme": "shopify", "secret_env": "c2VjcmV0+/=="}, "verify.secret_env must be"),
        ({"scheme": "hmac", "secret_env": "S"}, "verify.header is required for scheme 'hmac'"),
        (
            {"scheme": "hmac", "secret_env": "S", "header": "X", "algorithm": "sha265"},
            "unknown algorithm 'sha265' in verify.algorithm (did you mean 'sha256'?)",
        ),
        (
            {"scheme": "hmac", "secret_env": "S", "header": "X", "algorithm": "md5"},
            "unknown algorithm 'md5' in verify.algorithm (one of sha1, sha256, sha512)",
        ),
        (
            {"scheme": "hmac", "secret_env": "S", "header": "X", "encoding": "base32"},
            "unknown encoding 'base32'",
        ),
        ({"scheme": "timestamped", "secret_env": "S", "tolerance": "5m"}, "verify.tolerance"),
        ({"scheme": "timestamped", "secret_env": "S", "tolerance": True}, "verify.tolerance"),
        (
            {"scheme": "shopify", "secret_env": "S", "prefix": "sha256="},
            "verify.prefix does not apply to scheme 'shopify'",
        ),
        ({"scheme": "none", "secret_env": "S"}, "verify.secret_env does not apply"),
        (
            {"scheme": "shopify", "secret_evn": "S"},
            "unknown key 'secret_evn' in verify (did you mean 'secret_env'?)",
        ),
    ],
)
def test_parse_verify_reports_problems(config: dict[str, object], message: str) -> None:
    spec, errors = parse_verify(config)
    assert spec is None
    assert any(e.startswith(message) for e in errors), errors


def test_parse_verify_collects_every_problem() -> None:
    _, errors = parse_verify({"scheme": "hmac", "algorithm": "md5", "encoding": "b64"})
    assert len(errors) == 4, errors  # secret_env, header, algorithm, encoding


def test_verify_keys_document_every_key_parse_verify_reads() -> None:
    assert set(VERIFY_KEYS) == {
        "scheme",
        "secret_env",
        "header",
        "algorithm",
        "encoding",
        "prefix",
        "tolerance",
    }
    assert all(doc.endswith(".") for doc in VERIFY_KEYS.values())


# -- secrets from the environment ---------------------------------------------------------


def test_resolve_secrets_skips_unset_and_empty_variables_in_order() -> None:
    spec = VerifySpec("shopify", ("NEW", "EMPTY", "UNSET", "OLD"))
    env = {"NEW": "n3w", "EMPTY": "", "OLD": "0ld"}
    assert resolve_secrets(spec, env) == [b"n3w", b"0ld"]


def test_resolve_secrets_with_none_available_refuses_to_serve() -> None:
    spec = VerifySpec("woocommerce", ("WC_A", "WC_B"))
    with pytest.raises(SecretError, match="no secret set in WC_A, WC_B") as info:
        resolve_secrets(spec, {"WC_A": ""})
    assert isinstance(info.value, HookmapError)


def test_resolve_secrets_scheme_none_needs_nothing() -> None:
    assert resolve_secrets(VerifySpec("none"), {}) == []


def test_resolve_secrets_rejects_a_whsec_secret_that_is_not_base64() -> None:
    spec = VerifySpec("standard-webhooks", ("SW",))
    with pytest.raises(SecretError, match="SW: the whsec_ secret is not valid base64"):
        resolve_secrets(spec, {"SW": "whsec_not*base64"})
