"""Real ansible-core for the Ansible tests: its own venv (never the project's), built once and cached.

The venv holds a pinned ansible-core and svcnet's runtime dependencies (read from pyproject.toml),
as a user's controller Python would; svcnet itself comes from this source tree (PYTHONPATH), so
the code under test is the work tree's, as `labrun.svcnet` runs it. The collection is the one
`ansible-galaxy collection build` makes of ansible_collections/svcnet/cluster, installed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from labrun import REPO, Run

# The last ansible-core line whose controller runs on Python 3.11 (2.20 needs 3.12).
ANSIBLE_CORE = "2.19.14"
COLLECTION = REPO / "ansible_collections" / "svcnet" / "cluster"
PIP_TIMEOUT = 900  # seconds: a cold cache downloads ansible-core and svcnet's dependencies from PyPI
PLAYBOOK_TIMEOUT = 300  # seconds: a whole site run on two lab nodes takes about 5 s; generous under load


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "svcnet-tests"


def requirements() -> list[str]:
    """ansible-core, pinned, and what svcnet needs at run time (the controller imports svcnet)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return [f"ansible-core=={ANSIBLE_CORE}", *project["dependencies"]]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time (parallel test runs share the cache)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ansible_venv() -> Path:
    """The venv's directory, built if missing or if its requirements changed."""
    reqs = "\n".join(requirements()) + "\n"
    venv = cache_root() / f"ansible-core-{ANSIBLE_CORE}-py{sys.version_info[0]}{sys.version_info[1]}"
    marker = venv / "svcnet-requirements.txt"  # written last: a venv without it is half-built
    with _locked(venv.with_suffix(".lock")):
        if marker.exists() and marker.read_text() == reqs:
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *requirements()],
                             capture_output=True, text=True, timeout=PIP_TIMEOUT)
        if pip.returncode != 0:
            raise RuntimeError(f"pip install into {venv} failed:\n{pip.stdout}{pip.stderr}")
        marker.write_text(reqs)
    return venv


@dataclass(frozen=True)
class Ansible:
    """ansible-core's commands from the venv, with the collection built and installed in `home`."""

    venv: Path
    home: Path  # ANSIBLE_HOME, control sockets, local temp, the installed collection

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
        env.update({
            "PATH": f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",  # testinfra runs ansible-inventory
            "PYTHONPATH": str(self.home / "pylib"),
            "ANSIBLE_CONFIG": str(self.home / "ansible.cfg"),  # no stray ansible.cfg of the cwd or $HOME
            "ANSIBLE_HOME": str(self.home),
            "ANSIBLE_LOCAL_TEMP": str(self.home / "tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.home / "cp"),
            "ANSIBLE_COLLECTIONS_PATH": str(self.home / "collections"),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
        })
        return env

    def run(self, tool: str, *args: str, timeout: float = PLAYBOOK_TIMEOUT) -> Run:
        p = subprocess.run([str(self.venv / "bin" / tool), *args], capture_output=True, text=True, env=self.env,
                           cwd=self.home, timeout=timeout, stdin=subprocess.DEVNULL)
        return Run(p.returncode, p.stdout, p.stderr)

    def playbook(self, name: str, inventory: Path, cluster: Path, *extra: str) -> Run:
        return self.run("ansible-playbook", name, "-i", str(inventory), "-e", f"svcnet_cluster={cluster}", *extra)

    def stop_control_masters(self) -> None:
        """End the ssh ControlPersist masters Ansible left (they would outlive the lab by a minute)."""
        for sock in (self.home / "cp").glob("*"):
            subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "lab"], capture_output=True,
                           timeout=30, env=self.env)


def setup(venv: Path, home: Path) -> tuple[Ansible, Path]:
    """The Ansible of a test session: the collection built with ansible-galaxy and installed; the tarball."""
    for sub in ("tmp", "cp", "collections", "pylib"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    # The svcnet package only: the repository's root would also put its ansible_collections/ on
    # sys.path, which Ansible scans for collections, and the built one would not be the one run.
    (home / "pylib" / "svcnet").symlink_to(REPO / "svcnet")
    (home / "ansible.cfg").write_text("[defaults]\n")
    ansible = Ansible(venv, home)
    built = ansible.run("ansible-galaxy", "collection", "build", str(COLLECTION), "--output-path", str(home))
    assert built.rc == 0, built.out + built.err
    tarball = next(home.glob("svcnet-cluster-*.tar.gz"))
    installed = ansible.run("ansible-galaxy", "collection", "install", str(tarball), "-p", str(home / "collections"))
    assert installed.rc == 0, installed.out + installed.err
    return ansible, tarball

