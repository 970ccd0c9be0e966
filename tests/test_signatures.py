"""Request signature checks: every scheme signed, tampered, re-keyed, malformed and stale.

Expected signatures in the known-answer tests are computed here with ``hmac``/``hashlib``
or ``cryptography`` directly (or taken from a published vector), not with
``engine.server.signing.sign``, so a wrong formula cannot pass by agreeing with itself. RSA
key pairs are generated at import: no key file is committed.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from engine.errors import HookmapError, SecretError
from engine.rules.schema_intake import VERIFY
from engine.rules.schema_types import Enum
from engine.rules.schemes import SCHEMES, SIGNED, VerifySpec
from engine.rules.verify import VERIFY_KEYS, parse_verify
from engine.server.secrets import resolve_secrets
from engine.server.signatures import JWT_LEEWAY, Verdict, verify
from engine.server.signing import make_jwt, sign, sign_rsa

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
        "public_key_env",
        "signed",
    }
    assert all(doc.endswith(".") for doc in VERIFY_KEYS.values())


def test_schema_declares_the_same_verify_keys() -> None:
    """engine.rules.schema's VERIFY (linter, JSON Schema, docs) agrees with this module."""
    assert {f.name: f.doc for f in VERIFY.fields} == VERIFY_KEYS
    signed_field = VERIFY.field("signed")
    assert signed_field is not None and isinstance(signed_field.type, Enum)
    assert signed_field.type.values == SIGNED
    scheme_field = VERIFY.field("scheme")
    assert scheme_field is not None and isinstance(scheme_field.type, Enum)
    assert scheme_field.type.values == SCHEMES


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


# == schemes added for more platforms: ecwid, rsa-sha256, jwt, bearer, basic =================


def _rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


RSA_KEYS = (_rsa_key(), _rsa_key())  # (old, new): a platform rotating its key pair
PRIVATE = (private_pem(RSA_KEYS[0]), private_pem(RSA_KEYS[1]))
PUBLIC = (public_pem(RSA_KEYS[0]), public_pem(RSA_KEYS[1]))
TOKENS = (b"tok-old-3f9a1c", b"tok-new-77b0e2")
CREDENTIALS = (b"shop:old-pass", b"shop:new-pass")
ECWID_ID = "08a3b6c3-8a8f-4c1b-9f7e-1a2b3c4d5e6f"
ECWID_BODY = (
    b'{"eventId":"08a3b6c3-8a8f-4c1b-9f7e-1a2b3c4d5e6f","eventCreated":1700000000,'
    b'"storeId":1003,"entityId":421,"eventType":"order.updated",'
    b'"data":{"orderId":"XJ12H","oldPaymentStatus":"AWAITING_PAYMENT","newPaymentStatus":"PAID"}}'
)
WIX_DATA = json.dumps(
    {
        "eventType": "wix.ecom.v1.order_created",
        "instanceId": "inst-1",
        "data": json.dumps({"id": "evt-1", "entityId": "ord-1"}),
    }
)
WIX_CLAIMS: dict[str, object] = {
    "data": WIX_DATA,
    "iat": int(NOW),
    "exp": int(NOW) + 3600,
}
ECWID = VerifySpec("ecwid", ("ECWID_CLIENT_SECRET",))
ADOBE_COMMERCE = VerifySpec("rsa-sha256", public_key_envs=("ADOBE_COMMERCE_KEY",))
ADOBE_IO = VerifySpec(
    "rsa-sha256",
    public_key_envs=("ADOBE_IO_KEY",),
    header="x-adobe-digital-signature-1",
    alt_headers=("x-adobe-digital-signature-2",),
    signed="body",
)
WIX = VerifySpec("jwt", public_key_envs=("WIX_PUBLIC_KEY",))
BEARER = VerifySpec("bearer", ("PS_WEBHOOK_TOKEN",))
BASIC = VerifySpec("basic", ("PUSH_CREDENTIALS",))
NOT_A_SIGNATURE = base64.b64encode(bytes(256)).decode()  # well-formed, verifies under no key


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclasses.dataclass(frozen=True)
class Platform:
    """A new scheme as a platform uses it: what ``verify`` gets and how a request looks."""

    spec: VerifySpec
    #: what verify receives for the (old, new) secret or key
    verifying: tuple[bytes, bytes]
    #: (body, headers) of a request signed with the old (0) or new (1) secret or key
    request: Callable[[int], tuple[bytes, dict[str, str]]]
    #: headers to drop for the missing-header test, and the reason it must give
    drop: tuple[str, ...]
    missing: str
    mismatch: str
    unit: str  # "secret" or "key": how the valid reason counts


