"""testinfra's ansible:// backend with real ansible-core on the inventory svcnet's lab writes, and
`svcnet verify --connection ansible` over it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansiblevenv import Ansible
from labrun import REPO, SEED, Run, applied_lab

from svcnet.lab.state import Lab

pytestmark = [pytest.mark.lab, pytest.mark.slow]
CHECKS = Path(__file__).resolve().parent / "nodes_over_ansible.py"


@pytest.fixture(scope="module")
def lab(lab_factory) -> Lab:
    return applied_lab(lab_factory, SEED)


def verify_over_ansible(ansible: Ansible, inventory: Path, *extra: str) -> Run:
    """The real `svcnet verify`, with ansible-core's commands on PATH."""
    p = subprocess.run([sys.executable, "-m", "svcnet.cli.main", "verify", "-f", str(SEED), "-i", str(inventory),
                        "--connection", "ansible", *extra], capture_output=True, text=True, env=ansible.env,
                       cwd=REPO, timeout=300, stdin=subprocess.DEVNULL)
    return Run(p.returncode, p.stdout, p.stderr)


def test_pytest_hosts_ansible_reads_the_lab_inventory_unchanged(ansible: Ansible, lab: Lab, tmp_path: Path):
    shutil.copy(CHECKS, tmp_path / "test_nodes.py")  # away from the repository's conftest files
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    p = subprocess.run([str(ansible.venv / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "--hosts=ansible://all",
                        f"--ansible-inventory={lab.inventory_path}", "test_nodes.py"],
                       capture_output=True, text=True, env=ansible.env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "4 passed" in p.stdout, p.stdout  # 2 tests x 2 nodes


def test_svcnet_verify_runs_over_testinfras_ansible_backend(ansible: Ansible, lab: Lab):
    run = verify_over_ansible(ansible, lab.inventory_path, "-q")
    assert run.rc == 0, run.out + run.err
    assert " passed" in run.out and "failed" not in run.out, run.out


def test_svcnet_verify_over_ansible_reads_inventories_only_ansible_reads(ansible: Ansible, lab: Lab, tmp_path: Path):
    """A dynamic inventory (an executable that prints JSON): svcnet's own reader refuses it, Ansible runs it."""
    doc = yaml.safe_load(lab.inventory_path.read_text())["all"]
    listing = {"all": {"hosts": list(doc["hosts"]), "vars": doc["vars"]}, "_meta": {"hostvars": doc["hosts"]}}
    script = tmp_path / "inventory.sh"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(listing)}\nEOF\n")
    script.chmod(0o700)
    run = verify_over_ansible(ansible, script, "-q", "-k", "cluster_ip")
    assert run.rc == 0, run.out + run.err
    assert " passed" in run.out, run.out
    own = subprocess.run([sys.executable, "-m", "svcnet.cli.main", "verify", "-f", str(SEED), "-i", str(script)],
                         capture_output=True, text=True, cwd=REPO, timeout=120, stdin=subprocess.DEVNULL)
    assert own.returncode == 4, own.stdout + own.stderr  # svcnet's own inventory reader: a usage error


def test_the_svcnet_pytest_plugin_over_ansible(ansible: Ansible, lab: Lab, tmp_path: Path):
    """Your own testinfra tests with svcnet's fixtures, the nodes reached through ansible://."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_mine.py").write_text(
        "def test_node_holds_its_address(svcnet_host, svcnet_cluster, svcnet_node):\n"
        "    node = next(n for n in svcnet_cluster.nodes if n.name == svcnet_node)\n"
        "    assert svcnet_host.backend.gateway.__class__.__name__ == 'TestinfraGateway'\n"
        "    assert node.addresses[0] in svcnet_host.run('ip -4 -br addr').stdout\n")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--svcnet-cluster={SEED}",
                        f"--svcnet-inventory={lab.inventory_path}", "--svcnet-connection=ansible", "test_mine.py"],
                       capture_output=True, text=True, env=ansible.env, cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 passed" in p.stdout, p.stdout


def test_svcnet_verify_over_ansible_without_ansible_core_is_a_usage_error(lab: Lab):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}  # no ansible-inventory here
    p = subprocess.run([sys.executable, "-m", "svcnet.cli.main", "verify", "-f", str(SEED), "-i",
                        str(lab.inventory_path), "--connection", "ansible"], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 4, p.stdout + p.stderr
    assert "ansible-inventory could not read" in p.stderr and "Traceback" not in p.stderr, p.stderr
