"""kube-proxy's own packet-tracer expectations, reproduced on svcnet's rules.

* `packet_flow_tests` of every vector that has them: full-restore vectors are traced as they are,
  single-chain vectors (`nodeports-*`) are rendered by svcnet's renderer first;
* the flows of upstream `TestTracePacket` (pkg/proxy/iptables/proxier_test.go), whose rules are the
  `overall` vector's expectation plus the built-in jump rules.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from vectors import VECTOR_DIR, PacketFlow, load_vector, vector_names

from svcnet.explain.combine import combine
from svcnet.explain.compat import kube_proxy_view
from svcnet.explain.trace import ORIGIN_NODE, ORIGIN_OUTSIDE, ORIGIN_POD, Packet, TraceContext, trace
from svcnet.model.types import ProxierSettings
from svcnet.render.dump import Dump
from svcnet.render.iptables import render_restore
from svcnet.render.jumps import jump_rules

SRC_PORT = 40000


def _flows() -> list[tuple[str, int]]:
    out = []
    for name in vector_names():
        vec = load_vector(name)
        out.extend((name, i) for i in range(len(vec.packet_flow_tests)))
    return out


FLOWS = _flows()


def _origin(ctx: TraceContext, src: str, pod_cidr: str | None) -> str:
    """Local sources are the node itself; pod-CIDR sources are pods; the rest is outside."""
    if ctx.match_context().is_local(src):
        return ORIGIN_NODE
    addr = ipaddress.ip_address(src)
    if pod_cidr and addr.version == ipaddress.ip_network(pod_cidr).version and addr in ipaddress.ip_network(
            pod_cidr):
        return ORIGIN_POD
    return ORIGIN_OUTSIDE


def _check(dump: Dump, flow: PacketFlow, ctx: TraceContext, pod_cidr: str | None) -> None:
    origin = _origin(ctx, flow.source_ip, pod_cidr)
    pkt = Packet(flow.source_ip, SRC_PORT, flow.dest_ip, flow.dest_port, flow.protocol.lower(), origin)
    tr = trace(dump, pkt, ctx)
    assert not tr.warnings
    assert kube_proxy_view(tr) == (flow.output, flow.masq), flow.name
    assert abs(sum(p.probability for p in tr.paths) - 1.0) < 1e-9


@pytest.mark.parametrize(("name", "index"), FLOWS, ids=[f"{n}-{i}" for n, i in FLOWS])
def test_vector_packet_flow(name: str, index: int) -> None:
    vec = load_vector(name)
    flow = vec.packet_flow_tests[index]
    # Full-restore vectors are traced verbatim; single-chain ones are rendered by svcnet.
    restore = vec.expected if vec.expect_scope is None else render_restore(
        vec.settings, vec.ports, vec.stale_chains)
    dump = combine(restore, jump_rules(vec.settings))
    cidr = vec.settings.local_detector.cidr
    ctx = TraceContext(local_ips=frozenset(vec.tracer_local_ips), pod_cidrs=(cidr,) if cidr else ())
    _check(dump, flow, ctx, cidr)


def test_vectors_have_packet_flows() -> None:
    assert len(FLOWS) >= 35
    assert {n for n, _ in FLOWS} >= {"nodeports-ipv4-localhost-on", "nodeports-ipv6-npa-multiple"}


# Upstream TestTracePacket: (name, source, destination, port, output, masq), testNodeIPs below.
TEST_NODE_IPS = ("192.168.0.2", "192.168.1.2", "192.168.99.11", "2001:db8::1", "2001:db8:1::2")
TRACE_PACKET_FLOWS = [
    ("no match", "10.0.0.2", "10.0.0.3", 80, "", False),
    ("single endpoint", "10.0.0.2", "172.30.0.41", 80, "10.180.0.1:80", False),
    ("multiple endpoints", "10.0.0.2", "172.30.0.44", 80, "10.180.0.4:80, 10.180.0.5:80", False),
    ("LOCAL, KUBE-MARK-MASQ", "192.168.0.2", "192.168.99.22", 80, "10.180.0.2:80", True),
    ("DROP", "203.0.113.2", "192.168.99.22", 80, "DROP", False),
    ("ACCEPT (NodePortHealthCheck)", "192.168.0.2", "192.168.0.2", 30000, "ACCEPT", False),
    ("REJECT", "10.0.0.2", "172.30.0.46", 80, "REJECT", False),
]


@pytest.mark.parametrize(("name", "src", "dst", "port", "output", "masq"), TRACE_PACKET_FLOWS,
                         ids=[f[0] for f in TRACE_PACKET_FLOWS])
def test_upstream_trace_packet(name: str, src: str, dst: str, port: int, output: str, masq: bool) -> None:
    path = Path(VECTOR_DIR / "overall.expected.rules")
    settings = ProxierSettings("test-node", ("192.168.0.2",))
    dump = combine(path.read_text(), jump_rules(settings))
    ctx = TraceContext(local_ips=frozenset(TEST_NODE_IPS), pod_cidrs=("10.0.0.0/8",))
    _check(dump, PacketFlow(name, src, dst, port, "TCP", output, masq), ctx, "10.0.0.0/8")