PLATFORMS: dict[str, Platform] = {
    "ecwid": Platform(
        ECWID,
        (SECRET, NEW_SECRET),
        lambda i: (ECWID_BODY, sign(ECWID, (SECRET, NEW_SECRET)[i], ECWID_BODY)),
        ("X-Ecwid-Webhook-Signature",),
        "missing header X-Ecwid-Webhook-Signature",
        "signature mismatch",
        "secret",
    ),
    "adobe-commerce": Platform(
        ADOBE_COMMERCE,
        PUBLIC,
        lambda i: (BODY, {"x-adobe-commerce-webhook-signature": sign_rsa(PRIVATE[i], BODY)}),
        ("x-adobe-commerce-webhook-signature",),
        "missing header x-adobe-commerce-webhook-signature",
        "signature mismatch",
        "key",
    ),
    # Adobe I/O sends two signatures (one per key pair); any one that verifies is enough.
    "adobe-io": Platform(
        ADOBE_IO,
        PUBLIC,
        lambda i: (
            BODY,
            {
                "x-adobe-digital-signature-1": NOT_A_SIGNATURE,
                "x-adobe-digital-signature-2": sign_rsa(PRIVATE[i], BODY, signed="body"),
            },
        ),
        ("x-adobe-digital-signature-1", "x-adobe-digital-signature-2"),
        "missing header x-adobe-digital-signature-1 or x-adobe-digital-signature-2",
        "signature mismatch",
        "key",
    ),
    "wix-jwt": Platform(
        WIX,
        PUBLIC,
        lambda i: (make_jwt(PRIVATE[i], WIX_CLAIMS).encode(), {"content-type": "text/plain"}),
        (),
        "",
        "bad signature",
        "key",
    ),
    "bearer": Platform(
        BEARER,
        TOKENS,
        lambda i: (BODY, sign(BEARER, TOKENS[i], BODY)),
        ("Authorization",),
        "missing header Authorization",
        "token mismatch",
        "secret",
    ),
    "basic": Platform(
        BASIC,
        CREDENTIALS,
        lambda i: (BODY, sign(BASIC, CREDENTIALS[i], BODY)),
        ("Authorization",),
        "missing header Authorization",
        "credentials mismatch",
        "secret",
    ),
}
platforms = pytest.mark.parametrize("name", list(PLATFORMS))


def judge(
    name: str, body: bytes, headers: dict[str, str], verifying: tuple[bytes, ...] | None = None
) -> Verdict:
    p = PLATFORMS[name]
    keys = p.verifying[:1] if verifying is None else verifying
    return verify(p.spec, keys, body, headers, now=NOW)


# -- every new scheme ------------------------------------------------------------------------


@platforms
def test_new_scheme_correct_request_verifies(name: str) -> None:
    verdict = judge(name, *PLATFORMS[name].request(0))
    assert verdict.ok, verdict.reason
    assert verdict.scheme == PLATFORMS[name].spec.scheme


@platforms
def test_new_scheme_wrong_secret_or_key_fails(name: str) -> None:
    verdict = judge(name, *PLATFORMS[name].request(1))  # signed new, only old configured
    assert (verdict.ok, verdict.reason) == (False, PLATFORMS[name].mismatch)


@platforms
@pytest.mark.parametrize("signer", [0, 1])
def test_new_scheme_rotation_either_secret_or_key_verifies(name: str, signer: int) -> None:
    p = PLATFORMS[name]
    verdict = judge(name, *p.request(signer), verifying=p.verifying)
    assert verdict.ok, verdict.reason
    assert verdict.reason.endswith(f"({p.unit} {signer + 1} of 2)")


@pytest.mark.parametrize("name", [n for n, p in PLATFORMS.items() if p.drop])
def test_new_scheme_missing_header_fails_naming_it(name: str) -> None:
    p = PLATFORMS[name]
    body, headers = p.request(0)
    for header in p.drop:
        del headers[header]
    assert judge(name, body, headers).reason == p.missing


@platforms
def test_new_scheme_header_names_are_case_insensitive(name: str) -> None:
    body, headers = PLATFORMS[name].request(0)
    assert judge(name, body, {k.upper(): v for k, v in headers.items()}).ok


@platforms
def test_new_scheme_with_nothing_configured_fails_without_raising(name: str) -> None:
    verdict = judge(name, *PLATFORMS[name].request(0), verifying=())
    assert not verdict.ok
    assert verdict.reason in ("no secret configured", "no public key configured")


