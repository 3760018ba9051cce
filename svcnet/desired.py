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
    Cluster,
    LocalDetector,
    Node,
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


def local_detector(cluster: Cluster, node: Node) -> LocalDetector:
    """kube-proxy's local-traffic detector for this node (detectLocalMode)."""
    mode = cluster.proxy.detect_local_mode
    if mode == DETECT_CLUSTER_CIDR:
        return LocalDetector(mode, cidr=cluster.cluster_cidr)
    if mode == DETECT_NODE_CIDR:
        return LocalDetector(mode, cidr=node.pod_cidr)
    if mode == DETECT_BRIDGE:
        return LocalDetector(mode, interface=cluster.proxy.bridge_interface or cluster.bridge)
    if mode == DETECT_IFACE_PREFIX:
        return LocalDetector(mode, interface=cluster.proxy.interface_name_prefix or "veth")
    return LocalDetector(mode)


def proxier_settings(cluster: Cluster, node: Node) -> ProxierSettings:
    """The proxier configuration of `node` for the family of its pod network."""
    return ProxierSettings(
        node_name=node.name,
        node_ips=node.addresses,
        masquerade_mark=cluster.proxy.masquerade_mark,
        masquerade_all=cluster.proxy.masquerade_all,
        local_detector=local_detector(cluster, node),
        localhost_nodeports=cluster.proxy.localhost_nodeports,
        nodeport_addresses=cluster.proxy.nodeport_addresses,
        facts=node.facts,
        ip_family=family_of(node.pod_cidr).version,
        zone=node.zone_label or "",
    )


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
    address: str  # ip/prefix
    gateway: str
    command: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    security: ProcessSecurity | None = None  # None: the command runs as root, as before

    @property
    def ip(self) -> str:
        return self.address.split("/")[0]


@dataclass(frozen=True, slots=True)
class NetConf:
    """A node's address config: pod bridge, sysctls, host-gw routes and pod network namespaces."""

    node: str
    bridge: str
    bridge_address: str  # first address of the podCIDR, with prefix
    sysctls: tuple[Sysctl, ...]
    routes: tuple[Route, ...]
    pods: tuple[PodNet, ...]


def node_sysctls(cluster: Cluster, family: IPFamily) -> tuple[Sysctl, ...]:
    """The sysctls these rules need (kube-proxy and the bridge CNI set the same)."""
    out = [Sysctl(family.forwarding_sysctl, "1")]
    if cluster.proxy.localhost_nodeports and family.route_localnet_sysctl:
        out.append(Sysctl(family.route_localnet_sysctl, "1"))
    out.append(Sysctl(family.bridge_nf_sysctl, "1", optional=True))
    return tuple(out)


def node_netconf(cluster: Cluster, node: Node) -> NetConf:
    net = ipaddress.ip_network(node.pod_cidr)
    gateway = str(net.network_address + 1)
    routes = tuple(
        Route(other.pod_cidr, other.internal_ip, other.name) for other in cluster.nodes if other.name != node.name
    )
    pods = tuple(
        PodNet(
            namespace=p.namespace,
            name=p.name,
            netns=p.netns,
            veth=p.veth,
            address=f"{p.ip}/{net.prefixlen}",
            gateway=gateway,
            command=p.command,
            ports=tuple(sorted({cp.port for cp in p.ports})),
            security=p.security,
        )
        for p in cluster.pods
        if p.node_name == node.name and p.ip
    )
    return NetConf(
        node=node.name,
        bridge=cluster.bridge,
        bridge_address=f"{gateway}/{net.prefixlen}",
        sysctls=node_sysctls(cluster, family_of(node.pod_cidr)),
        routes=routes,
        pods=pods,
    )


# --------------------------------------------------------------------------- per node


@dataclass(frozen=True, slots=True)
class NodeDesired:
    """Everything one node must have; a backend renders `proxier` (one family) into rules."""

    node: str
    proxier: ProxierSettings
    netconf: NetConf


def desired_nodes(cluster: Cluster, nodes: Iterable[str] | None = None) -> dict[str, NodeDesired]:
    """The desired state of the named nodes (default: all), in the order given."""
    wanted = [cluster.node(n) for n in nodes] if nodes is not None else list(cluster.nodes)
    return {n.name: NodeDesired(n.name, proxier_settings(cluster, n), node_netconf(cluster, n)) for n in wanted}
