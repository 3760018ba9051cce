"""The tracer on small hand-written rulesets: one test per rule shape kube-proxy produces."""

from __future__ import annotations

import json

import pytest

from svcnet.explain.combine import combine, parse_live, trace_live_text
from svcnet.explain.compat import kube_proxy_view
from svcnet.explain.report import masquerade_reason, percent, render_json, render_text
from svcnet.explain.rules import RuleError, parse_rule
from svcnet.explain.trace import (
    DELIVERED_LOCAL,
    ERROR,
    Packet,
    TraceContext,
    TraceError,
    trace,
)
from svcnet.model.types import ProxierSettings
from svcnet.render.dump import Dump
from svcnet.render.jumps import JumpRule, jump_rules

NODE_IP = "192.168.0.2"
POD = "10.0.1.5"  # a pod on some node (cluster CIDR 10.0.0.0/8)
OUTSIDE = "203.0.113.2"
CTX = TraceContext(local_ips=frozenset({NODE_IP}), pod_cidrs=("10.0.0.0/8",))
SETTINGS = ProxierSettings("node-a", (NODE_IP,))
MASQ = "! -s 10.0.0.0/8"

NAT_BASE = """\
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
"""
NODEPORTS_JUMP = ('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be '
                  'the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n')
FILTER_BASE = """\
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
"""  # noqa: E501
NAT_FIXED = ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ")
FILTER_FIXED = ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS",
                "KUBE-PROXY-FIREWALL", "KUBE-FIREWALL")


def _table(name: str, fixed: tuple[str, ...], rules: str) -> str:
    chains = list(fixed)
    for line in rules.splitlines():
        if line.startswith("-A "):
            chain = line.split()[1]
            if chain not in chains:
                chains.append(chain)
    body = "".join(f":{c} - [0:0]\n" for c in chains)
    return f"*{name}\n{body}{rules}COMMIT\n"


def ruleset(nat: str = "", filter_: str = "", nodeports_jump: bool = True) -> Dump:
    """A restore input with the fixed kube-proxy rules, plus kube-proxy's built-in jumps."""
    nat_rules = NAT_BASE + nat + (NODEPORTS_JUMP if nodeports_jump else "")
    text = _table("filter", FILTER_FIXED, FILTER_BASE + filter_) + _table("nat", NAT_FIXED, nat_rules)
    return combine(text, jump_rules(SETTINGS))


def svc(name: str, cip: str, port: int, eps: list[str], masq: str | None = MASQ, affinity: bool = False,
        chain: str | None = None, proto: str = "tcp") -> str:
    """nat rules of one ClusterIP service port, shaped as kube-proxy writes them."""
    chain = chain or f"KUBE-SVC-{name}"
    out = [f'-A KUBE-SERVICES -m comment --comment "ns/{name} cluster IP" -m {proto} -p {proto} -d {cip} '
           f"--dport {port} -j {chain}"]
    if masq is not None:
        out.append(f'-A {chain} -m comment --comment "ns/{name} cluster IP" -m {proto} -p {proto} -d {cip} '
                   f"--dport {port} {masq} -j KUBE-MARK-MASQ".replace("  ", " "))
    seps = [f"KUBE-SEP-{name}{i}" for i in range(len(eps))]
    if affinity:
        out += [f'-A {chain} -m comment --comment "ns/{name} -> {ep}" -m recent --name {sep} --rcheck '
                f"--seconds 10800 --reap -j {sep}" for ep, sep in zip(eps, seps, strict=True)]
    n = len(eps)
    for i, (ep, sep) in enumerate(zip(eps, seps, strict=True)):
        stat = f" -m statistic --mode random --probability {1.0 / (n - i):0.10f}" if i < n - 1 else ""
        out.append(f'-A {chain} -m comment --comment "ns/{name} -> {ep}"{stat} -j {sep}')
    for ep, sep in zip(eps, seps, strict=True):
        ip = ep.rsplit(":", 1)[0].strip("[]")
        rec = f" -m recent --name {sep} --set" if affinity else ""
        out.append(f"-A {sep} -m comment --comment ns/{name} -s {ip} -j KUBE-MARK-MASQ")
        out.append(f"-A {sep} -m comment --comment ns/{name}{rec} -m {proto} -p {proto} -j DNAT "
                   f"--to-destination {ep}")
    return "\n".join(out) + "\n"


