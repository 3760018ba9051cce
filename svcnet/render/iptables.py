"""The iptables backend: the `iptables-restore --noflush` input of kube-proxy's iptables mode (full sync).

A backend renders a node's desired state for one IP family: here its `ProxierSettings` (whose
`ip_family` picks the `svcnet.desired.IPFamily` every family-specific value comes from) and the
cluster's service ports. Chain, table and target names come from `render/chains.py`.

The structure follows `proxier.go` `syncProxyRules`: the fixed rules, then one pass per service
port writing lines into kube-proxy's four named buffers (`RuleBuffers`: filterChains,
filterRules, natChains, natRules), which are then concatenated as `*filter … COMMIT *nat … COMMIT`.
Each branch carries kube-proxy's reason as a comment. Rule text, order and quoting are
kube-proxy's, so `canonical_sort(render_restore(...))` equals upstream test expectations.

`render_nodes` renders many nodes at once and shares work: per service port, the lines that do
not depend on the node are rendered once per group of nodes with the same node-independent
settings, and only node-dependent service ports (local traffic policy with endpoints somewhere,
LoadBalancer source ranges that may contain the node IP) are re-rendered, once per distinct
variant. Nodes whose complete output is identical share one string object.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from svcnet.desired import (
    FAMILIES,
    IPFamily,
    cluster_endpoints,
    local_endpoints,
    shared_cluster_endpoints,
)
from svcnet.model.types import (
    NFACCT_INVALID_DROPPED,
    NFACCT_LOCALHOST_NPS,
    Endpoint,
    LocalDetector,
    ProxierSettings,
    ServicePort,
)
from svcnet.render import chains as c
from svcnet.render.jumps import localhost_nodeports_enabled

# Fixed texts.
MARK_MASQ_JUMP = "-j " + c.KUBE_MARK_MASQ
COMMENT_SNAT = '"kubernetes service traffic requiring SNAT"'
COMMENT_LOCALNET = '"block incoming localnet connections"'
COMMENT_FORWARD = '"kubernetes forwarding rules"'
COMMENT_FORWARD_CT = '"kubernetes forwarding conntrack rule"'
COMMENT_NODEPORTS_LAST = '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"'

_PROTOCOLS = frozenset(("tcp", "udp", "sctp"))
_LABEL = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
_NAME_RE = re.compile(rf"{_LABEL}/{_LABEL}(:[a-z0-9]([-a-z0-9]*[a-z0-9])?)?")  # ns/name[:port]
_ADDR_RE = re.compile(r"[0-9A-Fa-f:.]+(/[0-9]{1,3})?")
_TOKEN_RE = re.compile(r"!|[A-Za-z0-9_.:/@+-]+")  # one detector argument (CIDR, interface[+])
_MARK_RE = re.compile(r"0x[0-9A-Fa-f]{1,8}")


class RenderError(ValueError):
    """A service port the renderer cannot express safely; names the service port."""


def chain_line(name: str) -> str:
    """`MakeChainLine`: `:NAME - [0:0]`."""
    return f":{name} - [0:0]\n"


def probability(n: int) -> str:
    """`computeProbability`: 1/n with ten decimals (`%0.10f`)."""
    return "%0.10f" % (1.0 / n)


@dataclass(slots=True)
class RuleBuffers:
    """kube-proxy's line buffers (filterChains, filterRules, natChains, natRules) and activeNATChains.

    Lines end in a newline; chain lines go to the *Chains buffers, `-A`/`-X` lines to the *Rules.
    """

    filter_chains: list[str] = field(default_factory=list)
    filter_rules: list[str] = field(default_factory=list)
    nat_chains: list[str] = field(default_factory=list)
    nat_rules: list[str] = field(default_factory=list)
    active_nat_chains: list[str] = field(default_factory=list)  # the nat chains this sync keeps

    def restore_text(self) -> str:
        """`*filter`, its chains and rules, `COMMIT`, then the same for nat (syncProxyRules' last step)."""
        return "".join(["*filter\n", *self.filter_chains, *self.filter_rules, "COMMIT\n",
                        "*nat\n", *self.nat_chains, *self.nat_rules, "COMMIT\n"])


# --------------------------------------------------------------------------- per-port facts


@dataclass(frozen=True, slots=True)
class _Ep:
    """One endpoint as the renderer uses it (kube-proxy's endpointInfo)."""

    hp: str  # ip:port, [ip]:port for IPv6
    ip: str
    sep: str  # KUBE-SEP-h
    node_name: str | None
    ready: bool
    serving_terminating: bool
    zone_hints: frozenset[str]
    node_hints: frozenset[str]


@dataclass(slots=True)
class _PortInfo:
    """Node-independent facts of one service port for one IP family (kube-proxy's servicePortInfo)."""

    sp: ServicePort
    spn: str
    match: str  # "-m tcp -p tcp"
    chains: tuple[str, str, str, str]  # KUBE-SVC-, KUBE-SVL-, KUBE-EXT-, KUBE-FW- + hash
    dst: str  # "-d <clusterIP> --dport <port>"
    port: str
    external_ips: tuple[str, ...]
    lb_ips: tuple[str, ...]
    ranges: tuple[str, ...]
    eps: tuple[_Ep, ...]  # family-filtered, deduplicated, sorted by ip:port string
    cluster: tuple[_Ep, ...]  # CategorizeEndpoints cluster endpoints, on nodes where topology does not apply
    has_any: bool
    uses_cluster: bool
    uses_local: bool
    local_nodes: frozenset[str]  # nodes that have a usable endpoint of this port
    topology: bool  # the cluster endpoints may depend on the node (all ready endpoints have hints)
    range_nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


def _check_addrs(spn: str, addrs: Iterable[str]) -> None:
    for a in addrs:
        if not _ADDR_RE.fullmatch(a):
            raise RenderError(f"service port {spn}: {a!r} is not a canonical IP address or CIDR")


def _endpoints(spn: str, proto: str, eps: Iterable[Endpoint], family: IPFamily) -> tuple[_Ep, ...]:
    """Endpoints of the family, one per ip:port (non-terminating preferred), sorted by ip:port."""
    v6 = family.version == 6
    by_hp: dict[str, Endpoint] = {}
    for ep in eps:
        ip = ep.ip
        if (":" in ip) != v6:
            continue
        hp = f"[{ip}]:{ep.port}" if v6 else f"{ip}:{ep.port}"  # Go's net.JoinHostPort
        old = by_hp.get(hp)
        if old is None or (old.terminating and not ep.terminating):
            by_hp[hp] = ep
    _check_addrs(spn, (ep.ip for ep in by_hp.values()))
    hps = sorted(by_hp)
    return tuple(
        _Ep(hp, (ep := by_hp[hp]).ip, sep, ep.node_name, ep.ready, ep.serving and ep.terminating, ep.zone_hints,
            ep.node_hints)
        for hp, sep in zip(hps, c.endpoint_chains(spn, proto, hps), strict=True)
    )


def _port_info(sp: ServicePort, family: IPFamily) -> _PortInfo | None:
    """Facts for one service port, or None if kube-proxy would skip it for this family (the
    Service has no ClusterIP of it: each family's proxier sees only its family's ClusterIP)."""
    cluster_ip = sp.cluster_ip_of(family.version)
    if not cluster_ip or cluster_ip == "None":
        return None
    spn, proto = sp.spn, sp.proto
    if not _NAME_RE.fullmatch(spn):
        raise RenderError(f"service port {spn!r}: invalid namespace, name or port name")
    if proto not in _PROTOCOLS:
        raise RenderError(f"service port {spn}: unsupported protocol {sp.protocol!r}")
    ext_ips = tuple(ip for ip in sp.external_ips if family.owns(ip))
    lb_ips = tuple(ip for ip in sp.lb_ips if family.owns(ip))
    ranges = tuple(r.strip() for r in sp.lb_source_ranges if family.owns(r))
    _check_addrs(spn, (cluster_ip, *ext_ips, *lb_ips, *ranges))
    try:
        range_nets = tuple(ipaddress.ip_network(r, strict=False) for r in ranges)
    except ValueError as exc:
        raise RenderError(f"service port {spn}: bad loadBalancerSourceRange: {exc}") from None
    eps = _endpoints(spn, proto, sp.endpoints, family)
    # desired.uses_cluster_endpoints and uses_local_endpoints, inline: this runs once per port.
    accessible = sp.externally_accessible
    itp_local = sp.internal_policy_local
    uses_cluster = not itp_local or accessible
    uses_local = itp_local or (sp.external_policy_local and accessible)
    usable = [ep for ep in eps if ep.ready or ep.serving_terminating]
    shared = shared_cluster_endpoints(eps) if uses_cluster else ()
    # None: hints may give nodes different cluster endpoints (chosen per node in `_variant`).
    topology = shared is None
    cluster = shared or ()
    # CategorizeEndpoints' hasAnyEndpoints: some ready or serving-terminating endpoint anywhere.
    has_any = bool(usable)
    port = str(sp.port)
    return _PortInfo(
        sp=sp, spn=spn, match=f"-m {proto} -p {proto}", chains=c.service_port_chains(spn, proto),
        dst=f"-d {cluster_ip} --dport {port}", port=port,
        external_ips=ext_ips, lb_ips=lb_ips, ranges=ranges, eps=eps,
        cluster=cluster, has_any=has_any, uses_cluster=uses_cluster, uses_local=uses_local,
        local_nodes=frozenset(ep.node_name for ep in usable if ep.node_name), topology=topology,
        range_nets=range_nets,
    )


def _local_endpoints(info: _PortInfo, node: str | None) -> tuple[_Ep, ...]:
    """CategorizeEndpoints' local list: local ready endpoints, else local serving-terminating."""
    if not info.uses_local or node is None:
        return ()
    return local_endpoints(info.eps, node)


# --------------------------------------------------------------------------- group context


@dataclass(frozen=True, slots=True)
class _Ctx:
    """Settings every node of a render group shares (everything a service port's lines read)."""

    family: IPFamily
    masquerade_all: bool
    detector: LocalDetector
    localhost_nps_nfacct: bool  # write the loopback NodePort rule counted by nfacct
    large: bool  # large-cluster mode: no comments on SEP and SVC->SEP rules
    if_local: str = field(default="")
    if_not_local: str = field(default="")


def _family(s: ProxierSettings) -> IPFamily:
    family = FAMILIES.get(s.ip_family)
    if family is None:
        raise RenderError(f"node {s.node_name}: ip_family must be 4 or 6, not {s.ip_family!r}")
    return family


def _check_settings(s: ProxierSettings) -> None:
    """Reject settings that would put unvalidated text into the ruleset."""
    where = f"node {s.node_name}"
    if not _MARK_RE.fullmatch(s.masquerade_mark):
        raise RenderError(f"{where}: masquerade mark {s.masquerade_mark!r} is not a hex mark like 0x4000")
    for arg in (*s.local_detector.if_local(), *s.local_detector.if_not_local()):
        if not _TOKEN_RE.fullmatch(arg):
            raise RenderError(f"{where}: local detector argument {arg!r} is not a CIDR or interface name")
    for addr in (*s.node_ips, *s.nodeport_addresses):
        try:
            ipaddress.ip_network(addr, strict=False)
        except ValueError:
            raise RenderError(f"{where}: {addr!r} is not an IP address or CIDR") from None


def _make_ctx(s: ProxierSettings, family: IPFamily, total_endpoints: int) -> _Ctx:
    _check_settings(s)
    eff_localhost = localhost_nodeports_enabled(s)
    return _Ctx(
        family=family,
        masquerade_all=s.masquerade_all,
        detector=s.local_detector,
        localhost_nps_nfacct=eff_localhost and NFACCT_LOCALHOST_NPS in s.facts.nfacct_counters,
        large=total_endpoints > s.large_cluster_threshold,
        if_local=" ".join(s.local_detector.if_local()),
        if_not_local=" ".join(s.local_detector.if_not_local()),
    )


# --------------------------------------------------------------------------- one service port


def _write_endpoint_dispatch(
    ctx: _Ctx, info: _PortInfo, chain: str, eps: Sequence[_Ep], nat_rules: list[str]
) -> None:
    """`writeServiceToEndpointRules`: affinity checks, then the statistic cascade."""
    spn = info.spn
    prefix = f"-A {chain} "
    timeout = info.sp.affinity_timeout
    if timeout is not None:
        # ClientIP affinity first: a client recorded recently goes back to the same endpoint.
        for ep in eps:
            sep = ep.sep
            comment = "" if ctx.large else f'-m comment --comment "{spn} -> {ep.hp}" '
            nat_rules.append(f"{prefix}{comment}-m recent --name {sep} --rcheck --seconds {timeout} --reap "
                             f"-j {sep}\n")
    n = len(eps)
    for i, ep in enumerate(eps):
        # Each rule takes 1/(endpoints left) of what reaches it; the last one takes the rest.
        comment = "" if ctx.large else f'-m comment --comment "{spn} -> {ep.hp}" '
        stat = f"-m statistic --mode random --probability {probability(n - i)} " if i < n - 1 else ""
        nat_rules.append(f"{prefix}{comment}{stat}-j {ep.sep}\n")


def _write_endpoint_chains(ctx: _Ctx, info: _PortInfo, eps: Sequence[_Ep], buf: RuleBuffers) -> None:
    """One KUBE-SEP chain per endpoint: hairpin masquerade, then DNAT (with affinity `--set`)."""
    nat_chains, nat_rules, active = buf.nat_chains, buf.nat_rules, buf.active_nat_chains
    comment = "" if ctx.large else f"-m comment --comment {info.spn} "
    affinity = info.sp.affinity_timeout is not None
    dnat = f"{info.match} -j {c.DNAT} --to-destination "
    for ep in eps:
        sep = ep.sep
        nat_chains.append(chain_line(sep))
        active.append(sep)
        head = f"-A {sep} {comment}"
        # Traffic that loops back to the pod that sent it must be masqueraded, or the reply
        # would bypass the DNAT.
        nat_rules.append(f"{head}-s {ep.ip} {MARK_MASQ_JUMP}\n")
        # DNAT to the endpoint, recording the client for ClientIP affinity.
        recent = f"-m recent --name {sep} --set " if affinity else ""
        nat_rules.append(f"{head}{recent}{dnat}{ep.hp}\n")


def _write_port(ctx: _Ctx, info: _PortInfo, local_node: str | None, allow_from_node: bool,
                buf: RuleBuffers, cluster: tuple[_Ep, ...] | None = None) -> None:
    """All lines of one service port (syncProxyRules' loop body), written to the buffers.

    `local_node`: the node whose endpoints are local (None: no local endpoints); `allow_from_node`:
    one of the port's source ranges contains the node's IP; `cluster`: the node's cluster endpoints
    when topology makes them node-dependent (None: `info.cluster`).
    """
    filter_rules, nat_chains, nat_rules = buf.filter_rules, buf.nat_chains, buf.nat_rules
    active = buf.active_nat_chains
    sp, spn, match, port = info.sp, info.spn, info.match, info.port
    cluster_policy_chain, local_policy_chain, external_traffic_chain, fw_chain = info.chains
    has_endpoints = info.has_any
    cluster_eps = info.cluster if cluster is None else cluster
    local_eps = _local_endpoints(info, local_node)
    itp_local, etp_local = sp.internal_policy_local, sp.external_policy_local
    uses_cluster_policy_chain = bool(cluster_eps) and info.uses_cluster
    uses_local_policy_chain = bool(local_eps) and info.uses_local
    internal_traffic_chain = local_policy_chain if itp_local else cluster_policy_chain
    has_internal_endpoints = has_endpoints and (not itp_local or bool(local_eps))
    external_policy_chain = local_policy_chain if etp_local else cluster_policy_chain
    has_external_endpoints = has_endpoints and (not etp_local or bool(local_eps))
    # Based on has_endpoints, not has_external_endpoints: the EXT chain's short-circuit rules for
    # local traffic are needed even when no endpoint serves external traffic.
    uses_external_traffic_chain = has_endpoints and sp.externally_accessible
    # LoadBalancer traffic goes straight to the EXT chain unless source ranges need a firewall chain.
    uses_fw_chain = has_endpoints and bool(info.lb_ips) and bool(info.ranges)
    lb_traffic_chain = fw_chain if uses_fw_chain else external_traffic_chain

    if not has_endpoints:
        # No endpoints at all: no nat chains, only filter rules rejecting the service's IPs.
        int_target = ext_target = c.REJECT
        int_comment = ext_comment = f'"{spn} has no endpoints"'
    else:
        # Traffic policy Local without a local endpoint: drop (the other kind of traffic may still pass).
        int_target = ext_target = c.DROP
        int_comment = ext_comment = f'"{spn} has no local endpoints"'

    # Capture the cluster IP; without endpoints for it, the filter table refuses it.
    if has_internal_endpoints:
        nat_rules.append(f'-A {c.KUBE_SERVICES} -m comment --comment "{spn} cluster IP" {match} {info.dst} '
                         f"-j {internal_traffic_chain}\n")
    else:
        filter_rules.append(f"-A {c.KUBE_SERVICES} -m comment --comment {int_comment} {match} {info.dst} "
                            f"-j {int_target}\n")

    # Capture external IPs: to the "external destinations" chain; without endpoints for external
    # traffic, refuse what that chain did not short-circuit.
    for ip in info.external_ips:
        if has_endpoints:
            nat_rules.append(f'-A {c.KUBE_SERVICES} -m comment --comment "{spn} external IP" {match} '
                             f"-d {ip} --dport {port} -j {external_traffic_chain}\n")
        if not has_external_endpoints:
            filter_rules.append(f"-A {c.KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {match} "
                                f"-d {ip} --dport {port} -j {ext_target}\n")

    # Capture load-balancer ingress; with source ranges, the filter table drops what the FW chain
    # let through without DNAT.
    for ip in info.lb_ips:
        if has_endpoints:
            nat_rules.append(f'-A {c.KUBE_SERVICES} -m comment --comment "{spn} loadbalancer IP" {match} '
                             f"-d {ip} --dport {port} -j {lb_traffic_chain}\n")
        if uses_fw_chain:
            filter_rules.append(f'-A {c.KUBE_PROXY_FIREWALL} -m comment --comment "{spn} traffic not accepted '
                                f'by {fw_chain}" {match} -d {ip} --dport {port} -j {c.DROP}\n')
    if not has_external_endpoints:
        for ip in info.lb_ips:
            filter_rules.append(f"-A {c.KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} {match} "
                                f"-d {ip} --dport {port} -j {ext_target}\n")

    # Capture NodePorts: to the external destinations chain (NodePorts are not subject to
    # loadBalancerSourceRanges); localhost NodePorts are counted by their nfacct counter first.
    if sp.node_port:
        if has_endpoints:
            if ctx.localhost_nps_nfacct:
                nat_rules.append(f"-A {c.KUBE_NODEPORTS} -m comment --comment {spn} {match} "
                                 f"-d {ctx.family.loopback_net} --dport {sp.node_port} "
                                 f"-m nfacct --nfacct-name {NFACCT_LOCALHOST_NPS} -j {external_traffic_chain}\n")
            nat_rules.append(f"-A {c.KUBE_NODEPORTS} -m comment --comment {spn} {match} --dport {sp.node_port} "
                             f"-j {external_traffic_chain}\n")
        if not has_external_endpoints:
            filter_rules.append(f"-A {c.KUBE_EXTERNAL_SERVICES} -m comment --comment {ext_comment} "
                                f"-m addrtype --dst-type LOCAL {match} --dport {sp.node_port} -j {ext_target}\n")

    # The health check node port accepts connections whether or not this node has local endpoints.
    hcnp = sp.effective_health_check_node_port
    if hcnp:
        filter_rules.append(f'-A {c.KUBE_NODEPORTS} -m comment --comment "{spn} health check node port" '
                            f"-m tcp -p tcp --dport {hcnp} -j {c.ACCEPT}\n")

    # Masquerade off-cluster traffic to the cluster IP: a static route for the Service range may
    # send it to any node, which may then bounce it to an endpoint on another node.
    if has_internal_endpoints:
        head = f'-A {internal_traffic_chain} -m comment --comment "{spn} cluster IP" {match} {info.dst}'
        if ctx.masquerade_all:
            nat_rules.append(f"{head} {MARK_MASQ_JUMP}\n")
        elif ctx.if_not_local:
            nat_rules.append(f"{head} {ctx.if_not_local} {MARK_MASQ_JUMP}\n")

    # Every external destination jumps to the EXT chain, which handles the special cases and then
    # jumps to the external policy chain.
    if uses_external_traffic_chain:
        nat_chains.append(chain_line(external_traffic_chain))
        active.append(external_traffic_chain)
        ext_head = f"-A {external_traffic_chain} -m comment --comment"
        if not etp_local:
            # Endpoints may be on another node: masquerade so that replies come back through us.
            nat_rules.append(f'{ext_head} "masquerade traffic for {spn} external destinations" '
                             f"{MARK_MASQ_JUMP}\n")
        else:
            # Only local endpoints, so the client IP can be kept, except in these cases.
            if ctx.if_local:
                # Pod traffic to an external destination obeys neither traffic policy, as if it
                # went out to the load balancer and came back.
                nat_rules.append(f'{ext_head} "pod traffic for {spn} external destinations" '
                                 f"{ctx.if_local} -j {cluster_policy_chain}\n")
            # Traffic from the node itself: its source would be the (local) external IP, so
            # masquerade it and send it to the cluster policy chain.
            nat_rules.append(f'{ext_head} "masquerade LOCAL traffic for {spn} external destinations" '
                             f"-m addrtype --src-type LOCAL {MARK_MASQ_JUMP}\n")
            nat_rules.append(f'{ext_head} "route LOCAL traffic for {spn} external destinations" '
                             f"-m addrtype --src-type LOCAL -j {cluster_policy_chain}\n")
        if has_external_endpoints:
            # Anything else falls through to the external policy chain.
            nat_rules.append(f"-A {external_traffic_chain} -j {external_policy_chain}\n")

    # The firewall chain lets LoadBalancer traffic from the source ranges on (this works for
    # load balancers that keep the client IP).
    if uses_fw_chain:
        nat_chains.append(chain_line(fw_chain))
        active.append(fw_chain)
        head = f'-A {fw_chain} -m comment --comment "{spn} loadbalancer IP"'
        for cidr in info.ranges:
            nat_rules.append(f"{head} -s {cidr} -j {external_traffic_chain}\n")
        if allow_from_node:
            # A request from this node to a VIP held as a local address loops back with the VIP
            # as its source: allow it when the node's IP is in a source range.
            for ip in info.lb_ips:
                nat_rules.append(f"{head} -s {ip} -j {external_traffic_chain}\n")
        # What reaches the end was not DNATed, so the filter KUBE-PROXY-FIREWALL rule drops it.
        nat_rules.append(f'-A {fw_chain} -m comment --comment "other traffic to {spn} will be dropped by '
                         f'{c.KUBE_PROXY_FIREWALL}"\n')

    # The policy chains, each spreading traffic over its endpoints.
    if uses_cluster_policy_chain:
        nat_chains.append(chain_line(cluster_policy_chain))
        active.append(cluster_policy_chain)
        _write_endpoint_dispatch(ctx, info, cluster_policy_chain, cluster_eps, nat_rules)
    if uses_local_policy_chain:
        nat_chains.append(chain_line(local_policy_chain))
        active.append(local_policy_chain)
        _write_endpoint_dispatch(ctx, info, local_policy_chain, local_eps, nat_rules)

    # An endpoint chain for every endpoint reachable from this node under the traffic policies.
    if not uses_local_policy_chain:
        reachable: Sequence[_Ep] = cluster_eps if info.uses_cluster else ()
    elif not info.uses_cluster:
        reachable = local_eps
    else:
        merged = {ep.hp: ep for ep in cluster_eps}
        merged.update((ep.hp, ep) for ep in local_eps)
        reachable = [merged[hp] for hp in sorted(merged)]
    _write_endpoint_chains(ctx, info, reachable, buf)


# --------------------------------------------------------------------------- planning and sharing


@dataclass(frozen=True, slots=True)
class _Block:
    """Pre-rendered lines of a run of service ports: what they add to the per-port buffers."""

    filter_rules: str
    nat_chains: str
    nat_rules: str
    active_nat_chains: tuple[str, ...]


@dataclass(slots=True)
class _Slot:
    """A node-dependent service port, rendered once per distinct variant key."""

    info: _PortInfo
    needs_local: bool
    needs_fw: bool
    variants: dict[_VariantKey, _Block] = field(default_factory=dict)


# A node's variant of a node-dependent service port: its local node (None: no local endpoints),
# whether a source range holds its IP, and its cluster endpoints when topology applies.
_VariantKey = tuple[str | None, bool, tuple[_Ep, ...] | None]


def _render_block(ctx: _Ctx, infos: Iterable[_PortInfo], local_node: str | None, allow: bool,
                  cluster: tuple[_Ep, ...] | None = None) -> _Block:
    buf = RuleBuffers()
    for info in infos:
        _write_port(ctx, info, local_node, allow, buf, cluster)
    return _Block("".join(buf.filter_rules), "".join(buf.nat_chains), "".join(buf.nat_rules),
                  tuple(buf.active_nat_chains))


def _plan(ctx: _Ctx, infos: Sequence[_PortInfo]) -> list[_Block | _Slot]:
    """Split the service ports into shared blocks and node-dependent slots, in order."""
    plan: list[_Block | _Slot] = []
    run: list[_PortInfo] = []
    for info in infos:
        needs_local = info.uses_local and bool(info.local_nodes)
        needs_fw = info.has_any and bool(info.lb_ips) and bool(info.ranges)
        if not (needs_local or needs_fw or info.topology):
            run.append(info)
            continue
        if run:
            plan.append(_render_block(ctx, run, None, False))
            run = []
        plan.append(_Slot(info, needs_local, needs_fw))
    if run:
        plan.append(_render_block(ctx, run, None, False))
    return plan


def _variant(slot: _Slot, node: str, node_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             zone: str) -> _VariantKey:
    info = slot.info
    local = node if slot.needs_local and node in info.local_nodes else None
    allow = (
        slot.needs_fw and node_ip is not None and any(node_ip in net for net in info.range_nets)
    )
    cluster = cluster_endpoints(info.eps, node, zone) if info.topology else None
    return local, allow, cluster


# --------------------------------------------------------------------------- fixed parts


class _Fixed(NamedTuple):
    """The lines that do not depend on the service ports, in their buffers' write order."""

    filter_chains: str
    kubelet_firewall: str  # first filter rules
    forward: str  # last filter rules
    postrouting: str  # first nat rules
    nodeports_jump: str  # last nat rule(s)


def _filter_chains(s: ProxierSettings) -> str:
    owned = c.OWNED_CHAINS[c.TABLE_FILTER]
    names = owned if localhost_nodeports_enabled(s) else tuple(n for n in owned if n != c.KUBE_FIREWALL)
    return "".join(chain_line(n) for n in names)


def _kubelet_firewall_rules(s: ProxierSettings, family: IPFamily) -> str:
    if not localhost_nodeports_enabled(s):
        return ""
    # Localhost NodePorts (route_localnet) open a hole (https://issue.k8s.io/90259) that this
    # copy of kubelet's rule closes: no outside packet may reach a loopback address.
    loopback = family.loopback_net
    return (f"-A {c.KUBE_FIREWALL} -m comment --comment {COMMENT_LOCALNET} -d {loopback} "
            f"! -s {loopback} -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j {c.DROP}\n")


def _forward_rules(s: ProxierSettings) -> str:
    out = []
    if not s.facts.tcp_be_liberal:
        # INVALID packets could reset connections unless nf_conntrack_tcp_be_liberal is set.
        nfacct = (f" -m nfacct --nfacct-name {NFACCT_INVALID_DROPPED}"
                  if NFACCT_INVALID_DROPPED in s.facts.nfacct_counters else "")
        out.append(f"-A {c.KUBE_FORWARD} -m conntrack --ctstate INVALID{nfacct} -j {c.DROP}\n")
    mark = s.masquerade_mark
    # Forward marked traffic (NodePorts to other nodes) even where the FORWARD policy is not ACCEPT,
    # and the rest of the connections those first packets opened.
    out.append(f"-A {c.KUBE_FORWARD} -m comment --comment {COMMENT_FORWARD} -m mark --mark {mark}/{mark} "
               f"-j {c.ACCEPT}\n")
    out.append(f"-A {c.KUBE_FORWARD} -m comment --comment {COMMENT_FORWARD_CT} -m conntrack "
               f"--ctstate RELATED,ESTABLISHED -j {c.ACCEPT}\n")
    return "".join(out)


_NAT_CHAINS = "".join(chain_line(n) for n in c.OWNED_CHAINS[c.TABLE_NAT])


def _postrouting_rules(s: ProxierSettings) -> str:
    mark = s.masquerade_mark
    fully = " --random-fully" if s.facts.random_fully else ""
    # Masquerade what KUBE-MARK-MASQ marked, clearing the mark so that a packet that traverses the
    # stack again is not masqueraded twice. The marking is a chain of its own, easy to flush.
    return (f"-A {c.KUBE_POSTROUTING} -m mark ! --mark {mark}/{mark} -j {c.RETURN}\n"
            f"-A {c.KUBE_POSTROUTING} -j {c.MARK} --xor-mark {mark}\n"
            f"-A {c.KUBE_POSTROUTING} -m comment --comment {COMMENT_SNAT} -j {c.MASQUERADE}{fully}\n"
            f"-A {c.KUBE_MARK_MASQ} -j {c.MARK} --or-mark {mark}\n")


def nodeport_ips(s: ProxierSettings) -> list[str] | None:
    """Node IPs the NodePort catch-all is limited to, or None for "all local addresses".

    `--nodeport-addresses` CIDRs of the proxier's family filter the node's addresses
    (`settings.node_ips` plus the loopback address); no CIDR of the family, or a zero CIDR, means
    match all. Loopback is skipped where the family has no localhost NodePorts (IPv6) and when
    they are off.
    """
    family = FAMILIES[s.ip_family]
    nets = [ipaddress.ip_network(n, strict=False) for n in s.nodeport_addresses if family.owns(n)]
    if not nets or any(n.prefixlen == 0 for n in nets):
        return None
    candidates = [ip for ip in s.node_ips if family.owns(ip)]
    if family.loopback_ip not in candidates:
        candidates.append(family.loopback_ip)
    localhost = localhost_nodeports_enabled(s)
    out: list[str] = []
    for ip in dict.fromkeys(candidates):
        addr = ipaddress.ip_address(ip)
        if addr.is_loopback and not localhost:
            continue
        if any(addr in n for n in nets):
            out.append(str(addr))
    return out


def _nodeports_jump(s: ProxierSettings, family: IPFamily) -> str:
    # The tail call to KUBE-NODEPORTS: after every other service rule.
    head = f"-A {c.KUBE_SERVICES} -m comment --comment {COMMENT_NODEPORTS_LAST}"
    ips = nodeport_ips(s)
    if ips is None:
        # Every local address, except loopback where localhost NodePorts do not work.
        dest = "-m addrtype --dst-type LOCAL"
        if not localhost_nodeports_enabled(s):
            dest += f" ! -d {family.loopback_net}"
        return f"{head} {dest} -j {c.KUBE_NODEPORTS}\n"
    return "".join(f"{head} -d {ip} -j {c.KUBE_NODEPORTS}\n" for ip in ips)


def _fixed(s: ProxierSettings, family: IPFamily) -> _Fixed:
    return _Fixed(_filter_chains(s), _kubelet_firewall_rules(s, family), _forward_rules(s),
                  _postrouting_rules(s), _nodeports_jump(s, family))


# --------------------------------------------------------------------------- public API


@dataclass(slots=True)
class _Layout:
    """Everything one node's text is made of; `key` identifies identical outputs."""

    key: tuple
    items: list[_Block]
    fixed: _Fixed
    stale: list[str]


def _layout(s: ProxierSettings, node: str, ctx: _Ctx, plan: list[_Block | _Slot],
            stale_chains: Iterable[str]) -> _Layout:
    """Pick (rendering on first use) the variant of every node-dependent service port for a node."""
    node_ip = ipaddress.ip_address(s.primary_ip) if s.primary_ip else None  # proxier.nodeIP
    items: list[_Block] = []
    keys: list[_VariantKey] = []
    for item in plan:
        if isinstance(item, _Block):
            items.append(item)
            continue
        key = _variant(item, node, node_ip, s.zone)
        keys.append(key)
        block = item.variants.get(key)
        if block is None:
            block = item.variants[key] = _render_block(ctx, (item.info,), *key)
        items.append(block)
    stale: list[str] = []
    wanted = [ch for ch in dict.fromkeys(stale_chains) if c.is_service_chain(ch)]
    if wanted:
        active = {ch for b in items for ch in b.active_nat_chains}
        stale = [ch for ch in wanted if ch not in active]
    fixed = _fixed(s, ctx.family)
    return _Layout((id(plan), fixed, tuple(keys), tuple(stale)), items, fixed, stale)


def _join(lay: _Layout) -> str:
    """The node's buffers in kube-proxy's write order, then the restore text.

    Stale service chains are declared (which flushes them) and deleted with `-X`, before the
    final KUBE-NODEPORTS jump.
    """
    fixed, items, stale = lay.fixed, lay.items, lay.stale
    buf = RuleBuffers(
        filter_chains=[fixed.filter_chains],
        filter_rules=[fixed.kubelet_firewall, *(b.filter_rules for b in items), fixed.forward],
        nat_chains=[_NAT_CHAINS, *(b.nat_chains for b in items), *(chain_line(ch) for ch in stale)],
        nat_rules=[fixed.postrouting, *(b.nat_rules for b in items), *(f"-X {ch}\n" for ch in stale),
                   fixed.nodeports_jump],
    )
    return buf.restore_text()


def iter_render_nodes(
    settings_by_node: Mapping[str, ProxierSettings],
    ports: Sequence[ServicePort],
    stale_chains_by_node: Mapping[str, Iterable[str]] | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield `(node, restore text)` per node, in mapping order, sharing node-independent work.

    Streaming form of `render_nodes`: a consumer that pushes and drops each text keeps memory
    flat. Nodes with identical output get the same string object (joined once).
    """
    ports = tuple(ports)
    infos_by_family: dict[IPFamily, tuple[list[_PortInfo], int]] = {}
    plans: dict[_Ctx, list[_Block | _Slot]] = {}
    layouts: list[tuple[str, _Layout]] = []
    for node, s in settings_by_node.items():
        family = _family(s)
        known = infos_by_family.get(family)
        if known is None:
            infos = [i for i in (_port_info(sp, family) for sp in ports) if i is not None]
            known = infos_by_family[family] = (infos, sum(len(i.eps) for i in infos))
        infos, total_endpoints = known
        ctx = _make_ctx(s, family, total_endpoints)
        plan = plans.get(ctx)
        if plan is None:
            plan = plans[ctx] = _plan(ctx, infos)
        stale = (stale_chains_by_node or {}).get(node, ())
        layouts.append((node, _layout(s, s.node_name or node, ctx, plan, stale)))
    remaining = Counter(lay.key for _, lay in layouts)
    texts: dict[tuple, str] = {}
    for node, lay in layouts:
        text = texts.get(lay.key)
        if text is None:
            text = _join(lay)
        remaining[lay.key] -= 1
        if remaining[lay.key]:
            texts[lay.key] = text
        else:
            texts.pop(lay.key, None)
        yield node, text


def render_nodes(
    settings_by_node: Mapping[str, ProxierSettings],
    ports: Sequence[ServicePort],
    stale_chains_by_node: Mapping[str, Iterable[str]] | None = None,
) -> dict[str, str]:
    """Full-sync restore input for every node, sharing node-independent work.

    `ports` must be in the caller's stable order (sorted by namespace, name, port name, protocol).
    `stale_chains_by_node` gives, per node, the nat chains present on it (for `-X` of stale ones).
    Nodes with identical output share one string object.
    """
    return dict(iter_render_nodes(settings_by_node, ports, stale_chains_by_node))


def render_restore(
    settings: ProxierSettings, ports: Sequence[ServicePort], stale_chains: Iterable[str] = ()
) -> str:
    """Full-sync `iptables-restore --noflush` input for one node (filter then nat, kube-proxy order).

    `stale_chains` are the nat service chains that exist on the node; those this sync does not
    write are flushed and deleted (`:X - [0:0]` + `-X X`).
    """
    node = settings.node_name
    return render_nodes({node: settings}, ports, {node: tuple(stale_chains)})[node]
