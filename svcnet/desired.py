"""Per-node desired state: what each node must have, derived from the model.

This is the hinge of the pipeline: model → desired state → rendered artifacts (svcnet/render/).
It says *what* a node needs (its proxier settings for one IP family, its bridge, routes, pods
and sysctls) and nothing of *how* it is written: no rule text, no backend (iptables today,
nftables later) and no IP-family literal here; those come from an `IPFamily` or stay in the
backend. Everything here is pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from svcnet.model import family
from svcnet.model.types import (
    DETECT_BRIDGE,
    DETECT_CLUSTER_CIDR,
    DETECT_IFACE_PREFIX,
    DETECT_NODE_CIDR,
    PREFER_SAME_NODE,
    PREFER_SAME_ZONE,
    UDP,
    Cluster,
    LocalDetector,
    Node,
    Pod,
    ProcessSecurity,
    ProxierSettings,
    ServicePort,
)

# --------------------------------------------------------------------------- IP families


@dataclass(frozen=True, slots=True)
class IPFamily:
    """What differs between IPv4 and IPv6 for the desired state and the renderers.

    kube-proxy runs one proxier per family; so does a backend here: it renders a node's desired
    state for one family and takes every family-specific value from this object.
    """

    version: int
    loopback_net: str
    loopback_ip: str
    forwarding_sysctl: str  # lets the node route pod and service traffic
    bridge_nf_sysctl: str  # sends bridged pod traffic through this family's netfilter hooks
    route_localnet_sysctl: str | None  # lets loopback addresses be routed to; None: the family has none

    def owns(self, addr: str) -> bool:
        """True if `addr`, a canonical address or CIDR, is of this family."""
        return family.family_of(addr) == self.version

    @property
    def any_ip(self) -> str:
        """The unspecified address, to listen on every address (0.0.0.0, ::)."""
        return str(ipaddress.ip_network(self.loopback_net).supernet(new_prefix=0).network_address)

    @property
    def localhost_nodeports(self) -> bool:
        """NodePorts can answer on loopback only where loopback can be routed to (IPv4)."""
        return self.route_localnet_sysctl is not None


IPV4 = IPFamily(family.IPV4, "127.0.0.0/8", "127.0.0.1", "net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables",
                "net.ipv4.conf.all.route_localnet")
IPV6 = IPFamily(family.IPV6, "::1/128", "::1", "net.ipv6.conf.all.forwarding", "net.bridge.bridge-nf-call-ip6tables",
                None)
FAMILIES = {IPV4.version: IPV4, IPV6.version: IPV6}


def family_of(addr: str) -> IPFamily:
    """The family of a canonical address or CIDR (as the model tells them apart)."""
    return FAMILIES[family.family_of(addr)]


# --------------------------------------------------------------------------- proxier settings


def local_detector(cluster: Cluster, node: Node, family: IPFamily | None = None) -> LocalDetector:
    """kube-proxy's local-traffic detector for this node and family (detectLocalMode): the CIDR of
    the family; none (a no-op detector, as kube-proxy's) where the description has no CIDR of it."""
    mode = cluster.proxy.detect_local_mode
    version = (family or IPV4).version
    if mode == DETECT_CLUSTER_CIDR:
        return LocalDetector(mode, cidr=cluster.cluster_cidr_of(version))
    if mode == DETECT_NODE_CIDR:
        return LocalDetector(mode, cidr=node.pod_cidr_of(version))
    if mode == DETECT_BRIDGE:
        return LocalDetector(mode, interface=cluster.proxy.bridge_interface or cluster.bridge)
    if mode == DETECT_IFACE_PREFIX:
        return LocalDetector(mode, interface=cluster.proxy.interface_name_prefix or "veth")
    return LocalDetector(mode)


def proxier_settings(cluster: Cluster, node: Node, family: IPFamily | None = None) -> ProxierSettings:
    """The proxier configuration of `node` for one family (default IPv4). Node IPs and
    nodePortAddresses of both families stay: kube-proxy's proxier picks those of its family."""
    family = family or IPV4
    return ProxierSettings(
        node_name=node.name,
        node_ips=node.addresses,
        masquerade_mark=cluster.proxy.masquerade_mark,
        masquerade_all=cluster.proxy.masquerade_all,
        local_detector=local_detector(cluster, node, family),
        localhost_nodeports=cluster.proxy.localhost_nodeports,
        nodeport_addresses=cluster.proxy.nodeport_addresses,
        facts=node.facts,
        ip_family=family.version,
        proxy_mode=cluster.proxy.mode,
        service_cidrs=tuple(c for c in (cluster.service_cidr_of(family.version),) if c),
        zone=node.zone_label or "",
    )


def proxier_families(cluster: Cluster) -> tuple[IPFamily, ...]:
    """The families a node runs a proxier for: IPv4 always (svcnet's agent applies an IPv4
    ruleset on every node), IPv6 where the cluster has an IPv6 serviceCIDR, so IPv6 Services
    (kube-proxy's dual-stack mode is one proxier per family, side by side)."""
    return (IPV4, IPV6) if IPV6.version in cluster.families else (IPV4,)


# --------------------------------------------------------------------------- endpoint selection
# kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go, the [TOP] commit of the reference docs,
# with the PreferSameTrafficDistribution gate on: its default since Kubernetes 1.34). kube-proxy
# reads only the EndpointSlice hints and the node's zone label here; trafficDistribution and the
# topology-mode annotation act earlier, through the hints the EndpointSlice controller writes
# (svcnet.model.build.controller_hints).


class CategorizedEndpoint(Protocol):
    """What endpoint selection reads of an endpoint (the model's `Endpoint`, a backend's own type)."""

    @property
    def ready(self) -> bool: ...
    @property
    def serving_terminating(self) -> bool: ...  # serving and terminating
    @property
    def node_name(self) -> str | None: ...
    @property
    def zone_hints(self) -> frozenset[str]: ...
    @property
    def node_hints(self) -> frozenset[str]: ...


E = TypeVar("E", bound=CategorizedEndpoint)


def topology_mode(endpoints: Iterable[CategorizedEndpoint], node_name: str, zone: str) -> str:
    """`topologyModeFromHints`: PreferSameNode if every ready endpoint has a node hint and one names
    this node, else PreferSameZone if every ready endpoint has a zone hint and one names this
    node's zone, else "" (no topology: hints are all or nothing)."""
    has_ready = False
    all_node_hints = all_zone_hints = True
    for_node = for_zone = False
    for ep in endpoints:
        if not ep.ready:
            continue  # hints of endpoints that are not ready do not count, either way
        has_ready = True
        if not ep.node_hints:
            all_node_hints = False
        elif node_name in ep.node_hints:
            for_node = True
        if not ep.zone_hints:
            all_zone_hints = False
        elif zone in ep.zone_hints:
            for_zone = True
    if not has_ready:
        return ""
    if all_node_hints and for_node:
        return PREFER_SAME_NODE
    if all_zone_hints and for_zone:
        return PREFER_SAME_ZONE
    return ""


def shared_cluster_endpoints(endpoints: Sequence[E]) -> tuple[E, ...] | None:
    """The cluster endpoints of every node, or None where `topology_mode` may pick some on some
    node (every ready endpoint, and at least one, has a node hint, or every one a zone hint)."""
    has_ready, all_node_hints, all_zone_hints = False, True, True
    for ep in endpoints:
        if ep.ready:
            has_ready = True
            all_node_hints = all_node_hints and bool(ep.node_hints)
            all_zone_hints = all_zone_hints and bool(ep.zone_hints)
            if not (all_node_hints or all_zone_hints):
                break  # the common case, decided by the first ready endpoint without hints
    else:
        if has_ready:
            return None
    return untopological_cluster_endpoints(endpoints)


def available_for_topology(ep: CategorizedEndpoint, mode: str, node_name: str, zone: str) -> bool:
    """`availableForTopology`: no fallback here, the fallback is in choosing the mode."""
    if not mode:
        return True
    if mode == PREFER_SAME_NODE:
        return node_name in ep.node_hints
    return mode == PREFER_SAME_ZONE and zone in ep.zone_hints


def cluster_endpoints(endpoints: Sequence[E], node_name: str, zone: str) -> tuple[E, ...]:
    """Cluster-policy endpoints as seen from a node: the ready ones its topology allows, else
    (no ready endpoint anywhere) the serving terminating ones."""
    mode = topology_mode(endpoints, node_name, zone)
    if not mode:
        return untopological_cluster_endpoints(endpoints)
    # A mode means some ready endpoint is available here, so no fallback is needed.
    return tuple(ep for ep in endpoints if ep.ready and available_for_topology(ep, mode, node_name, zone))


def untopological_cluster_endpoints(endpoints: Sequence[E]) -> tuple[E, ...]:
    """Cluster-policy endpoints where topology does not apply: the ready ones, else the serving
    terminating ones."""
    return tuple(ep for ep in endpoints if ep.ready) or tuple(ep for ep in endpoints if ep.serving_terminating)


def local_endpoints(endpoints: Sequence[E], node_name: str | None) -> tuple[E, ...]:
    """Local-policy endpoints: the node's ready ones, else its serving terminating ones (no topology)."""
    mine = [ep for ep in endpoints if ep.node_name == node_name] if node_name is not None else []
    return tuple(ep for ep in mine if ep.ready) or tuple(ep for ep in mine if ep.serving_terminating)


@dataclass(frozen=True, slots=True)
class EndpointCategories(Generic[E]):
    """CategorizeEndpoints' results; `cluster`/`local` are None when the port never uses that policy."""

    cluster: tuple[E, ...] | None
    local: tuple[E, ...] | None
    reachable: tuple[E, ...]  # cluster ∪ local: the endpoints that get a KUBE-SEP chain
    has_any: bool  # some usable endpoint anywhere (else traffic is rejected)


def uses_cluster_endpoints(sp: ServicePort) -> bool:
    """`UsesClusterEndpoints`: internal traffic policy Cluster, or reachable from outside."""
    return not sp.internal_policy_local or sp.externally_accessible


def uses_local_endpoints(sp: ServicePort) -> bool:
    """`UsesLocalEndpoints`: internal traffic policy Local, or external Local and reachable from outside."""
    return sp.internal_policy_local or (sp.external_policy_local and sp.externally_accessible)


def categorize_endpoints(sp: ServicePort, endpoints: Sequence[E], node_name: str, zone: str
                         ) -> EndpointCategories[E]:
    """`CategorizeEndpoints` for one service port's endpoints (of one family) on one node."""
    if not endpoints:
        return EndpointCategories(None, None, (), False)
    has_any = any(ep.ready or ep.serving_terminating for ep in endpoints)
    cluster = cluster_endpoints(endpoints, node_name, zone) if uses_cluster_endpoints(sp) else None
    local = local_endpoints(endpoints, node_name) if uses_local_endpoints(sp) else None
    merged = {id(ep): ep for ep in (*(cluster or ()), *(local or ()))}
    reachable = tuple(ep for ep in endpoints if id(ep) in merged)
    return EndpointCategories(cluster, local, reachable, has_any)


# --------------------------------------------------------------------------- address config


@dataclass(frozen=True, slots=True)
class Sysctl:
    key: str
    value: str
    optional: bool = False  # set only where the kernel has the key (e.g. br_netfilter's)

    @property
    def proc_path(self) -> str:
        return "/proc/sys/" + self.key.replace(".", "/")


@dataclass(frozen=True, slots=True)
class Route:
    dst: str
    via: str
    node: str  # the node that owns dst, for comments


@dataclass(frozen=True, slots=True)
class PodNet:
    namespace: str
    name: str
    netns: str
    veth: str
    address: str  # ip/prefix, of the node's first podCIDR's family
    gateway: str
    command: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    security: ProcessSecurity | None = None  # None: the command runs as root, as before
    second_address: str = ""  # ip/prefix of the other family on a dual-stack node ("": none)
    second_gateway: str = ""

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]

    @property
    def addresses(self) -> tuple[tuple[str, str], ...]:
        """(ip/prefix, gateway) per family, the first family's first."""
        second = ((self.second_address, self.second_gateway),) if self.second_address else ()
        return ((self.address, self.gateway), *second)


