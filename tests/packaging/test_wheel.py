"""svcnet installed from its wheel (not editable) works from any directory.

The wheel is built from a copy of the package's sources (so no build/ or egg-info lands in the
tree), installed with pip into a fresh venv, and run from an empty directory. The fresh venv gets
the project venv's dependencies through a .pth line rather than a second download: that keeps the
test offline and fast, and a .pth path's own .pth files are not processed, so the project's
editable svcnet cannot leak in (the tests check which svcnet answered).

Cost, measured on the shared 2-core machine under load: building and installing 12-19 s once for
the module, each command test 3-5 s, the lab demo 28-53 s (as tests/apply/test_demo.py); 51-88 s in all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest

from svcnet.lab.pytest_fixtures import unique_lab_name

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BUILD_INPUTS = ("pyproject.toml", "README.md")  # beside the package: what setuptools reads to build it
TIMEOUT = 120  # seconds per step: generous for a loaded 2-core machine; a step normally takes a few


@dataclass(frozen=True)
class Installed:
    venv: Path

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    @property
    def svcnet(self) -> str:
        return str(self.venv / "bin" / "svcnet")

    def run(self, argv: list[str], cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)


def _step(argv: list[str], cwd: Path) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"{' '.join(argv)}:\n{done.stdout}{done.stderr}"


def build_wheel(out: Path) -> Path:
    src = out / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "svcnet", src / "svcnet", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # --no-build-isolation: the project venv's setuptools (a dev extra) builds it, with no download
    _step([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
           "-w", str(out / "dist"), str(src)], out)
    (wheel,) = (out / "dist").glob("svcnet-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(work)
    venv = work / "venv"
    _step([sys.executable, "-m", "venv", "--without-pip", str(venv)], work)
    _step([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q", "--no-deps",
           "--no-index", str(wheel)], work)
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", purelib], capture_output=True, text=True,
                               check=True).stdout.strip())
    (site / "svcnet_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return Installed(venv)


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_the_installed_svcnet_is_the_wheel_not_the_source_tree(installed: Installed, empty: Path) -> None:
    got = installed.run([installed.python, "-c", "import svcnet; print(svcnet.__file__)"], empty)
    assert got.returncode == 0, got.stderr
    assert Path(got.stdout.strip()).is_relative_to(installed.venv), got.stdout
    assert not (Path(got.stdout.strip()).parent / "schemas").is_symlink()


def bundled_seed(installed: Installed, cwd: Path) -> str:
    got = installed.run([installed.python, "-c", "from svcnet.resources import example; print(example('seed'))"],
                        cwd)
    assert got.returncode == 0, got.stderr
    return got.stdout.strip()


def test_validate_and_render_the_bundled_seed_from_an_empty_directory(installed: Installed, empty: Path) -> None:
    seed = bundled_seed(installed, empty)
    assert Path(seed).is_relative_to(installed.venv)
    valid = installed.run([installed.svcnet, "validate", seed], empty)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    assert valid.stdout.startswith("valid: 2 node(s), 1 service(s)"), valid.stdout
    out = empty / "out"
    rendered = installed.run([installed.svcnet, "render", "-f", seed, "--out", str(out)], empty)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert {p.relative_to(out).as_posix() for p in out.rglob("*.*")} >= {"node1/rules.restore", "node1/netconf.sh",
                                                                          "node2/rules.restore"}, rendered.stderr
    assert sorted(p.name for p in empty.iterdir()) == ["out"]  # nothing else written where it ran


def test_a_shipped_playbook_runs_by_name_from_an_empty_directory(installed: Installed, empty: Path) -> None:
    # One host that refuses at once (loopback, a closed port): the playbook and the description it
    # names (../examples/seed, relative to the shipped playbook) must load before any host is tried.
    inventory = empty / "hosts.yaml"
    inventory.write_text("all:\n  hosts:\n    node1:\n      ansible_host: 127.0.0.1\n      ansible_port: 1\n")
    run = installed.run([installed.svcnet, "playbook", "site.yaml", "-i", str(inventory), "--check",
                         "--timeout", "2"], empty)
    assert "invalid playbook" not in run.stderr, run.stderr
    assert "TASK [validate the description]" in run.stdout, run.stdout + run.stderr
    assert run.returncode == 4, run.stdout + run.stderr  # 4: a host was unreachable (and nothing else failed)


@pytest.mark.parametrize(("mode", "rules"), [("iptables", "*nat"), ("nftables", "add table ip kube-proxy")])
def test_the_demo_example_of_each_proxy_mode_is_in_the_wheel(installed: Installed, empty: Path, mode: str,
                                                            rules: str) -> None:
    # `svcnet demo --mode MODE` starts from the bundled example of that mode (seed, seed-nftables).
    code = ("from svcnet.cli.demo import EXAMPLES; from svcnet.resources import example; "
            f"print(example(EXAMPLES[{mode!r}]))")
    got = installed.run([installed.python, "-c", code], empty)
    assert got.returncode == 0, got.stderr
    assert Path(got.stdout.strip()).is_relative_to(installed.venv), got.stdout
    rendered = installed.run([installed.svcnet, "render", "-f", got.stdout.strip(), "--node", "node1"], empty)
    assert rendered.returncode == 0 and rules in rendered.stdout, rendered.stdout + rendered.stderr


@pytest.mark.lab
def test_demo_runs_from_an_empty_directory(installed: Installed, empty: Path) -> None:
    # The whole demo (its bundled seed, the shipped site.yaml, the agent and the probe all from the
    # wheel), as the README's first command; it writes only inventory/<lab>.yaml where it runs.
    name = unique_lab_name("whl")
    try:
        run = installed.run([installed.svcnet, "demo", "--name", name], empty, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        assert re.search(r"node2\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", run.stdout), run.stdout
        rows = re.findall(r"^(k8s-test-\S+)\s+(\d+)/200 .*?(\d+)/200", run.stdout, re.MULTILINE)
        assert len(rows) == 2 and all(int(r[1]) > 0 and int(r[2]) > 0 for r in rows), run.stdout
        assert [p.relative_to(empty).as_posix() for p in empty.rglob("*")] == ["inventory", f"inventory/{name}.yaml"]
    finally:
        installed.run([installed.svcnet, "lab", "down", "--name", name], empty)
