"""Real traffic: from the nodes, from a pod on each node, and from outside the cluster.

Each probe is one remote command doing a bounded batch of requests in the service port's protocol
(HTTP over a new TCP connection, a UDP datagram from a new socket, or a new SCTP association each;
per-request timeout, overall deadline, stop after a couple of timeouts).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from svcnet.model.dualstack import FAMILY_NAMES
from svcnet.model.family import family_of
from svcnet.model.types import SCTP, TCP, UDP, ServicePort
from svcnet.verify.context import VerifyContext, VerifyError
from svcnet.verify.stats import ALPHA, requests_for, split_test
from svcnet.verify.targets import (
    ExternalAddress,
    Source,
    dataplane_skip_reason,
    expected_pods,
    in_source_ranges,
    local_endpoints,
    node_address,
    node_cluster_endpoints,
    port_family,
)

ANSWER_REQUESTS = 20  # per source and service port
AFFINITY_REQUESTS = 20
WHOAMI_REQUESTS = 5
REQUEST_TIMEOUT = 3.0  # seconds per request (generous: a loaded 2-core machine stalls for a second)
PROBE_DEADLINE = 10.0  # seconds per batch
MAX_TIMEOUTS = 2  # timeouts that end a batch (one failure already fails the check)
# A timed-out request is tried once more on a new connection before it counts as failed: on a
# loaded machine a connection is now and then lost (twice in about ten full test runs here; not
# root-caused), while a missing or wrong rule fails every try. Retries are reported with the answers.
RETRY_TIMEOUTS = 1
NO_ANSWER_TRIES = 2  # requests that must all go unanswered where nothing may answer
# A REJECT refuses a connect attempt (RST or ICMP unreachable) before this timeout; a DROP, or no
# rule, lets it time out. The refusal itself is the proof: the kernel rate-limits ICMP errors (1/s by
# default), so after many REJECTs one may arrive only with the SYN's retransmit, about 1 s later.
REJECT_TIMEOUT = 3.0
SECONDS_PER_SPLIT_REQUEST = 0.05
SPLIT_MAX_FAILED = 0.01  # fraction of split-test requests that may be lost without failing it
PROBE_OP = {TCP: "http", UDP: "udp", SCTP: "sctp"}  # the probe's request kind per service protocol


def ask(sp: ServicePort, host: str, port: int, count: int, whoami: bool = False, source: str | None = None,
        timeout: float = REQUEST_TIMEOUT, deadline: float = PROBE_DEADLINE, max_timeouts: int = MAX_TIMEOUTS,
        retry_timeouts: int = RETRY_TIMEOUTS) -> dict:
    """A probe request: `count` requests in `sp`'s protocol to host:port (from `source` if given)."""
    req = {"op": PROBE_OP[sp.protocol], "host": host, "port": port, "count": count, "timeout": timeout,
           "deadline": deadline, "max_timeouts": max_timeouts, "retry_timeouts": retry_timeouts, "whoami": whoami}
    return {**req, "source": source} if source else req


def supported(resp: dict, where: str) -> dict:
    """The probe's answer; a skip where its kernel cannot speak the protocol (no SCTP sockets)."""
    if resp.get("unsupported"):
        pytest.skip(f"{where}: {resp['unsupported']}; checked for rules only")
    return resp


def probe(ctx: VerifyContext, src: Source, req: dict, where: str) -> dict:
    return supported(ctx.probe(src, req), where)


def probe_outside(ctx: VerifyContext, req: dict, where: str) -> dict:
    return supported(ctx.probe_outside(req), where)


def summary(resp: dict) -> str:
    """'answered by a x10, b x9; timeout x1 (stopped: ...)' for a probe response."""
    parts = []
    answers = resp.get("answers") or {}
    if answers:
        parts.append("answered by " + ", ".join(f"{k} x{v}" for k, v in sorted(answers.items())))
    errs = resp.get("errors") or {}
    if errs:
        parts.append(", ".join(f"{k} x{v}" for k, v in sorted(errs.items())))
    if resp.get("retried"):
        parts.append(f"retried after a timeout x{resp['retried']}")
    text = "; ".join(parts) or "no answers"
    return text + (f" (stopped early: {resp['stopped']})" if resp.get("stopped") else "")