@platforms
def test_new_scheme_reason_never_contains_secret_key_body_or_signature(name: str) -> None:
    p = PLATFORMS[name]
    body, good = p.request(0)
    attempts = [
        judge(name, *p.request(1)),
        judge(name, body.replace(b"1700000000", b"1700000001").replace(b"199", b"1"), good),
        judge(name, body[:-3], good),
        judge(name, body, {k: v + "x" for k, v in good.items()}),
        judge(name, body, {}),
        judge(name, b"x" + body, good),
    ]
    if p.spec.scheme == "jwt":
        attempts.append(verify(p.spec, p.verifying[:1], body, {}, now=NOW + 10**6))
    leaks = [*p.verifying, *PRIVATE, *TOKENS, *CREDENTIALS, body]
    assert sum(not v.ok for v in attempts) >= 3  # bearer/basic do not cover the body
    for verdict in attempts:
        assert not any(s.decode() in verdict.reason for s in leaks)
        assert "BEGIN" not in verdict.reason and "jon@example.com" not in verdict.reason
        for value in good.values():
            assert value not in verdict.reason


# -- ecwid -------------------------------------------------------------------------------------


def test_ecwid_known_answer_hmac_of_event_created_dot_event_id() -> None:
    """Ecwid signs ``{eventCreated}.{eventId}`` (base64 HMAC-SHA256), not the body."""
    msg = f"1700000000.{ECWID_ID}".encode()
    expected = base64.b64encode(hmac.new(SECRET, msg, hashlib.sha256).digest()).decode()
    assert sign(ECWID, SECRET, ECWID_BODY) == {"X-Ecwid-Webhook-Signature": expected}
    verdict = verify(ECWID, [SECRET], ECWID_BODY, {"x-ecwid-webhook-signature": expected})
    assert verdict.ok, verdict.reason


@pytest.mark.parametrize(
    ("old", "new"),
    [(b"1700000000", b"1700000099"), (ECWID_ID.encode(), b"11111111-2222-3333-4444-555555555555")],
)
def test_ecwid_tampered_signed_field_fails(old: bytes, new: bytes) -> None:
    _, headers = PLATFORMS["ecwid"].request(0)
    verdict = judge("ecwid", ECWID_BODY.replace(old, new), headers)
    assert (verdict.ok, verdict.reason) == (False, "signature mismatch")


def test_ecwid_rest_of_the_body_is_not_covered() -> None:
    """Ecwid's signature says only who sent the event: its data must be re-fetched."""
    _, headers = PLATFORMS["ecwid"].request(0)
    assert judge("ecwid", ECWID_BODY.replace(b'"PAID"', b'"REFUNDED"'), headers).ok


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"eventId=1&eventCreated=2", "malformed body: not JSON"),
        (b"", "malformed body: not JSON"),
        (b"\xff\xfe{", "malformed body: not JSON"),
        (b"[" * 100_000, "malformed body: not JSON"),
        (b"[1, 2]", "malformed body: no eventCreated and eventId"),
        (b'{"eventId": "e-1"}', "malformed body: no eventCreated and eventId"),
        (b'{"eventCreated": 1700000000}', "malformed body: no eventCreated and eventId"),
        (b'{"eventCreated": true, "eventId": "e"}', "malformed body: no eventCreated"),
        (b'{"eventCreated": 1, "eventId": {"a": 1}}', "malformed body: no eventCreated"),
        (b'{"eventCreated": 1, "eventId": ""}', "malformed body: no eventCreated"),
    ],
)
def test_ecwid_body_without_the_signed_fields_fails_clearly(body: bytes, reason: str) -> None:
    _, headers = PLATFORMS["ecwid"].request(0)
    verdict = judge("ecwid", body, headers)
    assert not verdict.ok
    assert verdict.reason.startswith(reason), verdict.reason


def test_ecwid_malformed_signature_header_fails() -> None:
    verdict = judge("ecwid", ECWID_BODY, {"x-ecwid-webhook-signature": "not base64!!"})
    assert verdict.reason == "malformed signature header (not base64)"


def test_ecwid_sign_needs_the_signed_fields() -> None:
    with pytest.raises(ValueError, match="no eventCreated and eventId"):
        sign(ECWID, SECRET, BODY)


# -- rsa-sha256 (Adobe Commerce webhooks, Adobe I/O Events) ---------------------------------


def _rsa_sign(key: rsa.RSAPrivateKey, msg: bytes) -> str:
    return base64.b64encode(key.sign(msg, padding.PKCS1v15(), hashes.SHA256())).decode()


def test_adobe_commerce_known_answer_signs_base64_of_the_body() -> None:
    """Adobe's sample: ``createVerify('SHA256').update(base64(body))`` with the public key."""
    signature = _rsa_sign(RSA_KEYS[0], base64.b64encode(BODY))
    assert sign_rsa(PRIVATE[0], BODY) == signature  # PKCS#1 v1.5 is deterministic
    header = {"x-adobe-commerce-webhook-signature": signature}
    verdict = verify(ADOBE_COMMERCE, [PUBLIC[0]], BODY, header)
    assert (verdict.ok, verdict.reason) == (True, "valid signature (key 1 of 1)")


