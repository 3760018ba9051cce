"""What to check, derived from the model (pure): traffic sources, endpoints, service selections.

Data-plane checks cover backends that svcnet runs itself: pods whose command is the shipped
podserver, which answers TCP (HTTP) always, UDP with --udp and SCTP with --sctp. Anything else is
checked for rules only, and `dataplane_skip_reason` says why.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from svcnet.agent.podserver import SCTP_FLAG, UDP_FLAG
from svcnet.desired import cluster_endpoints, untopological_cluster_endpoints
from svcnet.model.dualstack import FAMILY_NAMES
from svcnet.model.family import IPV4, IPV6, family_of
from svcnet.model.types import SCTP, TCP, UDP, Cluster, Endpoint, Node, Pod, ServicePort
from svcnet.render.chains import nft_port_names, port_chains

PODSERVER = "podserver.py"
PODSERVER_FLAG = {UDP: UDP_FLAG, SCTP: SCTP_FLAG}  # what podserver needs to answer the protocol (TCP: none)
FAMILIES = (IPV4, IPV6)  # the order checks of each family are listed in (IPv4's as before IPv6 existed)


@dataclass(frozen=True, slots=True)
class Source:
    """Where probe traffic starts: a node itself, or a pod's network namespace on it."""

    node: str
    pod: Pod | None = None

    @property
    def netns(self) -> str | None:
        return self.pod.netns if self.pod else None

    @property
    def label(self) -> str:
        return f"{self.node}/{self.pod.name}" if self.pod else self.node

    def has_family(self, cluster: Cluster, version: int) -> bool:
        """The source has an address of family `version` to send from."""
        ips = self.pod.all_ips if self.pod else cluster.node(self.node).addresses
        return any(family_of(ip) == version for ip in ips)


@dataclass(frozen=True, slots=True)
class ExternalAddress:
    """An externalIP or LoadBalancer ingress IP of a service port."""

    kind: str  # EXTERNAL_IP or LB_IP
    ip: str
    port: ServicePort

    @property
    def label(self) -> str:
        return f"{self.ip}-{self.port.spn}"


EXTERNAL_IP, LB_IP = "externalIP", "LoadBalancer IP"


def sources(cluster: Cluster, nodes: Sequence[str]) -> list[Source]:
    """Each node, and the first pod (by name) with an IP on each node."""
    out: list[Source] = []
    for node in nodes:
        out.append(Source(node))
        pods = sorted((p for p in cluster.pods if p.node_name == node and p.ip), key=lambda p: p.name)
        if pods:
            out.append(Source(node, pods[0]))
    return out


def family_view(sp: ServicePort, version: int) -> ServicePort | None:
    """The service port as the proxier of family `version` sees it (kube-proxy's dual-stack mode is one
    proxier per family): its ClusterIP of that family, and only the endpoints, external and
    LoadBalancer IPs and source ranges of it; None where the Service has no ClusterIP of that family.
    A port without ClusterIP (headless) stays listed once, under IPv4, as before IPv6."""
    if not has_cluster_ip(sp):
        return sp if version == IPV4 else None
    ip = sp.cluster_ip_of(version)
    if ip is None:
        return None

    def mine(values: Sequence[str]) -> tuple[str, ...]:
        return tuple(v for v in values if family_of(v) == version)

    eps = tuple(ep for ep in sp.endpoints if family_of(ep.ip) == version)
    view = replace(sp, cluster_ip=ip, cluster_ips=(ip,), endpoints=eps, external_ips=mine(sp.external_ips),
                   lb_ips=mine(sp.lb_ips), lb_source_ranges=mine(sp.lb_source_ranges))
    # The port itself where it is all of one family (a single-stack cluster's ports stay as they were).
    same = len(sp.cluster_ips) <= 1 and replace(view, cluster_ips=sp.cluster_ips) == sp
    return sp if same else view


def port_family(sp: ServicePort) -> int:
    """The family of a (family view of a) service port: its ClusterIP's (IPv4 without one)."""
    return family_of(sp.cluster_ip) if has_cluster_ip(sp) and sp.cluster_ip else IPV4


def port_id(sp: ServicePort) -> str:
    """A check's id for a service port: its ServicePortName, `@IPv6` added for the IPv6 family's."""
    version = port_family(sp)
    return sp.spn if version == IPV4 else f"{sp.spn}@{FAMILY_NAMES[version]}"


def node_address(node: Node, version: int) -> str | None:
    """The node's first address of family `version` (its InternalIP of that family), None if it has none."""
    return next((ip for ip in node.addresses if family_of(ip) == version), None)


def usable_endpoints(sp: ServicePort) -> tuple[Endpoint, ...]:
    """Endpoints kube-proxy sends to, topology aside: the ready ones, else the serving terminating ones."""
    return untopological_cluster_endpoints(sp.endpoints)


def node_cluster_endpoints(cluster: Cluster, sp: ServicePort, node: str | None) -> tuple[Endpoint, ...]:
    """Endpoints `node`'s cluster-policy chain sends to: with topology hints, those for its zone or
    itself (svcnet.desired); None (a node svcnet cannot tell): any usable endpoint."""
    if node is None:
        return usable_endpoints(sp)
    return cluster_endpoints(sp.endpoints, node, cluster.node(node).zone_label or "")


def local_endpoints(sp: ServicePort, node: str) -> tuple[Endpoint, ...]:
    return tuple(ep for ep in usable_endpoints(sp) if ep.node_name == node)


