"""Request signature checks, declared per rule set under ``verify:``.

``parse_verify`` turns the plain ``verify:`` mapping into a ``VerifySpec`` (collecting
every problem), ``resolve_secrets`` reads the secrets from the environment once at
start, and ``verify`` judges one request without I/O. ``sign`` builds the headers a
platform would send, for tests, the demo and benchmarks.

Secrets are a list because platforms rotate them: Shopify may keep signing with the old
app secret for up to an hour after a rotation, so old and new must both be accepted.
The ``rsa-sha256`` and ``jwt`` schemes take PEM public keys instead of secrets; they
travel the same way (a list, from the environment) and are checked with ``cryptography``
and PyJWT: no signature arithmetic is written here.
Facts per platform: ``shared/webhooks/README.md``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast, get_args

import jwt
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from engine.errors import HookmapError, did_you_mean

Scheme = Literal[
    "shopify",
    "woocommerce",
    "hmac",
    "timestamped",
    "standard-webhooks",
    "ecwid",
    "rsa-sha256",
    "jwt",
    "bearer",
    "basic",
    "none",
]
Algorithm = Literal["sha1", "sha256", "sha512"]
Encoding = Literal["hex", "base64"]
Signed = Literal["body", "base64-body"]

SCHEMES: tuple[Scheme, ...] = get_args(Scheme)
ALGORITHMS: tuple[Algorithm, ...] = ("sha1", "sha256", "sha512")
ENCODINGS: tuple[Encoding, ...] = ("hex", "base64")
SIGNED: tuple[Signed, ...] = ("body", "base64-body")

#: The keys of a rule set's ``verify:`` mapping, with one-line docs (the schema declares them).
VERIFY_KEYS: dict[str, str] = {
    "scheme": "How requests are signed: " + ", ".join(SCHEMES) + ".",
    "secret_env": "Environment variable(s) holding the secret; several = rotation, any may match.",
    "public_key_env": (
        "For `rsa-sha256` and `jwt`: environment variable(s) holding the platform's PEM "
        "public key, or `@/path/to/key.pem`; several = rotation, any may match."
    ),
    "header": (
        "Header carrying the signature or token (required for `hmac`); for `rsa-sha256` "
        "a list, any of which may carry a valid signature."
    ),
    "algorithm": "HMAC hash: sha1, sha256 or sha512 (default sha256).",
    "encoding": "How the signature is written: hex or base64 (`hmac` default hex).",
    "prefix": "Text before the signature in the header, e.g. `sha256=` (GitHub style).",
    "tolerance": "Seconds a signed timestamp may differ from now, past or future (default 300).",
    "signed": (
        "What an `rsa-sha256` signature covers: `base64-body` (Adobe Commerce webhooks, "
        "the default) or the raw `body` (Adobe I/O Events)."
    ),
}

# Which keys each scheme reads; any other is a mistake worth reporting at load.
_APPLIES: dict[str, frozenset[str]] = {
    "none": frozenset({"scheme"}),
    "shopify": frozenset({"scheme", "secret_env", "header"}),
    # WooCommerce lets a site filter the algorithm (woocommerce_webhook_hash_algorithm).
    "woocommerce": frozenset({"scheme", "secret_env", "header", "algorithm"}),
    "hmac": frozenset({"scheme", "secret_env", "header", "algorithm", "encoding", "prefix"}),
    "timestamped": frozenset(
        {"scheme", "secret_env", "header", "algorithm", "encoding", "tolerance"}
    ),
    "standard-webhooks": frozenset({"scheme", "secret_env", "tolerance"}),
    "ecwid": frozenset({"scheme", "secret_env", "header"}),
    "rsa-sha256": frozenset({"scheme", "public_key_env", "header", "signed"}),
    "jwt": frozenset({"scheme", "public_key_env"}),
    "bearer": frozenset({"scheme", "secret_env", "header"}),
    "basic": frozenset({"scheme", "secret_env", "header"}),
}
# (header, encoding) a scheme uses when the spec leaves them empty.
_DEFAULTS: dict[str, tuple[str, Encoding]] = {
    "shopify": ("X-Shopify-Hmac-Sha256", "base64"),
    "woocommerce": ("X-WC-Webhook-Signature", "base64"),
    "hmac": ("", "hex"),
    "timestamped": ("Stripe-Signature", "hex"),  # Stripe writes v1 as hex
    "standard-webhooks": ("webhook-signature", "base64"),
    "ecwid": ("X-Ecwid-Webhook-Signature", "base64"),
    "rsa-sha256": ("x-adobe-commerce-webhook-signature", "base64"),
    # The encodings below are fixed by the scheme, not read from the spec.
    "jwt": ("", "base64"),
    "bearer": ("Authorization", "base64"),
    "basic": ("Authorization", "base64"),
    "none": ("", "hex"),
}
_SW_FAMILIES = ("webhook-", "svix-")  # Svix sends the same headers under its own prefix
_PUBLIC_KEY_SCHEMES = frozenset({"rsa-sha256", "jwt"})
#: Seconds of clock skew forgiven on a JWT's exp/nbf/iat (tokens live minutes, not days).
JWT_LEEWAY = 60
# Below this PyJWT warns on every request; the platforms here all use 2048-bit keys.
_MIN_RSA_BITS = 2048
# JWS algorithm names a reason may quote; anything else in a token header is not echoed.
_JWS_ALGS = frozenset(
    {"none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}
    | {"PS256", "PS384", "PS512", "EdDSA"}
)


class SecretError(HookmapError):
    """A verify spec names no usable secret or key (to serve, or to sign with)."""


@dataclasses.dataclass(frozen=True)
class VerifySpec:
    """How one rule set's requests are signed. Empty header/encoding = the scheme's default."""

    scheme: Scheme
    secret_envs: tuple[str, ...] = ()
    header: str = ""
    algorithm: Algorithm = "sha256"
    encoding: Encoding | Literal[""] = ""
    prefix: str = ""
    tolerance_seconds: int = 300
    #: what a ``timestamped`` signature covers; ``{t}`` is the header's t= value verbatim
    signed_payload: str = "{t}.{body}"
    #: ``rsa-sha256``/``jwt``: variables holding PEM public keys (or ``@path``)
    public_key_envs: tuple[str, ...] = ()
    #: what an ``rsa-sha256`` signature covers
    signed: Signed = "base64-body"
    #: ``rsa-sha256``: more headers that may carry a signature (Adobe I/O sends two)
    alt_headers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES or self.algorithm not in ALGORITHMS:
            raise ValueError(f"bad scheme or algorithm: {self.scheme!r}, {self.algorithm!r}")
        if "{body}" not in self.signed_payload:
            raise ValueError("signed_payload must contain {body}")
        if self.signed not in SIGNED:
            raise ValueError(f"bad signed: {self.signed!r}")
        header, encoding = _DEFAULTS[self.scheme]
        object.__setattr__(self, "header", self.header or header)
        object.__setattr__(self, "encoding", self.encoding or encoding)

    @property
    def env_names(self) -> tuple[str, ...]:
        """The variables ``resolve_secrets`` reads: public keys or secrets, per scheme."""
        return self.public_key_envs if self.scheme in _PUBLIC_KEY_SCHEMES else self.secret_envs


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of one check. ``reason`` never holds a secret, the body or a signature."""

    ok: bool
    reason: str
    scheme: str


