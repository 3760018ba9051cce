"""Fault cases of the apply, each against a real lab: real sshd, iptables and traffic."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from applylab import REPO, SEED, apply, foreign_rules, owned_rules, settled_answers, svcnet

from svcnet.lab.node_ops import simulate_reboot
from svcnet.lab.pytest_fixtures import node_run
from svcnet.model.load import load_cluster

pytestmark = pytest.mark.lab
THREE = REPO / "tests" / "lab" / "cluster.yaml"

EXTRA_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: k8s-test}
spec:
  type: ClusterIP
  clusterIP: 10.111.35.200
  selector: {app: k8s-test}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""

# An externalIP service on node1's own SSH port whose only endpoint does not exist: once applied,
# new SSH connections to node1 are DNATed away, so the confirmation cannot arrive.
CUT_OFF = """\
apiVersion: v1
kind: Service
metadata: {name: cut-off, namespace: k8s-test}
spec:
  externalIPs: [192.168.56.11]
  ports: [{name: ssh, port: 22}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: cut-off-1
  namespace: k8s-test
  labels: {kubernetes.io/service-name: cut-off}
addressType: IPv4
ports: [{name: ssh, port: 22, protocol: TCP}]
endpoints:
  - addresses: [10.244.9.9]
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def test_failed_restore_rolls_back_to_the_previous_state(lab_factory, tmp_path):
    lab = lab_factory(SEED)
    assert apply(lab, SEED).rc == 0
    before = owned_rules(lab, "node1")
    # A stale service chain that a foreign rule still references: deleting it makes the restore fail.
    node_run(lab, "node1", "iptables -t nat -N KUBE-SEP-STALESTALESTALE && iptables -t nat -N FOREIGN "
                           "&& iptables -t nat -A FOREIGN -j KUBE-SEP-STALESTALESTALE")
    before = owned_rules(lab, "node1")
    run = apply(lab, SEED, write(tmp_path, "extra.yaml", EXTRA_SERVICE))
    assert run.rc != 0, run.out
    assert run.recap()["node1"]["failed"] == 1, run.out
    assert "iptables-restore" in run.out
    assert owned_rules(lab, "node1") == before  # exactly the previous rules
    assert "10.111.35.200" not in owned_rules(lab, "node1")


def test_a_removed_service_leaves_no_chain_behind(lab_factory, tmp_path):
    lab = lab_factory(SEED)
    extra = write(tmp_path, "extra.yaml", EXTRA_SERVICE)
    assert apply(lab, SEED).rc == 0
    seed_only = {n: owned_rules(lab, n) for n in ("node1", "node2")}
    added = apply(lab, SEED, extra)
    assert added.rc == 0 and {n: r["changed"] > 0 for n, r in added.recap().items()} == {"node1": True, "node2": True}
    chains = set(re.findall(r"KUBE-(?:SVC|SEP)-[A-Z0-9]{16}", owned_rules(lab, "node1"))) - set(
        re.findall(r"KUBE-(?:SVC|SEP)-[A-Z0-9]{16}", seed_only["node1"]))
    assert chains and "10.111.35.200" in owned_rules(lab, "node2")  # the extra service's own chains

    removed = apply(lab, SEED)  # the service is gone from the description: its chains go from every node
    assert removed.rc == 0, removed.out + removed.err
    assert {n: owned_rules(lab, n) for n in ("node1", "node2")} == seed_only
    assert not any(c in owned_rules(lab, "node1") for c in chains)
    assert {n: r["changed"] for n, r in apply(lab, SEED).recap().items()} == {"node1": 0, "node2": 0}


def test_connection_lost_before_confirmation_rolls_back(lab_factory, tmp_path):
    lab = lab_factory(SEED)
    assert apply(lab, SEED).rc == 0
    before = owned_rules(lab, "node1")
    t0 = time.monotonic()
    run = svcnet("apply", "-i", str(lab.inventory_path), "-f", str(SEED),
                 "-f", str(write(tmp_path, "cut.yaml", CUT_OFF)), "--confirm-timeout", "4", "-T", "3",
                 "--limit", "node1")
    assert run.rc == 8, run.out + run.err  # a node was rolled back
    assert "could not confirm" in run.out
    deadline = t0 + 60
    while owned_rules(lab, "node1") != before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert owned_rules(lab, "node1") == before  # the node restored itself
    again = apply(lab, SEED, extra=("--limit", "node1"))  # and is reachable again
    assert again.rc == 0, again.out + again.err


def test_concurrent_applies_never_interleave(lab_factory, tmp_path):
    lab = lab_factory(SEED)
    extra = write(tmp_path, "extra.yaml", EXTRA_SERVICE)
    # Each run confirms a node over a fresh SSH connection after applying it: on a loaded machine that
    # can take seconds, and a window of a few seconds rolled nodes back for the wrong reason. The
    # lock wait outlasts the other run's whole window, as the later run may have to wait out all of it.
    procs = [
        subprocess.Popen([sys.executable, "-m", "svcnet.cli.main", "apply", "-i", str(lab.inventory_path),
                          *args, "--confirm-timeout", "60", "--lock-wait", "120",
                          # verify would rightly see the other run's rules: this test is about the apply
                          "--skip-tags", "verify"],
                         cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL)
        for args in (("-f", str(SEED)), ("-f", str(SEED), "-f", str(extra)))
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    codes = [p.returncode for p in procs]
    # Each node serialises the two runs: the later waits for the lock and for the earlier run's
    # confirmation on that node, then applies. Neither fails, whichever node each reaches first.
    assert codes == [0, 0], outs
    # The node holds exactly one complete ruleset: one of the two descriptions, never a mix.
    final = owned_rules(lab, "node1")
    has_extra = "10.111.35.200" in final
    expect = apply(lab, *((SEED, extra) if has_extra else (SEED,)))
    assert expect.recap()["node1"]["changed"] == 0, (outs, expect.out)


def test_reboot_brings_rules_pods_and_addresses_back(lab_factory):
    lab = lab_factory(SEED)
    assert apply(lab, SEED).rc == 0
    before = owned_rules(lab, "node2")
    simulate_reboot(lab, "node2")
    assert "KUBE-SVC" not in owned_rules(lab, "node2")
    node_run(lab, "node2", "python3 /var/lib/svcnet/agent.py boot")  # what the boot unit runs
    assert owned_rules(lab, "node2") == before
    pods = {p.name for p in load_cluster([SEED]).pods}
    got = settled_answers(lab, "node2", "http://10.111.35.139:8080/")
    assert "FAIL" not in got and set(got) == pods, got
    assert apply(lab, SEED).recap()["node2"]["changed"] == 0


def test_foreign_rules_are_never_touched(lab_factory):
    lab = lab_factory(SEED)
    node_run(lab, "node1", " && ".join([
        "iptables -A INPUT -p tcp --dport 2222 -j ACCEPT",
        "iptables -A FORWARD -s 198.51.100.0/24 -j DROP",
        "iptables -N DOCKER-USER && iptables -A DOCKER-USER -j RETURN",
        "iptables -t nat -A PREROUTING -p tcp --dport 8443 -j DNAT --to-destination 192.168.56.12:443",
        "iptables -t nat -A POSTROUTING -s 172.17.0.0/16 -j MASQUERADE",
    ]))
    before = foreign_rules(lab, "node1")
    assert apply(lab, SEED).rc == 0
    assert "KUBE-SERVICES" in owned_rules(lab, "node1")
    assert foreign_rules(lab, "node1") == before
    down = svcnet("playbook", "playbooks/teardown.yaml", "-i", str(lab.inventory_path))
    assert down.rc == 0, down.out + down.err
    assert owned_rules(lab, "node1") == ""
    assert foreign_rules(lab, "node1") == before


def test_unreachable_node_does_not_stop_the_others(lab_factory):
    lab = lab_factory(THREE)
    node_run(lab, "node3", f"kill {lab.state.node('node3').sshd_pid}")
    run = svcnet("apply", "-i", str(lab.inventory_path), "-f", str(THREE), "-T", "3")
    assert run.rc == 4, run.out + run.err
    recap = run.recap()
    assert recap["node3"]["unreachable"] == 1
    assert recap["node1"]["changed"] >= 1 and recap["node2"]["changed"] >= 1
    assert "KUBE-SERVICES" in owned_rules(lab, "node1")