def runs_podserver(pod: Pod, protocol: str) -> bool:
    """The pod's command is podserver, told to answer `protocol`."""
    if not any(c.endswith(PODSERVER) for c in pod.command):
        return False
    return protocol == TCP or PODSERVER_FLAG.get(protocol) in pod.command


def serving_pod(cluster: Cluster, ep: Endpoint, protocol: str) -> Pod | None:
    """The svcnet pod running podserver that answers `protocol` at this endpoint, if any."""
    for pod in cluster.pods:
        if ep.ip not in pod.all_ips or not runs_podserver(pod, protocol):
            continue
        if any(cp.port == ep.port and cp.protocol == protocol for cp in pod.ports):
            return pod
    return None


def dataplane_skip_reason(cluster: Cluster, sp: ServicePort) -> str | None:
    """Why traffic checks do not apply to this service port (None: they do)."""
    foreign = [ep.hostport for ep in usable_endpoints(sp) if serving_pod(cluster, ep, sp.protocol) is None]
    if foreign:
        flag = f" {PODSERVER_FLAG[sp.protocol]}" if sp.protocol in PODSERVER_FLAG else ""
        return (f"{sp.spn}: endpoint(s) {', '.join(foreign)} are not svcnet pods running podserver{flag} "
                f"with a {sp.protocol} container port there (e.g. an EndpointSlice to outside machines); "
                "checked for rules only")
    return None


def expected_pods(cluster: Cluster, sp: ServicePort, endpoints: Sequence[Endpoint]) -> list[str]:
    """Pod names expected to answer `sp`'s traffic for these endpoints (served endpoints only)."""
    names = []
    for ep in endpoints:
        pod = serving_pod(cluster, ep, sp.protocol)
        if pod is not None and pod.name not in names:
            names.append(pod.name)
    return names


def has_cluster_ip(sp: ServicePort) -> bool:
    return bool(sp.cluster_ip) and sp.cluster_ip != "None"


# Named selections of service ports, used by the checks' `svcnet_ports` marker.
SELECTORS: dict[str, Callable[[ServicePort], bool]] = {
    "all": lambda sp: True,
    "cluster_ip": lambda sp: has_cluster_ip(sp) and bool(usable_endpoints(sp)),
    "split": lambda sp: has_cluster_ip(sp) and bool(usable_endpoints(sp)) and sp.affinity_timeout is None,
    "affinity": lambda sp: has_cluster_ip(sp) and bool(usable_endpoints(sp)) and sp.affinity_timeout is not None,
    "node_port": lambda sp: sp.node_port > 0 and bool(usable_endpoints(sp)),
    "local_node_port": lambda sp: sp.node_port > 0 and bool(usable_endpoints(sp)) and sp.external_policy_local,
    "no_endpoints": lambda sp: has_cluster_ip(sp) and not usable_endpoints(sp),
    "no_endpoints_node_port": lambda sp: sp.node_port > 0 and not usable_endpoints(sp),
}


def family_views(cluster: Cluster) -> list[ServicePort]:
    """Every service port's view per family (`family_view`): all IPv4 ones, then the IPv6 ones."""
    return [view for version in FAMILIES for sp in cluster.service_ports
            if (view := family_view(sp, version)) is not None]


def select_ports(cluster: Cluster, selector: str) -> list[ServicePort]:
    """The family views of the service ports `selector` picks (a dual-stack port once per family)."""
    if selector not in SELECTORS:
        raise KeyError(f"unknown service port selector {selector!r} (known: {', '.join(SELECTORS)})")
    return [sp for sp in family_views(cluster) if SELECTORS[selector](sp)]


def source_ranged(addr: ExternalAddress) -> bool:
    """A LoadBalancer IP that only sources in the port's loadBalancerSourceRanges may reach."""
    return addr.kind == LB_IP and bool(addr.port.lb_source_ranges)


# Named selections of external addresses, for checks taking `svcnet_external`.
EXTERNAL_SELECTORS: dict[str, Callable[[ExternalAddress], bool]] = {
    "all": lambda addr: True,
    "open": lambda addr: not source_ranged(addr),
    "source_ranges": source_ranged,
}


def external_addresses(cluster: Cluster, selector: str = "all") -> list[ExternalAddress]:
    """externalIPs and LoadBalancer IPs of the service ports with endpoints, narrowed by `selector`."""
    if selector not in EXTERNAL_SELECTORS:
        raise KeyError(f"unknown external address selector {selector!r} (known: {', '.join(EXTERNAL_SELECTORS)})")
    out: list[ExternalAddress] = []
    for sp in family_views(cluster):
        if not usable_endpoints(sp):
            continue
        out.extend(ExternalAddress(EXTERNAL_IP, ip, sp) for ip in sp.external_ips)
        out.extend(ExternalAddress(LB_IP, ip, sp) for ip in sp.lb_ips)
    return [addr for addr in out if EXTERNAL_SELECTORS[selector](addr)]


def in_source_ranges(ip: str, sp: ServicePort) -> bool:
    """Traffic from `ip` passes the port's loadBalancerSourceRanges (kube-proxy's KUBE-FW chain)."""
    addr = ipaddress.ip_address(ip)
    return any(addr in ipaddress.ip_network(r, strict=False) for r in sp.lb_source_ranges
               if ipaddress.ip_network(r, strict=False).version == addr.version)


def chain_owners(cluster: Cluster) -> dict[str, ServicePort]:
    """Per-service chain name -> the service port it belongs to (SVC, SVL, EXT, FW, SEP; in nftables
    mode its chains, affinity sets and element comment)."""
    return {chain: sp for sp in cluster.service_ports for chain in (*port_chains(sp), *nft_port_names(sp))}
