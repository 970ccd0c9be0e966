"""Signing as the platforms sign: the headers (or the token) a platform would send.

For tests, the demo, benchmarks and ``hookmap post``; the server only verifies
(``engine.server.signatures``). ``rsa-sha256`` and ``jwt`` need the platform's private
key, which only a test setup has.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from engine.errors import SecretError
from engine.rules.schemes import DEFAULT_SIGNED, Signed, VerifySpec
from engine.server.secrets import sw_key
from engine.server.signatures import ecwid_message, rsa_message


def sign_rsa(private_key_pem: bytes, body: bytes, signed: Signed = DEFAULT_SIGNED) -> str:
    """The base64 RSA-SHA256 (PKCS#1 v1.5) signature Adobe would send for ``body``.

    Raises ValueError when ``private_key_pem`` is not an unencrypted PEM RSA private key.
    """
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    sig = key.sign(rsa_message(body, signed), padding.PKCS1v15(), hashes.SHA256())
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
        return {spec.header: mac(secret, ecwid_message(body), "sha256", "base64")}
    if spec.scheme == "standard-webhooks":
        msg_id = msg_id or "msg_" + hashlib.sha256(t.encode() + body).hexdigest()[:24]
        sig = mac(sw_key(secret), f"{msg_id}.{t}.".encode() + body, "sha256", "base64")
        return {"webhook-id": msg_id, "webhook-timestamp": t, "webhook-signature": f"v1,{sig}"}
    if spec.scheme == "timestamped":
        payload = spec.signed_payload.replace("{t}", t).encode().replace(b"{body}", body)
        sig = mac(secret, payload, spec.algorithm, str(spec.encoding))
        return {spec.header: f"t={t},v1={sig}"}
    return {spec.header: spec.prefix + mac(secret, body, spec.algorithm, str(spec.encoding))}
