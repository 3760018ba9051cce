"""A pod's securityContext on a scratch node: the process's user, groups, capabilities, read-only mounts; file modes."""

from __future__ import annotations

import dataclasses
import os
import stat
import time

import pytest
from agentnode import ScratchNode, seed_artifacts

from svcnet.model.types import ProcessSecurity
from svcnet.transport import protocol

pytestmark = pytest.mark.lab

POD_IP = "10.244.1.240"  # the seed's pod on node1
# Where the pods find the pod server: the node's private /run, which every user may read
# (the scratch node's state dir lies under pytest's root-only temporary directory).
PODSERVER = "/run/podsec/podserver.py"
LOCKED = ProcessSecurity(uid=65534, gid=65534, groups=(65534,), capabilities=(), ambient=(), no_new_privs=True,
                         read_only_root=True)
LOW_PORT = ProcessSecurity(uid=1000, gid=1000, groups=(1000, 2000), capabilities=("NET_BIND_SERVICE",),
                           ambient=("NET_BIND_SERVICE",))
NO_CAPS = 0


def secured_req(snode: ScratchNode, tmp_path, run_id: str, security: ProcessSecurity | None, port: int = 8080):
    """An apply of the seed's node1 whose one pod runs with `security`, listening on `port`."""
    art = seed_artifacts(tmp_path)
    pod = art.netconf.pods[0]
    command = ("python3", PODSERVER, "--port", str(port))
    pods = (dataclasses.replace(pod, command=command, security=security),)
    secured = dataclasses.replace(art, netconf=dataclasses.replace(art.netconf, pods=pods))
    req = protocol.ApplyRequest(run_id, secured).to_wire()
    snode.sh(["sh", "-c", f"mkdir -p {os.path.dirname(PODSERVER)} && cat > {PODSERVER} && chmod 0644 {PODSERVER}"],
             stdin=protocol.podserver_source())
    return req, pod.netns


def http(snode: ScratchNode, port: int) -> str:
    """GET the pod from the node (bounded: 20 tries of at most 1s each, a pod takes a moment to listen)."""
    for _ in range(20):
        proc = snode.sh(["curl", "-s", "--max-time", "1", f"http://{POD_IP}:{port}/"], check=False)
        if proc.returncode == 0 and proc.stdout:
            return proc.stdout.strip()
        time.sleep(0.3)
    return ""


def pod_log(snode: ScratchNode, netns: str) -> str:
    """The supervisor's log of a pod (for failure messages)."""
    log = snode.state / "logs" / f"{netns}.log"
    return log.read_text() if log.exists() else "(no log)"


def proc_status(pid: int | str) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def own_status() -> dict[str, str]:
    """This test's own status: root with the capabilities the agent starts with (all this machine allows)."""
    return proc_status("self")


def pod_status(snode: ScratchNode, netns: str) -> dict[str, str]:
    """/proc/PID/status of the one process in the pod's netns (the pod server itself)."""
    (pid,) = snode.pod_pids(netns)
    return {**proc_status(pid), "pid": str(pid)}


def mounts(pid: int | str) -> dict[str, str]:
    """Mount point -> per-mount options of the mounts process `pid` can reach (the topmost at each path)."""
    with open(f"/proc/{pid}/mountinfo") as f:
        found = {line.split()[4]: line.split()[5] for line in f}
    # a mount under a later mount at or above its path is out of reach (its path is gone there)
    return {p: opts for p, opts in found.items() if os.path.lexists(f"/proc/{pid}/root{p}")}


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_locked_down_pod_runs_as_nobody_without_capabilities_on_read_only_mounts(snode, tmp_path):
    req, netns = secured_req(snode, tmp_path, "r1", LOCKED)
    assert snode.agent(req)["ok"]
    assert http(snode, 8080).startswith("k8s-test-"), pod_log(snode, netns)
    st = pod_status(snode, netns)
    assert st["Uid"].split() == ["65534"] * 4 and st["Gid"].split() == ["65534"] * 4
    assert st["Groups"].split() == ["65534"]
    assert {k: int(st[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")} == dict.fromkeys(
        ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), NO_CAPS)
    assert st["NoNewPrivs"] == "1"
    seen = mounts(st["pid"])
    assert seen["/"].split(",")[0] == "ro"
    writable = sorted(p for p, opts in seen.items() if opts.split(",")[0] == "rw")
    assert writable and all(p in ("/dev", "/proc") or p.startswith(("/dev/", "/proc/")) for p in writable), writable
    # only the pod's own mount namespace: the node's stays writable
    assert mounts(snode.pid)["/"].split(",")[0] == "rw"
    # files that hold the pod's command: root's only, whatever the umask was
    pods_dir = f"/proc/{snode.pid}/root/run/svcnet/pods"
    assert mode(pods_dir) == 0o700 and os.stat(pods_dir).st_uid == 0
    assert {f: mode(os.path.join(pods_dir, f)) for f in os.listdir(pods_dir)} == {
        f"{netns}{ext}": 0o600 for ext in (".json", ".spec", ".pid")}
    assert mode(snode.state / "logs") == 0o700 and mode(snode.state / "logs" / f"{netns}.log") == 0o600
    assert mode(snode.etc / "netconf.json") == 0o600


def test_changing_the_security_context_restarts_the_pod(snode, tmp_path):
    req, netns = secured_req(snode, tmp_path, "r1", LOCKED)
    assert snode.agent(req)["ok"] and http(snode, 8080)
    before = pod_status(snode, netns)
    again, _ = secured_req(snode, tmp_path, "r2", dataclasses.replace(LOCKED, uid=65533))
    resp = snode.agent(again)
    assert resp["pods"] == [f"restarted {netns}"], resp
    assert http(snode, 8080)
    after = pod_status(snode, netns)
    assert after["pid"] != before["pid"] and after["Uid"].split() == ["65533"] * 4
    # no securityContext any more: root with every capability, as before
    plain, _ = secured_req(snode, tmp_path, "r3", None)
    assert snode.agent(plain)["pods"] == [f"restarted {netns}"]
    assert http(snode, 8080)
    root = pod_status(snode, netns)
    assert root["Uid"].split() == ["0"] * 4 and root["CapEff"] == own_status()["CapEff"]


def test_non_root_pod_with_net_bind_service_listens_on_port_80(snode, tmp_path):
    req, netns = secured_req(snode, tmp_path, "r1", LOW_PORT, port=80)
    assert snode.agent(req)["ok"]
    assert http(snode, 80).startswith("k8s-test-")
    st = pod_status(snode, netns)
    assert st["Uid"].split() == ["1000"] * 4 and st["Groups"].split() == ["1000", "2000"]
    nbs = 1 << 10
    assert {k: int(st[k], 16) for k in ("CapEff", "CapPrm", "CapBnd", "CapAmb")} == dict.fromkeys(
        ("CapEff", "CapPrm", "CapBnd", "CapAmb"), nbs)
    assert st["NoNewPrivs"] == "0"


def test_without_net_bind_service_the_same_pod_cannot_listen_on_port_80(snode, tmp_path):
    no_cap = dataclasses.replace(LOW_PORT, capabilities=(), ambient=())
    req, netns = secured_req(snode, tmp_path, "r1", no_cap, port=80)
    assert snode.agent(req)["ok"]
    log = snode.state / "logs" / f"{netns}.log"
    deadline = time.monotonic() + 20  # the first start fails within a second; generous under load
    while "PermissionError" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "PermissionError" in log.read_text()
    refused = snode.sh(["curl", "-s", "--max-time", "1", f"http://{POD_IP}:80/"], check=False)
    assert refused.returncode != 0 and not refused.stdout
