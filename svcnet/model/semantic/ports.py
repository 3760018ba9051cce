"""A Service's ports: names and duplicates within the Service, nodePorts across the cluster."""

from __future__ import annotations

from collections.abc import Iterator

from svcnet.diagnostics import Diagnostic
from svcnet.load import Document
from svcnet.model.build import Build
from svcnet.model.types import LOAD_BALANCER, PROTOCOLS, Cluster, Service, SvcPortSpec

HEALTH_CHECK_NODE_PORT = "healthCheckNodePort"


def check_node_port_range(b: Build) -> list[Diagnostic]:
    """A range whose first port is above its last holds no port: say so once, at the range,
    instead of calling every NodePort outside it or the range exhausted."""
    lo, hi = b.cluster.node_port_range
    if lo <= hi:
        return []
    message = f"nodePortRange {lo}-{hi} is empty: its first port is above its last"
    return [b.cluster_doc.diag(("spec", "nodePortRange"), message)]


def port_names(svc: Service, doc: Document) -> Iterator[Diagnostic]:
    """Every port of a multi-port Service is named: the name is part of each port's identity
    (kube-proxy's ServicePortName, the EndpointSlice port it matches)."""
    if len(svc.ports) > 1:
        for i, port in enumerate(svc.ports):
            if not port.name:
                yield doc.diag(("spec", "ports", i), "ports of a multi-port service must be named")


class PortIdentities:
    """A Service's ports are told apart by (port, protocol) and by name (Kubernetes refuses
    duplicates of either); one instance per Service."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.numbers: set[tuple[int, str]] = set()
        self.names: set[str] = set()

    def check(self, i: int, port: SvcPortSpec) -> Iterator[Diagnostic]:
        if (port.port, port.protocol) in self.numbers:
            yield self.doc.diag(("spec", "ports", i, "port"), f"duplicate port {port.port}/{port.protocol}")
        self.numbers.add((port.port, port.protocol))
        if port.name and port.name in self.names:
            yield self.doc.diag(("spec", "ports", i, "name"), f"duplicate port name {port.name!r}")
        self.names.add(port.name)


class NodePorts:
    """nodePorts and healthCheckNodePorts across the cluster: each (port, protocol) opens on every
    node for one Service only (a healthCheckNodePort takes its number under every protocol).
    Allocated ports are free and in range by construction, so only given ones can clash or stray;
    an allocated 0 means the range had no free port left."""

    def __init__(self, cluster: Cluster) -> None:
        self.lo, self.hi = cluster.node_port_range
        self.range_ok = self.lo <= self.hi  # else check_node_port_range reports the range itself
        self.owners: dict[tuple[int, str], str] = {}  # (port, protocol) -> "namespace/name"

    def _claim(self, port: int, protocol: str, svc: Service) -> str | None:
        """The Service that already has `port`/`protocol`; None when it was free (now `svc`'s)."""
        owner = self.owners.get((port, protocol))
        if owner is None:
            self.owners[(port, protocol)] = f"{svc.namespace}/{svc.name}"
        return owner

    def port(self, svc: Service, doc: Document, i: int, port: SvcPortSpec) -> Iterator[Diagnostic]:
        path = ("spec", "ports", i, "nodePort")
        if port.node_port:
            if port.node_port_given and self.range_ok and not self.lo <= port.node_port <= self.hi:
                yield doc.diag(path, f"nodePort {port.node_port} is outside the range {self.lo}-{self.hi}")
            owner = self._claim(port.node_port, port.protocol, svc)
            if owner:
                yield doc.diag(path, f"nodePort {port.node_port}/{port.protocol} is also used by {owner}")
        elif svc.allocates_node_ports and self.range_ok:
            yield doc.diag(("spec", "ports", i), f"nodePort range {self.lo}-{self.hi} is exhausted")

    def health_check(self, svc: Service, doc: Document) -> Iterator[Diagnostic]:
        """The healthCheckNodePort as the API server takes it: only on a Service that needs one
        (validateServiceExternalTrafficPolicy), then from the same allocator as the nodePorts
        (allocHealthCheckNodePort), so in the range and free, whatever the other port's protocol."""
        hc, path = svc.health_check_node_port, ("spec", HEALTH_CHECK_NODE_PORT)
        if not svc.needs_health_check_node_port:
            if svc.health_check_node_port_given:
                yield doc.diag(path, _health_check_not_allowed(svc))
            return  # the API server stores none, so it takes no port from the others
        if hc:
            if svc.health_check_node_port_given and self.range_ok and not self.lo <= hc <= self.hi:
                yield doc.diag(path, f"{HEALTH_CHECK_NODE_PORT} {hc} is outside the range {self.lo}-{self.hi}")
            owner = self._claim_number(hc, svc)
            if owner and svc.health_check_node_port_given:
                yield doc.diag(path, f"{HEALTH_CHECK_NODE_PORT} {hc} is also used by {owner}")
        elif self.range_ok:
            yield doc.diag(path, f"nodePort range {self.lo}-{self.hi} is exhausted")

    def _claim_number(self, port: int, svc: Service) -> str | None:
        """The Service that already has `port` under any protocol; None when it was free (now
        `svc`'s under every protocol). The API server's allocator holds port numbers, not
        (port, protocol): a healthCheckNodePort (kube-proxy serves HTTP on it) takes the number."""
        owner = next((o for o in (self.owners.get((port, p)) for p in PROTOCOLS) if o), None)
        if owner is None:
            for p in PROTOCOLS:
                self._claim(port, p, svc)
        return owner


def _health_check_not_allowed(svc: Service) -> str:
    """ValidateService's rule, naming what this Service has instead."""
    has = svc.type if svc.type != LOAD_BALANCER else f"externalTrafficPolicy {svc.external_traffic_policy}"
    return (f"{HEALTH_CHECK_NODE_PORT} may only be set when type is LoadBalancer and externalTrafficPolicy "
            f"is Local (not {has})")


def check_ports(svc: Service, doc: Document, node_ports: NodePorts) -> list[Diagnostic]:
    """One Service's ports, in the order a reader meets them: names, then port by port."""
    out = list(port_names(svc, doc))
    identities = PortIdentities(doc)
    for i, port in enumerate(svc.ports):
        out.extend(identities.check(i, port))
        out.extend(node_ports.port(svc, doc, i, port))
    out.extend(node_ports.health_check(svc, doc))
    return out
