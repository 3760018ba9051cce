"""The seed example in nftables mode (examples/seed-nftables) applied to 2 lab nodes with real
traffic, verified, re-applied, torn down and switched back to iptables mode; a foreign nft table
and foreign iptables rules in a node stay byte-identical throughout."""

from __future__ import annotations

import re
import time

import pytest
from applylab import REPO, SEED, answers, apply, owned_rules, settled_answers, svcnet
from labrun import verify

from svcnet.lab.pytest_fixtures import node_run
from svcnet.model.load import load_cluster

pytestmark = pytest.mark.lab

SEED_NFT = REPO / "examples" / "seed-nftables"
EXTRA = REPO / "tests" / "apply" / "nft-extra"  # a ClientIP-affinity service and one without endpoints
NODES = ("node1", "node2")
CLUSTER_IP, STICKY_IP, EMPTY_IP = "10.111.35.139", "10.111.35.140", "10.111.35.141"

# A table named kube-proxy in another family (svcnet's is `ip kube-proxy` only) and one of another name.
FOREIGN_NFT = """table inet kube-proxy {
\tchain input {
\t\ttype filter hook input priority 0; policy accept;
\t\tip saddr 198.51.100.9 drop
\t}
}
table ip other-firewall {
\tset blocked {
\t\ttype ipv4_addr
\t\telements = { 198.51.100.10, 198.51.100.11 }
\t}
\tchain forward {
\t\ttype filter hook forward priority 10; policy accept;
\t\tip saddr @blocked drop
\t}
}
"""
# iptables-nft rules: in the same nft ruleset, in tables svcnet's nftables mode never writes.
FOREIGN_IPT = ("iptables -t filter -A INPUT -s 198.51.100.7 -j ACCEPT",
               "iptables -t nat -A POSTROUTING -s 203.0.113.0/24 -j MASQUERADE")


def ruleset(lab, node: str) -> str:
    """`nft -s list ruleset` (stateless: counters moved by traffic are no change)."""
    return node_run(lab, node, "nft -s list ruleset").stdout


def kube_proxy_table(lab, node: str) -> str | None:
    """svcnet's table without what traffic learns: the elements of the ClientIP-affinity sets
    (the apply's own verify adds its clients there, so two listings differ without any change)."""
    out = node_run(lab, node, "nft -s list table ip kube-proxy", check=False)
    return without_learned_affinity(out.stdout) if out.returncode == 0 else None


def without_learned_affinity(table: str) -> str:
    kept, in_affinity, in_elements = [], False, False
    for line in table.splitlines(keepends=True):
        if line.startswith("\tset affinity-"):
            in_affinity = True
        elif line == "\t}\n":
            in_affinity = False
        if in_affinity and line.startswith("\t\telements = {"):
            in_elements = True
        if not in_elements:
            kept.append(line)
        if in_elements and line.rstrip().endswith("}"):
            in_elements = False
    return "".join(kept)


def foreign(lab, node: str) -> str:
    """The ruleset without svcnet's table, plus iptables-save's rules (counters and comments dropped)."""
    rest = re.sub(r"(?ms)^table ip kube-proxy \{\n.*?^\}\n", "", ruleset(lab, node))
    saved = node_run(lab, node, "iptables-save").stdout
    return rest + "\n".join(re.sub(r"\[\d+:\d+\]", "[0:0]", ln) for ln in saved.splitlines()
                            if not ln.startswith("#"))


@pytest.fixture(scope="module")
def nft_lab(lab_factory):
    lab = lab_factory(SEED_NFT)
    node_run(lab, "node1", f"nft -f - <<'EOF'\n{FOREIGN_NFT}EOF")
    for command in FOREIGN_IPT:
        node_run(lab, "node1", command)
    base = foreign(lab, "node1")
    first = apply(lab, SEED_NFT, EXTRA)
    assert first.rc == 0, first.out + first.err
    return lab, first, base


def test_first_apply_writes_one_kube_proxy_table_per_node_and_no_iptables_rules(nft_lab):
    lab, first, base = nft_lab
    assert all(r["changed"] >= 1 and r["failed"] == 0 for r in first.recap().values()), first.out
    assert set(first.recap()) == set(NODES)
    for node in NODES:
        table = kube_proxy_table(lab, node)
        assert table is not None and "map service-ips" in table and f"{CLUSTER_IP} . tcp . 8080" in table
        assert owned_rules(lab, node) == ""
    assert foreign(lab, "node1") == base


def test_verify_passes_with_real_traffic(nft_lab):
    lab, _, _ = nft_lab
    run = verify(lab, SEED_NFT, "-f", str(EXTRA))
    assert run.rc == 0, run.out + run.err
    assert " passed" in run.out and "failed" not in run.out.split("=====")[-1], run.out


