"""Every Python svcnet starts for the agent runs isolated from "/": no module planted in the login
directory, the script's directory or $PYTHONPATH is imported (fast: real interpreters, no lab)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from planted import MARKER, plant, ran

from svcnet.agent import node
from svcnet.transport import protocol

ISOLATED = ["cd", "/", "&&", "exec"]


def status_request(tmp_path: Path) -> dict:
    return {**protocol.StatusRequest("r1").to_wire(), "etc_dir": str(tmp_path / "e"),
            "state_dir": str(tmp_path / "s"), "run_dir": str(tmp_path / "r")}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A login directory full of planted modules, also on $PYTHONPATH; the test runs from it."""
    home = tmp_path / "home"
    home.mkdir()
    plant(home)
    monkeypatch.chdir(home)
    monkeypatch.setenv("PYTHONPATH", str(home))
    return home


def test_the_remote_commands_run_python_isolated_from_root():
    assert shlex.split(protocol.REMOTE_COMMAND) == [*ISOLATED, "/usr/bin/python3", "-I", "-S", "-c",
                                                    protocol.BOOTSTRAP]
    assert shlex.split(protocol.remote_command("/opt/py 3/bin/python"))[4:7] == ["/opt/py 3/bin/python", "-I", "-S"]
    probe = protocol.python_command("print(1)", None, ["ip", "netns", "exec", "pod-ns"])
    assert shlex.split(probe) == [*ISOLATED, "ip", "netns", "exec", "pod-ns", "/usr/bin/python3", "-I", "-S", "-c",
                                  "print(1)"]


def test_the_agent_over_ssh_never_imports_a_planted_module(home: Path, tmp_path: Path):
    stdin = protocol.build_stdin(status_request(tmp_path))
    old = subprocess.run([protocol.DEFAULT_PYTHON, "-E", "-S", "-c", protocol.BOOTSTRAP], input=stdin,
                         capture_output=True, timeout=60, check=False)
    assert protocol.parse_response(old.stdout.decode())["ok"]
    assert "json euid=" in ran(home)  # the control: the command before -I and `cd /` imported them
    (home / MARKER).unlink()

    new = subprocess.run(["sh", "-c", protocol.REMOTE_COMMAND], input=stdin, capture_output=True, timeout=60,
                         check=False)
    assert protocol.parse_response(new.stdout.decode())["ok"], new.stderr
    assert ran(home) == ""


def test_the_agent_as_a_file_never_imports_a_planted_module(home: Path, tmp_path: Path):
    """How pod supervisors and the boot unit start it: neither the script's directory nor cwd count."""
    paths = node.Paths(str(tmp_path / "e"), str(tmp_path / "s"), str(tmp_path / "r"))
    shutil.copytree(home, paths.state)  # planted beside agent.py too
    shutil.copy(node.__file__, paths.state_file(node.AGENT_FILE))
    argv = node.agent_argv(paths, "status")
    assert argv[:4] == [sys.executable, "-I", "-S", paths.state_file(node.AGENT_FILE)]
    assert f"ExecStart={shlex.join(node.agent_argv(paths, 'boot'))}\n" in node.unit_text(paths)

    old = subprocess.run([sys.executable, paths.state_file(node.AGENT_FILE), "status", *paths.cli_args()],
                         capture_output=True, text=True, timeout=60, check=False)
    assert json.loads(old.stdout)["ok"] and " euid=" in ran(Path(paths.state))  # the control
    for d in (Path(paths.state), home):
        (d / MARKER).unlink(missing_ok=True)

    new = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert json.loads(new.stdout)["ok"], new.stderr
    assert ran(Path(paths.state)) == "" and ran(home) == ""


def test_the_agent_runs_commands_and_its_scratch_copy_from_root(home: Path, monkeypatch: pytest.MonkeyPatch):
    assert node.run(["pwd"]).stdout == "/\n"
    seen: list[list[str]] = []

    def fake_run(argv: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0, '{"ok": true}\n', "")

    monkeypatch.setattr(node, "run", fake_run)
    node.in_scratch_netns({"op": "_scratch_normalize"})
    assert seen == [["unshare", "--net", "--", sys.executable, "-I", "-S", "-c", node.BOOTSTRAP]]
    assert os.getcwd() == str(home)