def test_rsa_signature_over_raw_body_fails_under_base64_body_and_says_why() -> None:
    raw = {"x-adobe-commerce-webhook-signature": _rsa_sign(RSA_KEYS[0], BODY)}
    verdict = verify(ADOBE_COMMERCE, [PUBLIC[0]], BODY, raw)
    assert not verdict.ok
    assert verdict.reason == "signature mismatch (it covers the body: set verify.signed: body)"
    raw_spec = dataclasses.replace(ADOBE_COMMERCE, signed="body")
    assert verify(raw_spec, [PUBLIC[0]], BODY, raw).ok


def test_rsa_signature_over_base64_body_fails_under_raw_body() -> None:
    """Adobe I/O Events sign the raw body: a base64-body signature is not one of theirs."""
    headers = {"x-adobe-digital-signature-1": _rsa_sign(RSA_KEYS[0], base64.b64encode(BODY))}
    verdict = verify(ADOBE_IO, [PUBLIC[0]], BODY, headers)
    assert not verdict.ok
    assert verdict.reason.startswith("signature mismatch (it covers the base64-body")


@pytest.mark.parametrize("name", ["adobe-commerce", "adobe-io"])
def test_rsa_tampered_body_fails(name: str) -> None:
    _, headers = PLATFORMS[name].request(0)
    verdict = judge(name, BODY.replace(b"199.00", b"1.00"), headers)
    assert (verdict.ok, verdict.reason) == (False, "signature mismatch")


def test_adobe_io_either_signature_header_may_carry_the_valid_one() -> None:
    good = sign_rsa(PRIVATE[0], BODY, signed="body")
    for headers in (
        {"x-adobe-digital-signature-1": good},
        {"x-adobe-digital-signature-2": good},
        {"x-adobe-digital-signature-1": good, "x-adobe-digital-signature-2": "%%%"},
        {"x-adobe-digital-signature-1": "", "x-adobe-digital-signature-2": good},
    ):
        assert judge("adobe-io", BODY, headers).ok, headers


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("%%%", "malformed signature header (not base64)"),
        ("", "malformed signature header (not base64)"),
        ("sha256=abc", "malformed signature header (not base64)"),
        ("AAAA", "signature mismatch"),  # base64, but 3 bytes: no RSA signature
        (NOT_A_SIGNATURE, "signature mismatch"),
    ],
)
def test_rsa_malformed_signature_fails_without_raising(value: str, reason: str) -> None:
    verdict = judge("adobe-commerce", BODY, {"x-adobe-commerce-webhook-signature": value})
    assert (verdict.ok, verdict.reason) == (False, reason)


def test_rsa_unusable_key_given_to_verify_fails_without_raising() -> None:
    """resolve_secrets refuses these at start; verify called directly still must not raise."""
    _, headers = PLATFORMS["adobe-commerce"].request(0)
    verdict = verify(ADOBE_COMMERCE, [b"not a pem", PRIVATE[0]], BODY, headers)
    assert (verdict.ok, verdict.reason) == (False, "no usable public key configured")
    verdict = verify(ADOBE_COMMERCE, [b"not a pem", PUBLIC[0]], BODY, headers)
    assert (verdict.ok, verdict.reason) == (True, "valid signature (key 1 of 1)")


def test_rsa_sign_builds_the_header_from_a_private_key_only() -> None:
    headers = sign(ADOBE_COMMERCE, PRIVATE[0], BODY)
    assert headers == {"x-adobe-commerce-webhook-signature": sign_rsa(PRIVATE[0], BODY)}
    assert sign(ADOBE_IO, PRIVATE[0], BODY) == {
        "x-adobe-digital-signature-1": sign_rsa(PRIVATE[0], BODY, signed="body")
    }
    with pytest.raises(SecretError, match="signing needs the platform's RSA private key"):
        sign(ADOBE_COMMERCE, PUBLIC[0], BODY)
    with pytest.raises(ValueError, match="not an RSA private key"):
        sign_rsa(private_pem(ec.generate_private_key(ec.SECP256R1())), BODY)


# -- jwt (Wix) ------------------------------------------------------------------------------------


def _token(header: dict[str, object], claims: dict[str, object], sig: bytes = b"") -> bytes:
    head = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
    return (head + "." + _b64url(sig)).encode()


