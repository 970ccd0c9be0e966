"""Seeded mutations of the shipped rule files, for the loader's fuzz test and benchmarks.

Two kinds, both reproducible from one integer seed:

* text: a few edits of the file's characters (insert a YAML token, a control character,
  a random code point; delete a span; duplicate a line; re-indent a line);
* structure: the file composed by PyYAML, a few of its nodes replaced, dropped,
  duplicated or given a schema key they do not belong under, then written back, so the
  mutated file is valid YAML that reaches the schema walk and the compiler.

The tokens are the inputs that crashed ``hookmap validate`` when this was written (a
NUL, an unknown tag, an impossible date, a merge key bringing a list key, nesting 1,100
levels deep) and their neighbours.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

RULES = Path(__file__).resolve().parents[2] / "rules"

TOKENS = (
    *("\x00", "\x01", "\x1b[31m", "\t", "\ufeff", "\u2028", "\x85", "\r", "\\", "`", "@", "*"),
    *("!foo ", "!!python/object:os.system ", "!!binary ", "!!timestamp ", "!!int ", "!!float "),
    *("!!set ", "!!omap ", "!!merge ", "!!map ", "!!seq ", "!!null ", "!!bool ", "!!str "),
    *("&a ", "*a", "*nowhere", "<<: ", "<<: *a", "&b [*b]", "&c {k: *c}", "<<: {[a]: 1}"),
    *("2026-13-45", "2026-02-30 25:61:00", "1e400", ".nan", "0x", "0o9", "~", "null", "true"),
    *("? ", "[", "]", "{", "}", "|", ">", "- ", ": ", "#", "'", '"', "=", "{a: 1}: 2"),
    *("%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "---\n", "...\n", "\n", "  ", "${X}", "${"),
)

#: what a text edit puts right before a value (after a ``key: ``), where YAML builds it
VALUE_TOKENS = (
    *("!foo ", "!!int ", "!!float ", "!!timestamp ", "!!binary ", "!!set ", "!!bool ", "!!map "),
    *("2026-13-45 #", "2026-02-30 #", "*nowhere #", "&a ", "1e400 #", "{<<: {[a]: 1}} #"),
    # nesting past what the walk allows, and past libyaml's 1,000 (the Python composer
    # ran out of stack on it)
    *("[" * 150 + "]" * 150 + " #", "[" * 1100 + "]" * 1100 + " #"),
)

#: keys the structural mutation adds where they may not belong
KEYS = (
    *("name", "topic", "header", "expression", "verify", "scheme", "secret_env", "rules"),
    *("topics", "when", "events", "type", "key", "params", "expr", "const", "default"),
    *("required", "on_null", "on_empty", "for_each", "extends", "templates", "tables"),
    *("map", "strict", "vars", "lookups", "url", "args", "headers", "hosts", "not_found"),
    *("timeout", "retries", "cache_ttl", "tests", "webhook", "expect", "mocks", "decode"),
    *("dedupe", "max_body", "contact", "identify_by", "api_version", "ignore", "unwrap"),
)

_STR = "tag:yaml.org,2002:"


def _scalar(value: str, tag: str = "str") -> yaml.ScalarNode:
    return yaml.ScalarNode(_STR + tag, value)


def _seq(*items: yaml.Node) -> yaml.SequenceNode:
    return yaml.SequenceNode(_STR + "seq", list(items))


def _map(*pairs: tuple[str, yaml.Node]) -> yaml.MappingNode:
    return yaml.MappingNode(_STR + "map", [(_scalar(k), v) for k, v in pairs])


#: what a replaced node becomes
PALETTE: tuple[Callable[[], yaml.Node], ...] = (
    lambda: _scalar(""),
    lambda: _scalar("null", "null"),
    lambda: _scalar("-1", "int"),
    lambda: _scalar("1e999", "float"),
    lambda: _scalar("true", "bool"),
    lambda: _scalar("@"),
    lambda: _scalar("a.b[0]"),
    lambda: _scalar("lookup('t', x)"),
    lambda: _scalar("fetched('order')"),
    lambda: _scalar("${HOOKMAP_FUZZ_UNSET}"),
    lambda: _scalar("https://h.example/{x}"),
    lambda: _scalar("`{}`"),
    lambda: _scalar("a" * 300),
    lambda: _seq(),
    lambda: _map(),
    lambda: _seq(_scalar("a"), _map()),
    lambda: _map(("a", _scalar("b"))),
    lambda: _map(("expr", _scalar("x")), ("const", _scalar("1", "int"))),
    lambda: _map(("name", _scalar("n")), ("events", _seq())),
)


@dataclasses.dataclass(frozen=True)
class Target:
    """A shipped rule set to mutate: its root (file or folder) and its files."""

    root: Path
    files: tuple[Path, ...]


def targets() -> list[Target]:
    """Every shipped rule set, each with the files it is made of."""
    out = []
    for path in sorted(RULES.iterdir()):
        if path.is_dir():
            out.append(Target(path, tuple(sorted(path.rglob("*.yaml")))))
        elif path.suffix == ".yaml" and not path.name.endswith(".tests.yaml"):
            tests = path.with_name(f"{path.stem}.tests.yaml")
            out.append(Target(path, (path, tests) if tests.is_file() else (path,)))
    return out


def mutate_text(text: str, rng: random.Random) -> str:
    """One to three character-level edits (a token before a value, anywhere, ...)."""
    for _ in range(rng.randint(1, 3)):
        op = rng.random()
        pos = rng.randrange(len(text) + 1)
        lines = text.splitlines(keepends=True)
        values = [i + 2 for i in range(len(text)) if text.startswith(": ", i)]
        if op < 0.2 and values:
            at = rng.choice(values)
            text = text[:at] + rng.choice(VALUE_TOKENS) + text[at:]
        elif op < 0.5:
            text = text[:pos] + rng.choice(TOKENS) + text[pos:]
        elif op < 0.65:
            text = text[:pos] + text[pos + rng.randint(1, 20) :]
        elif op < 0.8 and lines:
            lines.insert(rng.randrange(len(lines)), rng.choice(lines))
            text = "".join(lines)
        elif op < 0.9 and lines:
            i = rng.randrange(len(lines))
            lines[i] = " " * rng.randint(0, 6) + lines[i].lstrip(" ")
            text = "".join(lines)
        else:
            text = text[:pos] + chr(rng.randrange(0x3000)) + text[pos:]
    return text


def _containers(node: yaml.Node) -> Iterator[yaml.SequenceNode | yaml.MappingNode]:
    if isinstance(node, yaml.SequenceNode):
        if node.value:
            yield node
        for child in node.value:
            yield from _containers(child)
    elif isinstance(node, yaml.MappingNode):
        if node.value:
            yield node
        for _, child in node.value:
            yield from _containers(child)


def mutate_structure(text: str, rng: random.Random) -> str:
    """One to three node edits of the composed file, written back as YAML."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return text
    for _ in range(rng.randint(1, 3)):
        parents = list(_containers(root))
        if not parents:
            break
        parent = rng.choice(parents)
        i = rng.randrange(len(parent.value))
        new = rng.choice(PALETTE)()
        op = rng.random()
        if isinstance(parent, yaml.SequenceNode):
            if op < 0.2:
                parent.value.insert(i, parent.value[i])
            elif op < 0.3:
                del parent.value[i]
            else:
                parent.value[i] = new
        elif op < 0.15:
            del parent.value[i]
        elif op < 0.35:
            parent.value.append((_scalar(rng.choice(KEYS)), new))
        elif op < 0.45:
            parent.value.insert(i, parent.value[i])  # a duplicate key
        else:
            parent.value[i] = (parent.value[i][0], new)
    return yaml.serialize(root, allow_unicode=True)


@dataclasses.dataclass(frozen=True)
class Mutant:
    """A mutated copy of one shipped rule set, laid out under a folder."""

    seed: int
    kind: str
    victim: Path
    path: Path
    text: str


def make_mutant(seed: int, folder: Path) -> Mutant:
    """Copy one shipped rule set (chosen by ``seed``) into ``folder`` with one file mutated.

    Even seeds edit text, odd seeds edit structure (a third of those then text as well).
    """
    rng = random.Random(seed)
    target = rng.choice(targets())
    victim = rng.choice(target.files)
    destination = folder / target.root.name
    if target.root.is_dir():
        shutil.copytree(target.root, destination)
        written = destination / victim.relative_to(target.root)
    else:
        for file in target.files:
            shutil.copy(file, folder / file.name)
        written = folder / victim.name
    text = victim.read_text(encoding="utf-8")
    if seed % 2 == 0:
        kind, text = "text", mutate_text(text, rng)
    else:
        kind, text = "structure", mutate_structure(text, rng)
        if rng.random() < 1 / 3:
            text = mutate_text(text, rng)
    written.write_text(text, encoding="utf-8", errors="surrogatepass")
    return Mutant(seed, kind, victim, destination, text)
