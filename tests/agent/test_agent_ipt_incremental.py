"""Incremental apply in iptables mode (kube-proxy's MinimizeIPTablesRestore) on a scratch node, with
the real agent and the node's real iptables-restore: a partial restore leaves the node as a full one
would, drift and a failed partial restore lead to a full one, a failed partial restore rolls back."""

from __future__ import annotations

import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from agentnode import Events, ScratchNode, apply_req, hook, legacy_bin, release, scratch_node

from svcnet.agent import node
from svcnet.model.load import load_cluster
from svcnet.render.artifacts import NodeArtifacts, node_artifacts

pytestmark = pytest.mark.lab

CLUSTER = """apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: inc}
spec:
  serviceCIDR: 10.96.0.0/12
  clusterCIDR: 10.244.0.0/16
  proxy: {mode: iptables, detectLocalMode: ClusterCIDR}
  nodes:
    - {name: node1, addresses: [192.168.56.11], podCIDR: 10.244.1.0/24}
    - {name: node2, addresses: [192.168.56.12], podCIDR: 10.244.2.0/24}
"""

# A service: (nodePort or 0, ClientIP affinity, endpoint IPs)
Services = dict[int, tuple[int, bool, list[str]]]


def _yaml(services: Services) -> str:
    out = [CLUSTER]
    for k, (node_port, affinity, eps) in sorted(services.items()):
        typ = "NodePort" if node_port else "ClusterIP"
        port = f", nodePort: {node_port}" if node_port else ""
        extra = "\n  sessionAffinity: ClientIP" if affinity else ""
        out.append(f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{k}, namespace: inc}}\nspec:\n"
                   f"  type: {typ}\n  clusterIP: 10.96.1.{k}{extra}\n"
                   f"  ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080{port}}}]\n")
        out.append(f"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s{k}-1\n"
                   f"  namespace: inc\n  labels: {{kubernetes.io/service-name: s{k}}}\naddressType: IPv4\n"
                   f"ports: [{{name: http, port: 8080, protocol: TCP}}]\nendpoints:\n"
                   + "".join(f"  - {{addresses: [{ip}], nodeName: node{1 + n % 2}}}\n" for n, ip in enumerate(eps))
                   + ("" if eps else "  []\n"))
    return "".join(out)


def _artifacts(services: Services, tmp: Path, step: int) -> NodeArtifacts:
    path = tmp / f"desc{step}.yaml"
    path.write_text(_yaml(services).replace("endpoints:\n  []\n", "endpoints: []\n"))
    return node_artifacts(load_cluster([path]), "node1")


def _apply(snode: ScratchNode, art: NodeArtifacts, run_id: str, **kw: object) -> dict:
    # generous: a restore on a heavily shared machine can take minutes
    return snode.agent(apply_req(snode, art, run_id, parts=(node.PART_RULES,), **kw), timeout=600)


def _live(snode: ScratchNode) -> str:
    """The node's owned rules in the agent's normal form (iptables-save, counters out, chains sorted)."""
    text = snode.sh(["iptables-save"]).stdout
    return node.normal_form({t: node.parse_save(text, t) for t in node.TABLES})


def _full(art: NodeArtifacts) -> str:
    """The normal form of a full apply of `art` into a fresh, empty network namespace."""
    files = art.files()
    return node.desired_snapshot(files, node.OWNED_PREFIX)[1]


def _sync(snode: ScratchNode) -> str:
    return json.loads((snode.state / node.STATE_FILE).read_text())[node.IPT_SYNC_KEY]["mode"]


def _chain_with(snode: ScratchNode, prefix: str, text: str) -> str:
    """The live nat chain of that prefix whose rules (iptables -S) hold `text`."""
    chains = node.parse_save(snode.sh(["iptables-save", "-t", "nat"]).stdout, "nat")["chains"]
    return next(c for c in chains
                if c.startswith(prefix) and text in snode.sh(["iptables", "-t", "nat", "-S", c]).stdout)


def _edit(rng: random.Random, services: Services) -> None:
    """One random edit: add or remove a service, or change one's endpoints, NodePort or affinity."""
    kind = rng.choice(["add", "remove", "endpoints", "endpoints", "nodeport", "affinity"])
    if kind == "add" or len(services) < 2:
        k = max(services, default=0) + 1
        services[k] = (0, False, [f"10.244.{1 + n % 2}.{k}{n}" for n in range(rng.randint(0, 3))])
        return
    k = rng.choice(sorted(services))
    node_port, affinity, eps = services[k]
    if kind == "remove":
        del services[k]
    elif kind == "endpoints":
        eps = [ip for ip in eps if rng.random() < 0.6] + [f"10.244.{rng.randint(1, 2)}.{rng.randint(100, 250)}"
                                                          for _ in range(rng.randint(0, 2))]
        services[k] = (node_port, affinity, sorted(set(eps)))
    elif kind == "nodeport":
        services[k] = (0 if node_port else 30000 + k, affinity, eps)
    else:
        services[k] = (node_port, not affinity, eps)