def run(dump: Dump, src: str, dst: str, port: int, origin: str = "pod", proto: str = "tcp",
        ctx: TraceContext = CTX, in_iface: str | None = None):  # type: ignore[no-untyped-def]
    return trace(dump, Packet(src, 40000, dst, port, proto, origin, in_iface), ctx)


def approx(d: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in d.items()}


# -- load balancing ---------------------------------------------------------------------------


def test_two_endpoints_split_fifty_fifty() -> None:
    tr = run(ruleset(svc("a", "172.30.0.10", 80, ["10.1.0.2:8080", "10.2.0.2:8080"])), POD, "172.30.0.10", 80)
    assert approx(tr.destinations()) == {"10.1.0.2:8080": 0.5, "10.2.0.2:8080": 0.5}
    stat = [s for s in tr.paths[0].steps if s.branch is not None]
    assert stat[0].matched and stat[0].branch == 0.5
    assert not tr.paths[1].steps[len(tr.paths[1].steps) - 1].rule.startswith("-A KUBE-SVC")
    assert all(not p.masqueraded for p in tr.paths)


def test_three_endpoints_one_third_each() -> None:
    eps = ["10.1.0.2:80", "10.1.0.3:80", "10.1.0.4:80"]
    tr = run(ruleset(svc("b", "172.30.0.11", 80, eps)), POD, "172.30.0.11", 80)
    assert approx(tr.destinations()) == {ep: round(1 / 3, 6) for ep in eps}
    assert [percent(o.probability) for o in tr.outcomes()] == ["33.33%"] * 3


def test_probabilities_of_many_endpoints_sum_to_one() -> None:
    eps = [f"10.1.0.{i}:80" for i in range(2, 12)]
    tr = run(ruleset(svc("c", "172.30.0.12", 80, eps)), POD, "172.30.0.12", 80)
    assert len(tr.paths) == 10
    assert abs(sum(tr.destinations().values()) - 1.0) < 1e-6
    assert all(abs(p - 0.1) < 1e-6 for p in tr.destinations().values())


def test_session_affinity_not_recorded_by_default() -> None:
    dump = ruleset(svc("d", "172.30.0.13", 80, ["10.1.0.2:80", "10.1.0.3:80"], affinity=True))
    tr = run(dump, POD, "172.30.0.13", 80)
    assert approx(tr.destinations()) == {"10.1.0.2:80": 0.5, "10.1.0.3:80": 0.5}
    rcheck = [s for s in tr.paths[0].steps if "--rcheck" in s.rule]
    assert len(rcheck) == 2 and not any(s.matched for s in rcheck)
    assert "not recorded" in rcheck[0].reason
    assert any("affinity" in n for n in rcheck[0].notes)


def test_session_affinity_recorded_client_sticks() -> None:
    dump = ruleset(svc("d", "172.30.0.13", 80, ["10.1.0.2:80", "10.1.0.3:80"], affinity=True))
    ctx = TraceContext(local_ips=CTX.local_ips, pod_cidrs=CTX.pod_cidrs, recent_recorded=frozenset({"KUBE-SEP-d1"}))
    tr = run(dump, POD, "172.30.0.13", 80, ctx=ctx)
    assert tr.destinations() == {"10.1.0.3:80": 1.0}
    assert any(s.matched and "already recorded" in s.reason for s in tr.paths[0].steps)


# -- masquerade -----------------------------------------------------------------------------