def _is_env_name(name: object) -> bool:
    return isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None


def parse_verify(config: Mapping[str, Any]) -> tuple[VerifySpec | None, list[str]]:
    """The spec for a ``verify:`` mapping, and every problem found (spec is None if any)."""
    if not isinstance(config, Mapping):
        return None, ["verify must be a mapping with at least 'scheme'"]
    errors: list[str] = []
    for key in config:
        if key not in VERIFY_KEYS:
            hint = did_you_mean(str(key), VERIFY_KEYS)
            errors.append(f"unknown key '{key}' in verify" + (f" ({hint})" if hint else ""))
    scheme = config.get("scheme")
    if scheme is None:
        return None, [*errors, "verify.scheme is required (one of " + ", ".join(SCHEMES) + ")"]
    if scheme not in SCHEMES:
        hint = did_you_mean(str(scheme), SCHEMES) or "one of " + ", ".join(SCHEMES)
        return None, [*errors, f"unknown scheme '{scheme}' in verify.scheme ({hint})"]
    keyed = scheme in _PUBLIC_KEY_SCHEMES
    for key in config:
        if key in VERIFY_KEYS and key not in _APPLIES[scheme]:
            swap = {"secret_env": "public_key_env", "public_key_env": "secret_env"}.get(key)
            hint = f" (use {swap})" if swap in _APPLIES[scheme] else ""
            errors.append(f"verify.{key} does not apply to scheme '{scheme}'{hint}")

    def env_names(key: str, required: bool) -> tuple[str, ...]:
        raw = config.get(key)
        if isinstance(raw, str):
            raw = [raw]
        if isinstance(raw, list) and raw and all(map(_is_env_name, raw)):
            return tuple(raw)
        if raw is not None:
            # Never echo the value: a secret or key pasted here by mistake must not reach a log.
            errors.append(f"verify.{key} must be a variable name or a list of names")
        elif required:
            errors.append(f"verify.{key} is required for scheme '{scheme}'")
        return ()

    envs = env_names("secret_env", scheme != "none" and not keyed)
    key_envs = env_names("public_key_env", keyed)

    def choice(key: str, allowed: Sequence[str], default: str) -> str:
        value = config.get(key, default)
        if value not in allowed:
            hint = did_you_mean(str(value), allowed) or "one of " + ", ".join(allowed)
            errors.append(f"unknown {key} '{value}' in verify.{key} ({hint})")
            return default
        return str(value)

    algorithm = choice("algorithm", ALGORITHMS, "sha256")
    encoding = choice("encoding", ENCODINGS, _DEFAULTS[scheme][1])
    signed = choice("signed", SIGNED, "base64-body")
    header, alt_headers = _parse_header(config, scheme, errors)
    prefix = config.get("prefix", "")
    if not isinstance(prefix, str):
        errors.append("verify.prefix must be a string")
        prefix = ""
    tolerance = config.get("tolerance", 300)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance <= 0:
        errors.append("verify.tolerance must be a positive number of seconds")
        tolerance = 300
    if errors:
        return None, errors
    spec = VerifySpec(
        scheme=cast(Scheme, scheme),
        secret_envs=envs,
        header=header,
        algorithm=cast(Algorithm, algorithm),
        encoding=cast(Encoding, encoding),
        prefix=prefix,
        tolerance_seconds=tolerance,
        public_key_envs=key_envs,
        signed=cast(Signed, signed),
        alt_headers=alt_headers,
    )
    return spec, []