def test_wix_jwt_claims_are_what_was_signed() -> None:
    token = make_jwt(PRIVATE[0], WIX_CLAIMS)
    head, claims, _ = token.split(".")
    assert json.loads(base64.urlsafe_b64decode(head + "==")) == {"alg": "RS256", "typ": "JWT"}
    assert json.loads(base64.urlsafe_b64decode(claims + "==")) == WIX_CLAIMS
    assert verify(WIX, [PUBLIC[0]], token.encode() + b"\n", {}, now=NOW).ok


def test_jwt_tampered_claims_fail() -> None:
    head, _, sig = make_jwt(PRIVATE[0], WIX_CLAIMS).split(".")
    forged = {**WIX_CLAIMS, "data": WIX_DATA.replace("ord-1", "ord-2")}
    token = f"{head}.{_b64url(json.dumps(forged).encode())}.{sig}".encode()
    assert judge("wix-jwt", token, {}).reason == "bad signature"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(NOW) - JWT_LEEWAY - 1}, f"token expired ({JWT_LEEWAY + 1} s ago)"),
        ({"exp": int(NOW) - JWT_LEEWAY}, f"token expired ({JWT_LEEWAY} s ago)"),
        ({"exp": int(NOW) - JWT_LEEWAY + 1}, None),  # within the leeway
        ({"nbf": int(NOW) + 120}, "token not yet valid (nbf is 120 s in the future)"),
        ({"nbf": int(NOW) + JWT_LEEWAY}, None),
        ({"iat": int(NOW) + 600}, "token not yet valid (iat is 600 s in the future)"),
        ({"exp": "tomorrow"}, "malformed token: claim exp is not a number"),
        ({"exp": True}, "malformed token: claim exp is not a number"),
        ({"exp": float("nan")}, "malformed token: claim exp is not a number"),
        ({"exp": None, "iat": None}, "malformed token: claim exp is not a number"),
        ({"aud": "someone-else"}, "token names an audience (aud); none is configured"),
        ({"sub": 42}, "malformed token claims"),
    ],
)
def test_jwt_time_and_claim_checks(claims: dict[str, object], reason: str | None) -> None:
    token = make_jwt(PRIVATE[0], {**WIX_CLAIMS, **claims}).encode()
    verdict = verify(WIX, [PUBLIC[0]], token, {}, now=NOW)
    assert verdict.ok is (reason is None), verdict.reason
    assert reason is None or verdict.reason == reason


def test_jwt_expiry_is_judged_at_the_given_time() -> None:
    token = make_jwt(PRIVATE[0], WIX_CLAIMS).encode()  # exp = NOW + 3600
    assert verify(WIX, [PUBLIC[0]], token, {}, now=NOW + 3600 + JWT_LEEWAY - 1).ok
    late = verify(WIX, [PUBLIC[0]], token, {}, now=NOW + 3600 + JWT_LEEWAY)
    assert not late.ok and "expired" in late.reason


def test_jwt_payload_that_is_not_an_object_fails_without_raising() -> None:
    token = jwt.PyJWS().encode(b"[1, 2]", PRIVATE[0], algorithm="RS256").encode()
    assert judge("wix-jwt", token, {}).reason == "malformed token claims"


def test_jwt_alg_none_is_rejected() -> None:
    token = _token({"alg": "none", "typ": "JWT"}, WIX_CLAIMS)
    verdict = judge("wix-jwt", token, {})
    assert (verdict.ok, verdict.reason) == (
        False,
        "token algorithm 'none' not allowed (RS256 only)",
    )


def test_jwt_hs256_keyed_with_the_public_key_is_rejected() -> None:
    """Algorithm confusion: an HMAC "signed" with the public key anyone can read."""
    signing_input = _token({"alg": "HS256", "typ": "JWT"}, WIX_CLAIMS)[:-1]  # "<head>.<claims>"
    mac = hmac.new(PUBLIC[0], signing_input, hashlib.sha256).digest()
    verdict = judge("wix-jwt", signing_input + b"." + _b64url(mac).encode(), {})
    assert (verdict.ok, verdict.reason) == (
        False,
        "token algorithm 'HS256' not allowed (RS256 only)",
    )


