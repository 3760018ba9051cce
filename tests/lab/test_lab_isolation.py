"""Lab nodes behave like separate machines: own files, network, hostname, iptables, netns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from svcnet.lab.pytest_fixtures import node_run

pytestmark = pytest.mark.lab


def test_nodes_have_separate_state_directories(lab):
    first, second = lab.node_names[:2]
    for directory in ("/var/lib/svcnet", "/etc/svcnet", "/run"):
        node_run(lab, first, f"echo {first} > {directory}/owner-test")
        assert node_run(lab, first, f"cat {directory}/owner-test").stdout.strip() == first
        assert node_run(lab, second, f"test -e {directory}/owner-test", check=False).returncode == 1
        node_run(lab, first, f"rm {directory}/owner-test")


def test_node_sees_only_its_own_network(lab):
    for node, (_, address) in lab.nodes.items():
        links = json.loads(node_run(lab, node, "ip -j addr").stdout)
        assert sorted(link["ifname"] for link in links) == ["eth0", "lo"]
        eth0 = next(link for link in links if link["ifname"] == "eth0")
        assert address in [a["local"] for a in eth0["addr_info"]]
        assert node_run(lab, node, "ip route show default").stdout.split()[:3] == ["default", "dev", "eth0"]
        assert node_run(lab, node, "hostname").stdout.strip() == node
        assert node_run(lab, node, "ls /sys/class/net").stdout.split() == ["eth0", "lo"]


def test_nodes_reach_each_other_and_the_client_reaches_nodes(lab):
    first, second = lab.node_names[:2]
    target = lab.nodes[second][1]
    banner = node_run(lab, first, f"timeout 5 nc -w 2 {target} 22 </dev/null | head -c 8", check=False)
    assert banner.stdout == "SSH-2.0-"
    banner = node_run(lab, "client", f"timeout 5 nc -w 2 {target} 22 </dev/null | head -c 8", check=False)
    assert banner.stdout == "SSH-2.0-"


def test_iptables_sysctl_and_pod_namespaces_are_per_node(lab):
    first, second = lab.node_names[:2]
    node_run(lab, first, "iptables -w -t nat -N LABTEST && sysctl -qw net.ipv4.ip_forward=1 && ip netns add pod-t")
    try:
        assert "LABTEST" in node_run(lab, first, "iptables-save -t nat").stdout
        assert "LABTEST" not in node_run(lab, second, "iptables-save -t nat").stdout
        assert node_run(lab, first, "cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
        assert node_run(lab, second, "cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "0"
        assert node_run(lab, first, "ip netns list").stdout.split()[0] == "pod-t"
        assert node_run(lab, second, "ip netns list").stdout.strip() == ""
        assert "pod-t" not in node_run(lab, "client", "ls /run/netns").stdout.split()
    finally:
        node_run(lab, first, "iptables -w -t nat -X LABTEST; sysctl -qw net.ipv4.ip_forward=0; ip netns del pod-t")


def test_nodes_have_a_home_of_their_own(lab):
    """Like a fresh machine: root's home starts empty (none of the host's dotfiles) and is per node."""
    assert node_run(lab, "node1", "ls -A /root").stdout == ""
    node_run(lab, "node1", "echo n1 > /root/mark")
    assert node_run(lab, "node1", "cat /root/mark").stdout == "n1\n"
    assert node_run(lab, "node2", "test -e /root/mark", check=False).returncode != 0
    assert not Path("/root/mark").exists()