@dataclass(frozen=True, slots=True)
class NetConf:
    """A node's address config: pod bridge, sysctls, host-gw routes and pod network namespaces."""

    node: str
    bridge: str
    bridge_address: str  # first address of the (first) podCIDR, with prefix
    sysctls: tuple[Sysctl, ...]
    routes: tuple[Route, ...]
    pods: tuple[PodNet, ...]
    second_bridge_address: str = ""  # first address of the other family's podCIDR ("": single-stack)
    # The node's IPv6 addresses where it forwards IPv6: their interfaces keep accepting router
    # advertisements (accept_ra 1 becomes 2; see the netconf.sh template).
    ra_addresses: tuple[str, ...] = ()

    @property
    def bridge_addresses(self) -> tuple[str, ...]:
        return (self.bridge_address, self.second_bridge_address) if self.second_bridge_address \
            else (self.bridge_address,)


def node_sysctls(cluster: Cluster, family: IPFamily) -> tuple[Sysctl, ...]:
    """The sysctls these rules need (kube-proxy and the bridge CNI set the same)."""
    out = [Sysctl(family.forwarding_sysctl, "1")]
    if cluster.proxy.localhost_nodeports and family.route_localnet_sysctl:
        out.append(Sysctl(family.route_localnet_sysctl, "1"))
    out.append(Sysctl(family.bridge_nf_sysctl, "1", optional=True))
    return tuple(out)