def _parse_header(
    config: Mapping[str, Any], scheme: str, errors: list[str]
) -> tuple[str, tuple[str, ...]]:
    """(header, further headers) of a ``verify:`` mapping; problems go to ``errors``.

    The schema lets ``header`` be a list (the loader hands even a lone name over as a
    one-item list), but only ``rsa-sha256`` reads more than one.
    """
    if "header" not in config:
        if scheme == "hmac":
            errors.append("verify.header is required for scheme 'hmac'")
        return "", ()
    raw = config["header"]
    names = raw if isinstance(raw, list) else [raw]
    if not names or not all(isinstance(n, str) and n for n in names):
        errors.append("verify.header must be a non-empty header name")
        return "", ()
    if len(names) > 1 and scheme != "rsa-sha256":
        errors.append(f"verify.header: scheme '{scheme}' reads one header, not a list")
        return "", ()
    return names[0], tuple(names[1:])


# -- secrets and keys from the environment ---------------------------------------------


def _sw_key(secret: bytes) -> bytes:
    """Standard Webhooks key: ``whsec_<base64>`` is decoded; anything else is used raw
    (BigCommerce hands its app client secret to the library as-is)."""
    if secret.startswith(b"whsec_"):
        return base64.b64decode(secret[6:], validate=True)
    return secret


