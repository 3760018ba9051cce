"""The Cluster document: its ranges, its bridge name, and its nodes' names, addresses and podCIDRs."""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from svcnet.diagnostics import Diagnostic
from svcnet.model.build import Build
from svcnet.model.family import IPAddress, IPNetwork, overlaps, subnet_of
from svcnet.model.semantic.addresses import in_net, special_range
from svcnet.model.types import Node

# Names the pod bridge can never have: svcnet creates its bridge (and deletes it on teardown), and
# `lo` always exists while the kernel refuses to create `all` or `default` (its sysctl directories).
NEVER_BRIDGES = {
    "lo": "'lo' is the loopback interface: svcnet creates the pod bridge and deletes it on teardown",
    "all": "'all' cannot name a network interface (net.ipv4.conf.all is the every-interface sysctl)",
    "default": "'default' cannot name a network interface (net.ipv4.conf.default is the sysctl template)",
}


def check_bridge(b: Build) -> list[Diagnostic]:
    why = NEVER_BRIDGES.get(b.cluster.bridge)
    if why is None:
        return []
    return [b.cluster_doc.diag(("spec", "bridge"), why + "; choose another name, e.g. cni0")]


def check_cluster_ranges(b: Build) -> list[Diagnostic]:
    """serviceCIDR against clusterCIDR: ClusterIPs and pod IPs must never be confused."""
    c, doc = b.cluster, b.cluster_doc
    svc_net, cluster_net = ipaddress.ip_network(c.service_cidr), ipaddress.ip_network(c.cluster_cidr)
    if not overlaps(svc_net, cluster_net):
        return []
    # Point at a range the user wrote: a defaulted one has no line to show.
    if c.service_cidr_given or not c.cluster_cidr_given:
        return [doc.diag(("spec", "serviceCIDR"), f"serviceCIDR {svc_net} overlaps clusterCIDR {cluster_net}")]
    return [doc.diag(("spec", "clusterCIDR"), f"clusterCIDR {cluster_net} overlaps serviceCIDR {svc_net}")]


@dataclass(frozen=True, slots=True)
class _Span:
    """One node's podCIDR as an integer interval, for sorted sweeps."""

    first: int
    last: int
    version: int
    index: int  # the node's position in spec.nodes
    net: IPNetwork


def _spans(nodes: Sequence[Node]) -> list[_Span]:
    out = []
    for i, node in enumerate(nodes):
        net = ipaddress.ip_network(node.pod_cidr)
        out.append(_Span(int(net.network_address), int(net.broadcast_address), net.version, i, net))
    out.sort(key=lambda s: (s.version, s.first, -s.last))
    return out


def overlapping_pod_cidrs(spans: Sequence[_Span]) -> tuple[list[tuple[_Span, _Span]], list[_Span]]:
    """One sweep over podCIDRs sorted by first address (O(n log n) with the sort, not O(n^2)).

    Returns each podCIDR that overlaps an earlier-sorted one, paired with the widest such, and
    the outermost podCIDRs (disjoint, still sorted) that every podCIDR lies in.
    """
    pairs: list[tuple[_Span, _Span]] = []
    outer: list[_Span] = []
    for span in spans:
        cover = outer[-1] if outer else None
        if cover is not None and cover.version == span.version and span.first <= cover.last:
            pairs.append((cover, span))  # CIDRs overlap only by nesting: cover holds span
        else:
            outer.append(span)
    return pairs, outer


def _owner_of(addr: IPAddress, outer: Sequence[_Span]) -> _Span | None:
    """The outermost podCIDR holding `addr`, by bisection of the sorted disjoint podCIDRs."""
    key: tuple[int, int] = (addr.version, int(addr))
    i = bisect.bisect_right(outer, key, key=lambda s: (s.version, s.first)) - 1
    if i >= 0 and outer[i].version == addr.version and outer[i].last >= int(addr):
        return outer[i]
    return None


class _NodeChecks:
    """The checks of one node at a time, with what they share across nodes computed once."""

    def __init__(self, b: Build) -> None:
        self.doc, self.nodes = b.cluster_doc, b.cluster.nodes
        self.svc_net = ipaddress.ip_network(b.cluster.service_cidr)
        self.cluster_net = ipaddress.ip_network(b.cluster.cluster_cidr)
        self.pairs, self.outer = overlapping_pod_cidrs(_spans(self.nodes))
        self.names: set[str] = set()
        self.addresses: dict[str, str] = {}  # address -> the first node that has it

    def name(self, i: int) -> Iterator[Diagnostic]:
        name = self.nodes[i].name
        if name in self.names:
            yield self.doc.diag(("spec", "nodes", i, "name"), f"duplicate node name {name!r}")
        self.names.add(name)

    def node_addresses(self, i: int) -> Iterator[Diagnostic]:
        """Unique, and outside serviceCIDR and every podCIDR: no packet to a node may be taken
        for one to a Service or a pod."""
        node = self.nodes[i]
        for j, ip in enumerate(node.addresses):
            path = ("spec", "nodes", i, "addresses", j)
            if ip in self.addresses:
                yield self.doc.diag(path, f"address {ip} is also used by node {self.addresses[ip]}")
            self.addresses.setdefault(ip, node.name)
            if in_net(ip, self.svc_net):
                yield self.doc.diag(path, f"address {ip} lies inside serviceCIDR {self.svc_net}")
            owner = _owner_of(ipaddress.ip_address(ip), self.outer)
            if owner is not None:
                msg = f"address {ip} lies inside node {self.nodes[owner.index].name}'s podCIDR {owner.net}"
                yield self.doc.diag(path, msg)

    def pod_cidr(self, i: int) -> Iterator[Diagnostic]:
        """Inside clusterCIDR (what detectLocalMode ClusterCIDR calls local), and clear of the
        ranges Kubernetes forbids as endpoints (its pods' addresses are endpoints)."""
        net, path = ipaddress.ip_network(self.nodes[i].pod_cidr), ("spec", "nodes", i, "podCIDR")
        if not subnet_of(net, self.cluster_net):
            yield self.doc.diag(path, f"podCIDR {net} lies outside clusterCIDR {self.cluster_net}")
        where = special_range(net)
        if where:
            yield self.doc.diag(path, f"podCIDR {net} overlaps {where}: its pods' addresses would be "
                                      "endpoints Kubernetes forbids")

    def overlapping(self) -> Iterator[tuple[int, Diagnostic]]:
        """(node index, error) for each podCIDR that overlaps another, at the later node."""
        for a, c in self.pairs:
            first, later = sorted((a, c), key=lambda s: s.index)
            msg = f"podCIDR {later.net} overlaps node {self.nodes[first.index].name}'s {first.net}"
            yield later.index, self.doc.diag(("spec", "nodes", later.index, "podCIDR"), msg)


def check_nodes(b: Build) -> list[Diagnostic]:
    """Each node's name, addresses and podCIDR, then podCIDRs against each other; in node order."""
    checks = _NodeChecks(b)
    found = [(i, d) for i in range(len(b.cluster.nodes))
             for check in (checks.name, checks.node_addresses, checks.pod_cidr) for d in check(i)]
    found.extend(checks.overlapping())
    found.sort(key=lambda f: f[0])  # stable: a node's own problems first, then its overlaps
    return [d for _, d in found]
