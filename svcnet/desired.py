"""Per-node desired state: what each node must have, derived from the model.

This is the hinge of the pipeline: model → desired state → rendered artifacts (svcnet/render/).
It says *what* a node needs (its proxier settings for one IP family, its bridge, routes, pods
and sysctls) and nothing of *how* it is written: no rule text, no backend (iptables today,
nftables later) and no IP-family literal here; those come from an `IPFamily` or stay in the
backend. Everything here is pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from svcnet.model import family
from svcnet.model.types import (
    DETECT_BRIDGE,
    DETECT_CLUSTER_CIDR,
    DETECT_IFACE_PREFIX,
    DETECT_NODE_CIDR,
    Cluster,
    LocalDetector,
    Node,
    ProcessSecurity,
    ProxierSettings,
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
    )


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
    """Everything one node must have; a backend renders `proxier` (one family) into rules."""

    node: str
    proxier: ProxierSettings
    netconf: NetConf
    health: HealthConf


def desired_nodes(cluster: Cluster, nodes: Iterable[str] | None = None) -> dict[str, NodeDesired]:
    """The desired state of the named nodes (default: all), in the order given."""
    wanted = [cluster.node(n) for n in nodes] if nodes is not None else list(cluster.nodes)
    out = {}
    for n in wanted:
        settings = proxier_settings(cluster, n)
        out[n.name] = NodeDesired(n.name, settings, node_netconf(cluster, n), node_health(cluster, settings))
    return out