def test_jwt_other_algorithms_are_rejected_and_odd_names_not_echoed() -> None:
    rs384 = jwt.encode(WIX_CLAIMS, PRIVATE[0], algorithm="RS384").encode()
    assert judge("wix-jwt", rs384, {}).reason == "token algorithm 'RS384' not allowed (RS256 only)"
    odd = _token({"alg": "<script>" + "A" * 500}, WIX_CLAIMS, b"sig")
    assert judge("wix-jwt", odd, {}).reason == "token algorithm (unknown) not allowed (RS256 only)"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   \n",
        BODY,
        b"a.b.c",
        b"a.b",
        b"...",
        b"\xff\xfe.\x00.\x01",
        _b64url(b"[" * 100_000).encode() + b".e30.c2ln",
        _b64url(b'"just a string"').encode() + b".e30.c2ln",
        b"eyJhbGciOiJSUzI1NiJ9.!!!.sig",
    ],
)
def test_jwt_not_a_jwt_fails_without_raising(body: bytes) -> None:
    verdict = judge("wix-jwt", body, {})
    assert not verdict.ok
    assert verdict.reason in ("not a JWT", "malformed token claims", "bad signature"), (
        verdict.reason
    )


def test_jwt_sign_explains_the_body_is_the_token() -> None:
    with pytest.raises(SecretError, match="the body is the signed token"):
        sign(WIX, PRIVATE[0], BODY)


# -- bearer and basic -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bearer", "basic"])
def test_credentials_authenticate_the_sender_not_the_body(name: str) -> None:
    """Nothing covers the body: a changed body with the right credential still passes."""
    _, headers = PLATFORMS[name].request(0)
    assert judge(name, BODY.replace(b"199.00", b"1.00"), headers).ok


def test_bearer_known_answer_and_scheme_name_case() -> None:
    assert sign(BEARER, TOKENS[0], BODY) == {"Authorization": "Bearer tok-old-3f9a1c"}
    assert judge("bearer", BODY, {"authorization": "bearer   tok-old-3f9a1c "}).ok


def test_basic_known_answer() -> None:
    expected = "Basic " + base64.b64encode(b"shop:old-pass").decode()
    assert sign(BASIC, CREDENTIALS[0], BODY) == {"Authorization": expected}
    assert judge("basic", BODY, {"Authorization": expected}).ok


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("bearer", "Basic dG9rLW9sZA==", "malformed Authorization header (not Bearer)"),
        ("bearer", "tok-old-3f9a1c", "malformed Authorization header (not Bearer)"),
        ("bearer", "Bearer", "token mismatch"),
        ("bearer", "Bearer tok-old-3f9a1", "token mismatch"),
        ("bearer", "Bearer tok-old-3f9a1cX", "token mismatch"),
        ("basic", "Bearer x", "malformed Authorization header (not Basic)"),
        ("basic", "Basic %%%", "malformed Authorization header (not base64)"),
        ("basic", "Basic", "malformed Authorization header (not base64)"),
        ("basic", "Basic " + base64.b64encode(b"shop:wrong").decode(), "credentials mismatch"),
        ("basic", "Basic " + base64.b64encode(b"shop").decode(), "credentials mismatch"),
    ],
)
def test_credentials_wrong_or_malformed_fail(name: str, value: str, reason: str) -> None:
    verdict = judge(name, BODY, {"Authorization": value})
    assert (verdict.ok, verdict.reason) == (False, reason)


@pytest.mark.parametrize(("name", "given"), [("bearer", b"guess"), ("basic", b"shop:guess")])
def test_credentials_are_compared_with_compare_digest(
    name: str, given: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module engine.server.signatures calls
    value = "Bearer guess" if name == "bearer" else "Basic " + base64.b64encode(given).decode()
    p = PLATFORMS[name]
    assert not verify(p.spec, p.verifying, BODY, {"authorization": value}).ok
    assert seen == [(p.verifying[0], given), (p.verifying[1], given)]


def test_bearer_in_a_custom_header_is_the_bare_token() -> None:
    """PrestaShop's module and others can send a fixed header of the merchant's choosing."""
    spec = VerifySpec("bearer", ("T",), header="X-Webhook-Token")
    assert sign(spec, TOKENS[0], BODY) == {"X-Webhook-Token": "tok-old-3f9a1c"}
    assert verify(spec, [TOKENS[0]], BODY, {"x-webhook-token": "tok-old-3f9a1c"}).ok
    assert verify(spec, [TOKENS[0]], BODY, {"x-webhook-token": "Bearer tok-old-3f9a1c"}).ok
    verdict = verify(spec, [TOKENS[0]], BODY, {"authorization": "Bearer tok-old-3f9a1c"})
    assert verdict.reason == "missing header X-Webhook-Token"


# -- config for the new schemes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "spec"),
    [
        ({"scheme": "ecwid", "secret_env": "ECWID_CLIENT_SECRET"}, ECWID),
        ({"scheme": "rsa-sha256", "public_key_env": "ADOBE_COMMERCE_KEY"}, ADOBE_COMMERCE),
        (
            {
                "scheme": "rsa-sha256",
                "public_key_env": ["ADOBE_IO_KEY"],
                "header": ["x-adobe-digital-signature-1", "x-adobe-digital-signature-2"],
                "signed": "body",
            },
            ADOBE_IO,
        ),
        ({"scheme": "jwt", "public_key_env": "WIX_PUBLIC_KEY"}, WIX),
        ({"scheme": "bearer", "secret_env": "PS_WEBHOOK_TOKEN"}, BEARER),
        ({"scheme": "basic", "secret_env": ["PUSH_CREDENTIALS"]}, BASIC),
        (
            {
                "scheme": "bearer",
                "secret_env": "T",
                "header": ["X-Token"],
            },  # as the loader gives it
            VerifySpec("bearer", ("T",), header="X-Token"),
        ),
        (
            {"scheme": "shopify", "secret_env": "S", "header": ["X-Shopify-Hmac-Sha256"]},
            VerifySpec("shopify", ("S",)),
        ),
    ],
)
def test_parse_verify_new_schemes(config: dict[str, object], spec: VerifySpec) -> None:
    assert parse_verify(config) == (spec, [])


