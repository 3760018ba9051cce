"""A packet-flow expectation of kube-proxy's nftables tests traced by `svcnet explain`'s tracer
(svcnet/explain/nft.py), reduced to the vectors' spelling.

kube-proxy's test tracer (helpers_test.go `tracePacket`) reports the DNAT targets of every numgen
branch joined by ", ", or the DROP/REJECT verdict, and `masq` when a rule jumped to
mark-for-masquerade; the product's trace has one path per branch, each with those facts.
"""

from __future__ import annotations

from typing import Any

from svcnet.explain.nft import parse_table, trace_nft
from svcnet.explain.trace import ORIGIN_OUTSIDE, Packet, Trace, TraceContext

SOURCE_PORT = 40000  # kube-proxy's flows give no source port; no rule looks at it


def explain(table: str, flow: dict[str, Any], local_ips: frozenset[str]) -> Trace:
    packet = Packet(flow["source_ip"], SOURCE_PORT, flow["dest_ip"], flow["dest_port"], flow["protocol"].lower(),
                    ORIGIN_OUTSIDE)
    return trace_nft(parse_table(table), packet, context(local_ips))


def context(local_ips: frozenset[str]) -> TraceContext:
    """The node facts of kube-proxy's test tracer: its local IPs, no session affinity recorded."""
    return TraceContext(local_ips=local_ips)


def vector_result(tr: Trace) -> tuple[str, bool]:
    """(output, masq) as kube-proxy's nftables tests spell them."""
    stopped = sorted({p.verdict for p in tr.paths if p.verdict != "ACCEPT"})
    output = "/".join(stopped) if stopped else ", ".join(p.dnat for p in tr.paths if p.dnat)
    return output, any(p.masq_marks for p in tr.paths)
