"""Chain-name hashing, ownership and the built-in-chain jump rules."""

from __future__ import annotations

import base64
import hashlib
import shlex

import pytest
from render_helpers import make_port, make_settings

from svcnet.agent import node
from svcnet.model.types import Endpoint, ServicePort
from svcnet.render import chains as c
from svcnet.render.chains import _hash16
from svcnet.render.iptables import probability
from svcnet.render.jumps import JumpRule, jump_rules, render_jump_rules


def test_reference_chain_name_examples() -> None:
    assert c.SVC_PREFIX + c.port_proto_hash("ns1/svc1:p80", "tcp") == "KUBE-SVC-XPGD46QRK7WJZT7O"
    assert c.endpoint_chain("ns1/svc1:p80", "tcp", "10.180.0.1:80") == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    assert c.port_proto_hash("default/kubernetes:https", "tcp") == "NPX46M4PTMTKRN6Y"
    assert c.port_proto_hash("kube-system/kube-dns:dns", "udp") == "TCOU7JCQXEZGVUNU"
    assert c.endpoint_chain("ns3/svc3:p8081", "tcp", "203.0.113.4:8081") == "KUBE-SEP-RUVVH7YV3PHQBDOS"
    assert c.port_proto_hash("ns4/svc4:p8082", "tcp") == "EBDQOQU5SJFXRIL3"


def test_service_and_endpoint_chain_names_from_model() -> None:
    sp = make_port()
    assert c.service_chain_names(sp) == (
        "KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SVL-XPGD46QRK7WJZT7O",
        "KUBE-EXT-XPGD46QRK7WJZT7O", "KUBE-FW-XPGD46QRK7WJZT7O",
    )
    assert c.endpoint_chain_name(sp, Endpoint(ip="10.180.0.1", port=80)) == "KUBE-SEP-SXIVWICOYRO3J4NJ"
    unnamed = ServicePort(namespace="ns1", name="svc1", port_name="", protocol="UDP", port=53, cluster_ip="x")
    expected = base64.b32encode(hashlib.sha256(b"ns1/svc1udp").digest()).decode()[:16]
    assert c.service_chain_names(unnamed)[0] == "KUBE-SVC-" + expected
    assert all(len(n) <= 28 for n in c.service_chain_names(sp))


@pytest.mark.parametrize("text", ["", "a", "ns1/svc1:p80tcp", "x" * 300, "ns/ü:p"])
def test_fast_hash_equals_base32_sha256(text: str) -> None:
    assert _hash16(text) == base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def test_is_service_chain() -> None:
    for name in ("KUBE-SVC-A", "KUBE-SVL-A", "KUBE-EXT-A", "KUBE-FW-A", "KUBE-SEP-A"):
        assert c.is_service_chain(name)
    for name in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-MARK-MASQ", "KUBE-FORWARD", "CNI-X", "KUBE-FWX"):
        assert not c.is_service_chain(name)


def test_owned_chains() -> None:
    assert c.OWNED_CHAINS["nat"] == ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
    assert c.OWNED_CHAINS["filter"][:5] == (
        "KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL")
    assert "KUBE-FIREWALL" in c.OWNED_CHAINS["filter"]


@pytest.mark.parametrize(("n", "expected"), [
    (1, "1.0000000000"), (2, "0.5000000000"), (3, "0.3333333333"), (4, "0.2500000000"),
    (10, "0.1000000000"), (1000, "0.0010000000"), (100001, "0.0000099999"),
])
def test_probability_strings(n: int, expected: str) -> None:
    assert probability(n) == expected


