"""The one check of a rule set's ``verify:`` mapping, and the ``VerifySpec`` it builds.

The schema declares the keys (``engine.rules.schema.VERIFY``: type, doc, default); which
keys a scheme reads, and which it requires, depend on the scheme, so the loader leaves
the whole mapping to ``check_verify``. Each finding names the key it is about, so the
compiler locates it without reading the message.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

from engine.errors import did_you_mean
from engine.rules.schema_intake import VERIFY
from engine.rules.schemes import (
    ALGORITHMS,
    APPLIES,
    DEFAULT_ALGORITHM,
    DEFAULT_SIGNED,
    DEFAULT_TOLERANCE,
    ENCODINGS,
    PUBLIC_KEY_SCHEMES,
    SCHEME_DEFAULTS,
    SCHEMES,
    SIGNED,
    Algorithm,
    Encoding,
    Scheme,
    Signed,
    VerifySpec,
)

#: The keys of ``verify:`` with their docs, as the schema declares them.
VERIFY_KEYS: dict[str, str] = {f.name: f.doc for f in VERIFY.fields}


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem with a ``verify:`` mapping: the key it is about (None: the mapping),
    its diagnostic code, and the message."""

    key: str | None
    code: str
    message: str


def _is_env_name(name: object) -> bool:
    return isinstance(name, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None


def parse_verify(config: Mapping[str, Any]) -> tuple[VerifySpec | None, list[str]]:
    """The spec for a ``verify:`` mapping, and every problem found (spec is None if any)."""
    spec, findings = check_verify(config)
    return spec, [f.message for f in findings]


def check_verify(config: Mapping[str, Any]) -> tuple[VerifySpec | None, list[Finding]]:
    """The spec for a ``verify:`` mapping and every finding (spec is None if any)."""
    if not isinstance(config, Mapping):
        return None, [Finding(None, "E103", "verify must be a mapping with at least 'scheme'")]
    errors: list[Finding] = []
    for key in config:
        if key not in VERIFY_KEYS:
            hint = did_you_mean(str(key), VERIFY_KEYS)
            message = f"unknown key '{key}' in verify" + (f" ({hint})" if hint else "")
            errors.append(Finding(str(key), "E102", message))
    scheme = config.get("scheme")
    if scheme is None:
        message = "verify.scheme is required (one of " + ", ".join(SCHEMES) + ")"
        return None, [*errors, Finding(None, "E104", message)]
    if scheme not in SCHEMES:
        hint = did_you_mean(str(scheme), SCHEMES) or "one of " + ", ".join(SCHEMES)
        message = f"unknown scheme '{scheme}' in verify.scheme ({hint})"
        return None, [*errors, Finding("scheme", "E106", message)]
    keyed = scheme in PUBLIC_KEY_SCHEMES
    for key in config:
        if key in VERIFY_KEYS and key not in APPLIES[scheme]:
            swap = {"secret_env": "public_key_env", "public_key_env": "secret_env"}.get(key)
            hint = f" (use {swap})" if swap in APPLIES[scheme] else ""
            message = f"verify.{key} does not apply to scheme '{scheme}'{hint}"
            errors.append(Finding(key, "E106", message))

    def env_names(key: str, required: bool) -> tuple[str, ...]:
        raw = config.get(key)
        if isinstance(raw, str):
            raw = [raw]
        if isinstance(raw, list) and raw and all(map(_is_env_name, raw)):
            return tuple(raw)
        if raw is not None:
            # Never echo the value: a secret or key pasted here by mistake must not reach a log.
            message = f"verify.{key} must be a variable name or a list of names"
            errors.append(Finding(key, "E106", message))
        elif required:
            errors.append(Finding(None, "E104", f"verify.{key} is required for scheme '{scheme}'"))
        return ()

    envs = env_names("secret_env", scheme != "none" and not keyed)
    key_envs = env_names("public_key_env", keyed)

    def choice(key: str, allowed: Sequence[str], default: str) -> str:
        value = config.get(key, default)
        if value not in allowed:
            hint = did_you_mean(str(value), allowed) or "one of " + ", ".join(allowed)
            errors.append(Finding(key, "E106", f"unknown {key} '{value}' in verify.{key} ({hint})"))
            return default
        return str(value)

    algorithm = choice("algorithm", ALGORITHMS, DEFAULT_ALGORITHM)
    encoding = choice("encoding", ENCODINGS, SCHEME_DEFAULTS[scheme][1])
    signed = choice("signed", SIGNED, DEFAULT_SIGNED)
    header, alt_headers = _parse_header(config, scheme, errors)
    prefix = config.get("prefix", "")
    if not isinstance(prefix, str):
        errors.append(Finding("prefix", "E103", "verify.prefix must be a string"))
        prefix = ""
    tolerance = config.get("tolerance", DEFAULT_TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance <= 0:
        message = "verify.tolerance must be a positive number of seconds"
        errors.append(Finding("tolerance", "E106", message))
        tolerance = DEFAULT_TOLERANCE
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
    config: Mapping[str, Any], scheme: str, errors: list[Finding]
) -> tuple[str, tuple[str, ...]]:
    """(header, further headers) of a ``verify:`` mapping; problems go to ``errors``.

    The schema lets ``header`` be a list (the loader hands even a lone name over as a
    one-item list), but only ``rsa-sha256`` reads more than one.
    """
    if "header" not in config:
        if scheme == "hmac":
            errors.append(Finding(None, "E104", "verify.header is required for scheme 'hmac'"))
        return "", ()
    raw = config["header"]
    names = raw if isinstance(raw, list) else [raw]
    if not names or not all(isinstance(n, str) and n for n in names):
        errors.append(Finding("header", "E106", "verify.header must be a non-empty header name"))
        return "", ()
    if len(names) > 1 and scheme != "rsa-sha256":
        message = f"verify.header: scheme '{scheme}' reads one header, not a list"
        errors.append(Finding("header", "E106", message))
        return "", ()
    return names[0], tuple(names[1:])
