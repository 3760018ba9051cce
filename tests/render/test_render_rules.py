"""Exact rule shapes of the iptables renderer, one kube-proxy case at a time."""

from __future__ import annotations

import pytest
from render_helpers import NODE, chain_names, chain_rules, make_port, make_settings

from svcnet.model.types import (
    DETECT_BRIDGE,
    DETECT_IFACE_PREFIX,
    DETECT_NODE_CIDR,
    DETECT_NONE,
    NFACCT_INVALID_DROPPED,
    NFACCT_LOCALHOST_NPS,
    Endpoint,
    LocalDetector,
    NodeFacts,
)
from svcnet.render.chains import endpoint_chain_name, service_chain_names
from svcnet.render.dump import parse_dump
from svcnet.render.iptables import RenderError, nodeport_ips, render_nodes, render_restore

SVC, SVL, EXT, FW = service_chain_names(make_port())
SEP1 = "KUBE-SEP-SXIVWICOYRO3J4NJ"  # ns1/svc1:p80 -> 10.180.0.1:80
SEP2 = endpoint_chain_name(make_port(), Endpoint(ip="10.180.0.2", port=80))
SEP3 = endpoint_chain_name(make_port(), Endpoint(ip="10.180.0.3", port=80))
CIP = '-m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80'
LAST = ('-A KUBE-SERVICES -m comment --comment '
        '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"')


def local_ep(ip: str, node: str | None = NODE, **kw) -> Endpoint:
    return Endpoint(ip=ip, port=80, node_name=node, **kw)


def test_cluster_ip_three_endpoints() -> None:
    text = render_restore(make_settings(), [make_port(eps=3)])
    assert chain_rules(text, "nat", "KUBE-SERVICES")[0] == f"-A KUBE-SERVICES {CIP} -j {SVC}"
    assert chain_rules(text, "nat", SVC) == [
        f"-A {SVC} {CIP} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" '
        f"-m statistic --mode random --probability 0.3333333333 -j {SEP1}",
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" '
        f"-m statistic --mode random --probability 0.5000000000 -j {SEP2}",
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.3:80" -j {SEP3}',
    ]
    assert chain_rules(text, "nat", SEP1) == [
        f"-A {SEP1} -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ",  # hairpin
        f"-A {SEP1} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80",
    ]
    assert chain_rules(text, "filter", "KUBE-SERVICES") == []


def test_raw_write_order_filter_then_nat() -> None:
    text = render_restore(make_settings(), [make_port()])
    lines = text.splitlines()
    assert lines[0] == "*filter"
    assert lines[1:7] == [":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]", ":KUBE-FORWARD - [0:0]",
                          ":KUBE-NODEPORTS - [0:0]", ":KUBE-PROXY-FIREWALL - [0:0]", ":KUBE-FIREWALL - [0:0]"]
    nat = lines.index("*nat")
    assert lines[nat - 1] == "COMMIT" and lines[-1] == "COMMIT" and text.endswith("COMMIT\n")
    assert lines[nat + 1:nat + 7] == [":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]",
                                      ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]",
                                      f":{SVC} - [0:0]", f":{SEP1} - [0:0]"]
    assert lines[nat + 7].startswith("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000")
    assert lines[-2].startswith(LAST)


def test_no_endpoints_rejects() -> None:
    sp = make_port(eps=0, type="NodePort", node_port=30080, external_ips=("192.168.99.1",))
    text = render_restore(make_settings(), [sp])
    assert chain_rules(text, "filter", "KUBE-SERVICES") == [
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp '
        "-d 172.30.0.41 --dport 80 -j REJECT"]
    assert chain_rules(text, "filter", "KUBE-EXTERNAL-SERVICES") == [
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" -m tcp -p tcp '
        "-d 192.168.99.1 --dport 80 -j REJECT",
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no endpoints" '
        "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j REJECT",
    ]
    assert chain_names(text, "nat") == ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]