def _sw_key_ok(secret: bytes) -> bool:
    try:
        _sw_key(secret)
    except binascii.Error:
        return False
    return True


@functools.lru_cache(maxsize=32)
def _public_key(pem: bytes) -> rsa.RSAPublicKey:
    """The RSA public key in ``pem``; parsed once per PEM, not once per request.

    Raises ValueError when it is not one (the message never quotes the PEM).
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        hint = ""
        if b"PRIVATE KEY" in pem:
            hint = " (it holds a private key: configure the platform's public key)"
        elif b"CERTIFICATE" in pem:
            hint = " (it holds a certificate: `openssl x509 -pubkey -noout` gives its key)"
        raise ValueError(f"not a PEM public key{hint}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    if key.key_size < _MIN_RSA_BITS:
        raise ValueError(f"RSA key is {key.key_size} bits, at least {_MIN_RSA_BITS} needed")
    return key


def _usable_keys(pems: Sequence[bytes]) -> list[rsa.RSAPublicKey]:
    keys = []
    for pem in pems:
        try:
            keys.append(_public_key(pem))
        except ValueError:
            continue  # resolve_secrets refuses these at start; verify must not raise
    return keys


def read_pem(name: str, value: str) -> bytes:
    """The PEM a variable names: its text, or the file after ``@``."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_bytes()
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise SecretError(f"{name}: cannot read key file {path} ({why})") from None
    if "\n" not in value and "\\n" in value:
        value = value.replace("\\n", "\n")  # .env files and CI settings often escape newlines
    return value.encode("utf-8")


def resolve_secrets(spec: VerifySpec, env: Mapping[str, str]) -> list[bytes]:
    """The secrets (or PEM public keys) the spec names, in order; unset or empty variables
    are skipped.

    Raises SecretError when a scheme other than ``none`` has no usable secret or key, so
    the server fails at start rather than rejecting every webhook. No message quotes a
    secret or a key.
    """
    names = spec.env_names
    found = {name: env[name] for name in names if env.get(name)}
    if spec.scheme == "none":
        return [value.encode("utf-8") for value in found.values()]
    if not found:
        what = "public key" if spec.scheme in _PUBLIC_KEY_SCHEMES else "secret"
        listed = ", ".join(names) or "(none named)"
        raise SecretError(f"verify scheme '{spec.scheme}': no {what} set in {listed}")
    if spec.scheme in _PUBLIC_KEY_SCHEMES:
        pems = []
        for name, value in found.items():
            pem = read_pem(name, value)
            try:
                _public_key(pem)
            except ValueError as exc:
                raise SecretError(f"{name}: {exc}") from None
            pems.append(pem)
        return pems
    secrets = {name: value.encode("utf-8") for name, value in found.items()}
    for name, secret in secrets.items():
        if spec.scheme == "standard-webhooks" and not _sw_key_ok(secret):
            raise SecretError(f"{name}: the whsec_ secret is not valid base64")
        if spec.scheme == "basic" and b":" not in secret:
            raise SecretError(f"{name}: Basic credentials must be written user:password")
        if spec.scheme == "bearer" and secret != secret.strip():
            # A token read from a file often keeps its newline; it could never match.
            raise SecretError(f"{name}: the token has leading or trailing whitespace")
    return list(secrets.values())


# -- judging a request ----------------------------------------------------------------------


