"""A rule file's YAML node tree: composed (by libyaml when PyYAML has it), then checked
for what no reading of it could survive: nesting past ``MAX_DEPTH``, and an alias inside
the node it refers to (``&a [*a]``), a cycle. Both walks keep their own stack: a tree
too deep for Python's stack is what they are there to refuse.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

#: libyaml's composer when PyYAML was built with it: ten times faster, and the same nodes
#: and marks as the pure-Python one (a plain scalar's style is "" there, not None)
_FAST_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


#: how deep a rule file may nest (the shipped ones reach 8); deeper is refused before the
#: walk, which recurses, as PyYAML's pure-Python composer does
MAX_DEPTH = 100


def compose(text: str) -> yaml.Node | None:
    """The YAML node tree of ``text``. A text libyaml refuses is composed again by the
    pure-Python reader, whose error messages and marks the diagnostics are built on,
    unless that reader runs out of stack (nesting libyaml stops at 1,000 levels)."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=_FAST_LOADER)
    except yaml.YAMLError as fast:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except RecursionError:
            raise fast from None
    return node


def too_deep(root: yaml.Node) -> yaml.Node | None:
    """The first node nested deeper than ``MAX_DEPTH``, walked without recursing (an
    alias may make the tree a cycle: each node is walked once)."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if depth > MAX_DEPTH:
            return node
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, depth + 1) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            stack.extend((n, depth + 1) for pair in node.value for n in pair)
    return None


def recursive(root: yaml.Node) -> yaml.Node | None:
    """The first node that contains itself through an alias (``&a [*a]``), which no
    reading of the tree could finish; walked depth first without recursing."""
    done: set[int] = set()
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, Iterator[yaml.Node]]] = [(root, _children(root))]
    on_path.add(id(root))
    while stack:
        node, children = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            on_path.discard(id(node))
            done.add(id(node))
        elif id(child) in on_path:
            return child
        elif id(child) not in done:
            on_path.add(id(child))
            stack.append((child, _children(child)))
    return None


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return iter(node.value)
    if isinstance(node, yaml.MappingNode):
        return (n for pair in node.value for n in pair)
    return iter(())
