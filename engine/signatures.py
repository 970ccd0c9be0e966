"""Request signature checks, declared per rule set under ``verify:``.

``parse_verify`` turns the plain ``verify:`` mapping into a ``VerifySpec`` (collecting
every problem), ``resolve_secrets`` reads the secrets from the environment once at
start, and ``verify`` judges one request without I/O. ``sign`` builds the headers a
platform would send, for tests, the demo and benchmarks.

Secrets are a list because platforms rotate them: Shopify may keep signing with the old
app secret for up to an hour after a rotation, so old and new must both be accepted.
Facts per platform: ``shared/webhooks/README.md``.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from engine.errors import HookmapError, did_you_mean

Scheme = Literal["shopify", "woocommerce", "hmac", "timestamped", "standard-webhooks", "none"]
Algorithm = Literal["sha1", "sha256", "sha512"]
Encoding = Literal["hex", "base64"]

SCHEMES: tuple[Scheme, ...] = (
    "shopify",
    "woocommerce",
    "hmac",
    "timestamped",
    "standard-webhooks",
    "none",
)
ALGORITHMS: tuple[Algorithm, ...] = ("sha1", "sha256", "sha512")
ENCODINGS: tuple[Encoding, ...] = ("hex", "base64")

#: The keys of a rule set's ``verify:`` mapping, with one-line docs (the schema declares them).
VERIFY_KEYS: dict[str, str] = {
    "scheme": "How requests are signed: " + ", ".join(SCHEMES) + ".",
    "secret_env": "Environment variable(s) holding the secret; several = rotation, any may match.",
    "header": "Header carrying the signature (required for `hmac`).",
    "algorithm": "HMAC hash: sha1, sha256 or sha512 (default sha256).",
    "encoding": "How the signature is written: hex or base64 (`hmac` default hex).",
    "prefix": "Text before the signature in the header, e.g. `sha256=` (GitHub style).",
    "tolerance": "Seconds a signed timestamp may differ from now, past or future (default 300).",
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
}
# (header, encoding) a scheme uses when the spec leaves them empty.
_DEFAULTS: dict[str, tuple[str, Encoding]] = {
    "shopify": ("X-Shopify-Hmac-Sha256", "base64"),
    "woocommerce": ("X-WC-Webhook-Signature", "base64"),
    "hmac": ("", "hex"),
    "timestamped": ("Stripe-Signature", "hex"),  # Stripe writes v1 as hex
    "standard-webhooks": ("webhook-signature", "base64"),
    "none": ("", "hex"),
}
_SW_FAMILIES = ("webhook-", "svix-")  # Svix sends the same headers under its own prefix


class SecretError(HookmapError):
    """A verify spec names no usable secret: the server refuses to serve."""


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

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES or self.algorithm not in ALGORITHMS:
            raise ValueError(f"bad scheme or algorithm: {self.scheme!r}, {self.algorithm!r}")
        if "{body}" not in self.signed_payload:
            raise ValueError("signed_payload must contain {body}")
        header, encoding = _DEFAULTS[self.scheme]
        object.__setattr__(self, "header", self.header or header)
        object.__setattr__(self, "encoding", self.encoding or encoding)


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
    for key in config:
        if key in VERIFY_KEYS and key not in _APPLIES[scheme]:
            errors.append(f"verify.{key} does not apply to scheme '{scheme}'")

    envs: tuple[str, ...] = ()
    raw_envs = config.get("secret_env")
    if isinstance(raw_envs, str):
        raw_envs = [raw_envs]
    if isinstance(raw_envs, list) and raw_envs and all(map(_is_env_name, raw_envs)):
        envs = tuple(raw_envs)
    elif raw_envs is not None:
        # Never echo the value: a secret pasted here by mistake must not reach a log.
        errors.append("verify.secret_env must be a variable name or a list of names")
    elif scheme != "none":
        errors.append(f"verify.secret_env is required for scheme '{scheme}'")

    def choice(key: str, allowed: Sequence[str], default: str) -> str:
        value = config.get(key, default)
        if value not in allowed:
            hint = did_you_mean(str(value), allowed) or "one of " + ", ".join(allowed)
            errors.append(f"unknown {key} '{value}' in verify.{key} ({hint})")
            return default
        return str(value)

    algorithm = choice("algorithm", ALGORITHMS, "sha256")
    encoding = choice("encoding", ENCODINGS, _DEFAULTS[scheme][1])
    header, prefix = config.get("header", ""), config.get("prefix", "")
    if not isinstance(header, str) or ("header" in config and not header):
        errors.append("verify.header must be a non-empty header name")
        header = ""
    elif scheme == "hmac" and not header:
        errors.append("verify.header is required for scheme 'hmac'")
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
    )
    return spec, []


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


def resolve_secrets(spec: VerifySpec, env: Mapping[str, str]) -> list[bytes]:
    """The secrets the spec names, in order; unset or empty variables are skipped.

    Raises SecretError when a scheme other than ``none`` has no usable secret, so the
    server fails at start rather than rejecting every webhook.
    """
    found = {name: env[name].encode("utf-8") for name in spec.secret_envs if env.get(name)}
    if spec.scheme == "none":
        return list(found.values())
    if not found:
        names = ", ".join(spec.secret_envs) or "(none named)"
        raise SecretError(f"verify scheme '{spec.scheme}': no secret set in {names}")
    for name, secret in found.items():
        if spec.scheme == "standard-webhooks" and not _sw_key_ok(secret):
            raise SecretError(f"{name}: the whsec_ secret is not valid base64")
    return list(found.values())


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


def verify(
    spec: VerifySpec,
    secrets: Sequence[bytes],
    body: bytes,
    headers: Mapping[str, str],
    now: float | None = None,
) -> Verdict:
    """Judge one request: its raw body and headers (names compared case-insensitively)."""

    def verdict(ok: bool, reason: str) -> Verdict:
        return Verdict(ok, reason, spec.scheme)

    if spec.scheme == "none":
        return verdict(True, "not verified (scheme none)")
    keys = list(secrets)
    if spec.scheme == "standard-webhooks":
        keys = [_sw_key(s) for s in secrets if _sw_key_ok(s)]
    if not keys:
        return verdict(False, "no secret configured")
    try:
        stamp, wanted, msg = _read(spec, {k.lower(): v.strip() for k, v in headers.items()}, body)
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
        drift = round((time.time() if now is None else now) - int(stamp))
        if abs(drift) > spec.tolerance_seconds:
            ahead = " in the future" if drift < 0 else ""
            limit = spec.tolerance_seconds
            return verdict(
                False, f"timestamp outside tolerance ({abs(drift)} s{ahead} > {limit} s)"
            )
    return verdict(True, f"valid signature (secret {index} of {len(keys)})")


def sign(
    spec: VerifySpec,
    secret: bytes,
    body: bytes,
    now: float | None = None,
    msg_id: str | None = None,
) -> dict[str, str]:
    """The signature headers the platform would send for ``body`` (empty for ``none``)."""
    t = str(int(now if now is not None else time.time()))

    def mac(key: bytes, msg: bytes, algorithm: str, encoding: str) -> str:
        digest = hmac.new(key, msg, algorithm)
        return (
            digest.hexdigest() if encoding == "hex" else base64.b64encode(digest.digest()).decode()
        )

    if spec.scheme == "none":
        return {}
    if spec.scheme == "standard-webhooks":
        msg_id = msg_id or "msg_" + hashlib.sha256(t.encode() + body).hexdigest()[:24]
        sig = mac(_sw_key(secret), f"{msg_id}.{t}.".encode() + body, "sha256", "base64")
        return {"webhook-id": msg_id, "webhook-timestamp": t, "webhook-signature": f"v1,{sig}"}
    if spec.scheme == "timestamped":
        payload = spec.signed_payload.replace("{t}", t).encode().replace(b"{body}", body)
        sig = mac(secret, payload, spec.algorithm, str(spec.encoding))
        return {spec.header: f"t={t},v1={sig}"}
    return {spec.header: spec.prefix + mac(secret, body, spec.algorithm, str(spec.encoding))}