def _decode(text: str, encoding: str) -> bytes | None:
    try:
        if encoding == "hex":
            return base64.b16decode(text, casefold=True)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _match(keys: Sequence[bytes], msg: bytes, given: Sequence[bytes], algorithm: str) -> int:
    """1-based index of the key whose MAC equals one given signature, or 0."""
    for index, key in enumerate(keys, 1):
        mac = hmac.digest(key, msg, algorithm)
        if any(hmac.compare_digest(mac, sig) for sig in given):
            return index
    return 0


def _ecwid_message(body: bytes) -> bytes:
    """What Ecwid signs: ``{eventCreated}.{eventId}`` from the body (not the body itself).

    Raises ValueError with the verdict's reason when the body does not carry them.
    """
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError(
            "malformed body: not JSON (ecwid signs its eventCreated.eventId)"
        ) from None
    parts = [data.get(k) for k in ("eventCreated", "eventId")] if isinstance(data, dict) else []
    if not parts or not all(
        isinstance(p, int | str) and not isinstance(p, bool) and p != "" for p in parts
    ):
        raise ValueError("malformed body: no eventCreated and eventId (ecwid signs them)")
    return f"{parts[0]}.{parts[1]}".encode()


def _read(spec: VerifySpec, lower: Mapping[str, str], body: bytes) -> tuple[str, list[str], bytes]:
    """(timestamp, claimed signatures, signed message) from the request.

    Raises ValueError with the verdict's reason when the headers are missing or malformed.
    """
    if spec.scheme == "standard-webhooks":
        family = next((f for f in _SW_FAMILIES if f + "signature" in lower), "webhook-")
        for part in ("signature", "id", "timestamp"):
            if family + part not in lower:
                raise ValueError(f"missing header {family}{part}")
        stamp = lower[family + "timestamp"]
        if not (stamp.isascii() and stamp.isdigit()):
            raise ValueError(f"malformed {family}timestamp header")
        # Space-separated "v1,<base64>" entries; "v1a," (ed25519) ones are not ours to check.
        wanted = [v[3:] for v in lower[family + "signature"].split() if v.startswith("v1,")]
        return stamp, wanted, f"{lower[family + 'id']}.{stamp}.".encode() + body
    value = lower.get(spec.header.lower())
    if value is None:
        raise ValueError(f"missing header {spec.header}")
    if spec.scheme == "ecwid":
        return "", [value], _ecwid_message(body)
    if spec.scheme != "timestamped":
        if not value.lower().startswith(spec.prefix.lower()):
            raise ValueError(f"malformed signature header (no '{spec.prefix}' prefix)")
        return "", [value[len(spec.prefix) :]], body
    # Stripe: t=<unix>,v1=<sig>[,v1=<sig>...][,v0=...]; several v1 while a secret rolls.
    pairs = [item.strip().partition("=") for item in value.split(",")]
    stamp = next((v for k, _, v in pairs if k == "t"), "")
    if any(not sep for _, sep, _ in pairs) or not (stamp.isascii() and stamp.isdigit()):
        raise ValueError("malformed signature header (no t=<unix seconds>)")
    before, _, after = spec.signed_payload.partition("{body}")
    msg = before.replace("{t}", stamp).encode() + body + after.replace("{t}", stamp).encode()
    return stamp, [v for k, _, v in pairs if k == "v1"], msg


def _rsa_message(body: bytes, signed: str) -> bytes:
    return base64.b64encode(body) if signed == "base64-body" else body


def _rsa_index(keys: Sequence[rsa.RSAPublicKey], msg: bytes, sigs: Sequence[bytes]) -> int:
    """1-based index of the key that verifies one of ``sigs`` over ``msg``, or 0."""
    for index, key in enumerate(keys, 1):
        for sig in sigs:
            try:
                key.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())
            except (InvalidSignature, ValueError):
                continue
            return index
    return 0


