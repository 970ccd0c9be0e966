"""The README's promises: its commands are the ones CI runs, its tour output is real."""

from __future__ import annotations

import re

from click.testing import CliRunner

from engine.cli import main
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", README)


def test_readme_opens_with_the_two_commands() -> None:
    """First the main job on the bundled examples, then the tests."""
    main_job, tests = _commands()[:2]
    assert "scripts/demo" in main_job and "pip install" in main_job
    assert "scripts/check" in tests and "'.[dev]'" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").strip().splitlines()
    assert ci[-1] == _commands()[1]


def test_tour_output_is_what_dry_run_prints() -> None:
    shown = README.split("<!-- tour-output -->\n```text\n", 1)[1].split("\n```", 1)[0]
    result = CliRunner().invoke(
        main,
        ["dry-run", "--rules", "docs/tour/rules.yaml", "docs/tour/order.json"],
        env={"HOOKMAP_API_URL": None},
    )
    assert result.exit_code == 0
    assert result.output.rstrip() == shown


def test_tour_rule_file_in_the_readme_is_the_real_one() -> None:
    text = (ROOT / "docs" / "tour" / "rules.yaml").read_text(encoding="utf-8").rstrip()
    assert f"```yaml\n{text}\n```" in README
