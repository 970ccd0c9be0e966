"""Request signature checks, declared per rule set under ``verify:``.

The rule set's ``VerifySpec`` (``engine.rules.schemes``, checked at load by
``engine.rules.verify``) says how a platform signs; ``engine.server.secrets`` reads the
secrets from the environment once at start, and ``verify`` judges one request without
I/O.
``engine.server.signing`` builds the headers a platform would send (tests, the demo).

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
import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jwt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from engine.rules.schemes import PUBLIC_KEY_SCHEMES, VerifySpec
from engine.server.secrets import sw_key, sw_key_ok, usable_keys

_SW_FAMILIES = ("webhook-", "svix-")  # Svix sends the same headers under its own prefix
#: Seconds of clock skew forgiven on a JWT's exp/nbf/iat (tokens live minutes, not days).
JWT_LEEWAY = 60
# JWS algorithm names a reason may quote; anything else in a token header is not echoed.
_JWS_ALGS = frozenset(
    {"none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}
    | {"PS256", "PS384", "PS512", "EdDSA"}
)

#: Why a request was refused, in a word (the metrics label; the reason says more).
Problem = Literal["missing", "malformed", "timestamp", "future", "mismatch", "invalid"]


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The outcome of one check. ``reason`` never holds a secret, the body or a signature;
    ``problem`` says in a word why a refused request was refused (None when accepted)."""

    ok: bool
    reason: str
    scheme: str
    problem: Problem | None = None


class _Judged(NamedTuple):
    """What one scheme's check found: accepted, why, and the refusal's kind."""

    ok: bool
    reason: str
    problem: Problem | None = None


def _refused(problem: Problem, reason: str) -> _Judged:
    return _Judged(False, reason, problem)


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


def ecwid_message(body: bytes) -> bytes:
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


def _read(
    spec: VerifySpec, lower: Mapping[str, str], body: bytes
) -> tuple[str, list[str], bytes] | _Judged:
    """(timestamp, claimed signatures, signed message) from the request, or the refusal
    when the headers are missing or malformed."""
    if spec.scheme == "standard-webhooks":
        family = next((f for f in _SW_FAMILIES if f + "signature" in lower), "webhook-")
        for part in ("signature", "id", "timestamp"):
            if family + part not in lower:
                return _refused("missing", f"missing header {family}{part}")
        stamp = lower[family + "timestamp"]
        if not (stamp.isascii() and stamp.isdigit()):
            return _refused("malformed", f"malformed {family}timestamp header")
        # Space-separated "v1,<base64>" entries; "v1a," (ed25519) ones are not ours to check.
        wanted = [v[3:] for v in lower[family + "signature"].split() if v.startswith("v1,")]
        return stamp, wanted, f"{lower[family + 'id']}.{stamp}.".encode() + body
    value = lower.get(spec.header.lower())
    if value is None:
        return _refused("missing", f"missing header {spec.header}")
    if spec.scheme == "ecwid":
        try:
            return "", [value], ecwid_message(body)
        except ValueError as exc:
            return _refused("malformed", str(exc))
    if spec.scheme != "timestamped":
        if not value.lower().startswith(spec.prefix.lower()):
            return _refused("malformed", f"malformed signature header (no '{spec.prefix}' prefix)")
        return "", [value[len(spec.prefix) :]], body
    # Stripe: t=<unix>,v1=<sig>[,v1=<sig>...][,v0=...]; several v1 while a secret rolls.
    pairs = [item.strip().partition("=") for item in value.split(",")]
    stamp = next((v for k, _, v in pairs if k == "t"), "")
    if any(not sep for _, sep, _ in pairs) or not (stamp.isascii() and stamp.isdigit()):
        return _refused("malformed", "malformed signature header (no t=<unix seconds>)")
    before, _, after = spec.signed_payload.partition("{body}")
    msg = before.replace("{t}", stamp).encode() + body + after.replace("{t}", stamp).encode()
    return stamp, [v for k, _, v in pairs if k == "v1"], msg