def _check_rsa(
    spec: VerifySpec, pems: Sequence[bytes], body: bytes, lower: Mapping[str, str], _: float
) -> tuple[bool, str]:
    """RSA PKCS#1 v1.5 + SHA-256 over the body or its base64 (Adobe), any header, any key."""
    keys = _usable_keys(pems)
    if not keys:
        return False, "no usable public key configured"
    names = (spec.header, *spec.alt_headers)
    present = [lower[n.lower()] for n in names if n.lower() in lower]
    if not present:
        return False, "missing header " + " or ".join(names)
    sigs = [sig for sig in (_decode(v, "base64") for v in present) if sig]
    if not sigs:
        return False, "malformed signature header (not base64)"
    index = _rsa_index(keys, _rsa_message(body, spec.signed), sigs)
    if index:
        return True, f"valid signature (key {index} of {len(keys)})"
    # Adobe's docs call the Commerce signature "HMAC" while its sample signs base64(body):
    # when the other reading verifies, say which setting is wrong rather than just "no".
    other = "body" if spec.signed == "base64-body" else "base64-body"
    if _rsa_index(keys, _rsa_message(body, other), sigs):
        return False, f"signature mismatch (it covers the {other}: set verify.signed: {other})"
    return False, "signature mismatch"


def _jwt_time_problem(claims: Mapping[str, Any], now: float) -> str | None:
    """Why the token's exp/nbf/iat refuse it at ``now`` (with JWT_LEEWAY), or None."""
    stamps: dict[str, float] = {}
    for name in ("exp", "nbf", "iat"):
        if name not in claims:
            continue
        value = claims[name]
        # json accepts NaN, and NaN compares false with everything: it would never expire.
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return f"malformed token: claim {name} is not a number"
        stamps[name] = value
    if "exp" in stamps and stamps["exp"] <= now - JWT_LEEWAY:
        return f"token expired ({round(now - stamps['exp'])} s ago)"
    for name in ("nbf", "iat"):
        if name in stamps and stamps[name] > now + JWT_LEEWAY:
            return f"token not yet valid ({name} is {round(stamps[name] - now)} s in the future)"
    return None


def _check_jwt(
    spec: VerifySpec, pems: Sequence[bytes], body: bytes, lower: Mapping[str, str], now: float
) -> tuple[bool, str]:
    """The body is a compact RS256 JWT (Wix): signature by any key, then exp/nbf/iat."""
    keys = _usable_keys(pems)
    if not keys:
        return False, "no usable public key configured"
    token = body.strip()
    # Unparseable input of any shape (bad base64, bad UTF-8, deep JSON) is "not a JWT".
    bad_input = (jwt.PyJWTError, ValueError, TypeError, RecursionError)
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except bad_input:
        return False, "not a JWT"
    if alg != "RS256":
        # Pinned: "none", or HS256 keyed with our public key, would let anyone sign.
        shown = f"'{alg}'" if isinstance(alg, str) and alg in _JWS_ALGS else "(unknown)"
        return False, f"token algorithm {shown} not allowed (RS256 only)"
    # Times are checked below against ``now`` (PyJWT reads the clock itself).
    options: jwt.types.Options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
    for index, key in enumerate(keys, 1):
        try:
            claims = jwt.decode(token, key, algorithms=["RS256"], options=options)
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidAudienceError:
            return False, "token names an audience (aud); none is configured"
        except bad_input:
            return False, "malformed token claims"
        problem = _jwt_time_problem(claims, now)
        if problem:
            return False, problem
        return True, f"valid token (key {index} of {len(keys)})"
    return False, "bad signature"


def _same(secrets: Sequence[bytes], given: bytes) -> int:
    """1-based index of the secret equal to ``given``, compared in constant time, or 0."""
    for index, secret in enumerate(secrets, 1):
        if hmac.compare_digest(secret, given):
            return index
    return 0


