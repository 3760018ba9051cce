"""Nothing svcnet runs on a node imports a module a user planted, and a become password goes to
sudo only: apply, verify, explain --live and teardown against a real lab, as root and as login
users that become root with sudo (svcnet/lab/users.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from applylab import REPO, SEED, Run, owned_rules
from planted import marker_command, plant, plant_command, ran

from svcnet.lab.pytest_fixtures import node_run
from svcnet.lab.users import SUDO_PASSWORD, LabUser, add_users, user_inventory
from svcnet.transport import protocol
from svcnet.transport.gateway import Connector
from svcnet.transport.inventory import load_inventory

pytestmark = pytest.mark.lab
NODES = ("node1", "node2")
NOPW = LabUser("svnopw", 4101)
PW = LabUser("svpw", 4102, SUDO_PASSWORD, "lab-sudo-pw-4b19")
SECRET = "become-pw-that-sudo-never-asks-for-0e6d"
# Records what the agent's (and the traffic probe's) interpreter reads on stdin, then runs it.
RECORDER, RECORD = "/root/svcnet-recorder", "/root/svcnet-python-stdin.log"
RECORDER_SH = f"#!/bin/sh\ntee -a {RECORD} | {protocol.DEFAULT_PYTHON} \"$@\"\n"
SVCNET = Path(sys.executable).parent / "svcnet"  # the console script: its own directory, not cwd, on sys.path
EXTRA_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: k8s-test}
spec:
  clusterIP: 10.111.35.200
  selector: {app: k8s-test}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


@pytest.fixture(scope="module")
def lab(lab_factory):
    lab = lab_factory(SEED)
    for node in NODES:
        add_users(lab, node, [NOPW, PW])
        node_run(lab, node, f"printf %s '{RECORDER_SH}' > {RECORDER} && chmod 0755 {RECORDER}")
    return lab


def svcnet(cwd: Path, *args: str, password: str | None = None) -> Run:
    """The installed `svcnet` command run from `cwd`, the become password in its environment."""
    env = {k: v for k, v in os.environ.items() if k != "SVCNET_BECOME_PASSWORD"}
    if password is not None:
        env["SVCNET_BECOME_PASSWORD"] = password
    t0 = time.monotonic()
    p = subprocess.run([str(SVCNET), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env,
                       stdin=subprocess.DEVNULL)
    return Run(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def every_operation(inventory: Path, cwd: Path, password: str | None = None) -> dict[str, Run]:
    """apply (with its verify task), verify, explain --live, teardown: each must succeed."""
    inv = ["-i", str(inventory)]
    runs = {
        "apply": svcnet(cwd, "apply", *inv, "-f", str(SEED), "--confirm-timeout", "15", password=password),
        "verify": svcnet(cwd, "verify", *inv, "-f", str(SEED), password=password),
        "explain": svcnet(cwd, "explain", "-f", str(SEED), "--node", "node1", "--src", "10.244.1.50",
                          "--dst", "10.111.35.139:8080", "--live", *inv, password=password),
        "teardown": svcnet(cwd, "playbook", str(REPO / "playbooks" / "teardown.yaml"), *inv, password=password),
    }
    return runs


def markers(lab, home: str) -> dict[str, str]:
    return {node: node_run(lab, node, marker_command(home)).stdout for node in NODES}


def assert_old_command_runs_them(inventory: Path, home: str, lab) -> None:
    """The control: the agent's command before the fix, in the same place, ran the planted modules as root."""
    old = f"{protocol.DEFAULT_PYTHON} -E -S -c '{protocol.BOOTSTRAP}'"
    with Connector(load_inventory(inventory)).gateway("node1") as s:
        r = s.run(old, protocol.build_stdin(protocol.StatusRequest("control").to_wire()))
    assert protocol.parse_response(r.stdout)["ok"]
    assert "json euid=0 " in markers(lab, home)["node1"]


def test_modules_planted_in_roots_home_never_run(lab, tmp_path):
    for node in NODES:
        node_run(lab, node, plant_command("/root"))
    cwd = tmp_path / "cwd"  # the controller's current directory: the outside probe runs here
    cwd.mkdir()
    plant(cwd)
    runs = every_operation(lab.inventory_path, cwd)
    assert markers(lab, "/root") == {node: "" for node in NODES} and ran(cwd) == ""
    assert {op: r.rc for op, r in runs.items()} == dict.fromkeys(runs, 0), runs
    assert_old_command_runs_them(lab.inventory_path, "/root", lab)


def test_a_sudo_users_planted_modules_never_run_and_the_unasked_password_goes_nowhere(lab, tmp_path):
    for node in NODES:
        node_run(lab, node, plant_command(NOPW.home, NOPW.name) + f" && rm -f {RECORD}")
    inventory = user_inventory(lab, NOPW.name, tmp_path / "inv.yaml", ansible_python_interpreter=RECORDER)
    runs = every_operation(inventory, tmp_path, SECRET)
    assert markers(lab, NOPW.home) == {node: "" for node in NODES}
    assert {op: r.rc for op, r in runs.items()} == dict.fromkeys(runs, 0), runs
    for node in NODES:
        record = node_run(lab, node, f"cat {RECORD}").stdout
        assert '"op": "apply"' in record and '"probe": ' in record  # the recorder saw the agent and the probe
        assert SECRET not in record  # ... and never the password
        found = node_run(lab, node, f"grep -rlsF -- {SECRET} /etc/svcnet /var/lib/svcnet /run /root /home; true")
        assert found.stdout == "", f"{node}: the password is in {found.stdout}"
    assert not [p for p in lab.dir.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not [op for op, r in runs.items() if SECRET in r.out + r.err]
    assert_old_command_runs_them(inventory, NOPW.home, lab)


def test_sudo_with_a_password_applies_and_a_wrong_password_fails_clearly(lab, tmp_path):
    inventory = user_inventory(lab, PW.name, tmp_path / "inv.yaml")
    applied = svcnet(tmp_path, "apply", "-i", str(inventory), "-f", str(SEED), password=PW.password)
    assert applied.rc == 0, applied.out + applied.err
    before = {node: owned_rules(lab, node) for node in NODES}
    assert all("KUBE-SERVICES" in rules for rules in before.values())

    (tmp_path / "extra.yaml").write_text(EXTRA_SERVICE)
    wrong = svcnet(tmp_path, "apply", "-i", str(inventory), "-f", str(SEED), "-f", str(tmp_path / "extra.yaml"),
                   password="not-the-password")
    assert wrong.rc == 2, wrong.out + wrong.err  # the hosts failed (as Ansible reports a bad sudo password)
    assert wrong.seconds < 60  # pam_unix waits ~2 s per attempt; far below any hang, with room for load
    assert {n: r["failed"] for n, r in wrong.recap().items()} == {"node1": 1, "node2": 1}, wrong.out
    assert wrong.out.count("become: sudo rejected the become password") == 2, wrong.out
    assert "not-the-password" not in wrong.out + wrong.err and "Traceback" not in wrong.err
    assert {node: owned_rules(lab, node) for node in NODES} == before  # nothing changed

    down = svcnet(tmp_path, "playbook", str(REPO / "playbooks" / "teardown.yaml"), "-i", str(inventory),
                  password=PW.password)
    assert down.rc == 0, down.out + down.err
    assert {node: owned_rules(lab, node) for node in NODES} == {node: "" for node in NODES}
