"""Which servers on a data folder are alive (engine.server.leases): real lock files, and a real
process killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.server.leases import Instance
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
            "import sys, time; from pathlib import Path; from engine.server.leases import Instance;"
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


def test_status_says_which_servers_run_and_which_stopped_without_finishing(
    tmp_path: Path,
) -> None:
    """`hookmap status` on a data folder: counts, and the servers (a running one by its
    pid; one whose lock nobody holds as stopped without finishing), looking only."""
    from click.testing import CliRunner

    from engine.cli import main
    from engine.server.store.sqlite import DB_NAME, Store

    with Store(tmp_path / DB_NAME) as store:
        store.add_webhook("shopify", {}, b"{}", None)

    def status(*extra: str) -> str:
        result = CliRunner().invoke(main, ["status", "--data", str(tmp_path), *extra])
        assert result.exit_code == 0, result.output
        return result.output

    assert "servers: none" in status()
    alive = Instance(tmp_path)
    dead = tmp_path / "servers" / "0123456789abcdef.lock"
    dead.write_text("99999\n", encoding="utf-8")  # a file whose server holds no lock
    out = status()
    assert "webhooks: received 1, processed 0, failed 0" in out
    assert f"servers: 1 running (pid {os.getpid()}); 1 stopped without finishing" in out
    doc = json.loads(status("--json"))
    assert doc["servers"] == {
        "running": [{"id": alive.id, "pid": str(os.getpid())}],
        "stopped_without_finishing": ["0123456789abcdef"],
    }
    assert dead.exists() and alive.gone() == ["0123456789abcdef"]  # status took nothing
    alive.close()
