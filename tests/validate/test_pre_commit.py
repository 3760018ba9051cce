"""The `svcnet-validate` hook of .pre-commit-hooks.yaml, run by the real pre-commit on `git commit`.

pre-commit is installed by this test into its own temporary venv (never the project's), and it
installs svcnet from a snapshot of this work tree into its own hook environment, as it does for
any user: both from the package index with pip, as scripts/bootstrap.sh installs svcnet. A commit
of a valid description passes; a commit with an invalid manifest fails with svcnet's located error
and is not made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"
INSTALL_TIMEOUT = 900  # pip from the index on a shared 2-core machine: pre-commit, then svcnet's dependencies
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}

pytestmark = pytest.mark.slow


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def snapshot_of_this_tree(dest: Path, env: dict[str, str]) -> str:
    """This work tree as it is (uncommitted changes included) committed in a repository of its own:
    pre-commit clones a hook repository at a revision."""
    listed = run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"], ROOT, env)
    if listed.returncode:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    for name in filter(None, listed.stdout.split("\0")):
        src, copy = ROOT / name, dest / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            copy.symlink_to(os.readlink(src))  # as git holds it
        elif src.is_file():
            shutil.copy2(src, copy)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "snapshot"]):
        assert run(cmd, dest, env).returncode == 0
    return run(["git", "rev-parse", "HEAD"], dest, env).stdout.strip()


@pytest.fixture(scope="module")
def pre_commit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("pre-commit-venv")
    made = run([sys.executable, "-m", "venv", str(venv)], venv, dict(os.environ))
    assert made.returncode == 0, made.stderr
    pip = run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
               "pre-commit"], venv, dict(os.environ), INSTALL_TIMEOUT)
    assert pip.returncode == 0, f"pip install pre-commit failed:\n{pip.stdout}\n{pip.stderr}"
    return venv / "bin" / "pre-commit"


def test_commits_are_checked_by_svcnet_validate(pre_commit: Path, tmp_path: Path) -> None:
    env = {**os.environ, **GIT_ENV, "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    env.pop("VIRTUAL_ENV", None)
    hooks = tmp_path / "svcnet"
    hooks.mkdir()
    rev = snapshot_of_this_tree(hooks, env)

    work = tmp_path / "work"
    shutil.copytree(SEED, work / "deploy")
    (work / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {hooks}\n    rev: {rev}\n    hooks:\n"
        "      - id: svcnet-validate\n        args: [deploy]\n        files: ^deploy/\n")
    for cmd in (["git", "init", "-q"], [str(pre_commit), "install"]):
        done = run(cmd, work, env)
        assert done.returncode == 0, done.stdout + done.stderr

    assert run(["git", "add", "-A"], work, env).returncode == 0
    good = run(["git", "commit", "-m", "the seed description"], work, env, INSTALL_TIMEOUT)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "svcnet validate" in good.stdout + good.stderr and "Passed" in good.stdout + good.stderr

    service = work / "deploy" / "service.yaml"
    service.write_text(service.read_text().replace("port: 8080", "port: 70000"))
    assert run(["git", "add", "-A"], work, env).returncode == 0
    bad = run(["git", "commit", "-m", "a port too big"], work, env)
    out = bad.stdout + bad.stderr
    assert bad.returncode != 0, out
    assert "Failed" in out and "deploy/service.yaml:15:13: spec.ports[0].port: must be <= 65535, got 70000" in out
    assert "Traceback" not in out
    assert run(["git", "rev-list", "--count", "HEAD"], work, env).stdout.strip() == "1"  # not committed

    # a commit that touches no manifest does not run the hook
    (work / "README").write_text("notes\n")
    assert run(["git", "reset", "-q", "deploy/service.yaml"], work, env).returncode == 0
    assert run(["git", "add", "README"], work, env).returncode == 0
    other = run(["git", "commit", "-m", "notes"], work, env)
    assert other.returncode == 0 and "(no files to check)Skipped" in other.stdout + other.stderr, other.stderr
