"""The input side: a webhook as received (raw body, headers) and reading it from files.

Example webhooks live as ``NAME.json`` (the body, byte for byte) beside ``NAME.headers``
(one ``Name: value`` per line), so dry-run, rule tests and the server all start from
the same raw bytes a shop would send.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from engine.errors import PayloadError, UsageError


@dataclasses.dataclass(frozen=True)
class Webhook:
    """One received webhook. Header names are lower-cased (HTTP/2 does the same)."""

    body: bytes
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: a topic given by the caller (``--topic``), used instead of the rule set's
    topic: str | None = None
    #: where the body came from, for messages
    origin: str = "<body>"

    @classmethod
    def make(
        cls,
        body: bytes | str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        topic: str | None = None,
        origin: str = "<body>",
    ) -> Webhook:
        raw = body.encode("utf-8") if isinstance(body, str) else body
        items = headers.items() if isinstance(headers, Mapping) else headers
        return cls(raw, {k.lower(): v for k, v in items}, topic, origin)


def parse_json(raw: bytes, origin: str) -> Any:
    """The JSON value of a body, or a PayloadError with the line and column."""
    data = _read_with_orjson(raw)
    if data is not _UNREAD:
        return data
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PayloadError(f"{origin}: body is not UTF-8 (byte {exc.start})") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise PayloadError(f"{origin}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from exc
    except ValueError as exc:
        raise PayloadError(f"{origin}: invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise PayloadError(f"{origin}: JSON nested too deeply to read") from exc


# Every byte of a body mapped to what _read_with_orjson looks for: digits to "0", "[" and
# "{" to "[", anything else to a space.
_SHAPE = bytes(
    0x30 if 0x30 <= byte <= 0x39 else 0x5B if byte in b"[{" else 0x20 for byte in range(256)
)
_LONG_DIGITS = b"0" * 19
# json.loads stops at Python's recursion limit (1000 frames, fewer those already in use);
# orjson reads 1024 levels. Fewer opening brackets than this cannot nest that deep.
_NESTING = 900
_UNREAD = object()


def _read_with_orjson(raw: bytes) -> Any:
    """What json.loads reads in ``raw``, read by orjson; ``_UNREAD`` when orjson cannot
    tell (json.loads then reads it, or words what is wrong, as it always did).

    orjson reads every JSON document json.loads reads the same, and refuses (rather than
    reads differently) lone surrogates, NaN, 1e400 and a BOM, but for two: an integer
    beyond 64 bits, which it turns into a float (a run of 19 digits anywhere, even in a
    string, leaves the body to json), and nesting past json's recursion limit, which it
    reads up to 1024 levels (a body of 900 brackets or more, such as an order of some 40
    line items, is proven shallow by orjson.dumps, which refuses more than 254 levels).
    """
    shape = raw.translate(_SHAPE)
    if _LONG_DIGITS in shape:
        return _UNREAD
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _UNREAD
    if shape.count(b"[") >= _NESTING:
        try:
            orjson.dumps(data)
        except orjson.JSONEncodeError:
            return _UNREAD
    return data


def _reject_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which JSON does not have: refuse them here
    # rather than send them on to the CDP
    raise ValueError(f"{name} is not a JSON value")


def parse_header_lines(lines: Iterable[str], origin: str) -> dict[str, str]:
    """``Name: value`` lines (blank lines and ``#`` comments skipped) → lower-cased dict."""
    out: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip() or " " in name.strip():
            raise UsageError(f"{origin}:{number}: expected 'Name: value', got {line!r}")
        out[name.strip().lower()] = value.strip()
    return out


def sidecar_headers(body_path: Path) -> Path:
    """``orders-create.json`` → ``orders-create.headers``."""
    return body_path.with_suffix(".headers")


def webhook_files(folder: Path) -> list[Path]:
    """Every body file in ``folder`` (recursively) with a ``.headers`` file beside it: the
    layout of examples/ and of ``hookmap capture`` (lookup answers, under api/, have none)."""
    found: list[Path] = []
    for headers in sorted(folder.rglob("*.headers")):
        bodies = sorted(headers.parent.glob(f"{headers.stem}.*"))
        found.extend(p for p in bodies if p != headers and sidecar_headers(p) == headers)
    return found


def read_webhook_file(path: Path, use_sidecar: bool = True) -> Webhook:
    """A webhook from a body file, with headers from its ``.headers`` file if present."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    headers: dict[str, str] = {}
    side = sidecar_headers(path)
    if use_sidecar and side.is_file() and side != path:
        headers = parse_header_lines(side.read_text(encoding="utf-8").splitlines(), str(side))
    return Webhook(raw, headers, None, str(path))