def test_negated_source_masquerades_off_cluster_clients_only() -> None:
    dump = ruleset(svc("a", "172.30.0.10", 80, ["10.1.0.2:80"]))
    from_pod = run(dump, POD, "172.30.0.10", 80)
    from_out = run(dump, OUTSIDE, "172.30.0.10", 80, origin="outside")
    assert not from_pod.paths[0].masqueraded
    assert "source 10.0.1.5 is in 10.0.0.0/8" in masquerade_reason(from_pod.paths[0])
    assert from_out.paths[0].masqueraded
    assert from_out.paths[0].masq_marks[0].chain == "KUBE-SVC-a"
    assert "MASQUERADE" in masquerade_reason(from_out.paths[0])


def test_interface_prefix_detector() -> None:
    dump = ruleset(svc("a", "172.30.0.10", 80, ["10.1.0.2:80"], masq="! -i veth+"))
    pod = run(dump, POD, "172.30.0.10", 80, in_iface="veth1a2b3c")
    out = run(dump, OUTSIDE, "172.30.0.10", 80, origin="outside")
    assert not pod.paths[0].masqueraded
    assert out.paths[0].masqueraded
    mark_step = out.paths[0].masq_marks[0]
    assert "input interface eth0 does not match veth+" in mark_step.reason


def test_bridge_interface_detector() -> None:
    dump = ruleset(svc("a", "172.30.0.10", 80, ["10.1.0.2:80"], masq="! -i cni0"))
    assert not run(dump, POD, "172.30.0.10", 80).paths[0].masqueraded  # pods come in on cni0
    assert run(dump, OUTSIDE, "172.30.0.10", 80, origin="outside").paths[0].masqueraded


def test_masquerade_all() -> None:
    dump = ruleset(svc("a", "172.30.0.10", 80, ["10.1.0.2:80"], masq=""))
    tr = run(dump, POD, "172.30.0.10", 80)
    assert tr.paths[0].masqueraded
    assert tr.paths[0].masq_marks[0].reason.startswith("-p tcp")


def test_hairpin_endpoint_masquerades_itself() -> None:
    dump = ruleset(svc("a", "172.30.0.10", 80, ["10.1.0.2:80"]))
    tr = run(dump, "10.1.0.2", "172.30.0.10", 80)
    path = tr.paths[0]
    assert path.masqueraded
    assert path.masq_marks[0].chain == "KUBE-SEP-a0"
    assert "source 10.1.0.2 is in 10.1.0.2" in path.masq_marks[0].reason


def test_postrouting_return_and_mark_clearing() -> None:
    dump = ruleset(svc("a", "172.30.0.10", 80, ["10.1.0.2:80"]))
    plain = run(dump, POD, "172.30.0.10", 80).paths[0]
    ret = [s for s in plain.steps if s.chain == "KUBE-POSTROUTING"]
    assert len(ret) == 1 and ret[0].matched and "RETURN" in ret[0].action
    marked = run(dump, OUTSIDE, "172.30.0.10", 80, origin="outside").paths[0]
    assert marked.packet.mark == 0  # --xor-mark cleared the bit before MASQUERADE
    assert [s.index for s in marked.steps if s.chain == "KUBE-POSTROUTING"] == [1, 2, 3]


def test_marked_packet_delivered_locally_is_not_masqueraded() -> None:
    dump = ruleset(svc("h", "172.30.0.20", 80, [f"{NODE_IP}:10250"]))
    tr = run(dump, OUTSIDE, "172.30.0.20", 80, origin="outside")
    path = tr.paths[0]
    assert path.dnat == f"{NODE_IP}:10250" and path.delivered == DELIVERED_LOCAL
    assert path.hooks == ["nat PREROUTING", "filter INPUT"]
    assert path.masq_marks and not path.masqueraded
    assert "delivered locally" in masquerade_reason(path)


# -- NodePorts, LOCAL, eTP Local ----------------------------------------------------------------