def _check_credentials(
    spec: VerifySpec, secrets: Sequence[bytes], body: bytes, lower: Mapping[str, str], _: float
) -> tuple[bool, str]:
    """``bearer``/``basic``: a shared credential in a header. Nothing here covers the body."""
    value = lower.get(spec.header.lower())
    if value is None:
        return False, f"missing header {spec.header}"
    auth, _sep, rest = value.partition(" ")
    if spec.scheme == "basic":
        if auth.lower() != "basic":
            return False, f"malformed {spec.header} header (not Basic)"
        given = _decode(rest.strip(), "base64")
        if not given:
            return False, f"malformed {spec.header} header (not base64)"
        what = "credentials"
    elif auth.lower() == "bearer":
        given, what = rest.strip().encode("utf-8"), "token"
    elif spec.header.lower() == "authorization":
        return False, "malformed Authorization header (not Bearer)"
    else:
        given, what = value.encode("utf-8"), "token"  # a custom header holds the bare token
    index = _same(secrets, given)
    if not index:
        return False, f"{what} mismatch"
    return True, f"valid {what} (secret {index} of {len(secrets)})"


_Check = Callable[[VerifySpec, Sequence[bytes], bytes, Mapping[str, str], float], tuple[bool, str]]
_CHECKS: dict[str, _Check] = {
    "rsa-sha256": _check_rsa,
    "jwt": _check_jwt,
    "bearer": _check_credentials,
    "basic": _check_credentials,
}


def verify(
    spec: VerifySpec,
    secrets: Sequence[bytes],
    body: bytes,
    headers: Mapping[str, str],
    now: float | None = None,
) -> Verdict:
    """Judge one request: its raw body and headers (names compared case-insensitively).

    ``secrets`` are what ``resolve_secrets`` returned (PEM public keys for ``rsa-sha256``
    and ``jwt``). Never raises on bad input: a request that cannot be judged fails.
    """

    def verdict(ok: bool, reason: str) -> Verdict:
        return Verdict(ok, reason, spec.scheme)

    if spec.scheme == "none":
        return verdict(True, "not verified (scheme none)")
    if not secrets:
        keyed = spec.scheme in _PUBLIC_KEY_SCHEMES
        return verdict(False, "no public key configured" if keyed else "no secret configured")
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    moment = time.time() if now is None else now
    check = _CHECKS.get(spec.scheme)
    if check is not None:
        return verdict(*check(spec, secrets, body, lower, moment))
    keys = list(secrets)
    if spec.scheme == "standard-webhooks":
        keys = [_sw_key(s) for s in secrets if _sw_key_ok(s)]
    if not keys:
        return verdict(False, "no secret configured")
    try:
        stamp, wanted, msg = _read(spec, lower, body)
    except ValueError as exc:
        return verdict(False, str(exc))
    if not wanted:
        return verdict(False, "malformed signature header (no v1 signature)")
    given = [sig for sig in (_decode(w, str(spec.encoding)) for w in wanted) if sig]
    if not given:
        return verdict(False, f"malformed signature header (not {spec.encoding})")
    algorithm = "sha256" if spec.scheme == "standard-webhooks" else spec.algorithm
    size = hashlib.new(algorithm).digest_size
    if all(len(sig) != size for sig in given):
        return verdict(False, f"signature is {len(given[0])} bytes, {algorithm} gives {size}")
    index = _match(keys, msg, given, algorithm)
    if not index:
        return verdict(False, "signature mismatch")
    if stamp:
        # Checked after the MAC (as Stripe does): a stale but authentic request means a
        # replay or a skewed clock, a forged one just a mismatch. Future times are refused
        # too, or a request signed ahead could be replayed for longer.
        drift = round(moment - int(stamp))
        if abs(drift) > spec.tolerance_seconds:
            ahead = " in the future" if drift < 0 else ""
            limit = spec.tolerance_seconds
            return verdict(
                False, f"timestamp outside tolerance ({abs(drift)} s{ahead} > {limit} s)"
            )
    return verdict(True, f"valid signature (secret {index} of {len(keys)})")


# -- signing, for tests and demos -------------------------------------------------------------