def test_parse_verify_new_scheme_defaults() -> None:
    spec = parse_verify({"scheme": "rsa-sha256", "public_key_env": ["NEW", "OLD"]})[0]
    assert spec is not None
    assert (spec.header, spec.alt_headers, spec.signed) == (
        "x-adobe-commerce-webhook-signature",
        (),
        "base64-body",
    )
    assert (spec.public_key_envs, spec.secret_envs, spec.env_names) == (
        ("NEW", "OLD"),
        (),
        ("NEW", "OLD"),
    )
    assert (BEARER.header, BASIC.header, ECWID.header) == (
        "Authorization",
        "Authorization",
        "X-Ecwid-Webhook-Signature",
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"scheme": "rsa-sha256"}, "verify.public_key_env is required for scheme 'rsa-sha256'"),
        ({"scheme": "jwt"}, "verify.public_key_env is required for scheme 'jwt'"),
        (
            {"scheme": "jwt", "secret_env": "S"},
            "verify.secret_env does not apply to scheme 'jwt' (use public_key_env)",
        ),
        (
            {"scheme": "bearer", "public_key_env": "K"},
            "verify.public_key_env does not apply to scheme 'bearer' (use secret_env)",
        ),
        ({"scheme": "bearer", "public_key_env": "K"}, "verify.secret_env is required"),
        ({"scheme": "basic"}, "verify.secret_env is required for scheme 'basic'"),
        ({"scheme": "ecwid"}, "verify.secret_env is required for scheme 'ecwid'"),
        (
            {"scheme": "shopify", "secret_env": "S", "public_key_env": "K"},
            "verify.public_key_env does not apply to scheme 'shopify' (use secret_env)",
        ),
        (
            {"scheme": "jwt", "public_key_env": "K", "header": "X"},
            "verify.header does not apply to scheme 'jwt'",
        ),
        (
            {"scheme": "jwt", "public_key_env": "K", "signed": "body"},
            "verify.signed does not apply to scheme 'jwt'",
        ),
        (
            {"scheme": "hmac", "secret_env": "S", "header": "X", "signed": "body"},
            "verify.signed does not apply to scheme 'hmac'",
        ),
        (
            {"scheme": "rsa-sha256", "public_key_env": "K", "signed": "raw"},
            "unknown signed 'raw' in verify.signed (one of body, base64-body)",
        ),
        (
            {"scheme": "rsa-sha256", "public_key_env": "K", "signed": "base64_body"},
            "unknown signed 'base64_body' in verify.signed (did you mean 'base64-body'?)",
        ),
        (
            {"scheme": "rsa-sha256", "public_key_env": "K", "algorithm": "sha512"},
            "verify.algorithm does not apply to scheme 'rsa-sha256'",
        ),
        (
            {"scheme": "rsa-sha256", "public_key_env": "K", "header": []},
            "verify.header must be a non-empty header name",
        ),
        (
            {"scheme": "rsa-sha256", "public_key_env": "K", "header": ["x-sig", ""]},
            "verify.header must be a non-empty header name",
        ),
        (
            {"scheme": "rsa-sha256", "public_key_env": "K", "header": ["x-sig", 3]},
            "verify.header must be a non-empty header name",
        ),
        (
            {"scheme": "shopify", "secret_env": "S", "header": ["A", "B"]},
            "verify.header: scheme 'shopify' reads one header, not a list",
        ),
        (
            {"scheme": "bearer", "secret_env": "S", "header": ["A", "B"]},
            "verify.header: scheme 'bearer' reads one header, not a list",
        ),
        (
            {"scheme": "ecwid", "secret_env": "S", "tolerance": 60},
            "verify.tolerance does not apply to scheme 'ecwid'",
        ),
        (
            {"scheme": "ecwid", "secret_env": "S", "algorithm": "sha1"},
            "verify.algorithm does not apply to scheme 'ecwid'",
        ),
        (
            {"scheme": "basic", "secret_env": "S", "prefix": "Basic "},
            "verify.prefix does not apply to scheme 'basic'",
        ),
        ({"scheme": "jwt", "public_key_env": []}, "verify.public_key_env must be"),
        ({"scheme": "jwt", "public_key_env": ["K", 1]}, "verify.public_key_env must be"),
        ({"scheme": "jwt", "public_key_env": "WIX-KEY"}, "verify.public_key_env must be"),
        (
            {"scheme": "jwt", "public_kye_env": "K"},
            "unknown key 'public_kye_env' in verify (did you mean 'public_key_env'?)",
        ),
    ],
)
def test_parse_verify_new_key_misuse(config: dict[str, object], message: str) -> None:
    spec, errors = parse_verify(config)
    assert spec is None
    assert any(e.startswith(message) for e in errors), errors