NP = svc("n", "172.30.0.30", 80, ["10.1.0.2:80"], chain="KUBE-SVC-n") + """\
-A KUBE-NODEPORTS -m comment --comment ns/n -m tcp -p tcp -d 127.0.0.0/8 --dport 30080 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-n
-A KUBE-NODEPORTS -m comment --comment ns/n -m tcp -p tcp --dport 30080 -j KUBE-EXT-n
-A KUBE-EXT-n -m comment --comment "masquerade traffic for ns/n external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-n -j KUBE-SVC-n
"""  # noqa: E501


def test_nodeport_via_addrtype_local() -> None:
    tr = run(ruleset(NP), OUTSIDE, NODE_IP, 30080, origin="outside")
    path = tr.paths[0]
    assert path.dnat == "10.1.0.2:80" and path.masqueraded
    last = next(s for s in path.steps if s.chain == "KUBE-SERVICES" and s.matched)
    assert "destination 192.168.0.2 is LOCAL" in last.reason
    assert path.masq_marks[0].chain == "KUBE-EXT-n"


def test_nodeport_on_non_local_address_does_not_match() -> None:
    tr = run(ruleset(NP), OUTSIDE, "192.168.0.99", 30080, origin="outside")
    path = tr.paths[0]
    assert path.dnat is None
    miss = next(s for s in path.steps if s.chain == "KUBE-SERVICES" and "addrtype" in s.rule)
    assert not miss.matched and "not LOCAL" in miss.reason


def test_localhost_nodeport_nfacct_always_matches() -> None:
    tr = run(ruleset(NP), "127.0.0.1", "127.0.0.1", 30080, origin="node")
    path = tr.paths[0]
    assert path.dnat == "10.1.0.2:80" and path.masqueraded
    first = next(s for s in path.steps if s.chain == "KUBE-NODEPORTS")
    assert first.matched and first.index == 1 and "nfacct" in first.rule
    assert path.hooks[:3] == ["nat OUTPUT", "filter OUTPUT", "nat POSTROUTING"]


def test_localnet_block_drops_undnated_loopback_from_outside() -> None:
    tr = run(ruleset(NP), OUTSIDE, "127.0.0.1", 9999, origin="outside")
    path = tr.paths[0]
    assert path.verdict == "DROP"
    assert path.verdict_step.chain == "KUBE-FIREWALL"
    # After DNAT the conntrack state includes DNAT, so the same rule lets the NodePort through.
    ok = run(ruleset(NP), OUTSIDE, "127.0.0.1", 30080, origin="outside").paths[0]
    assert ok.dnat == "10.1.0.2:80" and ok.verdict == "ACCEPT"


ETP_LOCAL = svc("l", "172.30.0.40", 80, ["10.1.0.2:80", "10.2.0.9:80"], chain="KUBE-SVC-l") + """\
-A KUBE-SERVICES -m comment --comment "ns/l external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-l
-A KUBE-EXT-l -m comment --comment "pod traffic for ns/l external destinations" -s 10.0.0.0/8 -j KUBE-SVC-l
-A KUBE-EXT-l -m comment --comment "masquerade LOCAL traffic for ns/l external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-l -m comment --comment "route LOCAL traffic for ns/l external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-l
-A KUBE-EXT-l -j KUBE-SVL-l
-A KUBE-SVL-l -m comment --comment "ns/l -> 10.2.0.9:80" -j KUBE-SEP-l1
"""  # noqa: E501


def test_etp_local_outside_client_only_local_endpoint_no_masq() -> None:
    tr = run(ruleset(ETP_LOCAL), OUTSIDE, "192.168.99.22", 80, origin="outside")
    assert tr.destinations() == {"10.2.0.9:80": 1.0}
    assert not tr.paths[0].masqueraded


def test_etp_local_pod_client_uses_all_endpoints() -> None:
    tr = run(ruleset(ETP_LOCAL), POD, "192.168.99.22", 80)
    assert approx(tr.destinations()) == {"10.1.0.2:80": 0.5, "10.2.0.9:80": 0.5}
    assert all(not p.masqueraded for p in tr.paths)


