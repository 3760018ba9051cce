"""Services: their addresses, then their ports, then where their traffic goes, Service by Service."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from svcnet.diagnostics import Diagnostic, PathT
from svcnet.load import Document
from svcnet.model import dualstack
from svcnet.model.build import Build
from svcnet.model.semantic.addresses import in_net, special_diag
from svcnet.model.semantic.endpoints import Selection
from svcnet.model.semantic.ports import NodePorts, check_ports
from svcnet.model.types import LOAD_BALANCER, Cluster, Service

ALLOCATE_LB_NODE_PORTS = "allocateLoadBalancerNodePorts"


class ClusterIPs:
    """ClusterIPs across the cluster, per family: the Service's families as the API server settles
    them (svcnet.model.dualstack), then each ClusterIP inside the serviceCIDR of its family, one
    per Service, none a node's address.

    An allocated ClusterIP is all three by construction, so only a given one is checked; an
    allocated "" (not headless) means that serviceCIDR had no free address left.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.families = cluster.families
        self.nets = {v: ipaddress.ip_network(cluster.service_cidr_of(v) or cluster.service_cidr) for v in (4, 6)}
        # The first node that has an address, as check_nodes names it (reversed: the first wins).
        self.node_of = {ip: n.name for n in reversed(cluster.nodes) for ip in n.addresses}
        self.owners: dict[str, str] = {}  # ClusterIP -> "namespace/name"

    def check(self, svc: Service, doc: Document) -> Iterator[Diagnostic]:
        settled = dualstack.settle(doc.obj.get("spec") or {}, self.families)
        if settled.problems:
            yield from (doc.diag(p.path, p.message) for p in settled.problems)
            return  # the API server stops here: nothing was allocated
        name = f"{svc.namespace}/{svc.name}"
        ips = svc.cluster_ips or ((svc.cluster_ip,) if svc.cluster_ip else ())
        for i, (ip, version) in enumerate(zip(ips, svc.ip_families, strict=False)):
            net = self.nets[version]
            given = svc.cluster_ips_given[i] if i < len(svc.cluster_ips_given) else svc.cluster_ip_given
            if given:
                path = _cluster_ip_path(doc, i)
                if not in_net(ip, net):
                    yield doc.diag(path, f"clusterIP {ip} lies outside serviceCIDR {net}")
                if ip in self.owners:
                    yield doc.diag(path, f"clusterIP {ip} is also used by service {self.owners[ip]}")
                if ip in self.node_of:
                    yield doc.diag(path, f"clusterIP {ip} is node {self.node_of[ip]}'s address")
            elif not ip and not svc.headless:
                yield doc.diag(("spec",), f"serviceCIDR {net} has no free address for {name}")
            if ip:
                self.owners.setdefault(ip, name)


def _cluster_ip_path(doc: Document, i: int) -> PathT:
    """The primary ClusterIP where clusterIP gives it, else clusterIPs[i]."""
    spec = doc.obj.get("spec") or {}
    return ("spec", "clusterIP") if i == 0 and spec.get("clusterIP") else ("spec", "clusterIPs", i)


def external_ips(doc: Document) -> Iterator[Diagnostic]:
    """externalIPs Kubernetes forbids, quoted as written (as the IPv6 error beside them is)."""
    for i, ext in enumerate((doc.obj.get("spec") or {}).get("externalIPs") or ()):
        yield from special_diag(doc, ("spec", "externalIPs", i), "externalIP", ext)


def allocate_lb_node_ports(svc: Service, doc: Document) -> Iterator[Diagnostic]:
    """allocateLoadBalancerNodePorts on a Service of another type: ValidateService refuses it."""
    if svc.type != LOAD_BALANCER and (doc.obj.get("spec") or {}).get(ALLOCATE_LB_NODE_PORTS) is not None:
        yield doc.diag(("spec", ALLOCATE_LB_NODE_PORTS),
                       f"{ALLOCATE_LB_NODE_PORTS} may only be used when type is LoadBalancer (not {svc.type})")


def check_services(b: Build) -> list[Diagnostic]:
    """Every Service in (namespace, name) order; its problems in the order its fields are read."""
    cluster_ips, node_ports, selection = ClusterIPs(b.cluster), NodePorts(b.cluster), Selection(b.cluster.pods)
    out: list[Diagnostic] = []
    for svc in b.cluster.services:
        doc = b.service_docs[svc.key]
        out.extend(cluster_ips.check(svc, doc))
        out.extend(external_ips(doc))
        out.extend(allocate_lb_node_ports(svc, doc))
        out.extend(check_ports(svc, doc, node_ports))
        out.extend(selection.check(svc, doc))
    return out
