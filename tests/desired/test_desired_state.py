"""The desired state says what each node must have, with no rule text and no IP-family literal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from svcnet.desired import FAMILIES, IPV4, IPV6, ConntrackPort, conntrack_ports, desired_nodes, family_of
from svcnet.model.load import load_cluster
from svcnet.model.types import Endpoint, ServicePort
from svcnet.render.artifacts import node_artifacts_all

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"


def test_each_node_gets_its_settings_and_address_config() -> None:
    cluster = load_cluster([SEED])
    desired = desired_nodes(cluster)
    assert list(desired) == ["node1", "node2"]
    node1 = desired["node1"]
    assert node1.proxier.node_name == "node1" and node1.proxier.ip_family == 4
    assert node1.proxier.primary_ip == cluster.node("node1").internal_ip
    assert node1.netconf.bridge_address == "10.244.1.1/24"
    assert list(desired_nodes(cluster, ["node2"])) == ["node2"]


def test_artifacts_render_exactly_the_desired_state() -> None:
    cluster = load_cluster([SEED])
    desired = desired_nodes(cluster)
    for name, art in node_artifacts_all(cluster).items():
        assert (art.settings, art.netconf) == (desired[name].proxier, desired[name].netconf)


@pytest.mark.parametrize(("addr", "family"), [
    ("10.0.0.1", IPV4), ("10.0.0.0/8", IPV4), ("fd00::1", IPV6), ("::ffff:10.0.0.1", IPV6),
])
def test_family_of_an_address(addr: str, family: object) -> None:
    assert family_of(addr) is family
    assert family_of(addr).owns(addr)
    assert not next(f for f in FAMILIES.values() if f is not family).owns(addr)


def test_sysctls_come_from_the_family() -> None:
    cluster = load_cluster([SEED])
    keys = [s.key for s in desired_nodes(cluster)["node1"].netconf.sysctls]
    assert keys == [IPV4.forwarding_sysctl, IPV4.route_localnet_sysctl, IPV4.bridge_nf_sysctl]
    # Loopback cannot be routed to on IPv6, so localhost NodePorts exist on IPv4 only.
    assert IPV4.localhost_nodeports and not IPV6.localhost_nodeports


STALE_UDP = Path(__file__).resolve().parents[1] / "apply" / "stale-udp"


def test_each_node_cleans_the_stale_conntrack_entries_of_its_udp_service_ports() -> None:
    cluster = load_cluster([STALE_UDP])
    desired = desired_nodes(cluster)
    pod_ips = tuple(sorted(p.ip for p in cluster.pods))
    want = (ConntrackPort("UDP", 53, ("10.96.0.53",), 30053, pod_ips),)  # the TCP port: none (kube-proxy's)
    assert desired["node1"].conntrack == desired["node2"].conntrack == want
    assert all(art.conntrack == want for art in node_artifacts_all(cluster).values())


def test_conntrack_ports_take_every_vip_and_serving_endpoint_of_the_family() -> None:
    sp = ServicePort("ns", "dns", "", "UDP", 53, "10.96.0.10", type="LoadBalancer", node_port=30053,
                     external_ips=("203.0.113.7", "fd00::7"), lb_ips=("198.51.100.1", "10.96.0.10"),
                     endpoints=(Endpoint("10.244.1.5", 53), Endpoint("10.244.2.9", 53, ready=False),
                                Endpoint("10.244.3.3", 53, ready=False, serving=False, terminating=True),
                                Endpoint("fd00::5", 53)))
    assert conntrack_ports([sp], IPV4) == (ConntrackPort(
        "UDP", 53, ("10.96.0.10", "203.0.113.7", "198.51.100.1"), 30053, ("10.244.1.5", "10.244.2.9")),)
    assert conntrack_ports([sp], IPV6) == ()  # its ClusterIP is IPv4: no IPv6 proxier port
    assert conntrack_ports([replace(sp, cluster_ip="None")], IPV4) == ()  # headless
    assert conntrack_ports([replace(sp, protocol="TCP"), replace(sp, protocol="SCTP")], IPV4) == ()


DUAL = Path(__file__).resolve().parents[1] / "golden" / "dual-stack.yaml"


@pytest.mark.parametrize(("mode", "v4", "v6"), [
    ("ClusterCIDR", "10.244.0.0/16", "fd00:10:244::/56"),
    ("NodeCIDR", "10.244.1.0/24", "fd00:10:244:1::/64"),
])
def test_a_dual_stack_node_gets_an_ipv6_proxier_with_the_ipv6_local_detector(tmp_path: Path, mode: str, v4: str,
                                                                          v6: str) -> None:
    """kube-proxy's dual-stack mode: a proxier per family, each detecting local traffic by its
    family's CIDR (the IPv6 one by the IPv6 clusterCIDR or podCIDR)."""
    from svcnet.model.load import check_paths

    f = tmp_path / "d.yaml"
    f.write_text(DUAL.read_text().replace("    mode: iptables\n", f"    mode: iptables\n    detectLocalMode: {mode}\n"))
    checked = check_paths([f], ipv6=True)
    assert checked.ok and checked.build is not None, [str(d) for d in checked.diagnostics]
    node1 = desired_nodes(checked.build.cluster)["node1"]
    assert node1.proxier6 is not None
    assert (node1.proxier.ip_family, node1.proxier6.ip_family) == (4, 6)
    assert (node1.proxier.local_detector.cidr, node1.proxier6.local_detector.cidr) == (v4, v6)
    assert (node1.proxier.primary_ip, node1.proxier6.primary_ip) == ("192.168.56.11", "fd00:56::11")
    assert node1.proxiers == (node1.proxier, node1.proxier6)


def test_a_single_stack_node_has_no_ipv6_proxier() -> None:
    node1 = desired_nodes(load_cluster([SEED]))["node1"]
    assert node1.proxier6 is None and node1.proxiers == (node1.proxier,)


def test_a_dual_stack_udp_port_has_its_stale_flows_cleaned_in_both_families(tmp_path):
    """Each family's proxier cleans its own ClusterIP's and endpoints' stale UDP flows."""
    from svcnet.desired import desired_nodes
    from svcnet.model.load import load_cluster

    example = Path(__file__).resolve().parents[2] / "examples" / "dual-stack"
    for f in example.glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text().replace("protocol: TCP", "protocol: UDP"))
    cluster = load_cluster([tmp_path])
    ports = desired_nodes(cluster)["node1"].conntrack
    assert [p.vips for p in ports] == [("10.111.35.139",), ("fd00:10:96::10",)]
    v4, v6 = (set(p.endpoints) for p in ports)
    assert v4 == {p.ip for p in cluster.pods} and v6 == {p.all_ips[1] for p in cluster.pods}