def test_etp_local_node_client_src_type_local_masquerades() -> None:
    tr = run(ruleset(ETP_LOCAL), NODE_IP, "192.168.99.22", 80, origin="node")
    assert approx(tr.destinations()) == {"10.1.0.2:80": 0.5, "10.2.0.9:80": 0.5}
    assert all(p.masqueraded for p in tr.paths)
    assert "source 192.168.0.2 is LOCAL" in tr.paths[0].masq_marks[0].reason


def test_etp_local_without_local_endpoints_drops_in_filter() -> None:
    nat = ETP_LOCAL.replace("-A KUBE-EXT-l -j KUBE-SVL-l\n", "")
    filt = ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns/l has no local endpoints" -m tcp -p tcp '
            "-d 192.168.99.22 --dport 80 -j DROP\n")
    tr = run(ruleset(nat, filt), OUTSIDE, "192.168.99.22", 80, origin="outside")
    path = tr.paths[0]
    assert path.dnat is None and path.verdict == "DROP"
    assert path.verdict_step.chain == "KUBE-EXTERNAL-SERVICES"
    assert path.hooks == ["nat PREROUTING", "filter FORWARD"]


# -- filter verdicts -------------------------------------------------------------------------


NO_EP = ('-A KUBE-SERVICES -m comment --comment "ns/e has no endpoints" -m tcp -p tcp -d 172.30.0.50 '
         "--dport 80 -j REJECT\n")


def test_no_endpoints_rejects_forwarded_and_local_traffic() -> None:
    dump = ruleset(filter_=NO_EP)
    fwd = run(dump, POD, "172.30.0.50", 80).paths[0]
    assert fwd.verdict == "REJECT" and fwd.verdict_step.hook == "filter FORWARD"
    own = run(dump, NODE_IP, "172.30.0.50", 80, origin="node").paths[0]
    assert own.verdict == "REJECT" and own.verdict_step.hook == "filter OUTPUT"
    assert kube_proxy_view(run(dump, POD, "172.30.0.50", 80)) == ("REJECT", False)


def test_no_local_endpoints_drop() -> None:
    rule = ('-A KUBE-SERVICES -m comment --comment "ns/i has no local endpoints" -m tcp -p tcp '
            "-d 172.30.0.51 --dport 80 -j DROP\n")
    tr = run(ruleset(filter_=rule), POD, "172.30.0.51", 80)
    assert tr.paths[0].verdict == "DROP"
    assert tr.outcomes()[0].verdict == "DROP" and tr.outcomes()[0].probability == 1.0


FW = svc("f", "172.30.0.60", 80, ["10.1.0.2:80"], chain="KUBE-SVC-f") + """\
-A KUBE-SERVICES -m comment --comment "ns/f loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-f
-A KUBE-FW-f -m comment --comment "ns/f loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-f
-A KUBE-FW-f -m comment --comment "other traffic to ns/f will be dropped by KUBE-PROXY-FIREWALL"
-A KUBE-EXT-f -m comment --comment "masquerade traffic for ns/f external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-f -j KUBE-SVC-f
"""
FW_FILTER = ('-A KUBE-PROXY-FIREWALL -m comment --comment "ns/f traffic not accepted by KUBE-FW-f" '
             "-m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP\n")


def test_loadbalancer_source_range_allows() -> None:
    tr = run(ruleset(FW, FW_FILTER), OUTSIDE, "5.6.7.8", 80, origin="outside")
    path = tr.paths[0]
    assert path.dnat == "10.1.0.2:80" and path.verdict == "ACCEPT" and path.masqueraded
    # KUBE-FORWARD accepts the marked packet explicitly.
    assert path.verdict_step.chain == "KUBE-FORWARD" and path.verdict_step.index == 2