def test_nodeport_with_localhost_nfacct_counter() -> None:
    sp = make_port(type="NodePort", node_port=3001)
    facts = NodeFacts(random_fully=False, nfacct_counters=frozenset({NFACCT_LOCALHOST_NPS}))
    text = render_restore(make_settings(facts=facts), [sp])
    assert chain_rules(text, "nat", "KUBE-NODEPORTS") == [
        "-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 "
        f"-m nfacct --nfacct-name localhost_nps_accepted_pkts -j {EXT}",
        f"-A KUBE-NODEPORTS -m comment --comment ns1/svc1:p80 -m tcp -p tcp --dport 3001 -j {EXT}",
    ]
    assert chain_rules(text, "nat", EXT) == [
        f'-A {EXT} -m comment --comment "masquerade traffic for ns1/svc1:p80 external destinations" '
        "-j KUBE-MARK-MASQ",
        f"-A {EXT} -j {SVC}",
    ]
    # Without the counter (or with localhost NodePorts off) only the plain rule remains.
    for settings in (make_settings(), make_settings(facts=facts, localhost_nodeports=False)):
        assert len(chain_rules(render_restore(settings, [sp]), "nat", "KUBE-NODEPORTS")) == 1


def test_external_ip_goes_to_ext_chain() -> None:
    text = render_restore(make_settings(), [make_port(external_ips=("192.168.99.22",))])
    assert chain_rules(text, "nat", "KUBE-SERVICES")[1] == (
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 external IP" -m tcp -p tcp '
        f"-d 192.168.99.22 --dport 80 -j {EXT}")


@pytest.mark.parametrize(("node_ips", "allow_from_node"), [
    (("192.168.0.2",), False),
    (("203.0.113.7",), True),
    # kube-proxy's nodeIP is the node's IP of the proxier's family, not the first one listed.
    (("fd00::2", "203.0.113.7"), True),
])
def test_load_balancer_source_ranges(node_ips: tuple[str, ...], allow_from_node: bool) -> None:
    sp = make_port(type="LoadBalancer", node_port=3002, lb_ips=("5.6.7.8",),
                   lb_source_ranges=("203.0.113.0/25",))
    text = render_restore(make_settings(node_ips=node_ips), [sp])
    assert f"-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 loadbalancer IP\" -m tcp -p tcp " \
           f"-d 5.6.7.8 --dport 80 -j {FW}" in chain_rules(text, "nat", "KUBE-SERVICES")
    expected_fw = [f'-A {FW} -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 203.0.113.0/25 -j {EXT}']
    if allow_from_node:  # the node IP is inside a source range
        expected_fw.append(f'-A {FW} -m comment --comment "ns1/svc1:p80 loadbalancer IP" -s 5.6.7.8 -j {EXT}')
    expected_fw.append(f'-A {FW} -m comment --comment "other traffic to ns1/svc1:p80 will be dropped by '
                       'KUBE-PROXY-FIREWALL"')
    assert chain_rules(text, "nat", FW) == expected_fw
    assert chain_rules(text, "filter", "KUBE-PROXY-FIREWALL") == [
        f'-A KUBE-PROXY-FIREWALL -m comment --comment "ns1/svc1:p80 traffic not accepted by {FW}" '
        "-m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP"]


def test_load_balancer_without_ranges_jumps_to_ext() -> None:
    sp = make_port(type="LoadBalancer", node_port=3002, lb_ips=("5.6.7.8",))
    text = render_restore(make_settings(), [sp])
    assert chain_rules(text, "nat", "KUBE-SERVICES")[1].endswith(f"-d 5.6.7.8 --dport 80 -j {EXT}")
    assert FW not in chain_names(text, "nat")


def test_client_ip_affinity() -> None:
    text = render_restore(make_settings(), [make_port(eps=2, affinity_timeout=10800)])
    assert chain_rules(text, "nat", SVC)[1:] == [
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" '
        f"-m recent --name {SEP1} --rcheck --seconds 10800 --reap -j {SEP1}",
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" '
        f"-m recent --name {SEP2} --rcheck --seconds 10800 --reap -j {SEP2}",
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" '
        f"-m statistic --mode random --probability 0.5000000000 -j {SEP1}",
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j {SEP2}',
    ]
    assert chain_rules(text, "nat", SEP1)[1] == (
        f"-A {SEP1} -m comment --comment ns1/svc1:p80 -m recent --name {SEP1} --set -m tcp -p tcp "
        "-j DNAT --to-destination 10.180.0.1:80")