def test_random_edits_applied_incrementally_match_a_full_apply(snode: ScratchNode, tmp_path: Path) -> None:
    rng = random.Random(1453)
    services: Services = {k: (30000 + k if k % 3 == 0 else 0, k == 4, [f"10.244.1.{k}", f"10.244.2.{k}"])
                          for k in range(1, 7)}
    art = _artifacts(services, tmp_path, 0)
    assert _apply(snode, art, "r0")["changed"]
    assert _sync(snode) == node.SYNC_FULL
    partial = 0
    for step in range(1, 9):
        _edit(rng, services)
        art = _artifacts(services, tmp_path, step)
        answer = _apply(snode, art, f"r{step}")
        assert answer["ok"], answer
        partial += _sync(snode) == node.SYNC_PARTIAL
        assert _sync(snode) == node.SYNC_PARTIAL or not answer["changed"]
        assert _live(snode) == _full(art), f"step {step}: {services}"
    assert partial >= 6


def test_drift_forces_a_full_restore(snode: ScratchNode, tmp_path: Path) -> None:
    services: Services = {1: (0, False, ["10.244.1.1"]), 2: (30002, False, ["10.244.2.2", "10.244.1.3"])}
    assert _apply(snode, _artifacts(services, tmp_path, 0), "r0")["changed"]
    services[1] = (0, False, ["10.244.1.9"])
    assert _apply(snode, _artifacts(services, tmp_path, 1), "r1")["changed"]
    assert _sync(snode) == node.SYNC_PARTIAL
    # Someone flushes service 2's chain: its record no longer says what is on the node.
    snode.sh(["iptables", "-t", "nat", "-F", _chain_with(snode, "KUBE-SVC-", "10.96.1.2/32")])
    services[1] = (0, False, ["10.244.1.10"])
    art = _artifacts(services, tmp_path, 2)
    assert _apply(snode, art, "r2")["changed"]
    assert _sync(snode) == node.SYNC_FULL
    assert _live(snode) == _full(art)


def test_a_failed_partial_restore_rolls_back_and_the_next_apply_is_full(snode: ScratchNode, tmp_path: Path) -> None:
    services: Services = {1: (0, False, ["10.244.1.1"]), 2: (0, False, ["10.244.2.2"])}
    assert _apply(snode, _artifacts(services, tmp_path, 0), "r0")["changed"]
    before = _live(snode)
    doomed = _chain_with(snode, "KUBE-SEP-", "10.244.2.2/32")
    del services[2]
    art = _artifacts(services, tmp_path, 1)
    events, gate = Events(tmp_path / "events"), tmp_path / "release"
    os.mkfifo(gate)
    pool = ThreadPoolExecutor(1)
    try:
        run = pool.submit(snode.agent, apply_req(snode, art, "r1", parts=(node.PART_RULES,)), 300,
                          hook(rules={"do": "pause", "events": events.path, "release": str(gate)}))
        assert events.next(120)[1] == "rules"  # the partial restore passed its --test; nothing changed yet
        # Another program now jumps to a chain the partial restore deletes: the kernel refuses the -X.
        snode.sh(["iptables", "-t", "nat", "-N", "FOREIGN"])
        snode.sh(["iptables", "-t", "nat", "-A", "FOREIGN", "-j", doomed])
        assert release(gate)
        answer = run.result(timeout=300)
    finally:
        release(gate)
        pool.shutdown(wait=False)
        events.close()
    assert not answer["ok"] and answer["rolled_back"], answer
    assert "iptables-restore" in answer["msg"]
    assert _live(snode) == before
    assert not (snode.state / node.IPT_RECORD_FILE).exists()
    snode.sh(["iptables", "-t", "nat", "-F", "FOREIGN"])
    snode.sh(["iptables", "-t", "nat", "-X", "FOREIGN"])
    assert _apply(snode, art, "r2")["changed"]
    assert _sync(snode) == node.SYNC_FULL
    assert _live(snode) == _full(art)


def test_partial_restore_on_iptables_legacy(tmp_path: Path) -> None:
    with scratch_node(tmp_path, legacy_bin(tmp_path)) as snode:
        rng = random.Random(7)
        services: Services = {k: (0, False, [f"10.244.1.{k}"]) for k in range(1, 5)}
        assert _apply(snode, _artifacts(services, tmp_path, 0), "r0")["changed"]
        for step in range(1, 4):
            _edit(rng, services)
            art = _artifacts(services, tmp_path, step)
            assert _apply(snode, art, f"r{step}")["ok"]
        assert _sync(snode) == node.SYNC_PARTIAL
        assert _live(snode) == _full(art)
