"""Compile stage, rule tests: each case's webhook (a file and its ``.headers``, or an
inline body) and the lookup answers it mocks, read once at load.

A fixture that cannot be read is an E305 at the test's ``webhook`` or ``mocks`` entry:
``hookmap validate`` finds it, not the first ``hookmap test``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.errors import UsageError
from engine.rules.compiling import CompileContext, empty
from engine.rules.model import RuleTest
from engine.rules.source import LocatedDict, LocatedList
from engine.webhook import parse_header_lines, sidecar_headers


def compile_tests(ctx: CompileContext, doc: LocatedDict) -> list[RuleTest]:
    out: list[RuleTest] = []
    raw_tests = doc.get("tests")
    if not isinstance(raw_tests, LocatedList):
        return out
    base = Path(doc.source.path).parent
    for index, raw in enumerate(raw_tests):
        if not isinstance(raw, LocatedDict) or not raw.get("name"):
            continue
        loc = raw_tests.item_locs[index]
        headers: dict[str, str] = {}
        body: Any = raw.get("body")
        raw_bytes: bytes | None = None
        body_file = raw.get("webhook")
        if body_file is not None:
            try:
                raw_bytes, found = _read_webhook(base, body_file)
            except (OSError, UsageError) as exc:
                ctx.error(
                    "E305",
                    f"test '{raw['name']}': cannot read {body_file}: {exc}",
                    raw.value_locs["webhook"],
                )
                continue
            headers.update(found)
        extra = {k.lower(): str(v) for k, v in (raw.get("headers") or {}).items()}
        headers.update(extra)
        before: list[tuple[str, bytes, dict[str, str]]] = []
        raw_before = raw.get("before")
        for number, name in enumerate(raw_before or ()):
            try:
                content, found = _read_webhook(base, name)
            except (OSError, UsageError) as exc:
                where = raw_before.item_locs[number] if isinstance(raw_before, LocatedList) else loc
                ctx.error("E305", f"test '{raw['name']}': cannot read {name}: {exc}", where)
                continue
            before.append((str(name), content, {**found, **extra}))
        mocks: dict[str, Any] = {}
        raw_mocks = raw.get("mocks")
        if not isinstance(raw_mocks, LocatedDict):
            raw_mocks = empty()
        for lookup, answer in raw_mocks.items():
            if not isinstance(answer, str):
                mocks[lookup] = answer
                continue
            path = base / answer
            try:
                mocks[lookup] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                ctx.error(
                    "E305",
                    f"test '{raw['name']}': mock '{lookup}': cannot read {answer}: {exc}",
                    raw_mocks.value_locs[lookup],
                )
        out.append(
            RuleTest(
                name=raw["name"],
                body=body,
                body_file=str(body_file) if body_file is not None else None,
                headers=headers,
                topic=raw.get("topic"),
                expect=dict(raw.get("expect") or {}),
                where=loc,
                raw=raw_bytes,
                mocks=mocks,
                before=tuple(before),
            )
        )
    return out


def _read_webhook(base: Path, name: str) -> tuple[bytes, dict[str, str]]:
    """A webhook file's bytes and the headers of its ``.headers`` file (if any)."""
    path = (base / name) if not Path(name).is_absolute() else Path(name)
    content = path.read_bytes()
    side = sidecar_headers(path)
    headers: dict[str, str] = {}
    if side.is_file():
        headers = parse_header_lines(side.read_text(encoding="utf-8").splitlines(), str(side))
    return content, headers