def test_loadbalancer_source_range_blocks_via_comment_only_rule() -> None:
    tr = run(ruleset(FW, FW_FILTER), "203.0.113.130", "5.6.7.8", 80, origin="outside")
    path = tr.paths[0]
    comment_only = next(s for s in path.steps if s.chain == "KUBE-FW-f" and s.index == 2)
    assert comment_only.matched and "no target" in comment_only.action
    assert path.dnat is None and path.verdict == "DROP"
    assert path.verdict_step.chain == "KUBE-PROXY-FIREWALL"
    assert kube_proxy_view(tr) == ("DROP", False)


def test_health_check_nodeport_accepted_in_input() -> None:
    hc = ('-A KUBE-NODEPORTS -m comment --comment "ns/f health check node port" -m tcp -p tcp '
          "--dport 30000 -j ACCEPT\n")
    tr = run(ruleset(filter_=hc), NODE_IP, NODE_IP, 30000, origin="node")
    path = tr.paths[0]
    assert path.hooks == ["nat OUTPUT", "filter OUTPUT", "nat POSTROUTING", "filter INPUT"]
    assert path.verdict == "ACCEPT" and path.verdict_step.chain == "KUBE-NODEPORTS"
    outside = run(ruleset(filter_=hc), OUTSIDE, NODE_IP, 30000, origin="outside").paths[0]
    assert outside.hooks == ["nat PREROUTING", "filter INPUT"] and outside.verdict_step.chain == "KUBE-NODEPORTS"


# -- generic iptables semantics ----------------------------------------------------------------


def _live(nat: str = "", filt: str = "", forward_policy: str = "ACCEPT") -> str:
    return (f"*filter\n:INPUT ACCEPT [0:0]\n:FORWARD {forward_policy} [0:0]\n:OUTPUT ACCEPT [0:0]\n{filt}COMMIT\n"
            f"*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
            f":POSTROUTING ACCEPT [0:0]\n{nat}COMMIT\n")


def test_forward_policy_drop_from_iptables_save() -> None:
    tr = trace_live_text(_live(forward_policy="DROP"), Packet(POD, 1, "10.9.9.9", 80), CTX)
    path = tr.paths[0]
    assert path.verdict == "DROP" and path.verdict_step.index == 0
    assert kube_proxy_view(tr) == ("", False)  # a policy is not a rule target for kube-proxy's tracer


def test_return_continues_in_caller_and_goto_skips_it() -> None:
    nat = (":A - [0:0]\n:B - [0:0]\n-A PREROUTING -j A\n-A PREROUTING -j DNAT --to-destination 10.9.0.1:1\n"
           "-A A -j RETURN\n-A A -j DNAT --to-destination 10.9.0.2:2\n")
    assert trace_live_text(_live(nat), Packet(POD, 1, "10.8.0.1", 80), CTX).paths[0].dnat == "10.9.0.1:1"
    nat_goto = (":A - [0:0]\n:B - [0:0]\n-A PREROUTING -j A\n-A PREROUTING -j DNAT --to-destination 10.9.0.1:1\n"
                "-A A -g B\n-A A -j DNAT --to-destination 10.9.0.2:2\n-A B -m mark --mark 0x1 -j ACCEPT\n")
    path = trace_live_text(_live(nat_goto), Packet(POD, 1, "10.8.0.1", 80), CTX).paths[0]
    assert path.dnat == "10.9.0.1:1"  # B fell through: back to PREROUTING, not to A's rule 2
    assert not any(s.chain == "A" and s.index == 2 for s in path.steps)


def test_jump_loop_is_cut_by_depth_limit() -> None:
    nat = ":A - [0:0]\n:B - [0:0]\n-A PREROUTING -j A\n-A A -j B\n-A B -j A\n"
    tr = trace_live_text(_live(nat), Packet(POD, 1, "10.8.0.1", 80), CTX)
    assert tr.paths[0].verdict == ERROR
    assert any("depth limit" in n for n in tr.paths[0].notes)