def _address_of(node: Node, version: int) -> str | None:
    """The node's first address of family `version`, or None."""
    return next((a for a in node.addresses if family.family_of(a) == version), None)


def _gateway(cidr: str) -> tuple[str, int]:
    """The pod network's gateway (the bridge's address: the first of the podCIDR) and the prefix."""
    net = ipaddress.ip_network(cidr)
    return str(net.network_address + 1), net.prefixlen


def node_routes(cluster: Cluster, node: Node) -> tuple[Route, ...]:
    """host-gw: every other node's podCIDRs via its address of their family. The first podCIDR's
    route is as it always was; the other family's only where both nodes have an address of it
    (a node without one could not reach the gateway)."""
    out = []
    for other in cluster.nodes:
        if other.name == node.name:
            continue
        for cidr in other.all_pod_cidrs:
            version = family.family_of(cidr)
            via = _address_of(other, version)
            if cidr == other.pod_cidr:
                out.append(Route(cidr, via or other.internal_ip, other.name))
            elif via is not None and _address_of(node, version) is not None:
                out.append(Route(cidr, via, other.name))
    return tuple(out)


def _pod_net(p: Pod, node: Node) -> PodNet:
    gateway, prefix = _gateway(node.pod_cidr)
    second_address = second_gateway = ""
    for ip in p.all_ips:
        cidr = node.pod_cidr_of(family.family_of(ip))
        if ip != p.ip and cidr is not None and cidr != node.pod_cidr:
            second_gateway, second_prefix = _gateway(cidr)
            second_address = f"{ip}/{second_prefix}"
    return PodNet(
        namespace=p.namespace,
        name=p.name,
        netns=p.netns,
        veth=p.veth,
        address=f"{p.ip}/{prefix}",
        gateway=gateway,
        command=p.command,
        ports=tuple(sorted({cp.port for cp in p.ports})),
        security=p.security,
        second_address=second_address,
        second_gateway=second_gateway,
    )


