"""examples/dual-stack applied by `svcnet apply` in the lab: both families' ClusterIP and NodePort
answer with both pods, from the nodes, from the pods and (NodePorts) from the client.

Every probe is `settled_answers` (retried, bounded): on a loaded machine a request now and then
outlives its 2 s bound, of either family (measured: 1 in 60, none in 450 once load eased)."""

from __future__ import annotations

import pytest
from applylab import DUAL_STACK, REQUESTS, apply, settled_answers, url
from labrun import verify

from svcnet.lab.pytest_fixtures import node_run
from svcnet.model.load import load_cluster

pytestmark = pytest.mark.lab
NODES = ("node1", "node2")
CLUSTER_IPS = ("10.111.35.139", "fd00:10:96::10")  # examples/dual-stack/service.yaml
PORT, NODE_PORT = 8080, 30000


@pytest.fixture(scope="module")
def dual_lab(lab_factory):
    lab = lab_factory(DUAL_STACK)
    first = apply(lab, DUAL_STACK)
    assert first.rc == 0, first.out + first.err
    assert all(r["changed"] >= 1 and r["failed"] == 0 for r in first.recap().values()), first.out
    return lab, load_cluster([DUAL_STACK])


def test_both_cluster_ips_answer_with_both_pods_from_every_node_and_pod(dual_lab):
    lab, cluster = dual_lab
    pods = {p.name for p in cluster.pods}
    for ip in CLUSTER_IPS:
        for node in NODES:
            got = settled_answers(lab, node, url(ip, PORT))
            assert set(got) == pods, (ip, node, got)
        for pod in cluster.pods:
            got = settled_answers(lab, pod.node_name, url(ip, PORT), netns=pod.netns)
            assert set(got) == pods and len(got) == REQUESTS, (ip, pod.name, got)


def test_node_ports_of_both_families_answer_with_both_pods_from_client_nodes_and_pods(dual_lab):
    lab, cluster = dual_lab
    pods = {p.name for p in cluster.pods}
    for target in cluster.nodes:
        for ip in target.addresses:  # one address of each family
            got = settled_answers(lab, "client", url(ip, NODE_PORT))
            assert set(got) == pods, ("client", ip, got)
            for node in NODES:
                got = settled_answers(lab, node, url(ip, NODE_PORT))
                assert set(got) == pods, (node, ip, got)
            for pod in cluster.pods:
                got = settled_answers(lab, pod.node_name, url(ip, NODE_PORT), netns=pod.netns)
                assert set(got) == pods, (pod.name, ip, got)


def test_both_families_rules_are_in_place_and_a_second_apply_changes_nothing(dual_lab):
    lab, _ = dual_lab
    saved = {n: node_run(lab, n, "iptables-save -t nat | grep -c KUBE-; ip6tables-save -t nat | grep KUBE-SVC")
             .stdout for n in NODES}
    assert all("fd00:10:96::10/128" in s for s in saved.values()), saved
    again = apply(lab, DUAL_STACK)
    assert again.rc == 0, again.out + again.err
    assert {n: r["changed"] for n, r in again.recap().items()} == {"node1": 0, "node2": 0}, again.out


SPN = "k8s-test/service:http"


def test_verify_checks_each_family_and_names_the_family_that_drifted(dual_lab):
    """verify runs every check once per family (IPv6 ids end in @IPv6) and passes; an IPv6-only
    breakage is named as ip6tables drift of that service, and the IPv4 rules still pass."""
    lab, _ = dual_lab
    run = verify(lab, DUAL_STACK)
    assert run.rc == 0, run.out + run.err
    for test_id in (f"test_cluster_ip_answers[node1-{SPN}]", f"test_cluster_ip_answers[node1-{SPN}@IPv6]",
                    f"test_endpoints_share_traffic_evenly[node1-{SPN}@IPv6]",
                    f"test_node_port_answers[node2-{SPN}@IPv6]",
                    f"test_service_rules_match_rendered[node1-{SPN}@IPv6]"):
        assert f"{test_id} PASSED" in run.out, test_id + "\n" + run.out
    # the IPv6 service chain loses its jumps to the endpoints (ip6tables only, inside node1)
    node_run(lab, "node1", "ip6tables-save -t nat | grep -v -- '-j KUBE-SEP-' | ip6tables-restore -T nat")
    try:
        broken = verify(lab, DUAL_STACK, "-k", "rules")
        assert broken.rc == 1, broken.out + broken.err
        assert "node1: ip6tables nat chain KUBE-SVC-" in broken.out and f"({SPN}) differs" in broken.out, broken.out
        assert f"test_service_rules_match_rendered[node1-{SPN}] PASSED" in broken.out, broken.out
        assert f"test_service_rules_match_rendered[node2-{SPN}@IPv6] PASSED" in broken.out, broken.out
    finally:
        fixed = apply(lab, DUAL_STACK)
    assert fixed.rc == 0 and fixed.recap()["node1"]["changed"] >= 1, fixed.out + fixed.err
    again = verify(lab, DUAL_STACK, "-k", "rules")
    assert again.rc == 0, again.out + again.err
