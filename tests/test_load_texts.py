"""Rules loaded from given texts (the playground's editor, a server's recorded rules) read
exactly as the same texts saved in files: the same rule sets, the same located diagnostics."""

from __future__ import annotations

from pathlib import Path

from engine.rules import compiler
from engine.rules.discovery import Group, discover

GOOD = """name: shop
topic: {header: X-Topic}
rules:
  - name: r
    topics: a
    events:
      - type: custom
        key: id
        params:
          when: to_string(created)
"""
BAD = GOOD.replace("to_string(created)", "to_strin(created)")


def test_a_given_text_is_read_instead_of_the_file(tmp_path: Path) -> None:
    """The file on disk is good; the text given for it has an unknown function: the load
    reports it at the file's path, line and column, with the line for the caret."""
    path = tmp_path / "shop.yaml"
    path.write_text(GOOD, encoding="utf-8")
    from_text = compiler.load_groups([Group((path,), texts=(BAD,))])
    assert from_text.rulesets == ()
    path.write_text(BAD, encoding="utf-8")
    from_file = compiler.load([path])
    assert [d.render() for d in from_text.diagnostics] == [
        d.render() for d in from_file.diagnostics
    ]
    (first,) = [d for d in from_text.diagnostics if d.code == "E201"]
    assert first.location is not None
    assert (first.location.line, first.location.col) == (10, 17)
    assert "^" in first.render()


def test_sources_hold_the_texts_each_rule_set_was_compiled_from(tmp_path: Path) -> None:
    path = tmp_path / "shop.yaml"
    path.write_text(GOOD, encoding="utf-8")
    result = compiler.load([path])
    (source,) = result.sources
    assert source.files == (path,) and source.texts == (GOOD,)
    # loading the recorded source again gives the same rule set, whatever the disk says
    path.write_text(BAD, encoding="utf-8")
    again = compiler.load_groups(result.sources)
    assert [r.name for r in again.rulesets] == ["shop"] and again.ok


def test_a_folder_rule_set_takes_its_name_from_the_folder(root: Path) -> None:
    (group,) = discover([root / "rules" / "shopify"])
    texts = tuple(p.read_text(encoding="utf-8") for p in group.files)
    result = compiler.load_groups([Group(group.files, group.folder, texts)])
    assert [r.name for r in result.rulesets] == ["shopify"] and result.ok
    assert result.sources[0].texts == texts