def test_unmodelled_match_and_target_are_reported() -> None:
    nat = ("-A PREROUTING -m set --match-set blocked src -j DNAT --to-destination 10.9.0.1:1\n"
           "-A PREROUTING -j CLASSIFY --set-class 1:1\n")
    tr = trace_live_text(_live(nat), Packet(POD, 1, "10.8.0.1", 80), CTX)
    steps = tr.paths[0].steps
    assert not steps[0].matched and "not modelled" in steps[0].reason
    assert "not modelled" in steps[1].action
    assert any("CLASSIFY" in w for w in tr.warnings)


def test_protocol_and_port_mismatch_reasons() -> None:
    dump = ruleset(svc("a", "172.30.0.10", 80, ["10.1.0.2:80"]))
    udp = run(dump, POD, "172.30.0.10", 80, proto="udp")
    step = next(s for s in udp.paths[0].steps if s.chain == "KUBE-SERVICES" and s.table == "nat")
    assert not step.matched and "protocol udp is not tcp" in step.reason
    other = run(dump, POD, "172.30.0.10", 81)
    step = next(s for s in other.paths[0].steps if s.chain == "KUBE-SERVICES" and s.table == "nat")
    assert "destination port 81 is not 80" in step.reason


def test_udp_and_sctp_services() -> None:
    dump = ruleset(svc("u", "172.30.0.70", 53, ["10.1.0.2:53"], proto="udp")
                   + svc("s", "172.30.0.71", 9, ["10.1.0.3:9"], proto="sctp"))
    assert run(dump, POD, "172.30.0.70", 53, proto="udp").destinations() == {"10.1.0.2:53": 1.0}
    assert run(dump, POD, "172.30.0.71", 9, proto="sctp").destinations() == {"10.1.0.3:9": 1.0}


def test_mark_target_variants() -> None:
    nat = ("-A PREROUTING -j MARK --set-xmark 0xf0/0xff\n-A PREROUTING -j MARK --and-mark 0x30\n"
           "-A PREROUTING -j MARK --or-mark 0x1\n"
           "-A PREROUTING -m mark --mark 0x31 -j DNAT --to-destination 10.9.0.3:3\n")
    path = trace_live_text(_live(nat), Packet(POD, 1, "10.8.0.1", 80), CTX).paths[0]
    assert path.packet.mark == 0x31 and path.dnat == "10.9.0.3:3"
    assert next(s.action for s in path.mark_steps) == "MARK 0x0 -> 0xf0, continue"


def test_iptables_save_forms_with_counters() -> None:
    save = """# Generated by iptables-save v1.8.9
*nat
:PREROUTING ACCEPT [10:600]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [3:180]
:POSTROUTING ACCEPT [3:180]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-X - [0:0]
:KUBE-SEP-Y - [0:0]
[10:600] -A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
[1:60] -A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-X
[1:60] -A KUBE-SVC-X -m comment --comment "default/kubernetes:https -> 192.168.0.2:6443" -j KUBE-SEP-Y
[1:60] -A KUBE-SEP-Y -p tcp -m comment --comment "default/kubernetes:https" -m tcp -j DNAT --to-destination 192.168.0.2:6443
COMMIT
"""  # noqa: E501
    tr = trace_live_text(save, Packet(POD, 1, "10.96.0.1", 443), CTX)
    assert tr.destinations() == {"192.168.0.2:6443": 1.0}
    assert tr.paths[0].hooks == ["nat PREROUTING", "filter INPUT"]  # endpoint is the node itself
    assert parse_live(save).chain("nat", "PREROUTING").policy == "ACCEPT"


def test_ipv6_service() -> None:
    ctx = TraceContext(local_ips=frozenset({"2001:db8::1"}), pod_cidrs=("fd00:10::/32",))
    dump = ruleset(svc("v6", "fd00:172:30::41", 80, ["[fd00:10:180::1]:80", "[fd00:10:180::2:1]:80"],
                       masq="! -s fd00:10::/32"))
    tr = run(dump, "fd00:10::2", "fd00:172:30::41", 80, ctx=ctx)
    assert approx(tr.destinations()) == {"[fd00:10:180::1]:80": 0.5, "[fd00:10:180::2:1]:80": 0.5}
    assert tr.paths[0].packet.dst == "fd00:10:180::1" and tr.paths[0].packet.dport == 80