def sign_rsa(private_key_pem: bytes, body: bytes, signed: Signed = "base64-body") -> str:
    """The base64 RSA-SHA256 (PKCS#1 v1.5) signature Adobe would send for ``body``.

    Raises ValueError when ``private_key_pem`` is not an unencrypted PEM RSA private key.
    """
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    sig = key.sign(_rsa_message(body, signed), padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode()


def make_jwt(private_key_pem: bytes, claims: Mapping[str, Any]) -> str:
    """A compact RS256 JWT over ``claims``, as Wix posts it as the whole body."""
    return jwt.encode(dict(claims), private_key_pem, algorithm="RS256")


def resign_jwt(private_key_pem: bytes, token: bytes, now: float | None = None) -> bytes:
    """``token``'s claims signed again with ``private_key_pem``, issued ``now``: a saved
    Wix body made acceptable to a server holding the matching public key. ``iat`` and
    ``nbf`` become now and ``exp`` keeps its lifetime (an hour if it had none to tell).
    Raises ValueError for a body that is not a JWT."""
    try:
        claims = jwt.decode(token.strip(), options={"verify_signature": False})
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise ValueError(f"the body is not a JWT ({exc})") from None
    issued = int(time.time() if now is None else now)
    lifetime = 3600
    if isinstance(claims.get("exp"), int) and isinstance(claims.get("iat"), int):
        lifetime = max(claims["exp"] - claims["iat"], 60)
    for name in ("iat", "nbf"):
        if name in claims:
            claims[name] = issued
    if "exp" in claims:
        claims["exp"] = issued + lifetime
    return make_jwt(private_key_pem, claims).encode()


def sign(
    spec: VerifySpec,
    secret: bytes,
    body: bytes,
    now: float | None = None,
    msg_id: str | None = None,
) -> dict[str, str]:
    """The signature headers the platform would send for ``body`` (empty for ``none``).

    ``rsa-sha256`` needs the private key (``secret`` = its PEM), which a receiver never
    has; ``jwt`` has no headers to add (build the body with ``make_jwt``): both raise
    SecretError. ``ecwid`` raises ValueError when the body has no eventCreated/eventId.
    """
    t = str(int(now if now is not None else time.time()))

    def mac(key: bytes, msg: bytes, algorithm: str, encoding: str) -> str:
        digest = hmac.new(key, msg, algorithm)
        return (
            digest.hexdigest() if encoding == "hex" else base64.b64encode(digest.digest()).decode()
        )

    if spec.scheme == "none":
        return {}
    if spec.scheme == "jwt":
        raise SecretError("verify scheme 'jwt': the body is the signed token (see make_jwt)")
    if spec.scheme == "rsa-sha256":
        try:
            return {spec.header: sign_rsa(secret, body, spec.signed)}
        except ValueError as exc:
            raise SecretError(
                f"verify scheme 'rsa-sha256': signing needs the platform's RSA private key ({exc})"
            ) from None
    if spec.scheme == "bearer":
        bearer = spec.header.lower() == "authorization"
        return {spec.header: ("Bearer " if bearer else "") + secret.decode("utf-8")}
    if spec.scheme == "basic":
        return {spec.header: "Basic " + base64.b64encode(secret).decode()}
    if spec.scheme == "ecwid":
        return {spec.header: mac(secret, _ecwid_message(body), "sha256", "base64")}
    if spec.scheme == "standard-webhooks":
        msg_id = msg_id or "msg_" + hashlib.sha256(t.encode() + body).hexdigest()[:24]
        sig = mac(_sw_key(secret), f"{msg_id}.{t}.".encode() + body, "sha256", "base64")
        return {"webhook-id": msg_id, "webhook-timestamp": t, "webhook-signature": f"v1,{sig}"}
    if spec.scheme == "timestamped":
        payload = spec.signed_payload.replace("{t}", t).encode().replace(b"{body}", body)
        sig = mac(secret, payload, spec.algorithm, str(spec.encoding))
        return {spec.header: f"t={t},v1={sig}"}
    return {spec.header: spec.prefix + mac(secret, body, spec.algorithm, str(spec.encoding))}
