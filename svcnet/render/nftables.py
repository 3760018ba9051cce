"""The nftables backend: one `nft -f` script per node holding kube-proxy's nftables-mode table.

kube-proxy nftables mode as of kubernetes/kubernetes @81810de635aa (proxier_test.go; proxier.go
read from the Nordix/kubernetes mirror @d328a85c9fbd, which matches it): table `ip kube-proxy`
(`ip6` for IPv6), base chains at kube-proxy's priorities, the service-ips / service-nodeports
verdict maps, the no-endpoint maps, the cluster-ips / nodeport-ips sets, and per service port its
service-/local-/external-/firewall- chains and an endpoint- chain per endpoint, reached through
`numgen random mod N vmap`. Names and hashes come from `render/chains.py`.

The structure follows the nftables `syncProxyRules` of a full sync: the fixed objects, then one
pass per service port writing lines into named buffers by object kind (`NftBuffers`). The script
(`render_script`) replaces svcnet's table atomically: `add table` / `delete table` (so the delete
never fails on a node without it), then the whole table in an order `nft -f` can load (table,
chains, sets, maps, elements, rules: everything a line refers to exists before it). `dump` is the
table without that preamble, what kube-proxy's tests compare after `canonical_sort`.

`render_buffers` writes one node's table directly. `render_nodes` renders many nodes and shares
work as the iptables backend does: per service port, the lines that do not depend on the node are
rendered once per group of nodes with the same port-reading settings (`_Ctx`), and a port whose
lines read the node (local endpoints under a Local policy, a source range that may hold the node's
IP, cluster endpoints that topology hints choose per zone or node) once per distinct variant; a
node's own work is its fixed objects and the assembly. The output is `render_buffers`' byte for
byte; nodes with identical tables share one object.

Endpoint selection is kube-proxy's `CategorizeEndpoints`, the same call as in iptables mode: the
cluster and local lists come from `desired.cluster_endpoints` / `local_endpoints`, so a node balances
over the endpoints EndpointSlice hints give its zone (or itself) where every ready endpoint is hinted.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from svcnet.desired import (
    FAMILIES,
    IPFamily,
    cluster_endpoints,
    local_endpoints,
    shared_cluster_endpoints,
    untopological_cluster_endpoints,
)
from svcnet.model.types import DETECT_BRIDGE, Endpoint, ProxierSettings, ServicePort
from svcnet.render import chains as c
from svcnet.render.iptables import RenderError

# What the script header names (and the README): the kube-proxy this layout follows.
KUBE_PROXY_VERSION = ("kubernetes/kubernetes@81810de635aa13aa0a32992f6def3aa9d6025ebc "
                      "(proxier.go as Nordix/kubernetes@d328a85c9fbd6d3c627373640179807d912fb35a)")

# Fixed comments (kube-proxy's text).
_TABLE_COMMENT = '"rules for kube-proxy"'
_REJECT_CHAIN_COMMENT = '"helper for @no-endpoint-services / @no-endpoint-nodeports"'
_SET_COMMENTS = {
    c.NFT_CLUSTER_IPS: '"Active ClusterIPs"',
    c.NFT_NODEPORT_IPS: '"IPs that accept NodePort traffic"',
}
_MAP_COMMENTS = {
    c.NFT_FIREWALL_IPS: '"destinations that are subject to LoadBalancerSourceRanges"',
    c.NFT_NO_ENDPOINT_NODEPORTS: '"vmap to drop or reject packets to service nodeports with no endpoints"',
    c.NFT_NO_ENDPOINT_SERVICES: '"vmap to drop or reject packets to services with no endpoints"',
    c.NFT_SERVICE_IPS: '"ClusterIP, ExternalIP and LoadBalancer IP traffic"',
    c.NFT_SERVICE_NODEPORTS: '"NodePort traffic"',
}
_IP_MAPS = (c.NFT_FIREWALL_IPS, c.NFT_NO_ENDPOINT_SERVICES, c.NFT_SERVICE_IPS)  # key ip . proto . port
_PORT_MAPS = (c.NFT_NO_ENDPOINT_NODEPORTS, c.NFT_SERVICE_NODEPORTS)  # key proto . port

_PROTOCOLS = frozenset(("tcp", "udp", "sctp"))
_LABEL = r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?"
_NAME_RE = re.compile(rf"{_LABEL}")  # namespace, name
_PORT_NAME_RE = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?)?")
_ADDR_RE = re.compile(r"[0-9A-Fa-f:.]+(/[0-9]{1,3})?")
_TOKEN_RE = re.compile(r"[A-Za-z0-9_.:/@+-]+")  # one detector argument (CIDR, interface name)
_MARK_RE = re.compile(r"0x[0-9A-Fa-f]{1,8}")

# Kinds in the order a script declares them (every reference then exists), and kube-proxy's
# canonical-sort rank of each (`sortNFTablesTransaction`: higher first).
_KINDS = ("table", "chain", "set", "map", "element", "rule")
_RANK = {"table": 10, "chain": 9, "rule": 8, "set": 7, "map": 6, "element": 5}


@dataclass(slots=True)
class NftBuffers:
    """The table's `add …` lines by object kind, each ending in a newline.

    Elements are kept once each (several ports of one Service add its ClusterIP to cluster-ips;
    `add element` of an existing element is a no-op in nft, and kube-proxy's dump shows it once).
    """

    table: list[str] = field(default_factory=list)
    chains: list[str] = field(default_factory=list)
    sets: list[str] = field(default_factory=list)
    maps: list[str] = field(default_factory=list)
    elements: dict[str, None] = field(default_factory=dict)
    rules: list[str] = field(default_factory=list)

    def dump(self) -> str:
        """The whole table in load order."""
        return "".join([*self.table, *self.chains, *self.sets, *self.maps, *self.elements, *self.rules])


class _Writer:
    """Line writers for one table: `add <kind> <family> kube-proxy …` into `NftBuffers`."""

    def __init__(self, family: IPFamily, buf: NftBuffers):
        self.fam = c.NFT_FAMILIES[family.version]
        self.head = f" {self.fam} {c.NFT_TABLE} "
        self.buf = buf

    def chain(self, name: str, spec: str = "") -> None:
        self.buf.chains.append(f"add chain{self.head}{name}{spec}\n")

    def rule(self, chain: str, text: str) -> None:
        self.buf.rules.append(f"add rule{self.head}{chain} {text}\n")

    def set(self, name: str, spec: str) -> None:
        self.buf.sets.append(f"add set{self.head}{name} {{ {spec} ; }}\n")

    def map(self, name: str, spec: str) -> None:
        self.buf.maps.append(f"add map{self.head}{name} {{ {spec} ; }}\n")

    def element(self, name: str, key: str, value: str | None = None, comment: str | None = None) -> None:
        text = key + (f' comment "{comment}"' if comment is not None else "") + (f" : {value}" if value else "")
        self.buf.elements[f"add element{self.head}{name} {{ {text} }}\n"] = None


# --------------------------------------------------------------------------- per-port facts


@dataclass(frozen=True, slots=True)
class _Ep:
    """One endpoint as the renderer uses it (kube-proxy's endpointInfo)."""

    hp: str  # ip:port, [ip]:port for IPv6: the sort key and the DNAT target
    ip: str
    base: str  # H-ns/name/proto/port__IP/port: endpoint- chain and affinity- set
    node_name: str | None
    ready: bool
    serving_terminating: bool
    zone_hints: frozenset[str]  # EndpointSlice hints: `desired.cluster_endpoints` reads them
    node_hints: frozenset[str]

    @property
    def chain(self) -> str:
        return c.NFT_ENDPOINT_PREFIX + self.base

    @property
    def affinity_set(self) -> str:
        return c.NFT_AFFINITY_PREFIX + self.base


@dataclass(frozen=True, slots=True)
class _Port:
    """Node-independent facts of one service port for one IP family (kube-proxy's servicePortInfo)."""

    sp: ServicePort
    spn: str
    proto: str
    chains: tuple[str, str, str, str]  # service-, local-, external-, firewall- + base
    external_ips: tuple[str, ...]
    lb_ips: tuple[str, ...]
    ranges: tuple[str, ...]
    range_nets: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    eps: tuple[_Ep, ...]  # family-filtered, one per ip:port, sorted by ip:port string
    cluster: tuple[_Ep, ...]  # CategorizeEndpoints' cluster endpoints where topology does not apply
    has_any: bool  # some ready or serving-terminating endpoint anywhere
    uses_cluster: bool
    uses_local: bool
    topology: bool  # hints may give nodes other cluster endpoints (`_cluster_endpoints`)


def _check_addrs(spn: str, addrs: Iterable[str]) -> None:
    for a in addrs:
        if not _ADDR_RE.fullmatch(a):
            raise RenderError(f"service port {spn}: {a!r} is not a canonical IP address or CIDR")


def _endpoints(sp: ServicePort, port_input: str, family: IPFamily) -> tuple[_Ep, ...]:
    """Endpoints of the family, one per ip:port (a non-terminating one preferred), sorted by ip:port."""
    by_hp: dict[str, Endpoint] = {}
    for ep in sp.endpoints:
        if not family.owns(ep.ip):
            continue
        hp = ep.hostport
        old = by_hp.get(hp)
        if old is None or (old.terminating and not ep.terminating):
            by_hp[hp] = ep
    _check_addrs(sp.spn, (ep.ip for ep in by_hp.values()))
    return tuple(
        _Ep(hp, ep.ip, c.nft_endpoint_base(port_input, ep.ip, ep.port), ep.node_name, ep.ready,
            ep.serving and ep.terminating, ep.zone_hints, ep.node_hints)
        for hp in sorted(by_hp) for ep in (by_hp[hp],)
    )


def _port(sp: ServicePort, family: IPFamily) -> _Port | None:
    """Facts for one service port, or None if kube-proxy skips it for this family (headless, other family)."""
    if not sp.cluster_ip or sp.cluster_ip == "None" or not family.owns(sp.cluster_ip):
        return None
    spn, proto = sp.spn, sp.proto
    # Names and comments are written unquoted or inside "…": only Kubernetes names may reach them.
    if not (_NAME_RE.fullmatch(sp.namespace) and _NAME_RE.fullmatch(sp.name) and _PORT_NAME_RE.fullmatch(sp.port_name)):
        raise RenderError(f"service port {spn!r}: invalid namespace, name or port name")
    if proto not in _PROTOCOLS:
        raise RenderError(f"service port {spn}: unsupported protocol {sp.protocol!r}")
    ext_ips = tuple(ip for ip in sp.external_ips if family.owns(ip))
    lb_ips = tuple(ip for ip in sp.lb_ips if family.owns(ip))
    ranges = tuple(r.strip() for r in sp.lb_source_ranges if family.owns(r))
    _check_addrs(spn, (sp.cluster_ip, *ext_ips, *lb_ips, *ranges))
    try:
        range_nets = tuple(ipaddress.ip_network(r, strict=False) for r in ranges)
    except ValueError as exc:
        raise RenderError(f"service port {spn}: bad loadBalancerSourceRange: {exc}") from None
    port_input = c.nft_port_input(sp.namespace, sp.name, proto, sp.port_name)
    eps = _endpoints(sp, port_input, family)
    uses_cluster = not sp.internal_policy_local or sp.externally_accessible
    uses_local = sp.internal_policy_local or (sp.external_policy_local and sp.externally_accessible)
    # None: every ready endpoint is hinted, so a node's cluster endpoints may be fewer (its zone's, its own).
    shared = shared_cluster_endpoints(eps) if uses_cluster else ()
    topology = shared is None
    # Where topology applies the node-independent list is what a node without hints for it falls
    # back to: a node whose choice equals it renders the shared (default) lines.
    cluster = untopological_cluster_endpoints(eps) if shared is None else shared
    return _Port(
        sp=sp, spn=spn, proto=proto, chains=c.nft_port_chains(sp), external_ips=ext_ips, lb_ips=lb_ips,
        ranges=ranges, range_nets=range_nets, eps=eps, cluster=cluster,
        has_any=any(ep.ready or ep.serving_terminating for ep in eps),
        uses_cluster=uses_cluster, uses_local=uses_local, topology=topology,
    )


def _local_endpoints(port: _Port, node: str | None) -> tuple[_Ep, ...]:
    """CategorizeEndpoints' local list: this node's ready endpoints, else its serving-terminating ones."""
    return local_endpoints(port.eps, node) if port.uses_local else ()


def _cluster_endpoints(port: _Port, node: str, zone: str) -> tuple[_Ep, ...] | None:
    """CategorizeEndpoints' cluster list on the node where it differs from `port.cluster` (its
    topology hints pick fewer), else None: the node renders the node-independent list."""
    if not port.topology:
        return None
    mine = cluster_endpoints(port.eps, node, zone)
    return None if mine == port.cluster else mine


# --------------------------------------------------------------------------- node context


@dataclass(frozen=True, slots=True)
class _Ctx:
    """The node settings a service port's lines read, but for its local endpoints and whether a
    source range holds the node's IP (`_write_port`'s arguments): nodes with equal contexts share
    every port that reads neither."""

    family: IPFamily
    ip: str  # "ip" / "ip6": the match keyword of the family
    masquerade_all: bool
    if_local: str  # "" when there is no local-traffic detector
    if_not_local: str


def _detector(s: ProxierSettings, ip: str) -> tuple[str, str]:
    """(IfLocalNFT, IfNotLocalNFT) of the node's local-traffic detector, or ("", "") for none."""
    d = s.local_detector
    if not d.enabled:
        return "", ""
    if d.cidr:
        arg, local, not_local = d.cidr, f"{ip} saddr {d.cidr}", f"{ip} saddr != {d.cidr}"
    elif d.mode == DETECT_BRIDGE:
        arg, local, not_local = d.interface or "", f"iif {d.interface}", f"iif != {d.interface}"
    else:
        arg, local, not_local = d.interface or "", f"iifname {d.interface}*", f"iifname != {d.interface}*"
    if not _TOKEN_RE.fullmatch(arg):
        raise RenderError(f"node {s.node_name}: local detector argument {arg!r} is not a CIDR or interface name")
    return local, not_local


def _ctx(s: ProxierSettings, family: IPFamily) -> _Ctx:
    if not _MARK_RE.fullmatch(s.masquerade_mark):
        raise RenderError(f"node {s.node_name}: masquerade mark {s.masquerade_mark!r} is not a hex mark like 0x4000")
    ip = c.NFT_FAMILIES[family.version]
    local, not_local = _detector(s, ip)
    return _Ctx(family, ip, s.masquerade_all, local, not_local)


def _node_ip(s: ProxierSettings) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """proxier.nodeIP: the address a LoadBalancer source range may hold."""
    return ipaddress.ip_address(s.primary_ip) if s.primary_ip else None


def _allows_node(port: _Port, node_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    """One of the port's source ranges holds the node's IP (its firewall chain then lets the VIPs in)."""
    return node_ip is not None and any(node_ip in n for n in port.range_nets)


# --------------------------------------------------------------------------- fixed objects


def nodeport_ips(s: ProxierSettings, family: IPFamily) -> list[str] | None:
    """The node's addresses that accept NodePorts, or None for "every local address" (match-all).

    `--nodeport-addresses` CIDRs of the family filter the node's addresses; none of the family, or
    a zero-length one, matches all. Loopback never counts (nftables mode has no localhost NodePorts).
    """
    try:
        nets = [ipaddress.ip_network(n, strict=False) for n in s.nodeport_addresses if family.owns(n)]
        addrs = [ipaddress.ip_address(ip) for ip in s.node_ips if family.owns(ip)]
    except ValueError as exc:
        raise RenderError(f"node {s.node_name}: {exc}") from None
    if not nets or any(n.prefixlen == 0 for n in nets):
        return None
    found = (str(a) for a in addrs if not a.is_loopback and any(a in n for n in nets))
    return list(dict.fromkeys(found))


def _write_fixed(s: ProxierSettings, ctx: _Ctx, w: _Writer) -> None:
    """The table, base chains, fixed chains, sets and maps, and the fixed rules (`setupNFTables`)."""
    ip, addr_type = ctx.ip, f"ipv{ctx.family.version}_addr"
    w.buf.table.append(f"add table{w.head.rstrip()} {{ comment {_TABLE_COMMENT} ; }}\n")
    for name, kind, hook, priority in c.NFT_BASE_CHAINS:
        w.chain(name, f" {{ type {kind} hook {hook} priority {priority} ; }}")
    for name in (c.NFT_SERVICES, c.NFT_FIREWALL_CHECK, c.NFT_SERVICE_ENDPOINTS_CHECK,
                 c.NFT_NODEPORT_ENDPOINTS_CHECK, c.NFT_CLUSTER_IPS_CHECK, c.NFT_MARK_FOR_MASQUERADE,
                 c.NFT_MASQUERADING):
        w.chain(name)
    w.chain(c.NFT_REJECT_CHAIN, f" {{ comment {_REJECT_CHAIN_COMMENT} ; }}")

    # The pre-DNAT filter chains see the original destination: source ranges of LB IPs are checked there.
    for chain in (c.NFT_FILTER_PREROUTING_PRE_DNAT, c.NFT_FILTER_OUTPUT_PRE_DNAT):
        w.rule(chain, f"ct state new jump {c.NFT_FIREWALL_CHECK}")
    for chain in (c.NFT_NAT_PREROUTING, c.NFT_NAT_OUTPUT):
        w.rule(chain, f"jump {c.NFT_SERVICES}")
    # After DNAT: what is still addressed to a service IP had no endpoint (or an unknown port);
    # `reject` lives in these hooks because kernels before 5.9 refuse it in prerouting.
    w.rule(c.NFT_FILTER_INPUT, f"ct state new jump {c.NFT_NODEPORT_ENDPOINTS_CHECK}")
    w.rule(c.NFT_FILTER_INPUT, f"ct state new jump {c.NFT_SERVICE_ENDPOINTS_CHECK}")
    for chain in (c.NFT_FILTER_FORWARD, c.NFT_FILTER_OUTPUT):
        w.rule(chain, f"ct state new jump {c.NFT_SERVICE_ENDPOINTS_CHECK}")
        w.rule(chain, f"ct state new jump {c.NFT_CLUSTER_IPS_CHECK}")
    w.rule(c.NFT_NAT_POSTROUTING, f"jump {c.NFT_MASQUERADING}")

    w.rule(c.NFT_CLUSTER_IPS_CHECK,
           f'{ip} daddr @{c.NFT_CLUSTER_IPS} reject comment "Reject traffic to invalid ports of ClusterIPs"')
    cidrs = [cidr for cidr in s.service_cidrs if ctx.family.owns(cidr)]
    _check_addrs(f"node {s.node_name} serviceCIDR", cidrs)
    if cidrs:
        # Known ServiceCIDRs: an address in them that is no ClusterIP was never allocated.
        w.rule(c.NFT_CLUSTER_IPS_CHECK,
               f'{ip} daddr {{ {",".join(cidrs)} }} drop comment "Drop traffic to unallocated ClusterIPs"')
    w.rule(c.NFT_REJECT_CHAIN, "reject")
    # Mark for masquerade; masquerade what is marked, clearing the mark so a packet that traverses
    # the stack again is not masqueraded twice.
    mark = s.masquerade_mark
    w.rule(c.NFT_MARK_FOR_MASQUERADE, f"mark set mark or {mark}")
    w.rule(c.NFT_MASQUERADING, f"mark and {mark} == 0 return")
    w.rule(c.NFT_MASQUERADING, f"mark set mark xor {mark}")
    w.rule(c.NFT_MASQUERADING, "masquerade fully-random")

    w.set(c.NFT_CLUSTER_IPS, f"type {addr_type} ; comment {_SET_COMMENTS[c.NFT_CLUSTER_IPS]}")
    key = f"{addr_type} . inet_proto . inet_service"
    for name in _IP_MAPS:
        w.map(name, f"type {key} : verdict ; comment {_MAP_COMMENTS[name]}")
    for name in _PORT_MAPS:
        w.map(name, f"type inet_proto . inet_service : verdict ; comment {_MAP_COMMENTS[name]}")

    w.rule(c.NFT_FIREWALL_CHECK, f"{ip} daddr . meta l4proto . th dport vmap @{c.NFT_FIREWALL_IPS}")
    w.rule(c.NFT_SERVICES, f"{ip} daddr . meta l4proto . th dport vmap @{c.NFT_SERVICE_IPS}")
    w.rule(c.NFT_SERVICE_ENDPOINTS_CHECK, f"{ip} daddr . meta l4proto . th dport vmap @{c.NFT_NO_ENDPOINT_SERVICES}")
    ips = nodeport_ips(s, ctx.family)
    loopback = ctx.family.loopback_net if ctx.family.version == 4 else ctx.family.loopback_ip
    if ips is None:
        # Match-all: NodePorts answer on every local address but loopback; no nodeport-ips set.
        w.rule(c.NFT_SERVICES, f"fib daddr type local {ip} daddr != {loopback} "
                               f"meta l4proto . th dport vmap @{c.NFT_SERVICE_NODEPORTS}")
        w.rule(c.NFT_NODEPORT_ENDPOINTS_CHECK,
               f"{ip} daddr != {loopback} meta l4proto . th dport vmap @{c.NFT_NO_ENDPOINT_NODEPORTS}")
        return
    # NodePorts only on the addresses --nodeport-addresses selects.
    w.set(c.NFT_NODEPORT_IPS, f"type {addr_type} ; comment {_SET_COMMENTS[c.NFT_NODEPORT_IPS]}")
    for a in ips:
        w.element(c.NFT_NODEPORT_IPS, a)
    w.rule(c.NFT_SERVICES, f"{ip} daddr @{c.NFT_NODEPORT_IPS} meta l4proto . th dport vmap @{c.NFT_SERVICE_NODEPORTS}")
    w.rule(c.NFT_NODEPORT_ENDPOINTS_CHECK,
           f"{ip} daddr @{c.NFT_NODEPORT_IPS} meta l4proto . th dport vmap @{c.NFT_NO_ENDPOINT_NODEPORTS}")


# --------------------------------------------------------------------------- one service port


def _write_endpoint_dispatch(ctx: _Ctx, port: _Port, chain: str, eps: Sequence[_Ep], w: _Writer) -> None:
    """`writeServiceToEndpointRules`: affinity lookups, then one numgen vmap over the endpoints."""
    if port.sp.affinity_timeout is not None:
        # ClientIP affinity first: a client recorded recently goes back to the same endpoint.
        for ep in eps:
            w.rule(chain, f"{ctx.ip} saddr @{ep.affinity_set} goto {ep.chain}")
    targets = " , ".join(f"{i} : goto {ep.chain}" for i, ep in enumerate(eps))
    w.rule(chain, f"numgen random mod {len(eps)} vmap {{ {targets} }}")


def _write_endpoint_chains(ctx: _Ctx, port: _Port, eps: Sequence[_Ep], w: _Writer) -> None:
    """One endpoint- chain per endpoint: hairpin masquerade, affinity record, DNAT."""
    timeout = port.sp.affinity_timeout
    for ep in eps:
        w.chain(ep.chain)
        if timeout is not None:
            # The set the service chain looks the client up in, entries expiring after the timeout.
            w.set(ep.affinity_set, f"type ipv{ctx.family.version}_addr ; flags dynamic,timeout ; timeout {timeout}s")
    for ep in eps:
        # Traffic that loops back to the pod that sent it must be masqueraded, or the reply would
        # bypass the DNAT.
        w.rule(ep.chain, f"{ctx.ip} saddr {ep.ip} jump {c.NFT_MARK_FOR_MASQUERADE}")
        if timeout is not None:
            # Record the client for ClientIP affinity.
            w.rule(ep.chain, f"update @{ep.affinity_set} {{ {ctx.ip} saddr }}")
        w.rule(ep.chain, f"meta l4proto {port.proto} dnat to {ep.hp}")


def _write_port(ctx: _Ctx, port: _Port, local_eps: Sequence[_Ep], allow_from_node: bool, w: _Writer,
                cluster: Sequence[_Ep] | None = None) -> None:
    """All objects of one service port (the nftables syncProxyRules loop body).

    What the lines read of the node besides `ctx`: `local_eps`, its local endpoints
    (`_local_endpoints`), `allow_from_node`, whether a source range holds its IP (`_allows_node`),
    and `cluster`, its cluster endpoints where topology hints make them its own
    (`_cluster_endpoints`; None: `port.cluster`).
    """
    sp, spn, proto = port.sp, port.spn, port.proto
    cluster_chain, local_chain, external_chain, fw_chain = port.chains
    has_endpoints = port.has_any
    cluster_eps = port.cluster if cluster is None else cluster
    uses_cluster_chain = bool(cluster_eps) and port.uses_cluster
    uses_local_chain = bool(local_eps) and port.uses_local
    itp_local, etp_local = sp.internal_policy_local, sp.external_policy_local
    internal_chain = local_chain if itp_local else cluster_chain
    has_internal = has_endpoints and (not itp_local or bool(local_eps))
    external_policy_chain = local_chain if etp_local else cluster_chain
    has_external = has_endpoints and (not etp_local or bool(local_eps))
    # Based on has_endpoints, not has_external: the external chain's short-circuit rules for pod and
    # node traffic are needed even when no endpoint serves outside traffic.
    uses_external_chain = has_endpoints and sp.externally_accessible

    if not has_endpoints:
        # No endpoint anywhere: reject, in the filter chains, whatever is addressed to the port.
        internal_verdict = external_verdict = f"goto {c.NFT_REJECT_CHAIN}"
    else:
        # Local policy with no endpoint on this node: drop what the policy would send nowhere.
        internal_verdict = external_verdict = "drop"

    port_key = f"{proto} . {sp.port}"
    # Every ClusterIP, served or not: cluster-ips-check rejects its unknown ports.
    w.element(c.NFT_CLUSTER_IPS, sp.cluster_ip or "")
    if has_internal:
        # ClusterIP traffic goes to the chain of its policy.
        w.element(c.NFT_SERVICE_IPS, f"{sp.cluster_ip} . {port_key}", f"goto {internal_chain}")
    else:
        # ClusterIP traffic has no endpoint: the filter chains reject or drop it.
        w.element(c.NFT_NO_ENDPOINT_SERVICES, f"{sp.cluster_ip} . {port_key}", internal_verdict, spn)

    for ext_ip in port.external_ips:
        if has_endpoints:
            # External IPs go to the external chain (masquerade or short-circuit, then policy).
            w.element(c.NFT_SERVICE_IPS, f"{ext_ip} . {port_key}", f"goto {external_chain}")
        if not has_external:
            # No endpoint for outside traffic: reject (none at all) or drop what was not short-circuited.
            w.element(c.NFT_NO_ENDPOINT_SERVICES, f"{ext_ip} . {port_key}", external_verdict, spn)

    # Source ranges of LoadBalancer IPs: a firewall chain drops other sources before DNAT.
    uses_fw_chain = bool(port.lb_ips) and bool(port.ranges)
    if uses_fw_chain:
        w.chain(fw_chain)
        sources = list(port.ranges)
        if allow_from_node:
            # A request from this node to a VIP held as a local address loops back with the VIP as
            # its source: allow it when the node's IP is in a source range.
            sources += port.lb_ips
        w.rule(fw_chain, f"{ctx.ip} saddr != {{ {' , '.join(sources)} }} drop")

    for lb_ip in port.lb_ips:
        if has_endpoints:
            # LoadBalancer IPs go to the external chain, like external IPs.
            w.element(c.NFT_SERVICE_IPS, f"{lb_ip} . {port_key}", f"goto {external_chain}")
        if uses_fw_chain:
            # Checked against the source ranges whether or not there are endpoints.
            w.element(c.NFT_FIREWALL_IPS, f"{lb_ip} . {port_key}", f"goto {fw_chain}")
    if not has_external:
        for lb_ip in port.lb_ips:
            # No endpoint for outside traffic: reject or drop, as for external IPs.
            w.element(c.NFT_NO_ENDPOINT_SERVICES, f"{lb_ip} . {port_key}", external_verdict, spn)

    if sp.node_port:
        node_key = f"{proto} . {sp.node_port}"
        if has_endpoints:
            # NodePorts go to the external chain; source ranges do not apply to them.
            w.element(c.NFT_SERVICE_NODEPORTS, node_key, f"goto {external_chain}")
        if not has_external:
            # No endpoint for outside traffic on the NodePort: reject or drop.
            w.element(c.NFT_NO_ENDPOINT_NODEPORTS, node_key, external_verdict, spn)

    # Masquerading of ClusterIP traffic, in the chain ClusterIP traffic uses (only if it has endpoints).
    if has_internal:
        if ctx.masquerade_all:
            # masqueradeAll: every ClusterIP connection is SNATed.
            w.rule(internal_chain, f"{ctx.ip} daddr {sp.cluster_ip} jump {c.NFT_MARK_FOR_MASQUERADE}")
        elif ctx.if_not_local:
            # Off-cluster traffic to a ClusterIP (a static route to any node) may bounce to another
            # node: masquerade it. Without a detector kube-proxy cannot tell, and writes nothing.
            w.rule(internal_chain, f"{ctx.ip} daddr {sp.cluster_ip} {ctx.if_not_local} "
                                   f"jump {c.NFT_MARK_FOR_MASQUERADE}")

    if uses_external_chain:
        # NodePort, external and LoadBalancer traffic: masquerade or short-circuit, then the policy chain.
        w.chain(external_chain)
        if not etp_local:
            # Cluster policy may send the traffic to another node: masquerade it.
            w.rule(external_chain, f"jump {c.NFT_MARK_FOR_MASQUERADE}")
        else:
            if ctx.if_local:
                # Pod traffic to an external destination ignores the policy, as if it went out to
                # the load balancer and came back.
                w.rule(external_chain, f'{ctx.if_local} goto {cluster_chain} comment "short-circuit pod traffic"')
            # Traffic from the node itself has a local source (maybe the VIP): masquerade it and
            # send it to the cluster policy chain.
            w.rule(external_chain, f'fib saddr type local jump {c.NFT_MARK_FOR_MASQUERADE} '
                                   f'comment "masquerade local traffic"')
            w.rule(external_chain, f'fib saddr type local goto {cluster_chain} comment "short-circuit local traffic"')
        if has_external:
            # Anything else goes to the external policy chain.
            w.rule(external_chain, f"goto {external_policy_chain}")

    # The policy chains, each spreading traffic over its endpoints.
    if uses_cluster_chain:
        w.chain(cluster_chain)
        _write_endpoint_dispatch(ctx, port, cluster_chain, cluster_eps, w)
    if uses_local_chain:
        w.chain(local_chain)
        _write_endpoint_dispatch(ctx, port, local_chain, local_eps, w)

    # An endpoint chain for every endpoint reachable from this node under the traffic policies.
    if not port.uses_local:
        reachable: Sequence[_Ep] = cluster_eps
    elif not port.uses_cluster:
        reachable = local_eps
    else:
        merged = {ep.hp: ep for ep in cluster_eps}
        merged.update((ep.hp, ep) for ep in local_eps)
        reachable = [merged[hp] for hp in sorted(merged)]
    _write_endpoint_chains(ctx, port, reachable, w)


# --------------------------------------------------------------------------- public API


def _family(s: ProxierSettings) -> IPFamily:
    family = FAMILIES.get(s.ip_family)
    if family is None:
        raise RenderError(f"node {s.node_name}: ip_family must be 4 or 6, not {s.ip_family!r}")
    return family


def _ports_of(ports: Iterable[ServicePort], family: IPFamily) -> list[_Port]:
    return [p for p in (_port(sp, family) for sp in ports) if p is not None]


def render_buffers(s: ProxierSettings, ports: Sequence[ServicePort], stale_chains: Iterable[str] = ()) -> NftBuffers:
    """The node's table, by object kind, written directly (`render_nodes` gives the same, shared).

    `stale_chains`: service chains kube-proxy would still hold, flushed, because it deletes them
    only once they are a second old; each not written by this render appears as an empty chain.
    Only kube-proxy's dumps need it: svcnet's script replaces the whole table.
    """
    family = _family(s)
    ctx = _ctx(s, family)
    buf = NftBuffers()
    w = _Writer(family, buf)
    _write_fixed(s, ctx, w)
    node_ip = _node_ip(s)
    for port in _ports_of(ports, family):
        _write_port(ctx, port, _local_endpoints(port, s.node_name), _allows_node(port, node_ip), w,
                    _cluster_endpoints(port, s.node_name, s.zone))
    wanted = [ch for ch in dict.fromkeys(stale_chains) if c.is_nft_service_chain(ch)]
    if wanted:
        # Stale chains this render does not write stay, empty, as in kube-proxy's table.
        written = {line.split(" ", 5)[4].rstrip("\n") for line in buf.chains}
        for ch in wanted:
            if ch not in written:
                w.chain(ch)
    return buf


def script(node: str, table: str, family: int = 4) -> str:
    """The `nft -f` script that replaces the node's table atomically: one transaction that creates
    the table if missing (so the delete cannot fail), deletes it, and writes it whole."""
    head = f"{c.NFT_FAMILIES[family]} {c.NFT_TABLE}"
    return (f"# svcnet: kube-proxy nftables mode, {KUBE_PROXY_VERSION}\n"
            f"# node {node}: replaces table {head} in one transaction\n"
            f"add table {head}\n"
            f"delete table {head}\n" + table)


# --------------------------------------------------------------------------- many nodes


@dataclass(frozen=True, slots=True)
class _Block:
    """The lines a run of service ports writes for one variant, by kind (elements one by one, so a
    node's table can keep each once across blocks)."""

    chains: str
    sets: str
    maps: str
    elements: tuple[str, ...]
    rules: str
    chain_names: frozenset[str]  # the chains the block adds (stale chains are the others)


# A node's variant of a node-dependent service port: the node whose endpoints are local (None: no
# local endpoints), whether one of the port's source ranges holds the node's IP, and the ip:ports of
# its cluster endpoints where topology hints make them differ from the port's (None: the port's).
# Strings, not endpoints: every node's key is hashed, and a string caches its hash.
_VariantKey = tuple[str | None, bool, tuple[str, ...] | None]


@dataclass(slots=True)
class _Slot:
    """A node-dependent service port, rendered once per distinct variant key."""

    port: _Port
    local_nodes: frozenset[str]  # nodes with a local endpoint the port's policy uses
    needs_fw: bool  # a firewall chain, whose sources depend on the node's IP
    topology: bool  # cluster endpoints chosen per node (zone, node) by the hints
    # No node hint can apply (some ready endpoint has none): the choice depends on the zone alone,
    # so it is made once per zone, not once per node.
    zone_only: bool = False
    by_zone: dict[str, tuple[str, ...] | None] = field(default_factory=dict)
    chosen: dict[tuple[str, ...], tuple[_Ep, ...]] = field(default_factory=dict)  # by variant key part
    variants: dict[_VariantKey, _Block] = field(default_factory=dict)

    def cluster_choice(self, node: str, zone: str) -> tuple[str, ...] | None:
        """The node's cluster endpoints as a variant key part (`_cluster_endpoints`; None: the port's)."""
        if not self.topology:
            return None
        if self.zone_only and zone in self.by_zone:
            return self.by_zone[zone]
        eps = _cluster_endpoints(self.port, node, zone)
        choice: tuple[str, ...] | None = None
        if eps is not None:
            choice = tuple(ep.hp for ep in eps)
            self.chosen.setdefault(choice, eps)
        if self.zone_only:
            self.by_zone[zone] = choice
        return choice


def _render_block(ctx: _Ctx, ports: Iterable[_Port], local_node: str | None, allow: bool,
                  cluster: tuple[_Ep, ...] | None = None) -> _Block:
    buf = NftBuffers()
    w = _Writer(ctx.family, buf)
    for port in ports:
        _write_port(ctx, port, _local_endpoints(port, local_node), allow, w, cluster)
    return _Block("".join(buf.chains), "".join(buf.sets), "".join(buf.maps), tuple(buf.elements),
                  "".join(buf.rules), frozenset(_chain_name(line) for line in buf.chains))


def _chain_name(line: str) -> str:
    """The name in an `add chain <family> <table> <name> …` line."""
    return line.split(" ", 5)[4].rstrip("\n")


# A node without local endpoints, its IP in no source range, the port's cluster endpoints.
_DEFAULT: _VariantKey = (None, False, None)


@dataclass(slots=True)
class _Plan:
    """The service ports of one `_Ctx`, split into shared blocks and node-dependent slots, in order."""

    default: list[_Block]  # in port order: the shared blocks, and each slot's `_DEFAULT` variant
    slots: dict[int, _Slot]  # by position in `default`
    local_at: dict[str, list[int]]  # per node, the slots where it has local endpoints
    fw_at: list[int]  # the slots whose firewall chain reads the node's IP
    topology_at: list[int]  # the slots whose cluster endpoints read the node's name and zone

    def blocks(self, ctx: _Ctx, node: str,
               node_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None, zone: str,
               ) -> tuple[list[_Block], tuple[tuple[int, _VariantKey], ...]]:
        """The node's blocks and the key of its variants (positions where it is not the default).

        The node's own work is in the slots that read it, not in every port: most nodes get the
        default list, copied."""
        blocks = list(self.default)
        keys: list[tuple[int, _VariantKey]] = []
        for i in sorted({*self.local_at.get(node, ()), *self.fw_at, *self.topology_at}):
            slot = self.slots[i]
            key = _variant(slot, node, node_ip, zone)
            if key == _DEFAULT:
                continue
            block = slot.variants.get(key)
            if block is None:
                local, allow, choice = key
                cluster = None if choice is None else slot.chosen[choice]
                block = slot.variants[key] = _render_block(ctx, (slot.port,), local, allow, cluster)
            blocks[i] = block
            keys.append((i, key))
        return blocks, tuple(keys)


def _plan(ctx: _Ctx, ports: Sequence[_Port]) -> _Plan:
    """Split the service ports into blocks every node of `ctx` shares and node-dependent slots, in order.

    A port depends on the node only through its local endpoints (a Local policy with endpoints on
    some node: the others render it as a node without any), its firewall chain's sources (rendered
    without the node's IP where no source range holds it) and, where every ready endpoint is hinted,
    its cluster endpoints (a node the hints give none of its own falls back to the port's, the default).
    """
    plan = _Plan([], {}, {}, [], [])
    run: list[_Port] = []

    def flush() -> None:
        if run:
            plan.default.append(_render_block(ctx, run, None, False))
            run.clear()

    for port in ports:
        local_nodes = frozenset(
            ep.node_name for ep in port.eps if ep.node_name and (ep.ready or ep.serving_terminating)
        ) if port.uses_local else frozenset()
        needs_fw = bool(port.lb_ips) and bool(port.ranges)
        if not (local_nodes or needs_fw or port.topology):
            run.append(port)
            continue
        flush()
        slot = _Slot(port, local_nodes, needs_fw, port.topology,
                     zone_only=not all(ep.node_hints for ep in port.eps if ep.ready))
        # Rendered now (`_DEFAULT`): nearly always some node has neither local endpoints nor its IP in a
        # range, nor cluster endpoints of its own.
        slot.variants[_DEFAULT] = _render_block(ctx, (port,), None, False)
        at = len(plan.default)
        for node in local_nodes:
            plan.local_at.setdefault(node, []).append(at)
        if needs_fw:
            plan.fw_at.append(at)
        if port.topology:
            plan.topology_at.append(at)
        plan.slots[at] = slot
        plan.default.append(slot.variants[_DEFAULT])
    flush()
    return plan


def _variant(slot: _Slot, node: str, node_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
             zone: str) -> _VariantKey:
    return ((node if node in slot.local_nodes else None), slot.needs_fw and _allows_node(slot.port, node_ip),
            slot.cluster_choice(node, zone))


def _assemble(ctx: _Ctx, fixed: NftBuffers, blocks: Sequence[_Block], stale_chains: Iterable[str]) -> NftBuffers:
    """A node's table from its fixed objects and its blocks, in `render_buffers`' order."""
    buf = NftBuffers(
        table=list(fixed.table),
        chains=[*fixed.chains, *(b.chains for b in blocks)],
        sets=[*fixed.sets, *(b.sets for b in blocks)],
        maps=[*fixed.maps, *(b.maps for b in blocks)],
        # Once each, first occurrence first, as the single-node writer keeps them.
        elements=dict.fromkeys(itertools.chain(fixed.elements, *(b.elements for b in blocks))),
        rules=[*fixed.rules, *(b.rules for b in blocks)],
    )
    w = _Writer(ctx.family, buf)
    for ch in stale_chains:
        w.chain(ch)
    return buf


def render_nodes(settings_by_node: Mapping[str, ProxierSettings], ports: Sequence[ServicePort],
                 stale_chains_by_node: Mapping[str, Iterable[str]] | None = None) -> dict[str, NftBuffers]:
    """Every node's table, as `render_buffers` of that node alone, sharing work between nodes.

    Per service port, the lines that do not depend on the node are rendered once per group of nodes
    with the same `_Ctx`; a node-dependent port (`_plan`) once per distinct variant (`_variant`);
    a node's own work is its fixed objects and the assembly. Nodes with identical tables share one
    `NftBuffers` object: read it, do not change it.
    """
    ports = tuple(ports)
    infos: dict[int, list[_Port]] = {}
    plans: dict[_Ctx, _Plan] = {}
    shared: dict[tuple, NftBuffers] = {}
    out: dict[str, NftBuffers] = {}
    for node, s in settings_by_node.items():
        family = _family(s)
        known = infos.get(family.version)
        if known is None:
            known = infos[family.version] = _ports_of(ports, family)
        ctx = _ctx(s, family)
        plan = plans.get(ctx)
        if plan is None:
            plan = plans[ctx] = _plan(ctx, known)
        fixed = NftBuffers()
        _write_fixed(s, ctx, _Writer(family, fixed))
        blocks, keys = plan.blocks(ctx, s.node_name, _node_ip(s), s.zone)
        wanted = [ch for ch in dict.fromkeys((stale_chains_by_node or {}).get(node, ())) if c.is_nft_service_chain(ch)]
        stale: list[str] = []
        if wanted:
            # Stale chains this render does not write stay, empty, as in kube-proxy's table.
            written = frozenset().union(*(b.chain_names for b in blocks))
            stale = [ch for ch in wanted if ch not in written]
        layout = (id(plan), fixed.dump(), keys, tuple(stale))
        buf = shared.get(layout)
        if buf is None:
            buf = shared[layout] = _assemble(ctx, fixed, blocks, stale)
        out[node] = buf
    return out


def render_tables(settings_by_node: Mapping[str, ProxierSettings], ports: Sequence[ServicePort],
                  stale_chains_by_node: Mapping[str, Iterable[str]] | None = None) -> dict[str, str]:
    """Every node's table text (`NftBuffers.dump`), joined once per distinct table: nodes with
    identical tables share one string."""
    texts: dict[int, str] = {}
    out: dict[str, str] = {}
    for node, buf in render_nodes(settings_by_node, ports, stale_chains_by_node).items():
        text = texts.get(id(buf))
        if text is None:
            text = texts[id(buf)] = buf.dump()
        out[node] = text
    return out


def render_script(s: ProxierSettings, ports: Sequence[ServicePort]) -> str:
    """The node's `nft -f` script."""
    return script(s.node_name, render_buffers(s, ports).dump(), s.ip_family)


def canonical_sort(text: str) -> str:
    """kube-proxy's `sortNFTablesTransaction` (helpers_test.go): drop blank and `#` lines, then a
    stable sort by object kind (table, chain, rule, set, map, element), object name, and for
    everything but rules the whole line (rules keep their order within a chain).

    Every line must be a table-dump line (`add <kind> <family> <table> <name> …`); the script's
    `add table`/`delete table` preamble is not (kube-proxy's comparator is not an order on such lines).
    """
    lines = [ln for ln in text.split("\n") if ln and not ln.startswith("#")]

    def key(line: str) -> tuple[int, str] | tuple[int, str, str]:
        w = line.split(" ")
        if len(w) < 5:
            raise ValueError(f"not a table dump line: {line!r}")
        rank = _RANK.get(w[1], 0)
        return (-rank, w[4]) if w[1] == "rule" else (-rank, w[4], line)

    return "\n".join(sorted(lines, key=key))