def failures(resp: dict) -> int:
    return sum((resp.get("errors") or {}).values())


def strangers(resp: dict, expected: Sequence[str]) -> list[str]:
    return sorted(set(resp.get("answers") or {}) - set(expected))


def require_dataplane(ctx: VerifyContext, sp: ServicePort) -> None:
    reason = dataplane_skip_reason(ctx.cluster, sp)
    if reason:
        pytest.skip(reason)


def require_source_family(ctx: VerifyContext, src: Source, sp: ServicePort) -> None:
    """A source without an address of the port's family cannot send it traffic (a single-stack pod)."""
    version = port_family(sp)
    if not src.has_family(ctx.cluster, version):
        pytest.skip(f"{src.label} has no {FAMILY_NAMES[version]} address to reach {sp.spn}'s "
                    f"{FAMILY_NAMES[version]} ClusterIP from")


def hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def target(ip: str, port: int, sp: ServicePort) -> str:
    """`ip:port`, with the protocol when it is not TCP (`10.0.0.1:53/UDP`)."""
    return hostport(ip, port) + ("" if sp.protocol == TCP else f"/{sp.protocol}")


def check_answers(where: str, resp: dict, expected: Sequence[str]) -> None:
    """All requests answered, and only by the expected pods."""
    bad = strangers(resp, expected)
    if failures(resp) or bad or not resp.get("answers"):
        extra = f"; unexpected answers from {', '.join(bad)} (expected {', '.join(expected)})" if bad else ""
        raise VerifyError(f"{where}: {failures(resp)} of {resp.get('sent')} requests failed: {summary(resp)}{extra}")


def cluster_endpoints(ctx: VerifyContext, sp: ServicePort, node: str) -> list[str]:
    """Pods that may answer cluster traffic from `node` (local ones only with internalTrafficPolicy Local,
    those its topology hints allow otherwise)."""
    if sp.internal_policy_local:
        local = local_endpoints(sp, node)
        if not local:
            pytest.skip(f"{sp.spn}: internalTrafficPolicy Local and no local endpoint on {node}: dropped by design")
        return expected_pods(ctx.cluster, sp, local)
    return expected_pods(ctx.cluster, sp, node_cluster_endpoints(ctx.cluster, sp, node))


@pytest.mark.svcnet_ports("cluster_ip")
def test_cluster_ip_answers(svcnet_context: VerifyContext, svcnet_source: Source,
                            svcnet_service_port: ServicePort) -> None:
    ctx, src, sp = svcnet_context, svcnet_source, svcnet_service_port
    require_dataplane(ctx, sp)
    require_source_family(ctx, src, sp)
    expected = cluster_endpoints(ctx, sp, src.node)
    where = f"{src.label} -> {target(sp.cluster_ip or '', sp.port, sp)} ({sp.spn})"
    check_answers(where, probe(ctx, src, ask(sp, sp.cluster_ip or "", sp.port, ANSWER_REQUESTS), where), expected)


