"""The desired state says what each node must have, with no rule text and no IP-family literal."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet.desired import FAMILIES, IPV4, IPV6, desired_nodes, family_of
from svcnet.model.load import load_cluster
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
