"""Real traffic: from the nodes, from a pod on each node, and from outside the cluster.

Each probe is one remote command doing a bounded batch of requests (new TCP connection each,
per-request timeout, overall deadline, stop after a couple of timeouts).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from svcnet.model.types import ServicePort
from svcnet.verify.context import VerifyContext, VerifyError
from svcnet.verify.stats import ALPHA, requests_for, split_test
from svcnet.verify.targets import (
    ExternalAddress,
    Source,
    dataplane_skip_reason,
    expected_pods,
    local_endpoints,
    usable_endpoints,
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


def http(host: str, port: int, count: int, path: str = "/", timeout: float = REQUEST_TIMEOUT,
         deadline: float = PROBE_DEADLINE, max_timeouts: int = MAX_TIMEOUTS,
         retry_timeouts: int = RETRY_TIMEOUTS) -> dict:
    return {"op": "http", "host": host, "port": port, "path": path, "count": count, "timeout": timeout,
            "deadline": deadline, "max_timeouts": max_timeouts, "retry_timeouts": retry_timeouts}


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


def hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def check_answers(where: str, resp: dict, expected: Sequence[str]) -> None:
    """All requests answered, and only by the expected pods."""
    bad = strangers(resp, expected)
    if failures(resp) or bad or not resp.get("answers"):
        extra = f"; unexpected answers from {', '.join(bad)} (expected {', '.join(expected)})" if bad else ""
        raise VerifyError(f"{where}: {failures(resp)} of {resp.get('sent')} requests failed: {summary(resp)}{extra}")


def cluster_endpoints(ctx: VerifyContext, sp: ServicePort, node: str) -> list[str]:
    """Pods that may answer cluster traffic from `node` (local ones only with internalTrafficPolicy Local)."""
    if sp.internal_policy_local:
        local = local_endpoints(sp, node)
        if not local:
            pytest.skip(f"{sp.spn}: internalTrafficPolicy Local and no local endpoint on {node}: dropped by design")
        return expected_pods(ctx.cluster, local)
    return expected_pods(ctx.cluster, usable_endpoints(sp))


@pytest.mark.svcnet_ports("cluster_ip")
def test_cluster_ip_answers(svcnet_context: VerifyContext, svcnet_source: Source,
                            svcnet_service_port: ServicePort) -> None:
    ctx, src, sp = svcnet_context, svcnet_source, svcnet_service_port
    require_dataplane(ctx, sp)
    expected = cluster_endpoints(ctx, sp, src.node)
    resp = ctx.probe(src, http(sp.cluster_ip or "", sp.port, ANSWER_REQUESTS))
    check_answers(f"{src.label} -> {hostport(sp.cluster_ip or '', sp.port)} ({sp.spn})", resp, expected)


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
    req = http(sp.cluster_ip or "", sp.port, n, deadline=PROBE_DEADLINE + n * SECONDS_PER_SPLIT_REQUEST)
    resp = ctx.probe(Source(svcnet_node), req)
    where = f"{svcnet_node} -> {hostport(sp.cluster_ip or '', sp.port)} ({sp.spn})"
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
    expected = cluster_endpoints(ctx, sp, src.node)
    resp = ctx.probe(src, http(sp.cluster_ip or "", sp.port, AFFINITY_REQUESTS))
    where = f"{src.label} -> {hostport(sp.cluster_ip or '', sp.port)} ({sp.spn}, ClientIP affinity)"
    check_answers(where, resp, expected)
    if len(resp["answers"]) != 1:
        raise VerifyError(f"{where}: one client reached {len(resp['answers'])} endpoints: {summary(resp)}")


def node_ip(ctx: VerifyContext, node: str) -> str:
    return ctx.cluster.node(node).internal_ip


@pytest.mark.svcnet_ports("node_port")
def test_node_port_answers(svcnet_context: VerifyContext, svcnet_target_node: str,
                           svcnet_service_port: ServicePort) -> None:
    """From outside; with externalTrafficPolicy Local only nodes with a local endpoint answer."""
    ctx, node, sp = svcnet_context, svcnet_target_node, svcnet_service_port
    require_dataplane(ctx, sp)
    ip = node_ip(ctx, node)
    where = f"outside -> {node} {hostport(ip, sp.node_port)} ({sp.spn} NodePort)"
    if sp.external_policy_local:
        local = local_endpoints(sp, node)
        if not local:
            resp = ctx.probe_outside(http(ip, sp.node_port, NO_ANSWER_TRIES, max_timeouts=NO_ANSWER_TRIES,
                                          retry_timeouts=0))
            if resp.get("answers"):
                raise VerifyError(f"{where}: externalTrafficPolicy Local and no local endpoint on {node}, "
                                  f"yet it answered: {summary(resp)}")
            return
        expected = expected_pods(ctx.cluster, local)
    else:
        expected = expected_pods(ctx.cluster, usable_endpoints(sp))
    check_answers(where, ctx.probe_outside(http(ip, sp.node_port, ANSWER_REQUESTS)), expected)


@pytest.mark.svcnet_ports("local_node_port")
def test_node_port_preserves_client_ip(svcnet_context: VerifyContext, svcnet_target_node: str,
                                       svcnet_service_port: ServicePort) -> None:
    """externalTrafficPolicy Local: the pod sees the outside client's own address."""
    ctx, node, sp = svcnet_context, svcnet_target_node, svcnet_service_port
    require_dataplane(ctx, sp)
    local = local_endpoints(sp, node)
    if not local:
        pytest.skip(f"{sp.spn}: no local endpoint on {node} (checked by test_node_port_answers: it must not answer)")
    ip = node_ip(ctx, node)
    where = f"outside -> {node} {hostport(ip, sp.node_port)} ({sp.spn} NodePort, externalTrafficPolicy Local)"
    resp = ctx.probe_outside(http(ip, sp.node_port, WHOAMI_REQUESTS, path="/whoami"))
    check_answers(where, resp, expected_pods(ctx.cluster, local))
    seen = resp.get("client_ips") or []
    node_ips = {a for n in ctx.cluster.nodes for a in n.addresses}
    want = ctx.outside.client_ip
    if (want and seen != [want]) or node_ips & set(seen):
        raise VerifyError(f"{where}: the source IP was not preserved: the pod saw {', '.join(seen) or 'nothing'}"
                          + (f", expected {want}" if want else ""))