def test_etp_local_with_local_endpoint_and_health_check() -> None:
    eps = (local_ep("10.180.0.1", node="other"), local_ep("10.180.0.2"))
    sp = make_port(endpoints=eps, type="LoadBalancer", node_port=3001, lb_ips=("1.2.3.4",),
                   external_traffic_policy="Local", health_check_node_port=30000)
    text = render_restore(make_settings(), [sp])
    assert chain_rules(text, "nat", EXT) == [
        f'-A {EXT} -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" '
        f"-s 10.0.0.0/8 -j {SVC}",
        f'-A {EXT} -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" '
        "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ",
        f'-A {EXT} -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" '
        f"-m addrtype --src-type LOCAL -j {SVC}",
        f"-A {EXT} -j {SVL}",
    ]
    assert chain_rules(text, "nat", SVL) == [
        f'-A {SVL} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j {SEP2}']
    assert len(chain_rules(text, "nat", SVC)) == 3  # masq + 2 cluster endpoints
    assert chain_rules(text, "filter", "KUBE-NODEPORTS") == [
        '-A KUBE-NODEPORTS -m comment --comment "ns1/svc1:p80 health check node port" '
        "-m tcp -p tcp --dport 30000 -j ACCEPT"]
    assert chain_rules(text, "filter", "KUBE-EXTERNAL-SERVICES") == []


def test_etp_local_without_local_endpoints_drops_external() -> None:
    sp = make_port(endpoints=(local_ep("10.180.0.1", node="other"),), type="NodePort", node_port=3001,
                   external_ips=("192.168.99.22",), external_traffic_policy="Local")
    text = render_restore(make_settings(), [sp])
    comment = '-m comment --comment "ns1/svc1:p80 has no local endpoints"'
    assert chain_rules(text, "filter", "KUBE-EXTERNAL-SERVICES") == [
        f"-A KUBE-EXTERNAL-SERVICES {comment} -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP",
        f"-A KUBE-EXTERNAL-SERVICES {comment} -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP",
    ]
    assert chain_rules(text, "nat", EXT)[-1].endswith(f"--src-type LOCAL -j {SVC}")  # no `-j KUBE-SVL`
    assert SVL not in chain_names(text, "nat")
    # health check only for LoadBalancer: none here
    assert chain_rules(text, "filter", "KUBE-NODEPORTS") == []


def test_itp_local() -> None:
    sp_local = make_port(endpoints=(local_ep("10.180.0.1", node="other"), local_ep("10.180.0.2")),
                         internal_traffic_policy="Local")
    text = render_restore(make_settings(), [sp_local])
    assert chain_rules(text, "nat", "KUBE-SERVICES")[0] == f"-A KUBE-SERVICES {CIP} -j {SVL}"
    assert chain_rules(text, "nat", SVL) == [
        f"-A {SVL} {CIP} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        f'-A {SVL} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j {SEP2}',
    ]
    assert SVC not in chain_names(text, "nat") and SEP1 not in chain_names(text, "nat")
    sp_remote = make_port(endpoints=(local_ep("10.180.0.1", node="other"),), internal_traffic_policy="Local")
    text = render_restore(make_settings(), [sp_remote])
    assert chain_rules(text, "filter", "KUBE-SERVICES") == [
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints" -m tcp -p tcp '
        "-d 172.30.0.41 --dport 80 -j DROP"]
    # No local endpoint: the ClusterIP gets only the filter DROP above; nat keeps just the NodePort jump.
    assert chain_rules(text, "nat", "KUBE-SERVICES") == [
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in '
        'this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS']


