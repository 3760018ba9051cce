"""examples/dual-stack in the lab: the nodes and the client get both families, and the address
config gives the pods IPv6 that reaches across nodes (bridge, pod addresses, host-gw routes,
sysctls), applied by the real agent over SSH."""

from __future__ import annotations

import ipaddress

import pytest
from applylab import DUAL_STACK, answers, settled_answers, url

from svcnet.agent.node import PART_NETWORK
from svcnet.desired import IPV6
from svcnet.lab.pytest_fixtures import node_run
from svcnet.lab.state import Lab
from svcnet.model.load import check_paths
from svcnet.model.types import Cluster
from svcnet.render.artifacts import node_artifacts_all
from svcnet.render.netconf import ROUTE_PROTO
from svcnet.transport.gateway import Connector
from svcnet.transport.inventory import load_inventory
from svcnet.transport.protocol import ApplyAnswer, ApplyRequest, TeardownRequest, new_run_id

pytestmark = pytest.mark.lab
NODES = ("node1", "node2")
POD_PORT = 8080


def dual_stack() -> Cluster:
    checked = check_paths([DUAL_STACK])
    assert checked.build is not None and checked.ok, [str(d) for d in checked.diagnostics]
    return checked.build.cluster


def connector(lab: Lab) -> Connector:
    return Connector(load_inventory(lab.inventory_path))


def apply_network(lab: Lab, cluster: Cluster) -> dict[str, ApplyAnswer]:
    """The address config of every node, applied by its agent over SSH as `svcnet apply --tags network` does."""
    arts = node_artifacts_all(cluster, list(NODES))
    out = {}
    for node in NODES:
        with connector(lab).gateway(node).open() as gw:
            out[node] = gw.ask(ApplyRequest(new_run_id(), arts[node], parts=(PART_NETWORK,)))
    return out


def ipv6_of(ips: tuple[str, ...]) -> str:
    return next(ip for ip in ips if IPV6.owns(ip))


@pytest.fixture(scope="module")
def net_lab(lab_factory):
    cluster = dual_stack()
    lab = lab_factory(DUAL_STACK)
    first = apply_network(lab, cluster)
    assert all(a.ok and a.changed for a in first.values()), first
    return lab, cluster


def test_lab_gives_nodes_and_client_both_families(net_lab):
    lab, cluster = net_lab
    for node in cluster.nodes:
        shown = node_run(lab, node.name, "ip -o addr show dev eth0").stdout
        assert all(f" {a}/" in shown for a in node.addresses), (node.name, shown)
    client = node_run(lab, "client", "ip -o -6 addr show dev eth0 scope global").stdout
    assert any(ipaddress.ip_address(a.split()[3].split("/")[0]) in ipaddress.ip_network("fd00:56::/64")
               for a in client.splitlines()), client


def test_pods_reach_each_other_over_ipv6_across_nodes(net_lab):
    lab, cluster = net_lab
    for src in cluster.pods:
        for dst in cluster.pods:
            got = settled_answers(lab, src.node_name, url(ipv6_of(dst.all_ips), POD_PORT), netns=src.netns)
            assert set(got) == {dst.name}, (src.name, dst.name, got)


def test_nodes_reach_every_pod_over_ipv6(net_lab):
    lab, cluster = net_lab
    for node in NODES:
        for pod in cluster.pods:
            got = settled_answers(lab, node, url(ipv6_of(pod.all_ips), POD_PORT))
            assert set(got) == {pod.name}, (node, pod.name, got)


def test_ipv4_still_reaches_across_nodes(net_lab):
    lab, cluster = net_lab
    for src in cluster.pods:
        for dst in cluster.pods:
            got = answers(lab, src.node_name, url(dst.ip, POD_PORT), netns=src.netns)
            assert set(got) == {dst.name}, (src.name, dst.name, got)


def test_ipv6_routes_and_sysctls_are_svcnets(net_lab):
    lab, cluster = net_lab
    for node in cluster.nodes:
        other = next(n for n in cluster.nodes if n.name != node.name)
        routes = node_run(lab, node.name, f"ip -6 route show proto {ROUTE_PROTO}").stdout
        assert f"{other.pod_cidr_of(IPV6.version)} via {ipv6_of(other.addresses)} dev eth0" in routes, routes
        sysctls = node_run(lab, node.name, "sysctl -n net.ipv6.conf.all.forwarding net.ipv6.conf.eth0.accept_ra")
        # accept_ra 2: forwarding would otherwise make eth0 ignore router advertisements
        assert sysctls.stdout.split() == ["1", "2"], sysctls.stdout
        bridge = node_run(lab, node.name, f"ip -6 -o addr show dev {cluster.bridge} scope global").stdout
        assert "tentative" not in bridge and "nodad" in bridge, bridge


def test_second_apply_changes_nothing(net_lab):
    lab, cluster = net_lab
    before = {n: node_run(lab, n, "ip -6 route; ip -6 addr; ip link").stdout for n in NODES}
    again = apply_network(lab, cluster)
    assert all(a.ok and not a.changed for a in again.values()), again
    assert {n: node_run(lab, n, "ip -6 route; ip -6 addr; ip link").stdout for n in NODES} == before


def test_teardown_removes_the_ipv6_routes_addresses_and_forwarding(net_lab):
    """Last in this module: it removes what the tests above look at."""
    lab, _ = net_lab
    for node in NODES:
        with connector(lab).gateway(node).open() as gw:
            answer = gw.ask(TeardownRequest(new_run_id()))
        assert answer.ok and answer.changed, answer
        assert node_run(lab, node, f"ip -6 route show proto {ROUTE_PROTO}").stdout == ""
        assert node_run(lab, node, "sysctl -n net.ipv6.conf.all.forwarding").stdout.split() == ["0"]
        assert "fd00:10:244" not in node_run(lab, node, "ip -6 addr").stdout
