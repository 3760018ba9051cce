"""Pods on a scratch node: supervised podserver in its netns, restarts only on spec change, reboot + boot."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

import pytest
from agentnode import apply_req, seed_artifacts, unchanged

pytestmark = pytest.mark.lab

POD = "k8s-test-vrr9srwrpk-zfftc"  # the seed's pod on node1
POD_IP = "10.244.1.240"
GATEWAY = "10.244.1.1"
UDP_PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.0)
for _ in range(5):
    s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(512)[0].decode().strip()); break
    except socket.timeout:
        pass
"""


def http(snode, path: str = "/") -> str:
    """GET from the node's netns to the pod (bounded: 10 tries of at most 1s each)."""
    for _ in range(10):
        proc = snode.sh(["curl", "-s", "--max-time", "1", f"http://{POD_IP}:8080{path}"], check=False)
        if proc.returncode == 0 and proc.stdout:
            return proc.stdout
        time.sleep(0.3)
    return ""


def pod_pid(snode) -> int | None:
    pods = snode.agent({"op": "status", "run_id": "s"})["pods"]
    return pods[0]["pid"] if pods and pods[0]["running"] else None


def alive(pid: int) -> bool:
    """Running (zombies waiting for init to reap them do not count), after at most 2s."""
    deadline = time.monotonic() + 2
    while True:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        if state in ("Z", "X") or time.monotonic() > deadline:
            return state not in ("Z", "X")
        time.sleep(0.1)


def with_pods(art, pods):
    return dataclasses.replace(art, netconf=dataclasses.replace(art.netconf, pods=tuple(pods)))


def test_pod_lifecycle(snode, tmp_path):
    art = seed_artifacts(tmp_path)
    assert snode.agent(apply_req(snode, art, "r1"))["ok"]
    assert http(snode) == POD + "\n"
    whoami = json.loads(http(snode, "/whoami"))
    assert whoami == {"pod": POD, "namespace": "k8s-test", "ip": POD_IP, "client_ip": GATEWAY,
                      "client_port": whoami["client_port"]}
    # retried, bounded: one request of at most 2 s could time out on a loaded machine
    headers = snode.sh(["curl", "-s", "-i", "--max-time", "10", "--retry", "5", "--retry-all-errors",
                        f"http://{POD_IP}:8080/x"]).stdout
    assert f"X-Pod-Name: {POD}" in headers
    status = snode.agent({"op": "status", "run_id": "s"})
    assert status["ok"] and status["pods"][0]["current"]
    pid = pod_pid(snode)

    # same spec (even with other rules) -> not restarted
    assert not snode.agent(apply_req(snode, art, "r2"))["changed"]
    changed_rules = seed_artifacts(tmp_path, {"nodePort: 30000": "nodePort: 30002"})
    resp = snode.agent(apply_req(snode, changed_rules, "r3"))
    assert resp["changed"] and resp["pods"] == []
    assert pod_pid(snode) == pid

    # spec change (command) -> restarted, the new command is live (UDP answers)
    pod = art.netconf.pods[0]
    udp_art = with_pods(changed_rules, [dataclasses.replace(pod, command=(*pod.command, "--udp"))])
    resp = snode.agent(apply_req(snode, udp_art, "r4"))
    assert resp["pods"] == [f"restarted {pod.netns}"], resp
    assert pod_pid(snode) not in (None, pid)
    assert http(snode) == POD + "\n"
    udp = snode.sh(["python3", "-c", UDP_PROBE, POD_IP, "8080"], timeout=15).stdout.strip()
    assert udp == POD

    # a pod process that dies is restarted by its supervisor
    server = snode.pod_pids(pod.netns)
    assert server
    for p in server:
        os.kill(p, signal.SIGKILL)
    assert http(snode) == POD + "\n"

    # pod removed -> supervisor, process, netns and veth gone
    running = [*snode.pod_pids(pod.netns), pod_pid(snode)]
    assert len(running) >= 2 and None not in running
    resp = snode.agent(apply_req(snode, with_pods(changed_rules, []), "r5"))
    assert resp["ok"] and resp["pods"] == [f"stopped {pod.netns}"], resp
    assert snode.netns_list() == []
    assert pod.veth not in snode.sh(["ip", "-br", "link"]).stdout
    assert not [p for p in running if alive(p)]


def test_reboot_then_boot_restores_everything(snode, tmp_path):
    art = seed_artifacts(tmp_path)
    req = apply_req(snode, art, "r1")
    assert snode.agent(req)["ok"]
    assert http(snode) == POD + "\n"

    # simulated reboot: processes, rules, namespaces, links and forwarding are gone; files stay
    snode.simulate_reboot()
    assert not unchanged(snode.agent({"op": "probe", "run_id": "p"}), req["desired_hashes"])

    booted = snode.agent_file("boot")
    assert booted["ok"] and booted["changed"], booted
    assert http(snode) == POD + "\n"
    probe = snode.agent({"op": "probe", "run_id": "p"})
    assert unchanged(probe, req["desired_hashes"]), probe


def test_boot_rolls_back_an_unconfirmed_run(snode, tmp_path):
    art1 = seed_artifacts(tmp_path)
    req1 = apply_req(snode, art1, "r1")
    assert snode.agent(req1)["ok"]
    art2 = seed_artifacts(tmp_path, {"nodePort: 30000": "nodePort: 30003"})
    assert snode.agent(apply_req(snode, art2, "r2", confirm_timeout=120))["pending"]
    # reboot before the confirmation: the dead-man dies with the machine
    snode.simulate_reboot()
    booted = snode.agent_file("boot")
    assert booted["ok"] and "unconfirmed at boot" in booted["msg"], booted
    assert "--dport 30000" in snode.save("nat") and "--dport 30003" not in snode.save("nat")
    assert unchanged(snode.agent({"op": "probe", "run_id": "p"}), req1["desired_hashes"])
