"""examples/dual-stack applied by `svcnet apply` in the lab: both families' ClusterIP and NodePort
answer with both pods, from the nodes, from the pods and (NodePorts) from the client.

Every probe is `settled_answers` (retried, bounded): on a loaded machine a request now and then
outlives its 2 s bound, of either family (measured: 1 in 60, none in 450 once load eased)."""

from __future__ import annotations

import pytest
from applylab import DUAL_STACK, REQUESTS, apply, settled_answers, url

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
