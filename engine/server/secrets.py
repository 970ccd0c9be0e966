"""Secrets and public keys from the environment, read once when the server starts.

A rule set's ``verify.secret_env`` (or ``public_key_env``) names variables; every one
that is set is a secret (or a PEM public key) the platform may sign with, so a rotation
accepts old and new. A scheme with none usable refuses to serve (``SecretError``), and
no message quotes a secret or a key.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from engine.errors import SecretError
from engine.rules.schemes import PUBLIC_KEY_SCHEMES, VerifySpec

# Below this PyJWT warns on every request; the platforms here all use 2048-bit keys.
_MIN_RSA_BITS = 2048


def sw_key(secret: bytes) -> bytes:
    """Standard Webhooks key: ``whsec_<base64>`` is decoded; anything else is used raw
    (BigCommerce hands its app client secret to the library as-is)."""
    if secret.startswith(b"whsec_"):
        return base64.b64decode(secret[6:], validate=True)
    return secret


def sw_key_ok(secret: bytes) -> bool:
    try:
        sw_key(secret)
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


def usable_keys(pems: Sequence[bytes]) -> list[rsa.RSAPublicKey]:
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
        what = "public key" if spec.scheme in PUBLIC_KEY_SCHEMES else "secret"
        listed = ", ".join(names) or "(none named)"
        raise SecretError(f"verify scheme '{spec.scheme}': no {what} set in {listed}")
    if spec.scheme in PUBLIC_KEY_SCHEMES:
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
        if spec.scheme == "standard-webhooks" and not sw_key_ok(secret):
            raise SecretError(f"{name}: the whsec_ secret is not valid base64")
        if spec.scheme == "basic" and b":" not in secret:
            raise SecretError(f"{name}: Basic credentials must be written user:password")
        if spec.scheme == "bearer" and secret != secret.strip():
            # A token read from a file often keeps its newline; it could never match.
            raise SecretError(f"{name}: the token has leading or trailing whitespace")
    return list(secrets.values())
