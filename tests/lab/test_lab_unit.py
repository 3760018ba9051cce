"""Fast tests of the lab's pure parts: validation, addressing, names, rendered files."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from svcnet.lab import prereq
from svcnet.lab.addressing import plan_switch
from svcnet.lab.errors import LabError
from svcnet.lab.layout import LabLayout, lab_id
from svcnet.lab.netplan import host_batch, route_batch, switch_batch
from svcnet.lab.spec import (
    LabNode,
    LabRoute,
    lab_nodes_from_files,
    lab_routes_from_files,
    validate_lab_name,
    validate_nodes,
)
from svcnet.lab.sshfiles import SshNode, inventory, known_hosts, ssh_config, sshd_config

CLUSTER = Path(__file__).parent / "cluster.yaml"


def test_nodes_from_cluster_file():
    nodes = lab_nodes_from_files([CLUSTER])
    assert [n.name for n in nodes] == ["node1", "node2", "node3"]
    assert nodes[1].addresses == ("192.168.56.12",)


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([], "no nodes"),
        ([LabNode("Node_1", ("10.0.0.1",))], "DNS-1123"),
        ([LabNode("client", ("10.0.0.1",))], "reserved"),
        ([LabNode("a", ("10.0.0.1",)), LabNode("a", ("10.0.0.2",))], "appears twice"),
        ([LabNode("a", ("10.0.0.1",)), LabNode("b", ("10.0.0.1",))], "also used by node 'a'"),
        ([LabNode("a", ("not-an-ip",))], "not an IP address"),
        ([LabNode("a", ("127.0.0.5",))], "loopback"),
        ([LabNode("a", ())], "no addresses"),
    ],
)
def test_bad_nodes_are_rejected_with_a_located_message(nodes, message):
    with pytest.raises(LabError, match=message):
        validate_nodes(nodes)


def test_bad_cluster_files(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(LabError, match=r"missing\.yaml:1:1: .*no such file"):
        lab_nodes_from_files([missing])
    other = tmp_path / "svc.yaml"
    other.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n")
    with pytest.raises(LabError, match=r"no valid svcnet\.dev/v1alpha1 Cluster"):
        lab_nodes_from_files([other])
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: svcnet.dev/v1alpha1\nkind: Cluster\nmetadata: {name: x}\n"
                   "spec:\n  nodes:\n    - name: a\n")
    with pytest.raises(LabError, match=r"bad.yaml:6:\d+: spec.nodes\[0\].addresses: is a required property"):
        lab_nodes_from_files([bad])


@pytest.mark.parametrize("name", ["", "-x", "a/b", "a b", "../etc", "x" * 64])
def test_bad_lab_names(name):
    with pytest.raises(LabError, match="invalid lab name"):
        validate_lab_name(name)


def test_switch_subnet_and_client_address():
    plan = plan_switch([LabNode("a", ("192.168.56.11",)), LabNode("b", ("192.168.56.254",))])
    assert [str(n) for n in plan.subnets] == ["192.168.56.0/24"]
    assert plan.client_addresses == ("192.168.56.253",)
    assert plan.prefix_len("192.168.56.11") == 24


def test_the_client_gets_a_second_address_after_the_bastion():
    nodes = [LabNode("a", ("192.168.56.11", "fd00::11"))]
    assert plan_switch(nodes).client_second_addresses == ("192.168.56.253", "fd00::ffff:ffff:ffff:fffd")
    with_bastion = plan_switch(nodes, bastion=True)
    assert with_bastion.client_addresses == ("192.168.56.254", "fd00::ffff:ffff:ffff:fffe")
    assert with_bastion.bastion_addresses == ("192.168.56.253", "fd00::ffff:ffff:ffff:fffd")
    assert with_bastion.client_second_addresses == ("192.168.56.252", "fd00::ffff:ffff:ffff:fffc")


def test_the_client_routes_load_balancer_and_external_ips_no_node_holds(tmp_path):
    protocols = Path(__file__).resolve().parents[1] / "verify" / "protocols"
    assert lab_routes_from_files([protocols]) == [
        LabRoute("192.168.59.30", "node1"), LabRoute("192.168.59.11", "node1"), LabRoute("192.168.59.10", "node1")]
    features = Path(__file__).resolve().parents[1] / "verify" / "features"
    assert lab_routes_from_files([features]) == []  # its externalIP is node2's own address
    assert route_batch([("192.168.59.10", "192.168.58.11")]) == "route add 192.168.59.10 via 192.168.58.11 dev eth0\n"


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (LabRoute("x", "a"), "not an IP address"),
        (LabRoute("10.0.0.1", "a"), "already a lab machine's"),
        (LabRoute("10.0.0.254", "a"), "already a lab machine's"),
        (LabRoute("10.9.0.1", "b"), "no node 'b'"),
        (LabRoute("fd00::1", "a"), "has no IPv6 address"),
    ],
)
def test_bad_client_routes(route, message):
    from svcnet.lab.up import client_routes

    with pytest.raises(LabError, match=message):
        client_routes([route], [LabNode("a", ("10.0.0.1",))], ["10.0.0.254"])
    assert client_routes([LabRoute("10.9.0.1", "a")], [LabNode("a", ("10.0.0.1",))], []) == (
        ("10.9.0.1", "a", "10.0.0.1"),)


def test_switch_subnet_widens_to_hold_all_nodes_and_supports_ipv6():
    plan = plan_switch([LabNode("a", ("10.1.0.5", "fd00::5")), LabNode("b", ("10.1.3.7", "fd00::7"))])
    assert [str(n) for n in plan.subnets] == ["10.1.0.0/22", "fd00::/64"]
    client_v4, client_v6 = map(ipaddress.ip_address, plan.client_addresses)
    assert client_v4 in plan.subnets[0] and str(client_v4) not in ("10.1.0.5", "10.1.3.7")
    assert client_v6 in plan.subnets[1]


def test_names_fit_interface_limits_and_differ_per_lab():
    a, b = LabLayout("alpha"), LabLayout("beta")
    assert a.id != b.id and len(a.id) == 6 and a.id == lab_id("alpha")
    assert a.node_ns(0) != b.node_ns(0)
    for name in (a.switch_port(199), "br0", "eth0", "cl"):
        assert len(name) <= 15


def test_network_batches():
    text = switch_batch([("n0", "ns-a"), ("cl", "ns-c")])
    assert "link add n0 type veth peer name eth0 netns ns-a" in text
    assert "link set cl master br0" in text
    host = host_batch(["192.168.56.11", "fd00::11"], [24, 64])
    assert "addr add 192.168.56.11/24 dev eth0\n" in host
    assert "addr add fd00::11/64 dev eth0 nodad" in host
    assert "route add 0.0.0.0/0 dev eth0" in host and "route add ::/0 dev eth0" in host


def test_ssh_files_render():
    nodes = [SshNode("node1", "svlab-abc123-n0", ("192.168.56.11",))]
    config = ssh_config(nodes, Path("/k"), Path("/kh"), "/usr/sbin/ip", "/usr/bin/nc")
    assert "Host node1 192.168.56.11\n" in config
    assert "StrictHostKeyChecking yes" in config
    assert "ProxyCommand /usr/sbin/ip netns exec svlab-abc123-n0 /usr/bin/nc %h %p" in config
    assert known_hosts(nodes, "ssh-ed25519 AAAAkey comment\n") == "node1,192.168.56.11 ssh-ed25519 AAAAkey\n"
    doc = yaml.safe_load(inventory(nodes, Path("/k"), Path("/cfg"), {"client_ip": "192.168.56.254"}))
    assert doc["all"]["hosts"] == {
        "node1": {
            "ansible_host": "192.168.56.11",
            "ansible_port": 22,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": "/k",
            "ansible_ssh_common_args": "-F /cfg",
        }
    }
    assert "client" not in doc["all"]["hosts"]
    assert set(doc["all"]) == {"hosts", "vars"}


def test_not_root_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(prereq.os, "geteuid", lambda: 1000)
    with pytest.raises(LabError, match="needs root"):
        prereq.require_all()


def test_missing_tools_name_their_debian_packages(monkeypatch):
    real = prereq.find_tool
    monkeypatch.setattr(prereq, "find_tool", lambda t: None if t in ("nc", "sshd", "ip") else real(t))
    with pytest.raises(LabError) as err:
        prereq.require_tools()
    message = str(err.value)
    assert message.rsplit("apt-get install", 1)[1].split() == ["iproute2", "netcat-openbsd", "openssh-server"]
    assert "Traceback" not in message


def test_lab_name_is_resolved_only_when_unambiguous(tmp_path):
    from svcnet.lab.status import resolve_name

    with pytest.raises(LabError, match="no lab exists"):
        resolve_name(None, tmp_path)
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "state.json").write_text("{}")
    assert resolve_name(None, tmp_path) == "one"
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "state.json").write_text("{}")
    with pytest.raises(LabError, match=r"several labs exist \(one, two\)"):
        resolve_name(None, tmp_path)
    assert resolve_name("two", tmp_path) == "two"


def test_lab_users_are_checked_and_get_the_sudo_they_ask_for():
    from svcnet.lab import users

    ok = [users.LabUser("ops", 4101), users.LabUser("dev", 4102, users.SUDO_PASSWORD, "pw"),
          users.LabUser("guest", 4103, users.SUDO_NONE)]
    users._validate(ok)
    sudoers = users._sudoers(ok)
    assert "ops ALL=(ALL:ALL) NOPASSWD: ALL\n" in sudoers and "dev ALL=(ALL:ALL) ALL\n" in sudoers
    assert "guest" not in sudoers and "lecture=never" in sudoers and "secure_path=" in sudoers
    for bad, message in [
        ([users.LabUser("root", 4101)], "other than root"),
        ([users.LabUser("ops", 0)], "uid 0 outside"),
        ([users.LabUser("ops", 4101, "always")], "sudo must be one of"),
        ([users.LabUser("ops", 4101, users.SUDO_PASSWORD)], "a password"),
        ([users.LabUser("ops", 4101, users.SUDO_NOPASSWD, "pw")], "a password"),
        ([users.LabUser("ops", 4101), users.LabUser("ops", 4102)], "distinct"),
    ]:
        with pytest.raises(LabError, match=message):
            users._validate(bad)


def test_a_bastion_gets_the_next_free_address_and_a_reserved_name():
    nodes = [LabNode("a", ("192.168.56.11", "fd00::11")), LabNode("b", ("192.168.56.254",))]
    plan = plan_switch(nodes, bastion=True)
    assert plan.client_addresses == ("192.168.56.253", "fd00::ffff:ffff:ffff:fffe")
    assert plan.bastion_addresses == ("192.168.56.252", "fd00::ffff:ffff:ffff:fffd")
    assert plan_switch(nodes).bastion_addresses == ()
    named = [LabNode("bastion", ("192.168.56.11",))]
    assert validate_nodes(named) == named  # only reserved when the lab has one
    with pytest.raises(LabError, match="reserved for the lab's jump host"):
        validate_nodes(named, bastion=True)


def test_ssh_files_with_a_bastion_reach_the_nodes_only_through_it():
    nodes = [SshNode("node1", "svlab-abc123-n0", ("192.168.56.11",))]
    bastion = SshNode("bastion", "svlab-abc123-bj", ("192.168.56.252",))
    config = ssh_config(nodes, Path("/k"), Path("/kh"), "/usr/sbin/ip", "/usr/bin/nc", bastion)
    bastion_block, node_block = config.split("\n\n")
    assert bastion_block.startswith("Host bastion 192.168.56.252\n")
    assert "ProxyCommand /usr/sbin/ip netns exec svlab-abc123-bj /usr/bin/nc %h %p" in bastion_block
    node_lines = node_block.splitlines()
    jump, refuse = node_lines.index("  ProxyJump bastion"), node_lines.index("  ProxyCommand false")
    assert jump < refuse  # OpenSSH takes the first of the two: the refusing command is never run
    assert "netns exec" not in node_block
    hosts = known_hosts(nodes, "ssh-ed25519 AAAAnode c\n", bastion, "ssh-ed25519 AAAAbastion c\n")
    assert hosts == "node1,192.168.56.11 ssh-ed25519 AAAAnode\nbastion,192.168.56.252 ssh-ed25519 AAAAbastion\n"
    assert "AllowTcpForwarding yes" in sshd_config(Path("/hk"), Path("/ak"), bastion=True)
    assert "LogLevel DEBUG1" in sshd_config(Path("/hk"), Path("/ak"), bastion=True)
    assert "AllowTcpForwarding" not in sshd_config(Path("/hk"), Path("/ak"))