def rsa_message(body: bytes, signed: str) -> bytes:
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
) -> _Judged:
    """RSA PKCS#1 v1.5 + SHA-256 over the body or its base64 (Adobe), any header, any key."""
    keys = usable_keys(pems)
    if not keys:
        return _refused("invalid", "no usable public key configured")
    names = (spec.header, *spec.alt_headers)
    present = [lower[n.lower()] for n in names if n.lower() in lower]
    if not present:
        return _refused("missing", "missing header " + " or ".join(names))
    sigs = [sig for sig in (_decode(v, "base64") for v in present) if sig]
    if not sigs:
        return _refused("malformed", "malformed signature header (not base64)")
    index = _rsa_index(keys, rsa_message(body, spec.signed), sigs)
    if index:
        return _Judged(True, f"valid signature (key {index} of {len(keys)})")
    # Adobe's docs call the Commerce signature "HMAC" while its sample signs base64(body):
    # when the other reading verifies, say which setting is wrong rather than just "no".
    other = "body" if spec.signed == "base64-body" else "base64-body"
    if _rsa_index(keys, rsa_message(body, other), sigs):
        reason = f"signature mismatch (it covers the {other}: set verify.signed: {other})"
        return _refused("mismatch", reason)
    return _refused("mismatch", "signature mismatch")


def _jwt_time_problem(claims: Mapping[str, Any], now: float) -> _Judged | None:
    """Why the token's exp/nbf/iat refuse it at ``now`` (with JWT_LEEWAY), or None."""
    stamps: dict[str, float] = {}
    for name in ("exp", "nbf", "iat"):
        if name not in claims:
            continue
        value = claims[name]
        # json accepts NaN, and NaN compares false with everything: it would never expire.
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            return _refused("malformed", f"malformed token: claim {name} is not a number")
        stamps[name] = value
    if "exp" in stamps and stamps["exp"] <= now - JWT_LEEWAY:
        return _refused("invalid", f"token expired ({round(now - stamps['exp'])} s ago)")
    for name in ("nbf", "iat"):
        if name in stamps and stamps[name] > now + JWT_LEEWAY:
            ahead = round(stamps[name] - now)
            return _refused("future", f"token not yet valid ({name} is {ahead} s in the future)")
    return None