# -- combine, parsing, validation, rendering ------------------------------------------------------


def test_combine_prepends_jump_rules_in_kube_proxy_order() -> None:
    restore = "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SEP-OLD - [0:0]\n-X KUBE-SEP-OLD\nCOMMIT\n"
    jumps = [JumpRule("filter", "FORWARD", ("-j", "A")), JumpRule("filter", "FORWARD", ("-j", "B")),
             JumpRule("nat", "PREROUTING", ("-m", "comment", "--comment", "two words", "-j", "KUBE-SERVICES"))]
    dump = combine(restore, jumps)
    assert dump.chain("filter", "FORWARD").rules == ["-j B", "-j A"]
    assert dump.chain("nat", "PREROUTING").rules == ['-m comment --comment "two words" -j KUBE-SERVICES']
    assert dump.chain("nat", "KUBE-SEP-OLD") is None
    assert dump.chain("nat", "POSTROUTING").policy == "ACCEPT"
    again = combine(restore, [*jumps, jumps[0]])  # an existing rule is not inserted twice (-C)
    assert again.chain("filter", "FORWARD").rules == ["-j B", "-j A"]


def test_rule_parser_forms() -> None:
    r = parse_rule("-s ! 10.0.0.0/8 --protocol udp --dport 53 -m comment --comment two words -j ACCEPT")
    assert [(m.option, m.negated, m.values) for m in r.matches] == [
        ("-s", True, ("10.0.0.0/8",)), ("-p", False, ("udp",)), ("--dport", False, ("53",)),
        ("--comment", False, ("two", "words"))]
    assert r.matches[2].module == "udp" and r.target == "ACCEPT"
    dnat = parse_rule("-m tcp -p tcp -j DNAT --to-destination [fd00::1]:80")
    assert dnat.target_opt("--to-destination") == "[fd00::1]:80"
    for bad in ("-j", "! ! -s 1.2.3.4", "--dport 80 -j ACCEPT", 'comment "unterminated', "-s"):
        with pytest.raises(RuleError):
            parse_rule(bad)


@pytest.mark.parametrize(("src", "dst", "proto", "origin"), [
    ("10.0.0.1", "not-an-ip", "tcp", "pod"),
    ("10.0.0.1", "fd00::1", "tcp", "pod"),
    ("10.0.0.1", "10.0.0.2", "icmp", "pod"),
    ("10.0.0.1", "10.0.0.2", "tcp", "mars"),
])
def test_packet_validation(src: str, dst: str, proto: str, origin: str) -> None:
    with pytest.raises(TraceError):
        Packet(src, 1, dst, 80, proto, origin)


def test_text_and_json_reports() -> None:
    tr = run(ruleset(svc("a", "172.30.0.10", 80, ["10.1.0.2:8080", "10.2.0.2:8080"])), OUTSIDE,
             "172.30.0.10", 80, origin="outside")
    text = render_text(tr)
    assert "== nat PREROUTING ==" in text and "nat/KUBE-SVC-a" in text and "filter/FORWARD" in text
    assert "✓" in text and "✗" in text and "[random 50%]" in text
    assert "Outcome:" in text and "50%  DNAT → 10.1.0.2:8080; ACCEPT; masqueraded" in text
    assert "marked by nat/KUBE-SVC-a rule 1" in text
    short = render_text(tr, only_matched=True)
    assert "non-matching rule" in short and len(short) < len(text)
    data = json.loads(render_json(tr))
    assert [o["destination"] for o in data["outcomes"]] == ["10.1.0.2:8080", "10.2.0.2:8080"]
    assert abs(sum(o["probability"] for o in data["outcomes"]) - 1.0) < 1e-9
    assert data["paths"][0]["masqueraded"] is True and data["paths"][0]["steps"][0]["table"] == "nat"