def test_external_address_answers(svcnet_context: VerifyContext, svcnet_external: ExternalAddress) -> None:
    """externalIPs and LoadBalancer IPs answer from outside (where the outside can reach them)."""
    ctx, ext = svcnet_context, svcnet_external
    sp = ext.port
    require_dataplane(ctx, sp)
    node_ips = {a: n.name for n in ctx.cluster.nodes for a in n.addresses}
    if ctx.outside.mode == "lab" and ext.ip not in node_ips:
        pytest.skip(f"{ext.kind} {ext.ip} of {sp.spn} is not a node address: the lab's client has no route "
                    "delivering it to a node; checked for rules only")
    where = f"outside -> {ext.kind} {hostport(ext.ip, sp.port)} ({sp.spn})"
    eps = usable_endpoints(sp)
    if sp.external_policy_local and ext.ip in node_ips:
        eps = local_endpoints(sp, node_ips[ext.ip])
        if not eps:
            pytest.skip(f"{where}: externalTrafficPolicy Local and no endpoint on {node_ips[ext.ip]}")
    check_answers(where, ctx.probe_outside(http(ext.ip, sp.port, ANSWER_REQUESTS)), expected_pods(ctx.cluster, eps))


def check_rejected(where: str, resp: dict) -> None:
    outcome, seconds = resp.get("outcome"), float(resp.get("seconds") or 0)
    if outcome == "refused":
        return
    raise VerifyError(f"{where}: expected REJECT (connection refused before the {REJECT_TIMEOUT:g}s connect "
                      f"timeout), got {outcome} after {seconds:.2f}s")


@pytest.mark.svcnet_ports("no_endpoints")
def test_no_endpoints_rejected(svcnet_context: VerifyContext, svcnet_source: Source,
                               svcnet_service_port: ServicePort) -> None:
    """A service without endpoints refuses connections at once (REJECT), never times out."""
    ctx, src, sp = svcnet_context, svcnet_source, svcnet_service_port
    if sp.protocol != "TCP":
        pytest.skip(f"{sp.spn} is {sp.protocol}: the REJECT check connects over TCP")
    req = {"op": "connect", "host": sp.cluster_ip, "port": sp.port, "timeout": REJECT_TIMEOUT}
    where = f"{src.label} -> {hostport(sp.cluster_ip or '', sp.port)} ({sp.spn}, no endpoints)"
    check_rejected(where, ctx.probe(src, req))


@pytest.mark.svcnet_ports("no_endpoints_node_port")
def test_no_endpoints_node_port_rejected(svcnet_context: VerifyContext, svcnet_target_node: str,
                                         svcnet_service_port: ServicePort) -> None:
    ctx, node, sp = svcnet_context, svcnet_target_node, svcnet_service_port
    if sp.protocol != "TCP":
        pytest.skip(f"{sp.spn} is {sp.protocol}: the REJECT check connects over TCP")
    ip = node_ip(ctx, node)
    req = {"op": "connect", "host": ip, "port": sp.node_port, "timeout": REJECT_TIMEOUT}
    where = f"outside -> {node} {hostport(ip, sp.node_port)} ({sp.spn} NodePort, no endpoints)"
    check_rejected(where, ctx.probe_outside(req))