def _check_jwt(
    spec: VerifySpec, pems: Sequence[bytes], body: bytes, lower: Mapping[str, str], now: float
) -> _Judged:
    """The body is a compact RS256 JWT (Wix): signature by any key, then exp/nbf/iat."""
    keys = usable_keys(pems)
    if not keys:
        return _refused("invalid", "no usable public key configured")
    token = body.strip()
    # Unparseable input of any shape (bad base64, bad UTF-8, deep JSON) is "not a JWT".
    bad_input = (jwt.PyJWTError, ValueError, TypeError, RecursionError)
    try:
        alg = jwt.get_unverified_header(token).get("alg")
    except bad_input:
        return _refused("invalid", "not a JWT")
    if alg != "RS256":
        # Pinned: "none", or HS256 keyed with our public key, would let anyone sign.
        shown = f"'{alg}'" if isinstance(alg, str) and alg in _JWS_ALGS else "(unknown)"
        return _refused("invalid", f"token algorithm {shown} not allowed (RS256 only)")
    # Times are checked below against ``now`` (PyJWT reads the clock itself).
    options: jwt.types.Options = {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
    for index, key in enumerate(keys, 1):
        try:
            claims = jwt.decode(token, key, algorithms=["RS256"], options=options)
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidAudienceError:
            return _refused("invalid", "token names an audience (aud); none is configured")
        except bad_input:
            return _refused("malformed", "malformed token claims")
        problem = _jwt_time_problem(claims, now)
        if problem:
            return problem
        return _Judged(True, f"valid token (key {index} of {len(keys)})")
    return _refused("invalid", "bad signature")


def _same(secrets: Sequence[bytes], given: bytes) -> int:
    """1-based index of the secret equal to ``given``, compared in constant time, or 0."""
    for index, secret in enumerate(secrets, 1):
        if hmac.compare_digest(secret, given):
            return index
    return 0


def _check_credentials(
    spec: VerifySpec, secrets: Sequence[bytes], body: bytes, lower: Mapping[str, str], _: float
) -> _Judged:
    """``bearer``/``basic``: a shared credential in a header. Nothing here covers the body."""
    value = lower.get(spec.header.lower())
    if value is None:
        return _refused("missing", f"missing header {spec.header}")
    auth, _sep, rest = value.partition(" ")
    if spec.scheme == "basic":
        if auth.lower() != "basic":
            return _refused("malformed", f"malformed {spec.header} header (not Basic)")
        given = _decode(rest.strip(), "base64")
        if not given:
            return _refused("malformed", f"malformed {spec.header} header (not base64)")
        what = "credentials"
    elif auth.lower() == "bearer":
        given, what = rest.strip().encode("utf-8"), "token"
    elif spec.header.lower() == "authorization":
        return _refused("malformed", "malformed Authorization header (not Bearer)")
    else:
        given, what = value.encode("utf-8"), "token"  # a custom header holds the bare token
    index = _same(secrets, given)
    if not index:
        return _refused("mismatch", f"{what} mismatch")
    return _Judged(True, f"valid {what} (secret {index} of {len(secrets)})")


_Check = Callable[[VerifySpec, Sequence[bytes], bytes, Mapping[str, str], float], _Judged]
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

    def verdict(judged: _Judged) -> Verdict:
        return Verdict(judged.ok, judged.reason, spec.scheme, judged.problem)

    if spec.scheme == "none":
        return verdict(_Judged(True, "not verified (scheme none)"))
    if not secrets:
        keyed = spec.scheme in PUBLIC_KEY_SCHEMES
        reason = "no public key configured" if keyed else "no secret configured"
        return verdict(_refused("invalid", reason))
    lower = {k.lower(): v.strip() for k, v in headers.items()}
    moment = time.time() if now is None else now
    check = _CHECKS.get(spec.scheme)
    if check is not None:
        return verdict(check(spec, secrets, body, lower, moment))
    keys = list(secrets)
    if spec.scheme == "standard-webhooks":
        keys = [sw_key(s) for s in secrets if sw_key_ok(s)]
    if not keys:
        return verdict(_refused("invalid", "no secret configured"))
    read = _read(spec, lower, body)
    if isinstance(read, _Judged):
        return verdict(read)
    stamp, wanted, msg = read
    if not wanted:
        return verdict(_refused("malformed", "malformed signature header (no v1 signature)"))
    given = [sig for sig in (_decode(w, str(spec.encoding)) for w in wanted) if sig]
    if not given:
        reason = f"malformed signature header (not {spec.encoding})"
        return verdict(_refused("malformed", reason))
    algorithm = "sha256" if spec.scheme == "standard-webhooks" else spec.algorithm
    size = hashlib.new(algorithm).digest_size
    if all(len(sig) != size for sig in given):
        reason = f"signature is {len(given[0])} bytes, {algorithm} gives {size}"
        return verdict(_refused("invalid", reason))
    index = _match(keys, msg, given, algorithm)
    if not index:
        return verdict(_refused("mismatch", "signature mismatch"))
    if stamp:
        # Checked after the MAC (as Stripe does): a stale but authentic request means a
        # replay or a skewed clock, a forged one just a mismatch. Future times are refused
        # too, or a request signed ahead could be replayed for longer.
        drift = round(moment - int(stamp))
        if abs(drift) > spec.tolerance_seconds:
            ahead = " in the future" if drift < 0 else ""
            limit = spec.tolerance_seconds
            reason = f"timestamp outside tolerance ({abs(drift)} s{ahead} > {limit} s)"
            return verdict(_refused("timestamp", reason))
    return verdict(_Judged(True, f"valid signature (secret {index} of {len(keys)})"))
