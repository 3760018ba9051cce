"""A trace summarised the way kube-proxy's own packet tracer reports it.

kube-proxy's unit tests (`tracePacket` in pkg/proxy/iptables/proxier_test.go) return the DNAT
destinations and the terminal targets (ACCEPT, DROP, REJECT) hit in its four filter service
chains, joined with ", ", plus whether KUBE-MARK-MASQ was reached. Built-in chain policies and
other chains (KUBE-FORWARD, KUBE-FIREWALL) do not contribute. This lets the vectors check us.
"""

from __future__ import annotations

from svcnet.explain.trace import Trace
from svcnet.render.chains import KUBE_EXTERNAL_SERVICES, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL, KUBE_SERVICES

UPSTREAM_FILTER_CHAINS = frozenset({KUBE_SERVICES, KUBE_EXTERNAL_SERVICES, KUBE_NODEPORTS, KUBE_PROXY_FIREWALL})


def kube_proxy_view(tr: Trace) -> tuple[str, bool]:
    """(output, masq) as kube-proxy's tracer defines them."""
    outputs: list[str] = []
    masq = False
    for path in tr.paths:
        if path.dnat and path.dnat not in outputs:
            outputs.append(path.dnat)
        for fv in path.filter_verdicts:
            if not fv.by_policy and fv.step.chain in UPSTREAM_FILTER_CHAINS and fv.verdict not in outputs:
                outputs.append(fv.verdict)
        masq = masq or bool(path.masq_marks)
    return ", ".join(outputs), masq
