"""simulate_reboot puts a node back to bare networking and keeps its persistent files."""

from __future__ import annotations

import json
import subprocess

import pytest

from svcnet.lab import simulate_reboot
from svcnet.lab.pytest_fixtures import node_run

pytestmark = pytest.mark.lab

DIRTY = """
set -e
iptables -w -t nat -N LABTEST-SVC
iptables -w -t nat -A PREROUTING -j LABTEST-SVC
iptables -w -t filter -P FORWARD DROP
iptables -w -t mangle -A OUTPUT -j MARK --set-mark 0x4000
ip6tables -w -t filter -N LABTEST6
ip netns add pod-a
ip link add cni0 type bridge
ip addr add 10.244.1.1/24 dev cni0
ip link set cni0 up
ip link add vtest0 type veth peer name vtest1
ip route add 10.244.2.0/24 via {peer} dev eth0
ip addr add 192.168.56.99/24 dev eth0
ip rule add fwmark 0x99 lookup 99 pref 100
ip route add default dev eth0 table 99
sysctl -qw net.ipv4.ip_forward=1
echo keep > /var/lib/svcnet/state
echo keep > /etc/svcnet/config
echo gone > /run/svcnet-pid
setsid sleep 600 </dev/null >/dev/null 2>&1 &
"""


def test_reboot_resets_networking_and_keeps_files(lab):
    node, other = lab.node_names[0], lab.node_names[1]
    address, peer = lab.nodes[node][1], lab.nodes[other][1]
    baseline = {cmd: node_run(lab, node, cmd).stdout for cmd in ("ip route", "ip rule", "ip -6 rule")}
    node_run(lab, node, DIRTY.format(peer=peer))
    assert "LABTEST-SVC" in node_run(lab, node, "iptables-save").stdout
    simulate_reboot(lab, node)

    saved = node_run(lab, node, "iptables-save; ip6tables-save").stdout
    assert "LABTEST" not in saved and "MARK" not in saved
    assert ":FORWARD ACCEPT" in saved
    links = json.loads(node_run(lab, node, "ip -j link").stdout)
    assert sorted(link["ifname"] for link in links) == ["eth0", "lo"]
    addrs = json.loads(node_run(lab, node, "ip -j -4 addr show dev eth0").stdout)[0]["addr_info"]
    assert [a["local"] for a in addrs] == [address]
    for cmd, before in baseline.items():
        assert node_run(lab, node, cmd).stdout == before, cmd
    assert node_run(lab, node, "ip netns list").stdout.strip() == ""
    assert node_run(lab, node, "cat /proc/sys/net/ipv4/ip_forward").stdout.strip() == "0"
    assert "sleep 600" not in node_run(lab, node, "ps -eo args").stdout
    assert node_run(lab, node, "cat /var/lib/svcnet/state /etc/svcnet/config").stdout.split() == ["keep", "keep"]
    assert node_run(lab, node, "test -e /run/svcnet-pid", check=False).returncode == 1
    assert node_run(lab, node, "ip -br addr show lo").stdout.split()[2:] == ["127.0.0.1/8", "::1/128"]
    ssh = subprocess.run(
        ["ssh", "-F", str(lab.ssh_config_path), node, "hostname; rm /var/lib/svcnet/state /etc/svcnet/config"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert (ssh.returncode, ssh.stdout.strip()) == (0, node), ssh.stderr
    # the other node was not touched by the reboot
    assert node_run(lab, other, "hostname").stdout.strip() == other