@pytest.mark.svcnet_ports("split")
def test_endpoints_share_traffic_evenly(svcnet_context: VerifyContext, svcnet_node: str,
                                        svcnet_service_port: ServicePort) -> None:
    """Every ready endpoint gets traffic; chi-square goodness of fit to an equal split (alpha 1e-6)."""
    ctx, sp = svcnet_context, svcnet_service_port
    require_dataplane(ctx, sp)
    expected = cluster_endpoints(ctx, sp, svcnet_node)
    if len(expected) < 2:
        pytest.skip(f"{sp.spn}: one endpoint, nothing to split")
    n = requests_for(len(expected))
    req = ask(sp, sp.cluster_ip or "", sp.port, n, deadline=PROBE_DEADLINE + n * SECONDS_PER_SPLIT_REQUEST)
    where = f"{svcnet_node} -> {target(sp.cluster_ip or '', sp.port, sp)} ({sp.spn})"
    resp = probe(ctx, Source(svcnet_node), req, where)
    result = split_test(resp.get("answers") or {}, expected, ALPHA)
    problems = []
    # Reachability is test_cluster_ip_answers' job (every request must answer there); this test is
    # about the distribution, so a stray lost request (<= 1%) does not fail it, more does.
    if failures(resp) > SPLIT_MAX_FAILED * int(resp.get("sent") or n):
        problems.append(f"{failures(resp)} of {resp.get('sent')} requests failed")
    if strangers(resp, expected):
        problems.append(f"unexpected answers from {', '.join(strangers(resp, expected))}")
    silent = [name for name, count in result.counts if count == 0]
    if silent:
        problems.append(f"endpoint(s) {', '.join(silent)} got no traffic")
    if result.n and not result.ok:
        problems.append("the split is not consistent with equal probability")
    if problems:
        raise VerifyError(f"{where}: {'; '.join(problems)}: {summary(resp)}; {result.describe()}")


@pytest.mark.svcnet_ports("affinity")
def test_client_ip_affinity(svcnet_context: VerifyContext, svcnet_source: Source,
                            svcnet_service_port: ServicePort) -> None:
    """sessionAffinity ClientIP: one client always reaches the same endpoint."""
    ctx, src, sp = svcnet_context, svcnet_source, svcnet_service_port
    require_dataplane(ctx, sp)
    require_source_family(ctx, src, sp)
    expected = cluster_endpoints(ctx, sp, src.node)
    where = f"{src.label} -> {target(sp.cluster_ip or '', sp.port, sp)} ({sp.spn}, ClientIP affinity)"
    resp = probe(ctx, src, ask(sp, sp.cluster_ip or "", sp.port, AFFINITY_REQUESTS), where)
    check_answers(where, resp, expected)
    if len(resp["answers"]) != 1:
        raise VerifyError(f"{where}: one client reached {len(resp['answers'])} endpoints: {summary(resp)}")


def node_ip(ctx: VerifyContext, node: str, sp: ServicePort) -> str:
    """The node's address of the port's family, where its NodePort is reached from outside."""
    version = port_family(sp)
    ip = node_address(ctx.cluster.node(node), version)
    if ip is None:
        pytest.skip(f"{node} has no {FAMILY_NAMES[version]} address to reach {sp.spn}'s NodePort at")
    return ip


def outside_client_ip(ctx: VerifyContext, version: int) -> str | None:
    """The address the lab's client sends traffic of family `version` from: its main address, else its
    one address of that family (None: not known, e.g. several the kernel chooses from)."""
    if ctx.outside.client_ip and family_of(ctx.outside.client_ip) == version:
        return ctx.outside.client_ip
    mine = [a for a in ctx.outside.sources if family_of(a) == version]
    return mine[0] if len(mine) == 1 else None


@pytest.mark.svcnet_ports("node_port")
def test_node_port_answers(svcnet_context: VerifyContext, svcnet_target_node: str,
                           svcnet_service_port: ServicePort) -> None:
    """From outside; with externalTrafficPolicy Local only nodes with a local endpoint answer."""
    ctx, node, sp = svcnet_context, svcnet_target_node, svcnet_service_port
    require_dataplane(ctx, sp)
    ip = node_ip(ctx, node, sp)
    where = f"outside -> {node} {target(ip, sp.node_port, sp)} ({sp.spn} NodePort)"
    if sp.external_policy_local:
        local = local_endpoints(sp, node)
        if not local:
            resp = probe_outside(ctx, ask(sp, ip, sp.node_port, NO_ANSWER_TRIES, max_timeouts=NO_ANSWER_TRIES,
                                          retry_timeouts=0), where)
            if resp.get("answers"):
                raise VerifyError(f"{where}: externalTrafficPolicy Local and no local endpoint on {node}, "
                                  f"yet it answered: {summary(resp)}")
            return
        expected = expected_pods(ctx.cluster, sp, local)
    else:
        expected = expected_pods(ctx.cluster, sp, node_cluster_endpoints(ctx.cluster, sp, node))
    check_answers(where, probe_outside(ctx, ask(sp, ip, sp.node_port, ANSWER_REQUESTS), where), expected)


