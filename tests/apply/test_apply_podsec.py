"""securityContext end to end: `svcnet apply` over SSH runs each pod as its context says, and it still serves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from applylab import apply, settled_answers
from labrun import verify

from svcnet.lab.pytest_fixtures import node_run

pytestmark = pytest.mark.lab

LOCKED_IP, LOW_PORT_IP = "10.96.10.10", "10.96.10.11"
CLUSTER = """\
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: podsec}
spec:
  nodes:
    - {name: node1, addresses: [192.168.56.11], podCIDR: 10.244.1.0/24}
"""
SERVICES = f"""\
apiVersion: v1
kind: Service
metadata: {{name: locked, namespace: sec}}
spec:
  clusterIP: {LOCKED_IP}
  selector: {{app: locked}}
  ports: [{{port: 8080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: low-port, namespace: sec}}
spec:
  clusterIP: {LOW_PORT_IP}
  selector: {{app: low-port}}
  ports: [{{port: 80}}]
"""
# nobody, no capability, read-only mounts, no privilege escalation; the pod server binds 8080
LOCKED = """\
apiVersion: v1
kind: Pod
metadata: {name: locked, namespace: sec, labels: {app: locked}}
spec:
  nodeName: node1
  securityContext: {runAsUser: 65534, runAsGroup: 65534, runAsNonRoot: true}
  containers:
    - name: web
      command: [python3, /var/lib/svcnet/podserver.py, --port, "8080"]
      ports: [{containerPort: 8080}]
      securityContext:
        capabilities: {drop: [ALL]}
        readOnlyRootFilesystem: true
        allowPrivilegeEscalation: false
"""
# a non-root user that may bind a port below 1024, and nothing else
LOW_PORT = """\
apiVersion: v1
kind: Pod
metadata: {name: low-port, namespace: sec, labels: {app: low-port}}
spec:
  nodeName: node1
  containers:
    - name: web
      command: [python3, /var/lib/svcnet/podserver.py, --port, "80"]
      ports: [{containerPort: 80}]
      securityContext:
        runAsUser: 1000
        runAsGroup: 1000
        capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
"""
CAPS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
NET_BIND_SERVICE = 1 << 10


def write_description(directory: Path, locked: str = LOCKED) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in (("cluster.yaml", CLUSTER), ("services.yaml", SERVICES), ("locked.yaml", locked),
                       ("low-port.yaml", LOW_PORT)):
        (directory / name).write_text(text)
    return directory


@pytest.fixture(scope="module")
def podsec_lab(lab_factory, tmp_path_factory):
    description = write_description(tmp_path_factory.mktemp("podsec"))
    lab = lab_factory(description / "cluster.yaml")
    first = apply(lab, description)
    assert first.rc == 0, first.out + first.err
    return lab, description


def pod_process(lab, netns: str) -> int:
    """The pid of the one process in a pod's netns (the lab shares the host's pid namespace)."""
    (pid,) = node_run(lab, "node1", f"ip netns pids {netns}").stdout.split()
    return int(pid)


def status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def reachable_mounts(pid: int) -> dict[str, str]:
    """Mount point -> its first option (rw/ro) for the mounts `pid` can reach (the topmost at each path)."""
    with open(f"/proc/{pid}/mountinfo") as f:
        found = {line.split()[4]: line.split()[5].split(",")[0] for line in f}
    return {p: o for p, o in found.items() if os.path.lexists(f"/proc/{pid}/root{p}")}


def test_locked_pod_runs_as_nobody_with_no_capability_on_read_only_mounts_and_answers(podsec_lab):
    lab, _ = podsec_lab
    got = settled_answers(lab, "node1", f"http://{LOCKED_IP}:8080/")
    assert got and set(got) == {"locked"}, got
    pid = pod_process(lab, "svcnet_sec_locked")
    st = status(pid)
    assert st["Uid"].split() == ["65534"] * 4 and st["Gid"].split() == ["65534"] * 4, st
    assert st["Groups"].split() == ["65534"] and st["NoNewPrivs"] == "1"
    assert {k: int(st[k], 16) for k in CAPS} == dict.fromkeys(CAPS, 0)
    mounts = reachable_mounts(pid)
    assert mounts["/"] == "ro" and mounts["/var/lib/svcnet"] == "ro" and mounts["/run"] == "ro"
    assert sorted(p for p, o in mounts.items() if o == "rw" and not p.startswith(("/dev", "/proc"))) == []
    # the node itself keeps writable mounts: only the pod's mount namespace changed
    node_run(lab, "node1", "touch /var/lib/svcnet/still-writable && rm /var/lib/svcnet/still-writable")


def test_non_root_pod_with_net_bind_service_answers_on_port_80(podsec_lab):
    lab, _ = podsec_lab
    got = settled_answers(lab, "node1", f"http://{LOW_PORT_IP}:80/")
    assert got and set(got) == {"low-port"}, got
    st = status(pod_process(lab, "svcnet_sec_low-port"))
    assert st["Uid"].split() == ["1000"] * 4 and st["Gid"].split() == ["1000"] * 4
    assert {k: int(st[k], 16) for k in ("CapPrm", "CapEff", "CapBnd", "CapAmb")} == dict.fromkeys(
        ("CapPrm", "CapEff", "CapBnd", "CapAmb"), NET_BIND_SERVICE)


def test_files_holding_pod_commands_are_root_only(podsec_lab):
    lab, _ = podsec_lab
    out = node_run(lab, "node1", "stat -c '%a %U %n' /run/svcnet/pods /run/svcnet/pods/* /etc/svcnet/netconf.json "
                                 "/var/lib/svcnet/logs /var/lib/svcnet/logs/svcnet_*.log").stdout.split("\n")
    modes = {line.split()[2]: line.split()[:2] for line in out if line}
    assert modes.pop("/run/svcnet/pods") == ["700", "root"]
    assert modes.pop("/var/lib/svcnet/logs") == ["700", "root"]
    assert len(modes) == 3 * 2 + 1 + 2  # .json/.spec/.pid per pod, netconf.json, a log per pod
    assert all(m == ["600", "root"] for m in modes.values()), modes
    # and nobody (the locked pod's user) cannot read the command of any pod
    denied = node_run(lab, "node1", "setpriv --reuid=65534 --regid=65534 --clear-groups "
                                    "cat /run/svcnet/pods/svcnet_sec_low-port.json /etc/svcnet/netconf.json",
                      check=False)
    assert denied.returncode != 0 and "Permission denied" in denied.stderr and "podserver" not in denied.stdout


def test_a_changed_security_context_restarts_the_pod_as_the_new_user(podsec_lab, tmp_path):
    lab, description = podsec_lab
    before = pod_process(lab, "svcnet_sec_locked")
    unchanged = pod_process(lab, "svcnet_sec_low-port")
    changed = write_description(tmp_path / "changed", LOCKED.replace("runAsUser: 65534", "runAsUser: 65533"))
    run = apply(lab, changed)
    assert run.rc == 0 and run.recap()["node1"]["changed"] == 1, run.out + run.err
    got = settled_answers(lab, "node1", f"http://{LOCKED_IP}:8080/")
    assert got and set(got) == {"locked"}, got
    after = pod_process(lab, "svcnet_sec_locked")
    assert after != before and status(after)["Uid"].split() == ["65533"] * 4
    assert pod_process(lab, "svcnet_sec_low-port") == unchanged  # its spec did not change: not restarted
    restored = apply(lab, description)
    assert restored.rc == 0, restored.out + restored.err



def test_verify_passes_with_secured_pods(podsec_lab):
    lab, description = podsec_lab
    run = verify(lab, description)
    assert run.rc == 0, run.out + run.err