def test_jump_rules_ipv4_with_localhost_nodeports() -> None:
    rules = jump_rules(make_settings())
    assert len(rules) == 14
    assert rules[0] == JumpRule("filter", "INPUT", (
        "-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment",
        "kubernetes externally-visible service portals", "-j", "KUBE-EXTERNAL-SERVICES"))
    assert rules[2] == JumpRule("filter", "INPUT", (
        "-m", "comment", "--comment", "kubernetes health check service ports", "-j", "KUBE-NODEPORTS"))
    assert [(r.table, r.chain, r.target) for r in rules[9:]] == [
        ("nat", "OUTPUT", "KUBE-SERVICES"), ("nat", "PREROUTING", "KUBE-SERVICES"),
        ("nat", "POSTROUTING", "KUBE-POSTROUTING"),
        ("filter", "INPUT", "KUBE-FIREWALL"), ("filter", "OUTPUT", "KUBE-FIREWALL"),
    ]
    assert rules[-1].args == ("-j", "KUBE-FIREWALL")


def test_jump_rules_without_kubelet_firewall() -> None:
    assert len(jump_rules(make_settings(ip_family=6, node_ips=("fd00::2",)))) == 12
    assert len(jump_rules(make_settings(localhost_nodeports=False))) == 12
    # nodePortAddresses without loopback turns localhost NodePorts off (NewProxier).
    assert len(jump_rules(make_settings(nodeport_addresses=("192.168.0.0/24",)))) == 12
    assert len(jump_rules(make_settings(nodeport_addresses=("192.168.0.0/24", "127.0.0.1/32")))) == 14


def test_render_jump_rules_text_and_roundtrip() -> None:
    rules = jump_rules(make_settings())
    text = render_jump_rules(rules)
    lines = text.splitlines()
    assert lines[0] == ('-t filter -A INPUT -m conntrack --ctstate NEW -m comment --comment '
                        '"kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES')
    assert lines[-1] == "-t filter -A OUTPUT -j KUBE-FIREWALL"
    assert shlex.split(lines[9]) == ["-t", "nat", "-A", "OUTPUT", "-m", "comment", "--comment",
                                     "kubernetes service portals", "-j", "KUBE-SERVICES"]
    # The file's one reader is the node agent's.
    parsed = node.parse_jumps("# header\n\n" + text)
    assert [JumpRule(table, chain, tuple(args)) for table, chain, args in parsed] == rules
    assert rules[9].prepend_args() == ["-t", "nat", "-I", "OUTPUT", "1", *rules[9].args]
    assert rules[9].check_args()[:4] == ["-t", "nat", "-C", "OUTPUT"]


@pytest.mark.parametrize(("text", "line"), [
    ("-t filter -A INPUT -j KUBE-X\n-A INPUT -j X\n", 2),
    ("-t mangle -A INPUT -m comment --comment x -j KUBE-X\n", 1),
    ('-t filter -A INPUT -m comment --comment "unclosed -j X\n', 1),
    ("-t filter -A INPUT -m comment --comment x y\n", 1),
])
def test_jump_rules_errors_are_located_by_their_reader(text: str, line: int) -> None:
    with pytest.raises(node.AgentError, match=f"^jumps.rules line {line}: "):
        node.parse_jumps(text)


def test_agent_copies_of_names_agree() -> None:
    """The agent ships as one stdlib-only file, so it spells these names again."""
    from svcnet.model import types
    from svcnet.render import artifacts

    assert node.TABLES == c.TABLES
    assert node.BUILTIN_CHAINS == c.ALL_BUILTIN_CHAINS
    assert node.OWNED_PREFIX == c.OWNED_CHAIN_PREFIX
    assert set(node.STALE_PREFIXES) == set(c.SERVICE_CHAIN_PREFIXES)
    assert (node.RESTORE_FILE, node.JUMPS_FILE, node.NFT_FILE, node.NETCONF_SH, node.HEALTH_FILE) == (
        artifacts.RESTORE_FILE, artifacts.JUMPS_FILE, artifacts.NFT_FILE, artifacts.NETCONF_FILE, artifacts.HEALTH_FILE)
    assert (node.RESTORE6_FILE, node.JUMPS6_FILE) == (artifacts.RESTORE6_FILE, artifacts.JUMPS6_FILE)
    assert (node.IPV4, node.IPV6) == (4, 6)
    assert node.NFT_TABLE == c.NFT_TABLE
    assert (node.MODE_IPTABLES, node.MODE_NFTABLES) == (types.MODE_IPTABLES, types.MODE_NFTABLES)
