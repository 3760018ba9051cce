"""The Cluster document: its ranges, its bridge name, and its nodes' names, addresses and podCIDRs."""

from __future__ import annotations

import bisect
import ipaddress
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from svcnet.diagnostics import Diagnostic, PathT
from svcnet.model.build import Build
from svcnet.model.dualstack import FAMILY_NAMES
from svcnet.model.family import IPAddress, IPNetwork, family_of, overlaps, subnet_of
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


def _range_path(b: Build, key: str, i: int) -> PathT:
    """Where the i-th serviceCIDR/clusterCIDR is written: the field itself when it is one CIDR."""
    written = (b.cluster_doc.obj.get("spec") or {}).get(key)
    return ("spec", key, i) if isinstance(written, list) else ("spec", key)


def _one_per_family(b: Build, key: str, values: tuple[str, ...]) -> list[Diagnostic]:
    """Two CIDRs of one family: kube-apiserver and kube-proxy take one range per family."""
    if len(values) < 2 or family_of(values[0]) != family_of(values[1]):
        return []
    return [b.cluster_doc.diag(("spec", key), f"Invalid value: {json.dumps(list(values))}: "
                               "may specify no more than one CIDR for each IP family")]


def check_cluster_ranges(b: Build) -> list[Diagnostic]:
    """One range per family, and serviceCIDR against clusterCIDR of each family: ClusterIPs and pod
    IPs must never be confused."""
    c, doc = b.cluster, b.cluster_doc
    service, cluster = c.service_cidrs or (c.service_cidr,), c.cluster_cidrs or (c.cluster_cidr,)
    out = [*_one_per_family(b, "serviceCIDR", service), *_one_per_family(b, "clusterCIDR", cluster)]
    for i, svc_text in enumerate(service):
        for j, cluster_text in enumerate(cluster):
            svc_net, cluster_net = ipaddress.ip_network(svc_text), ipaddress.ip_network(cluster_text)
            if not overlaps(svc_net, cluster_net):
                continue
            # Point at a range the user wrote: a defaulted one has no line to show.
            if c.service_cidr_given or not c.cluster_cidr_given:
                out.append(doc.diag(_range_path(b, "serviceCIDR", i),
                                    f"serviceCIDR {svc_net} overlaps clusterCIDR {cluster_net}"))
            else:
                out.append(doc.diag(_range_path(b, "clusterCIDR", j),
                                    f"clusterCIDR {cluster_net} overlaps serviceCIDR {svc_net}"))
    return out


@dataclass(frozen=True, slots=True)
class _Span:
    """One node's podCIDR as an integer interval, for sorted sweeps."""

    first: int
    last: int
    version: int
    index: int  # the node's position in spec.nodes
    net: IPNetwork
    slot: int = 0  # which of the node's podCIDRs


def _spans(nodes: Sequence[Node]) -> list[_Span]:
    out = []
    for i, node in enumerate(nodes):
        for k, cidr in enumerate(node.all_pod_cidrs):
            net = ipaddress.ip_network(cidr)
            out.append(_Span(int(net.network_address), int(net.broadcast_address), net.version, i, net, k))
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
        self.svc_nets = [ipaddress.ip_network(c) for c in b.cluster.service_cidrs or (b.cluster.service_cidr,)]
        self.cluster_nets = [ipaddress.ip_network(c) for c in b.cluster.cluster_cidrs or (b.cluster.cluster_cidr,)]
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
            for svc_net in self.svc_nets:
                if in_net(ip, svc_net):
                    yield self.doc.diag(path, f"address {ip} lies inside serviceCIDR {svc_net}")
            owner = _owner_of(ipaddress.ip_address(ip), self.outer)
            if owner is not None:
                msg = f"address {ip} lies inside node {self.nodes[owner.index].name}'s podCIDR {owner.net}"
                yield self.doc.diag(path, msg)

    def pod_cidr_path(self, i: int, slot: int) -> PathT:
        """podCIDR for the first, podCIDRs[slot] for the other (podCIDRs[0] is podCIDR)."""
        return ("spec", "nodes", i, "podCIDR") if slot == 0 else ("spec", "nodes", i, "podCIDRs", slot)

    def pod_cidrs(self, i: int) -> Iterator[Diagnostic]:
        """podCIDRs as Node validation takes them: podCIDR first, at most one per family."""
        node, path = self.nodes[i], ("spec", "nodes", i, "podCIDRs")
        if node.all_pod_cidrs[0] != node.pod_cidr:
            yield self.doc.diag((*path, 0), f"Invalid value: {json.dumps(node.all_pod_cidrs[0])}: "
                                            "first value must match `podCIDR`")
        if len({family_of(c) for c in node.all_pod_cidrs}) < len(node.all_pod_cidrs):
            yield self.doc.diag(path, f"Invalid value: {json.dumps(list(node.all_pod_cidrs))}: "
                                      "may specify no more than one CIDR for each IP family")

    def pod_cidr(self, i: int) -> Iterator[Diagnostic]:
        """Inside the clusterCIDR of its family (what detectLocalMode ClusterCIDR calls local), and
        clear of the ranges Kubernetes forbids as endpoints (its pods' addresses are endpoints)."""
        yield from self.pod_cidrs(i)
        for slot, cidr in enumerate(self.nodes[i].all_pod_cidrs):
            net, path = ipaddress.ip_network(cidr), self.pod_cidr_path(i, slot)
            mine = [c for c in self.cluster_nets if c.version == net.version]
            if not mine:
                yield self.doc.diag(path, f"podCIDR {net}: clusterCIDR has no {FAMILY_NAMES[net.version]} range")
            elif not any(subnet_of(net, c) for c in mine):
                yield self.doc.diag(path, f"podCIDR {net} lies outside clusterCIDR {mine[0]}")
            where = special_range(net)
            if where:
                yield self.doc.diag(path, f"podCIDR {net} overlaps {where}: its pods' addresses would be "
                                          "endpoints Kubernetes forbids")

    def overlapping(self) -> Iterator[tuple[int, Diagnostic]]:
        """(node index, error) for each podCIDR that overlaps another, at the later node."""
        for a, c in self.pairs:
            first, later = sorted((a, c), key=lambda s: s.index)
            msg = f"podCIDR {later.net} overlaps node {self.nodes[first.index].name}'s {first.net}"
            yield later.index, self.doc.diag(self.pod_cidr_path(later.index, later.slot), msg)


def check_nodes(b: Build) -> list[Diagnostic]:
    """Each node's name, addresses and podCIDR, then podCIDRs against each other; in node order."""
    checks = _NodeChecks(b)
    found = [(i, d) for i in range(len(b.cluster.nodes))
             for check in (checks.name, checks.node_addresses, checks.pod_cidr) for d in check(i)]
    found.extend(checks.overlapping())
    found.sort(key=lambda f: f[0])  # stable: a node's own problems first, then its overlaps
    return [d for _, d in found]