@pytest.mark.svcnet_ports("local_node_port")
def test_node_port_preserves_client_ip(svcnet_context: VerifyContext, svcnet_target_node: str,
                                       svcnet_service_port: ServicePort) -> None:
    """externalTrafficPolicy Local: the pod sees the outside client's own address."""
    ctx, node, sp = svcnet_context, svcnet_target_node, svcnet_service_port
    require_dataplane(ctx, sp)
    local = local_endpoints(sp, node)
    if not local:
        pytest.skip(f"{sp.spn}: no local endpoint on {node} (checked by test_node_port_answers: it must not answer)")
    ip = node_ip(ctx, node, sp)
    where = f"outside -> {node} {target(ip, sp.node_port, sp)} ({sp.spn} NodePort, externalTrafficPolicy Local)"
    resp = probe_outside(ctx, ask(sp, ip, sp.node_port, WHOAMI_REQUESTS, whoami=True), where)
    check_answers(where, resp, expected_pods(ctx.cluster, sp, local))
    seen = resp.get("client_ips") or []
    node_ips = {a for n in ctx.cluster.nodes for a in n.addresses}
    want = outside_client_ip(ctx, port_family(sp))
    if (want and seen != [want]) or node_ips & set(seen):
        raise VerifyError(f"{where}: the source IP was not preserved: the pod saw {', '.join(seen) or 'nothing'}"
                          + (f", expected {want}" if want else ""))


def arrival_node(ctx: VerifyContext, ext: ExternalAddress) -> str | None:
    """The node outside traffic to `ext` reaches: the node holding the address, the one the lab's client
    routes it to; None where something outside svcnet's view (a cloud load balancer, a router) decides."""
    for node in ctx.cluster.nodes:
        if ext.ip in node.addresses:
            return node.name
    routed = dict(ctx.outside.routes).get(ext.ip)
    if ctx.outside.mode == "lab" and routed is None:
        pytest.skip(f"{ext.kind} {ext.ip} of {ext.port.spn} is neither a node address nor routed by the lab's "
                    "client (`lab up` routes the LoadBalancer and external IPs of the description it is "
                    "given); checked for rules only")
    return routed


def external_expected(ctx: VerifyContext, ext: ExternalAddress, where: str) -> list[str]:
    """Pods that may answer outside traffic to `ext` (with eTP Local: those on the node it arrives at)."""
    sp, node = ext.port, arrival_node(ctx, ext)
    eps = node_cluster_endpoints(ctx.cluster, sp, node)
    if sp.external_policy_local and node:
        eps = local_endpoints(sp, node)
        if not eps:
            pytest.skip(f"{where}: externalTrafficPolicy Local and no endpoint on {node}")
    return expected_pods(ctx.cluster, sp, eps)


@pytest.mark.svcnet_ports("open")
def test_external_address_answers(svcnet_context: VerifyContext, svcnet_external: ExternalAddress) -> None:
    """externalIPs and LoadBalancer IPs (without source ranges) answer from outside."""
    ctx, ext = svcnet_context, svcnet_external
    sp = ext.port
    require_dataplane(ctx, sp)
    where = f"outside -> {ext.kind} {target(ext.ip, sp.port, sp)} ({sp.spn})"
    expected = external_expected(ctx, ext, where)
    check_answers(where, probe_outside(ctx, ask(sp, ext.ip, sp.port, ANSWER_REQUESTS), where), expected)