def test_terminating_endpoint_fallback() -> None:
    term = dict(ready=False, serving=True, terminating=True)
    only_terminating = make_port(endpoints=(local_ep("10.180.0.1", **term), local_ep("10.180.0.2", **term)))
    text = render_restore(make_settings(), [only_terminating])
    assert [r.split(" -j ")[-1] for r in chain_rules(text, "nat", SVC)[1:]] == [SEP1, SEP2]
    mixed = make_port(endpoints=(local_ep("10.180.0.1", **term), local_ep("10.180.0.2")))
    text = render_restore(make_settings(), [mixed])
    assert chain_rules(text, "nat", SVC)[1:] == [
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j {SEP2}']
    assert SEP1 not in chain_names(text, "nat")
    unusable = make_port(endpoints=(local_ep("10.180.0.1", ready=False, serving=False, terminating=True),))
    text = render_restore(make_settings(), [unusable])
    assert chain_rules(text, "filter", "KUBE-SERVICES")[0].endswith("-j REJECT")


@pytest.mark.parametrize("proto", ["UDP", "SCTP"])
def test_other_protocols(proto: str) -> None:
    sp = make_port(protocol=proto, port_name="dns", port=53,
                   endpoints=(Endpoint(ip="10.180.0.1", port=5353),))
    svc = service_chain_names(sp)[0]
    p = proto.lower()
    text = render_restore(make_settings(), [sp])
    assert chain_rules(text, "nat", "KUBE-SERVICES")[0] == (
        f'-A KUBE-SERVICES -m comment --comment "ns1/svc1:dns cluster IP" -m {p} -p {p} '
        f"-d 172.30.0.41 --dport 53 -j {svc}")
    sep = endpoint_chain_name(sp, sp.endpoints[0])
    assert chain_rules(text, "nat", sep)[1].endswith(f"-m {p} -p {p} -j DNAT --to-destination 10.180.0.1:5353")


def test_multi_port_service_has_independent_chains() -> None:
    p80 = make_port()
    p443 = make_port(port_name="p443", port=443, endpoints=(Endpoint(ip="10.180.0.1", port=8443),))
    text = render_restore(make_settings(), [p443, p80])
    svc443 = service_chain_names(p443)[0]
    assert svc443 != SVC
    kube_services = chain_rules(text, "nat", "KUBE-SERVICES")
    assert kube_services[0].endswith(f"--dport 443 -j {svc443}")
    assert kube_services[1].endswith(f"--dport 80 -j {SVC}")
    sep443 = endpoint_chain_name(p443, p443.endpoints[0])
    assert sep443 != SEP1 and chain_rules(text, "nat", sep443)[1].endswith("--to-destination 10.180.0.1:8443")


def test_masquerade_all() -> None:
    text = render_restore(make_settings(masquerade_all=True), [make_port()])
    assert chain_rules(text, "nat", SVC)[0] == f"-A {SVC} {CIP} -j KUBE-MARK-MASQ"


@pytest.mark.parametrize(("detector", "not_local", "local"), [
    (LocalDetector(mode=DETECT_NODE_CIDR, cidr="10.244.1.0/24"), "! -s 10.244.1.0/24", "-s 10.244.1.0/24"),
    (LocalDetector(mode=DETECT_BRIDGE, interface="cni0"), "! -i cni0", "-i cni0"),
    (LocalDetector(mode=DETECT_IFACE_PREFIX, interface="veth"), "! -i veth+", "-i veth+"),
])
def test_local_detectors(detector: LocalDetector, not_local: str, local: str) -> None:
    sp = make_port(type="NodePort", node_port=3001, external_traffic_policy="Local",
                   endpoints=(local_ep("10.180.0.1"),))
    text = render_restore(make_settings(local_detector=detector), [sp])
    assert chain_rules(text, "nat", SVC)[0] == f"-A {SVC} {CIP} {not_local} -j KUBE-MARK-MASQ"
    assert chain_rules(text, "nat", EXT)[0] == (
        f'-A {EXT} -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" {local} -j {SVC}')


def test_no_local_detector() -> None:
    sp = make_port(type="NodePort", node_port=3001, external_traffic_policy="Local",
                   endpoints=(local_ep("10.180.0.1"),))
    text = render_restore(make_settings(local_detector=LocalDetector(mode=DETECT_NONE)), [sp])
    assert chain_rules(text, "nat", SVC) == [
        f'-A {SVC} -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j {SEP1}']
    assert "pod traffic" not in chain_rules(text, "nat", EXT)[0]


def test_nodeport_catch_all_variants() -> None:
    assert chain_rules(render_restore(make_settings(), []), "nat", "KUBE-SERVICES") == [
        f"{LAST} -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"]
    off = render_restore(make_settings(localhost_nodeports=False), [])
    assert chain_rules(off, "nat", "KUBE-SERVICES") == [
        f"{LAST} -m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS"]
    assert "KUBE-FIREWALL" not in chain_names(off, "filter")
    v6 = make_settings(ip_family=6, node_ips=("fd00::2",), local_detector=LocalDetector(cidr="fd00:10::/64"))
    assert chain_rules(render_restore(v6, []), "nat", "KUBE-SERVICES") == [
        f"{LAST} -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS"]
    npa = make_settings(node_ips=("192.168.0.2", "10.1.1.5", "192.168.1.2", "fd00::2"),
                        nodeport_addresses=("192.168.0.0/16", "127.0.0.0/8", "fd00::/64"))
    assert nodeport_ips(npa) == ["192.168.0.2", "192.168.1.2", "127.0.0.1"]
    assert chain_rules(render_restore(npa, []), "nat", "KUBE-SERVICES") == [
        f"{LAST} -d 192.168.0.2 -j KUBE-NODEPORTS", f"{LAST} -d 192.168.1.2 -j KUBE-NODEPORTS",
        f"{LAST} -d 127.0.0.1 -j KUBE-NODEPORTS"]
    no_loop = make_settings(node_ips=("192.168.0.2",), nodeport_addresses=("192.168.0.0/24",))
    assert nodeport_ips(no_loop) == ["192.168.0.2"]
    assert "KUBE-FIREWALL" not in chain_names(render_restore(no_loop, []), "filter")
    assert nodeport_ips(make_settings(nodeport_addresses=("fd00::/64",))) is None  # no IPv4 CIDR: all
    # a zero CIDR among others matches all (kube-proxy's NodePortAddresses: prefix.Bits() == 0 sets matchAll)
    everywhere = make_settings(node_ips=("192.168.0.2",), nodeport_addresses=("192.168.0.0/24", "0.0.0.0/0"))
    assert nodeport_ips(everywhere) is None
    assert chain_rules(render_restore(everywhere, []), "nat", "KUBE-SERVICES")[-1].endswith(
        "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")


def test_fixed_rules_follow_node_facts() -> None:
    facts = NodeFacts(random_fully=True, nfacct_counters=frozenset({NFACCT_INVALID_DROPPED}))
    text = render_restore(make_settings(masquerade_mark="0x00004000", facts=facts), [])
    assert chain_rules(text, "nat", "KUBE-POSTROUTING") == [
        "-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]
    assert chain_rules(text, "nat", "KUBE-MARK-MASQ") == ["-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000"]
    assert chain_rules(text, "filter", "KUBE-FORWARD")[0] == (
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name "
        "ct_state_invalid_dropped_pkts -j DROP")
    liberal = render_restore(make_settings(facts=NodeFacts(tcp_be_liberal=True)), [])
    assert len(chain_rules(liberal, "filter", "KUBE-FORWARD")) == 2


def test_large_cluster_mode_drops_endpoint_comments() -> None:
    text = render_restore(make_settings(large_cluster_threshold=2), [make_port(eps=3)])
    assert chain_rules(text, "nat", SVC)[0] == f"-A {SVC} {CIP} ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ"
    assert chain_rules(text, "nat", SVC)[3] == f"-A {SVC} -j {SEP3}"
    assert chain_rules(text, "nat", SEP1) == [
        f"-A {SEP1} -s 10.180.0.1 -j KUBE-MARK-MASQ",
        f"-A {SEP1} -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80"]
    at_threshold = render_restore(make_settings(large_cluster_threshold=3), [make_port(eps=3)])
    assert "--comment ns1/svc1:p80 -s" in at_threshold


def test_ipv6_service() -> None:
    s6 = make_settings(ip_family=6, node_ips=("fd00::2",), local_detector=LocalDetector(cidr="fd00:10::/64"))
    sp = make_port(cluster_ip="fd00:172:30::41", endpoints=(Endpoint(ip="fd00:10:180::1", port=80),
                                                             Endpoint(ip="10.180.0.9", port=80)))
    text = render_restore(s6, [sp, make_port(name="v4only")])
    sep = endpoint_chain_name(sp, sp.endpoints[0])
    assert chain_rules(text, "nat", SVC)[0].endswith(
        "-d fd00:172:30::41 --dport 80 ! -s fd00:10::/64 -j KUBE-MARK-MASQ")
    assert chain_rules(text, "nat", sep) == [
        f"-A {sep} -m comment --comment ns1/svc1:p80 -s fd00:10:180::1 -j KUBE-MARK-MASQ",
        f"-A {sep} -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination [fd00:10:180::1]:80"]
    assert len(chain_rules(text, "nat", SVC)) == 2  # the IPv4 endpoint and IPv4 service are skipped
    assert "v4only" not in text


def test_stale_chains_are_flushed_and_deleted() -> None:
    stale = ("KUBE-SVC-OLDOLDOLDOLDOLD1", SVC, "KUBE-SEP-GONEGONEGONEGONE", "CNI-FOO", "KUBE-SERVICES")
    text = render_restore(make_settings(), [make_port()], stale)
    lines = text.splitlines()
    assert ":KUBE-SVC-OLDOLDOLDOLDOLD1 - [0:0]" in lines and ":KUBE-SEP-GONEGONEGONEGONE - [0:0]" in lines
    assert [ln for ln in lines if ln.startswith("-X ")] == ["-X KUBE-SVC-OLDOLDOLDOLDOLD1",
                                                              "-X KUBE-SEP-GONEGONEGONEGONE"]
    assert lines.index("-X KUBE-SEP-GONEGONEGONEGONE") < len(lines) - 2 and lines[-2].startswith(LAST)
    dump = parse_dump(text)  # strict parse: -X chains are declared and empty
    assert dump.chain("nat", "KUBE-SVC-OLDOLDOLDOLDOLD1").deleted


def test_render_nodes_matches_render_restore_per_node() -> None:
    ports = [
        make_port(name="a", eps=2),
        make_port(name="b", endpoints=(local_ep("10.180.0.1", node="n1"), local_ep("10.180.0.2", node="n2")),
                  type="LoadBalancer", node_port=3001, lb_ips=("5.6.7.8",), external_traffic_policy="Local",
                  lb_source_ranges=("192.168.0.0/30",), health_check_node_port=30001),
        make_port(name="c", endpoints=(local_ep("10.180.0.3", node="n3"),), internal_traffic_policy="Local"),
        make_port(name="d", eps=1, affinity_timeout=60),
    ]
    settings = {
        "n1": make_settings(node_name="n1", node_ips=("192.168.0.1",)),
        "n2": make_settings(node_name="n2", node_ips=("192.168.0.9",)),
        "n3": make_settings(node_name="n3", node_ips=("192.168.0.3",), nodeport_addresses=("192.168.0.0/24",)),
        "n4": make_settings(node_name="n4", node_ips=("192.168.0.4",),
                            local_detector=LocalDetector(mode=DETECT_NODE_CIDR, cidr="10.244.4.0/24")),
        "n5": make_settings(node_name="n5", node_ips=("192.168.0.5",)),
        "n6": make_settings(node_name="n6", node_ips=("192.168.0.6",)),
    }
    stale = {"n2": ("KUBE-SVC-ZZZZZZZZZZZZZZZZ",)}
    together = render_nodes(settings, ports, stale)
    assert list(together) == list(settings)
    for node, s in settings.items():
        assert together[node] == render_restore(s, ports, stale.get(node, ())), node
    assert together["n5"] is together["n6"]  # identical nodes share one string
    distinct = [together[n] for n in ("n1", "n2", "n3", "n4", "n5")]
    assert len(set(distinct)) == len(distinct)  # every setting that differs gives a different text
    assert "-X KUBE-SVC-ZZZZZZZZZZZZZZZZ" in together["n2"] and "-X " not in together["n1"]


@pytest.mark.parametrize(("kw", "message"), [
    (dict(name="Bad Name"), "invalid namespace"),
    (dict(protocol="ICMP"), "unsupported protocol"),
    (dict(external_ips=("1.2.3.4 -j ACCEPT",)), "not a canonical IP"),
    (dict(endpoints=(Endpoint(ip="10.0.0.1;x", port=80),)), "not a canonical IP"),
    (dict(lb_ips=("5.6.7.8",), lb_source_ranges=("10.0.0.0/99",)), "bad loadBalancerSourceRange"),
])
def test_bad_service_port_input_is_a_located_error(kw: dict, message: str) -> None:
    with pytest.raises(RenderError, match=message) as err:
        render_restore(make_settings(), [make_port(**kw)])
    assert "service port" in str(err.value)


@pytest.mark.parametrize(("kw", "message"), [
    (dict(masquerade_mark="0x4000 -j ACCEPT"), "masquerade mark"),
    (dict(local_detector=LocalDetector(mode=DETECT_BRIDGE, interface="br0 -j ACCEPT")), "local detector"),
    (dict(nodeport_addresses=("not-a-cidr",)), "not an IP address"),
])
def test_bad_settings_are_located_errors(kw: dict, message: str) -> None:
    with pytest.raises(RenderError, match=message) as err:
        render_restore(make_settings(**kw), [])
    assert f"node {NODE}" in str(err.value)