def test_cluster_ip_from_every_node_and_pod_and_node_port_from_the_client(nft_lab):
    lab, _, _ = nft_lab
    cluster = load_cluster([SEED_NFT])
    pods = {p.name for p in cluster.pods}
    for node in NODES:
        got = settled_answers(lab, node, f"http://{CLUSTER_IP}:8080/")
        assert "FAIL" not in got and set(got) == pods, (node, got)
    for pod in cluster.pods:
        got = answers(lab, pod.node_name, f"http://{CLUSTER_IP}:8080/", netns=pod.netns)
        assert "FAIL" not in got and set(got) == pods, (pod.name, got)
    for node in NODES:
        got = answers(lab, "client", f"http://{lab.nodes[node][1]}:30000/")
        assert "FAIL" not in got and set(got) == pods, (node, got)


def test_session_affinity_sends_a_client_to_one_pod(nft_lab):
    lab, _, _ = nft_lab
    for node in NODES:
        got = settled_answers(lab, node, f"http://{STICKY_IP}:8080/")
        assert "FAIL" not in got and len(set(got)) == 1, (node, got)


def test_a_service_without_endpoints_rejects_at_once(nft_lab):
    lab, _, _ = nft_lab
    t0 = time.monotonic()
    # curl's exit 7: connection refused (a reject), not 28 (a timeout after the 5 s bound)
    out = node_run(lab, "node1", f"curl -s --max-time 5 http://{EMPTY_IP}:80/; echo rc=$?", check=False).stdout
    assert "rc=7" in out, out
    assert time.monotonic() - t0 < 4, "refused only after a wait: dropped, not rejected"


def test_second_apply_changes_nothing(nft_lab):
    lab, _, base = nft_lab
    before = {n: kube_proxy_table(lab, n) for n in NODES}
    again = apply(lab, SEED_NFT, EXTRA)
    assert again.rc == 0, again.out + again.err
    assert {n: r["changed"] for n, r in again.recap().items()} == {n: 0 for n in NODES}, again.out
    assert {n: kube_proxy_table(lab, n) for n in NODES} == before
    assert foreign(lab, "node1") == base


def test_verify_reports_drift_in_a_service_chain_and_apply_repairs_it(nft_lab):
    lab, _, base = nft_lab
    table = kube_proxy_table(lab, "node1") or ""
    chain = re.search(r"chain (service-\w+-k8s-test/service/tcp/http) \{", table)
    assert chain, table
    node_run(lab, "node1", f"nft flush chain ip kube-proxy {chain[1]}")
    run = verify(lab, SEED_NFT, "-f", str(EXTRA))
    assert run.rc != 0, run.out
    assert f"node1: ip kube-proxy chain {chain[1]} (k8s-test/service:http) differs" in run.out, run.out
    fixed = apply(lab, SEED_NFT, EXTRA)
    assert fixed.recap()["node1"]["changed"] == 1 and fixed.recap()["node2"]["changed"] == 0, fixed.out
    assert kube_proxy_table(lab, "node1") == table
    assert foreign(lab, "node1") == base


def test_teardown_then_switching_back_to_iptables_mode(nft_lab, tmp_path):
    """Runs last in this module: teardown leaves exactly the foreign rules; an apply in nftables mode
    and then one in iptables mode leaves no kube-proxy table, and the foreign nft tables intact."""
    lab, _, base = nft_lab
    play = tmp_path / "teardown.yaml"
    play.write_text(f"- name: teardown\n  hosts: all\n  cluster: [{SEED_NFT}, {EXTRA}]\n"
                    "  tasks:\n    - validate:\n    - teardown:\n")
    down = svcnet("playbook", str(play), "-i", str(lab.inventory_path))
    assert down.rc == 0, down.out + down.err
    assert all(kube_proxy_table(lab, n) is None for n in NODES)
    assert foreign(lab, "node1") == base

    assert apply(lab, SEED_NFT, EXTRA).rc == 0
    nft_tables = re.sub(r"(?ms)^table ip kube-proxy \{\n.*?^\}\n", "", ruleset(lab, "node1"))
    switched = apply(lab, SEED, EXTRA)
    assert switched.rc == 0, switched.out + switched.err
    for node in NODES:
        assert kube_proxy_table(lab, node) is None, node
        assert ":KUBE-SERVICES" in owned_rules(lab, node)
    after = ruleset(lab, "node1")
    for block in re.findall(r"(?ms)^table (?:inet kube-proxy|ip other-firewall) \{\n.*?^\}\n", nft_tables):
        assert block in after
    got = settled_answers(lab, "node1", f"http://{CLUSTER_IP}:8080/")
    assert "FAIL" not in got, got