def node_netconf(cluster: Cluster, node: Node) -> NetConf:
    gateway, prefix = _gateway(node.pod_cidr)
    second = next((c for c in node.all_pod_cidrs if family.family_of(c) != family.family_of(node.pod_cidr)), None)
    families = [family_of(c) for c in (node.pod_cidr, *((second,) if second else ()))]
    sysctls = tuple(dict.fromkeys(s for fam in families for s in node_sysctls(cluster, fam)))
    ra = tuple(a for a in node.addresses if IPV6 in families and IPV6.owns(a))
    return NetConf(
        node=node.name,
        bridge=cluster.bridge,
        bridge_address=f"{gateway}/{prefix}",
        sysctls=sysctls,
        routes=node_routes(cluster, node),
        pods=tuple(_pod_net(p, node) for p in cluster.pods if p.node_name == node.name and p.ip),
        second_bridge_address="{}/{}".format(*_gateway(second)) if second else "",
        ra_addresses=ra,
    )


# --------------------------------------------------------------------------- stale conntrack entries

# The protocols whose stale conntrack entries a node deletes after an apply: UDP only, as kube-proxy's
# CleanStaleEntries (pkg/proxy/conntrack/cleanup.go); a TCP or SCTP flow ends by itself.
CONNTRACK_PROTOCOLS = (UDP,)


@dataclass(frozen=True, slots=True)
class ConntrackPort:
    """A service port as a node's conntrack cleanup sees it: an entry toward one of its VIPs and
    `port`, or toward `node_port` (0: none), whose reply source is not in `endpoints` is stale."""

    protocol: str
    port: int
    vips: tuple[str, ...]  # ClusterIP, externalIPs, LoadBalancer ingress IPs
    node_port: int
    endpoints: tuple[str, ...]  # the serving endpoints' IPs


def conntrack_port(sp: ServicePort, fam: IPFamily) -> ConntrackPort | None:
    """What the cleanup needs of `sp` for one family; None if kube-proxy's proxier of that family
    has no such service port (headless, another family) or it is not of CONNTRACK_PROTOCOLS.

    Serving endpoints, whatever their readiness, topology or the traffic policies: kube-proxy keeps
    existing flows on every endpoint that still serves, as TCP connections are kept.
    """
    cluster_ip = sp.cluster_ip_of(fam.version)
    if sp.protocol not in CONNTRACK_PROTOCOLS or not cluster_ip or cluster_ip == "None":
        return None
    vips = tuple(ip for ip in (cluster_ip, *sp.external_ips, *sp.lb_ips) if fam.owns(ip))
    endpoints = tuple(sorted({ep.ip for ep in sp.endpoints if ep.serving and fam.owns(ep.ip)}))
    return ConntrackPort(sp.protocol, sp.port, tuple(dict.fromkeys(vips)), sp.node_port, endpoints)