def test_parse_verify_never_echoes_a_pasted_key() -> None:
    pasted = PUBLIC[0].decode()
    _, errors = parse_verify({"scheme": "rsa-sha256", "public_key_env": pasted})
    assert errors == ["verify.public_key_env must be a variable name or a list of names"]


# -- keys and tokens from the environment ----------------------------------------------------


def test_resolve_public_keys_from_text_file_and_escaped_newlines(tmp_path: Path) -> None:
    key_file = tmp_path / "adobe.pem"
    key_file.write_bytes(PUBLIC[1])
    spec = VerifySpec("rsa-sha256", public_key_envs=("A", "UNSET", "B", "C"))
    env = {
        "A": PUBLIC[0].decode(),
        "B": f"@{key_file}",
        "C": PUBLIC[1].decode().replace("\n", "\\n"),
    }
    assert resolve_secrets(spec, env) == [PUBLIC[0], PUBLIC[1], PUBLIC[1]]


def test_resolve_public_keys_none_set_refuses_to_serve() -> None:
    with pytest.raises(SecretError, match="verify scheme 'jwt': no public key set in W1, W2"):
        resolve_secrets(VerifySpec("jwt", public_key_envs=("W1", "W2")), {"W1": ""})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not a key at all", "WIX_PUBLIC_KEY: not a PEM public key"),
        (PUBLIC[0].decode()[:200], "WIX_PUBLIC_KEY: not a PEM public key"),
        (
            PRIVATE[0].decode(),
            "WIX_PUBLIC_KEY: not a PEM public key (it holds a private key: configure the "
            "platform's public key)",
        ),
        (
            public_pem(ec.generate_private_key(ec.SECP256R1())).decode(),
            "WIX_PUBLIC_KEY: not an RSA public key",
        ),
        (
            public_pem(_rsa_key(1024)).decode(),
            "WIX_PUBLIC_KEY: RSA key is 1024 bits, at least 2048 needed",
        ),
    ],
)
def test_resolve_unusable_public_key_refuses_without_printing_it(value: str, message: str) -> None:
    with pytest.raises(SecretError) as info:
        resolve_secrets(WIX, {"WIX_PUBLIC_KEY": value})
    assert str(info.value) == message
    assert "BEGIN" not in str(info.value) and value not in str(info.value)
    assert info.value.__cause__ is None  # no chained error quoting the key either


def test_resolve_unreadable_key_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(SecretError, match=f"K: cannot read key file {missing} "):
        resolve_secrets(VerifySpec("rsa-sha256", public_key_envs=("K",)), {"K": f"@{missing}"})


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        (BASIC, "no-colon-here", "PUSH_CREDENTIALS: Basic credentials must be written user:pass"),
        (BEARER, "tok-123\n", "PS_WEBHOOK_TOKEN: the token has leading or trailing whitespace"),
    ],
)
def test_resolve_unusable_credentials_refuse_without_printing_them(
    spec: VerifySpec, value: str, message: str
) -> None:
    with pytest.raises(SecretError, match=message) as info:
        resolve_secrets(spec, {spec.secret_envs[0]: value})
    assert value.strip() not in str(info.value)


def test_resolve_credentials_in_order() -> None:
    env = {"PUSH_CREDENTIALS": "shop:old-pass"}
    assert resolve_secrets(BASIC, env) == [b"shop:old-pass"]
    assert resolve_secrets(BEARER, {"PS_WEBHOOK_TOKEN": "tok"}) == [b"tok"]
    assert resolve_secrets(ECWID, {"ECWID_CLIENT_SECRET": "cs"}) == [b"cs"]
