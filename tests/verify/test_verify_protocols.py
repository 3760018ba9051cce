"""Verify's traffic checks for every protocol and service type, on a lab with real traffic: UDP and
SCTP ClusterIP and NodePort services, LoadBalancer ingress IPs and an externalIP reached from the
lab's client (which routes them to a node), loadBalancerSourceRanges allowing the client's first
address and dropping its second, a UDP service without endpoints REJECTing. They pass when applied,
and a broken rule is caught, named by node and service."""

from __future__ import annotations

import socket

import pytest
from verifylab import PROTOCOLS, applied_lab, apply, verify

from svcnet.lab.pytest_fixtures import node_run
from svcnet.model.load import load_cluster
from svcnet.render.chains import service_chain_names

pytestmark = pytest.mark.lab

CLUSTER = load_cluster([PROTOCOLS])
PODS = {p.node_name: p.name for p in CLUSTER.pods}
ALLOWED, DENIED = "192.168.58.254", "192.168.58.253"  # the lab client's two addresses (cluster.yaml)


def port(name: str):
    return next(sp for sp in CLUSTER.service_ports if sp.name == name)


def kernel_has_sctp() -> bool:
    """The lab's namespaces share this kernel: SCTP traffic can be checked only where it has SCTP."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="module")
def protocols_lab(lab_factory):
    lab = applied_lab(lab_factory, PROTOCOLS)
    assert lab.client_ip == ALLOWED and ALLOWED in lab.state.client_addresses and DENIED in lab.state.client_addresses
    return lab


def test_every_protocol_and_type_is_checked_with_traffic(protocols_lab):
    run = verify(protocols_lab, PROTOCOLS)
    assert run.rc == 0, run.out + run.err
    passed = [
        "test_cluster_ip_answers[node1-vp/dns:dns]",  # UDP ClusterIP from a node ...
        f"test_cluster_ip_answers[node2/{PODS['node2']}-vp/dns:dns]",  # ... and from a pod
        "test_endpoints_share_traffic_evenly[node1-vp/dns:dns]",  # UDP spread over both endpoints
        "test_node_port_answers[node1-vp/dns:dns]",  # UDP NodePort from outside
        "test_node_port_answers[node2-vp/dns:dns]",
        "test_node_port_answers[node2-vp/lb:dns]",
        "test_external_address_answers[192.168.59.10-vp/lb:dns]",  # LoadBalancer ingress IP (UDP)
        "test_external_address_answers[192.168.59.30-vp/ext:http]",  # externalIP no node holds
        "test_load_balancer_source_ranges[192.168.59.11-vp/guarded:http]",  # one source in, one dropped
        "test_no_endpoints_rejected[node1-vp/nobody:dns]",  # UDP REJECT (ICMP port unreachable)
        f"test_no_endpoints_rejected[node2/{PODS['node2']}-vp/nobody:dns]",
        "test_service_rules_match_rendered[node1-vp/assoc:assoc]",  # SCTP rules are in the kernel
        "test_pod_listens_on_its_ports[node1-vp/" + PODS["node1"] + "]",  # TCP and UDP 8080
    ]
    for test_id in passed:
        assert f"{test_id} PASSED" in run.out, test_id + "\n" + run.out
    sctp = ["test_cluster_ip_answers[node1-vp/assoc:assoc]", "test_node_port_answers[node2-vp/assoc:assoc]",
            "test_endpoints_share_traffic_evenly[node2-vp/assoc:assoc]"]
    for test_id in sctp:
        if kernel_has_sctp():
            assert f"{test_id} PASSED" in run.out, test_id + "\n" + run.out
        else:  # said, not silently passed: this kernel (the CI machine's too) has no SCTP sockets
            assert f"{test_id} SKIPPED" in run.out, test_id + "\n" + run.out
    if not kernel_has_sctp():
        assert ("node1 -> 10.100.0.21:7777/SCTP (vp/assoc:assoc): the kernel where the probe runs has no SCTP "
                "sockets (Protocol not supported); checked for rules only") in run.out, run.out
    assert " FAILED" not in run.out and "test_external_address_answers[192.168.59.11" not in run.out


def reapply(lab) -> None:
    run = apply(lab, PROTOCOLS)
    assert run.rc == 0, run.out + run.err


def delete_rule(lab, node: str, table: str, chain: str, comment: str) -> None:
    """Delete the one rule of `chain` whose comment is `comment`, inside the lab node only."""
    listing = node_run(lab, node, f"iptables -t {table} -L {chain} -n --line-numbers").stdout
    numbers = [ln.split()[0] for ln in listing.splitlines() if f"/* {comment} */" in ln]
    assert len(numbers) == 1, listing
    node_run(lab, node, f"iptables -t {table} -D {chain} {numbers[0]}")


def test_a_missing_udp_service_jump_is_caught(protocols_lab):
    """node1 loses KUBE-SERVICES' jump to the UDP service's KUBE-SVC chain: its rules and its traffic fail."""
    svc = service_chain_names(port("dns"))[0]
    delete_rule(protocols_lab, "node1", "nat", "KUBE-SERVICES", "vp/dns:dns cluster IP")
    try:
        run = verify(protocols_lab, PROTOCOLS, "-k", "dns:dns and not lb and (rules or cluster_ip)")
        assert run.rc == 1, run.out + run.err
        for text in ("test_service_rules_match_rendered[node1-vp/dns:dns] FAILED",
                     "-A KUBE-SERVICES -d 10.100.0.20/32 -p udp",
                     f"-j {svc}",
                     "test_cluster_ip_answers[node1-vp/dns:dns] FAILED",
                     "node1 -> 10.100.0.20:53/UDP (vp/dns:dns): 2 of 2 requests failed",
                     f"test_cluster_ip_answers[node1/{PODS['node1']}-vp/dns:dns] FAILED",
                     "test_cluster_ip_answers[node2-vp/dns:dns] PASSED"):
            assert text in run.out, f"{text!r} not in\n{run.out}"
    finally:
        reapply(protocols_lab)


def test_a_load_balancer_firewall_letting_everyone_in_is_caught(protocols_lab):
    """node1 (the lab client's route for the LoadBalancer IP) accepts every source: the denied one answers."""
    _, _, ext, fw = service_chain_names(port("guarded"))
    node_run(protocols_lab, "node1", f"iptables -t nat -I {fw} 1 -j {ext}")
    try:
        run = verify(protocols_lab, PROTOCOLS, "-k", "source_ranges")
        assert run.rc == 1, run.out + run.err
        assert (f"outside {DENIED} -> LoadBalancer IP 192.168.59.11:80 (vp/guarded:http, loadBalancerSourceRanges "
                f"{ALLOWED}/32): a source outside the ranges: expected the traffic to be dropped, got: answered by"
                ) in run.out, run.out
    finally:
        reapply(protocols_lab)


def test_a_lost_load_balancer_rule_is_caught(protocols_lab):
    """node1 forgets the UDP LoadBalancer IP: the outside client's datagrams to it go unanswered."""
    delete_rule(protocols_lab, "node1", "nat", "KUBE-SERVICES", "vp/lb:dns loadbalancer IP")
    try:
        run = verify(protocols_lab, PROTOCOLS, "-k", "test_external_address_answers")
        assert run.rc == 1, run.out + run.err
        assert "test_external_address_answers[192.168.59.10-vp/lb:dns] FAILED" in run.out, run.out
        assert "outside -> LoadBalancer IP 192.168.59.10:53/UDP (vp/lb:dns): 2 of 2 requests failed" in run.out
        assert "test_external_address_answers[192.168.59.30-vp/ext:http] PASSED" in run.out
    finally:
        reapply(protocols_lab)
