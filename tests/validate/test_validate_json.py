"""`svcnet validate -o json`: one JSON object per diagnostic on stdout, for CI annotations.

The text output stays as it was; the JSON form carries the same diagnostics, the same exit codes,
and never a traceback, whatever the file (names that are not UTF-8 included).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from svcnet.cli.main import cli
from svcnet.diagnostics import Diagnostic

HERE = Path(__file__).parent
BAD = sorted((HERE / "bad").glob("*.yaml"))
BASE = HERE / "good" / "base-cluster.yaml"
SEED = HERE.parents[1] / "examples" / "seed"
KEYS = ["file", "line", "column", "path", "severity", "message"]


def args_for(path: Path) -> list[str]:
    alone = path.name != "30-binary.yaml" and "# alone" in path.read_text(errors="replace")
    return [str(path)] if alone else [str(BASE), str(path)]


def objects(stdout: str) -> list[dict]:
    out = [json.loads(line) for line in stdout.splitlines()]
    for obj in out:
        assert list(obj) == KEYS, obj
        assert isinstance(obj["line"], int) and isinstance(obj["column"], int)
        assert obj["severity"] in ("error", "warning")
    return out


def as_text(obj: dict) -> str:
    return str(Diagnostic(obj["file"], obj["line"], obj["column"], obj["path"], obj["message"], obj["severity"]))


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_json_carries_the_same_diagnostics_as_the_text(path: Path) -> None:
    text = CliRunner().invoke(cli, ["validate", *args_for(path)])
    js = CliRunner().invoke(cli, ["validate", "-o", "json", *args_for(path)])
    assert text.exit_code == js.exit_code == 1
    assert js.exception is None or isinstance(js.exception, SystemExit)
    found = objects(js.stdout)
    assert any(o["severity"] == "error" and o["file"] == str(path) for o in found), js.stdout
    # the summary goes to stderr, so stdout is JSON only; the text form is unchanged
    assert js.stderr.startswith("invalid: ")
    assert [as_text(o) for o in found] == text.stderr.splitlines()[:-1]


def test_valid_description_prints_no_object_and_exits_0() -> None:
    res = CliRunner().invoke(cli, ["validate", "-o", "json", str(SEED)])
    assert res.exit_code == 0 and res.stdout == ""
    assert res.stderr.startswith("valid: 2 node(s), 1 service(s)")


def test_warnings_are_objects_too_and_quiet_drops_them(tmp_path: Path) -> None:
    ns = tmp_path / "ns.yaml"
    ns.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
    res = CliRunner().invoke(cli, ["validate", "-o", "json", str(BASE), str(ns)])
    assert res.exit_code == 0
    assert objects(res.stdout) == [{"file": str(ns), "line": 2, "column": 7, "path": "kind", "severity": "warning",
                                    "message": "Namespace is not used by svcnet and is ignored"}]
    quiet = CliRunner().invoke(cli, ["validate", "-q", "-o", "json", str(BASE), str(ns)])
    assert quiet.exit_code == 0 and quiet.stdout == ""


def run(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The real command in a child process: exit code, streams and any traceback as a user sees them."""
    return subprocess.run([sys.executable, "-m", "svcnet.cli.main", "validate", *args], capture_output=True,
                          timeout=60, check=False, env={**os.environ, "PYTHONIOENCODING": "ascii"})


def test_a_file_name_that_is_not_utf8_prints_as_json(tmp_path: Path) -> None:
    bad = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xff.yaml"))
    bad.write_text("kind: [\n")
    res = run("-o", "json", str(bad))
    assert res.returncode == 1 and b"Traceback" not in res.stderr
    first = json.loads(res.stdout.decode("ascii").splitlines()[0])  # strict JSON: no lone surrogates
    assert first["file"] == str(tmp_path) + "/bad\\xff.yaml" and first["line"] == 2
    first["file"].encode("utf-8")


@pytest.mark.parametrize(("args", "code"), [
    (["-o", "json"], 2),  # no path: a usage error, as in text mode
    (["-o", "yaml", str(SEED)], 2),
    (["-o", "json", "/nonexistent/svcnet"], 1),
    (["-o", "json", str(SEED)], 0),
])
def test_exit_codes_stay_and_no_traceback(args: list[str], code: int) -> None:
    res = run(*args)
    assert res.returncode == code, res.stderr
    assert b"Traceback" not in res.stdout + res.stderr
    if code == 1:
        assert objects(res.stdout.decode())[0]["message"] == "no such file or directory"
