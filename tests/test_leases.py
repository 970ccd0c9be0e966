"""Which servers on a data folder are alive (engine.leases): real lock files, and a real
process killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.leases import Instance
from tests.conftest import ROOT


def test_a_running_server_is_not_taken_for_gone(tmp_path: Path) -> None:
    first, second = Instance(tmp_path), Instance(tmp_path)
    assert first.id != second.id
    assert first.path.exists() and second.path.exists()
    assert first.gone() == [] and second.gone() == []
    first.close()
    assert not first.path.exists()
    assert second.gone() == []  # a server that stopped cleanly leaves no file to find
    second.close()


def test_a_killed_server_is_found_gone_and_forgotten(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from engine.leases import Instance;"
            f" i = Instance(Path({str(tmp_path)!r})); print(i.id, flush=True); time.sleep(60)",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    dead = child.stdout.readline().strip()
    me = Instance(tmp_path)
    assert me.gone() == [], "a live server was taken for gone"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    child.stdout.close()
    assert me.gone() == [dead]
    me.forget(dead)
    assert me.gone() == []
    assert [p.stem for p in (tmp_path / "servers").iterdir()] == [me.id]
    me.close()