def check_dropped(where: str, resp: dict) -> None:
    """No answer, and no refusal either: kube-proxy drops what a KUBE-FW chain does not accept."""
    if resp.get("answers") or set(resp.get("errors") or {}) - {"timeout"}:
        raise VerifyError(f"{where}: expected the traffic to be dropped, got: {summary(resp)}")


@pytest.mark.svcnet_ports("source_ranges")
def test_load_balancer_source_ranges(svcnet_context: VerifyContext, svcnet_external: ExternalAddress) -> None:
    """loadBalancerSourceRanges: from each address of the lab's client, traffic to the LoadBalancer IP is
    answered when the address is in a range and dropped when it is not."""
    ctx, ext = svcnet_context, svcnet_external
    sp = ext.port
    require_dataplane(ctx, sp)
    ranges = ", ".join(sp.lb_source_ranges)
    label = f"{ext.kind} {target(ext.ip, sp.port, sp)} ({sp.spn}, loadBalancerSourceRanges {ranges})"
    if ctx.outside.mode != "lab":
        pytest.skip(f"{label}: which address outside traffic comes from is known only in a lab, whose client "
                    "sends from each of its addresses; checked for rules only")
    sources = [a for a in ctx.outside.sources if (":" in a) == (":" in ext.ip)]
    if not sources:
        pytest.skip(f"{label}: the lab's client has no address of this IP family")
    expected = external_expected(ctx, ext, f"outside -> {label}")
    for source in sources:
        where = f"outside {source} -> {label}"
        if in_source_ranges(source, sp):
            resp = probe_outside(ctx, ask(sp, ext.ip, sp.port, ANSWER_REQUESTS, source=source), where)
            check_answers(f"{where}: a source in the ranges", resp, expected)
        else:
            req = ask(sp, ext.ip, sp.port, NO_ANSWER_TRIES, source=source, max_timeouts=NO_ANSWER_TRIES,
                      retry_timeouts=0)
            check_dropped(f"{where}: a source outside the ranges", probe_outside(ctx, req, where))


def check_rejected(where: str, resp: dict) -> None:
    outcome, seconds = resp.get("outcome"), float(resp.get("seconds") or 0)
    if outcome == "refused":
        return
    raise VerifyError(f"{where}: expected REJECT (refused before the {REJECT_TIMEOUT:g}s timeout), "
                      f"got {outcome} after {seconds:.2f}s")


@pytest.mark.svcnet_ports("no_endpoints")
def test_no_endpoints_rejected(svcnet_context: VerifyContext, svcnet_source: Source,
                               svcnet_service_port: ServicePort) -> None:
    """A service without endpoints refuses connections (or datagrams) at once (REJECT), never times out."""
    ctx, src, sp = svcnet_context, svcnet_source, svcnet_service_port
    require_source_family(ctx, src, sp)
    req = {"op": "connect", "protocol": sp.proto, "host": sp.cluster_ip, "port": sp.port, "timeout": REJECT_TIMEOUT}
    where = f"{src.label} -> {target(sp.cluster_ip or '', sp.port, sp)} ({sp.spn}, no endpoints)"
    check_rejected(where, probe(ctx, src, req, where))


@pytest.mark.svcnet_ports("no_endpoints_node_port")
def test_no_endpoints_node_port_rejected(svcnet_context: VerifyContext, svcnet_target_node: str,
                                         svcnet_service_port: ServicePort) -> None:
    ctx, node, sp = svcnet_context, svcnet_target_node, svcnet_service_port
    ip = node_ip(ctx, node, sp)
    req = {"op": "connect", "protocol": sp.proto, "host": ip, "port": sp.node_port, "timeout": REJECT_TIMEOUT}
    where = f"outside -> {node} {target(ip, sp.node_port, sp)} ({sp.spn} NodePort, no endpoints)"
    check_rejected(where, probe_outside(ctx, req, where))