def conntrack_ports(service_ports: Iterable[ServicePort], fam: IPFamily) -> tuple[ConntrackPort, ...]:
    """The service ports a node of family `fam` cleans the stale conntrack entries of."""
    return tuple(cp for sp in service_ports if (cp := conntrack_port(sp, fam)) is not None)


# --------------------------------------------------------------------------- health checks


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """One healthCheckNodePort as kube-proxy's ServiceHealthServer serves it on a node."""

    namespace: str
    name: str
    port: int
    local_endpoints: int  # kube-proxy's LocalReadyEndpoints: distinct ready endpoint IPs on this node


@dataclass(frozen=True, slots=True)
class HealthConf:
    """What a node's health-check server serves: the proxy's /healthz and /livez on `healthz`
    ("ip:port", "" for none) and each service's health check on `listen_ips` (kube-proxy's
    nodePortAddresses: every address, or the node's addresses inside them)."""

    healthz: str
    listen_ips: tuple[str, ...]
    services: tuple[ServiceHealth, ...]


def health_listen_ips(settings: ProxierSettings, family: IPFamily) -> tuple[str, ...]:
    """Where kube-proxy opens healthCheckNodePorts (newServiceHealthServer): every address without
    nodePortAddresses, else the node's addresses (loopback included) inside one of them."""
    nets = [ipaddress.ip_network(c) for c in settings.nodeport_addresses if family.owns(c)]
    if not settings.nodeport_addresses:
        return (family.any_ip,)
    local = [ip for ip in (*settings.node_ips, family.loopback_ip) if family.owns(ip)]
    return tuple(dict.fromkeys(ip for ip in local if any(ipaddress.ip_address(ip) in n for n in nets)))


def node_health(cluster: Cluster, settings: ProxierSettings) -> HealthConf:
    """The health checks of the node of `settings`: kube-proxy's SyncServices/SyncEndpoints input."""
    ports: dict[tuple[str, str], int] = {}
    local_ips: dict[tuple[str, str], set[str]] = {}
    for sp in cluster.service_ports:
        key = (sp.namespace, sp.name)
        if sp.effective_health_check_node_port:
            ports[key] = sp.effective_health_check_node_port
        local_ips.setdefault(key, set()).update(
            ep.ip for ep in sp.endpoints if ep.ready and ep.node_name == settings.node_name)
    services = tuple(ServiceHealth(ns, name, port, len(local_ips.get((ns, name), ())))
                     for (ns, name), port in sorted(ports.items()))
    return HealthConf(cluster.proxy.healthz_bind_address, health_listen_ips(settings, FAMILIES[settings.ip_family]),
                      services)


# --------------------------------------------------------------------------- per node


@dataclass(frozen=True, slots=True)
class NodeDesired:
    """Everything one node must have; a backend renders each proxier (one family each) into rules."""

    node: str
    proxier: ProxierSettings  # IPv4
    netconf: NetConf
    health: HealthConf
    conntrack: tuple[ConntrackPort, ...] = ()  # whose stale entries the node deletes after an apply
    proxier6: ProxierSettings | None = None  # IPv6, where the cluster has IPv6 Services

    @property
    def proxiers(self) -> tuple[ProxierSettings, ...]:
        return (self.proxier,) if self.proxier6 is None else (self.proxier, self.proxier6)


def desired_nodes(cluster: Cluster, nodes: Iterable[str] | None = None) -> dict[str, NodeDesired]:
    """The desired state of the named nodes (default: all), in the order given."""
    wanted = [cluster.node(n) for n in nodes] if nodes is not None else list(cluster.nodes)
    v6 = IPV6 in proxier_families(cluster)
    # The stale UDP flows a node cleans, the same on every node, so built once, per family.
    conntrack = tuple(cp for fam in proxier_families(cluster) for cp in conntrack_ports(cluster.service_ports, fam))
    out = {}
    for n in wanted:
        settings = proxier_settings(cluster, n)
        out[n.name] = NodeDesired(n.name, settings, node_netconf(cluster, n), node_health(cluster, settings),
                                  conntrack, proxier_settings(cluster, n, IPV6) if v6 else None)
    return out
