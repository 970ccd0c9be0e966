"""Writing rule tests: a case as YAML text, and a tests file with cases added to it.

``hookmap capture`` writes a fixture from a stored webhook and the rule test that
expects what the current rules make of it. The case reads like the hand-written ones
(``rules/*/tests.yaml``): params one per line in flow style, a v1 param that holds
JSON (``items``) written as the value it encodes, as rule tests compare it.

Adding to a file keeps every byte already there: the cases go in at the end of its
``tests:`` list, indented as its items are (or a ``tests:`` list is started at its
end), and the result must read back with exactly those cases more, or nothing is
written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from engine.errors import UsageError

#: long enough that an item is never folded over lines (folded flow style reads badly)
_WIDTH = 4096


class _Dumper(yaml.SafeDumper):
    """Block style for the case, flow style for each param (``{name: x, value: y}``)."""


def _flow_param(dumper: yaml.SafeDumper, value: _Param) -> yaml.Node:
    """A param on one line; one whose value is a list (``items``) as a block, an item
    per line, as the hand-written tests have them."""
    if isinstance(value.get("value"), list):
        items = [_Flow(v) if isinstance(v, dict) else v for v in value["value"]]
        return dumper.represent_mapping(
            "tag:yaml.org,2002:map", {"name": value.get("name"), "value": items}
        )
    return dumper.represent_mapping("tag:yaml.org,2002:map", dict(value), flow_style=True)


def _flow_map(dumper: yaml.SafeDumper, value: _Flow) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", dict(value), flow_style=True)


class _Param(dict[str, Any]):
    pass


class _Flow(dict[str, Any]):
    pass


class _Codes(list[str]):
    """Problem codes, on one line: ``[V101, V106]``."""


def _flow_codes(dumper: yaml.SafeDumper, value: _Codes) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", list(value), flow_style=True)


_Dumper.add_representer(_Param, _flow_param)
_Dumper.add_representer(_Flow, _flow_map)
_Dumper.add_representer(_Codes, _flow_codes)


def _native(value: Any) -> Any:
    """A v1 param holding a JSON array or object, as the value it encodes."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def expectation(sent: Sequence[dict[str, Any]], dropped: Sequence[dict[str, Any]]) -> Any:
    """The ``expect`` of a case: the events sent, and the dropped ones with their codes."""
    events = []
    for body in sent:
        event = {k: v for k, v in body.items() if k != "params"}
        event["params"] = [
            _Param(name=p.get("name"), value=_native(p.get("value")))
            for p in body.get("params") or ()
        ]
        events.append(event)
    out: dict[str, Any] = {"events": events}
    if dropped:
        out["dropped"] = [
            {**d, "problems": _Codes(d["problems"])} if "problems" in d else d for d in dropped
        ]
    return out


def case_text(case: dict[str, Any], indent: int = 2) -> str:
    """One case as a YAML list item, its dash ``indent`` columns in."""
    text = yaml.dump(
        [case], Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=_WIDTH, indent=2
    )
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))


def _tests_node(text: str, where: str) -> tuple[yaml.Node | None, yaml.Node | None]:
    """The ``tests`` key and value nodes of a rules or tests file (None when absent)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise UsageError(f"{where}: not YAML, cannot add tests: {exc}") from exc
    if root is None:
        return None, None
    if not isinstance(root, yaml.MappingNode):
        raise UsageError(f"{where}: not a mapping, cannot add tests")
    for key, value in root.value:
        if isinstance(key, yaml.ScalarNode) and key.value == "tests":
            return key, value
    return None, None


def _count(text: str, where: str) -> int:
    _, value = _tests_node(text, where)
    return len(value.value) if isinstance(value, yaml.SequenceNode) else 0


def add_cases(path: Path, cases: Sequence[dict[str, Any]]) -> str:
    """The text of ``path`` with ``cases`` added to its ``tests:`` (the file is not
    written here). A file that does not exist yet becomes ``tests:`` and the cases."""
    where = str(path)
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    key, value = _tests_node(text, where)
    lines = text.splitlines(True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    if key is None:
        block = "".join(case_text(c) for c in cases)
        new = "".join(lines) + ("\n" if lines else "") + "tests:\n" + block
    elif isinstance(value, yaml.SequenceNode) and value.flow_style is not True and value.value:
        first = lines[value.value[0].start_mark.line]  # "  - name: ...": the dash's column
        indent = first.index("-") if "-" in first else 0
        block = "".join("\n" + case_text(c, indent) for c in cases)  # as hand-written ones
        at = _end_line(value, lines)
        new = "".join(lines[:at]) + block + "".join(lines[at:])
    elif isinstance(value, yaml.ScalarNode) and value.value in ("", "~", "null"):
        at = key.start_mark.line + 1
        head = [*lines[: at - 1], lines[at - 1].split(":", 1)[0] + ":\n"]
        new = "".join(head) + "".join(case_text(c) for c in cases) + "".join(lines[at:])
    else:
        raise UsageError(
            f"{where}:{key.start_mark.line + 1}: 'tests' is not a block list to add to; "
            "paste the cases by hand"
        )
    if _count(new, where) != _count(text, where) + len(cases):
        raise UsageError(f"{where}: adding the cases would not read back; nothing written")
    return new


def _end_line(value: yaml.Node, lines: list[str]) -> int:
    """The line after the sequence's last item, before blank lines and comments that
    follow it (they belong to what comes next)."""
    at = value.end_mark.line if value.end_mark.column == 0 else value.end_mark.line + 1
    at = min(at, len(lines))
    while at > 0 and (not lines[at - 1].strip() or lines[at - 1].lstrip().startswith("#")):
        at -= 1
    return at
