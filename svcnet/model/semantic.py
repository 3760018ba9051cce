"""Semantic checks the schemas cannot express, each located at the offending field."""

from __future__ import annotations

import bisect
import ipaddress
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from svcnet.diagnostics import WARNING, Diagnostic, PathT
from svcnet.load import Document
from svcnet.model import security
from svcnet.model.build import Build, resolve_target_port, selects
from svcnet.model.types import Node

Net = ipaddress.IPv4Network | ipaddress.IPv6Network

# Addresses Kubernetes forbids as endpoints and externalIPs: ValidateEndpointIP in
# kubernetes/kubernetes pkg/apis/core/validation/validation.go (used by the EndpointSlice
# validation in pkg/apis/discovery/validation and by ValidateService for spec.externalIPs;
# older releases call it validateNonSpecialIP). Unspecified and loopback addresses make no
# sense as a destination, link-local ones are node-centric: with route_localnet=1 a NodePort
# would expose a localhost-only daemon or the cloud metadata service (169.254.169.254).
# Kubernetes rejects only link-local multicast and calls allowing the rest "probably a bug";
# svcnet rejects every multicast address: a DNAT to one never reaches a single backend.
UNSPECIFIED = "unspecified"
SPECIAL_RANGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (UNSPECIFIED, ("0.0.0.0", "::")),
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("link-local", ("169.254.0.0/16", "fe80::/10")),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
)
_SPECIAL_NETS = tuple((kind, ranges, tuple(ipaddress.ip_network(r) for r in ranges)) for kind, ranges in SPECIAL_RANGES)


def _net(cidr: str) -> Net:
    return ipaddress.ip_network(cidr)


def _in(ip: str, net: Net) -> bool:
    addr = ipaddress.ip_address(ip)
    return addr.version == net.version and addr in net


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


def _overlap(a: Net, b: Net) -> bool:
    return a.version == b.version and a.overlaps(b)  # type: ignore[arg-type]


def _special_kind(net: Net) -> tuple[str, str] | None:
    """(kind, its ranges as text) of the first forbidden range `net` overlaps, or None."""
    for kind, ranges, nets in _SPECIAL_NETS:
        if any(_overlap(net, special) for special in nets):
            return kind, ", ".join(ranges)
    return None


def special_range(net: Net) -> str | None:
    """`the loopback range (127.0.0.0/8, ::1/128)` if `net` overlaps a forbidden range, else None."""
    found = _special_kind(net)
    if found is None:
        return None
    kind, ranges = found
    return f"the unspecified address ({ranges})" if kind == UNSPECIFIED else f"the {kind} range ({ranges})"


def special_address(ip: str) -> str | None:
    """Why Kubernetes forbids `ip` as an endpoint or externalIP (its wording), or None."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped  # Go's net.IP checks an IPv4-mapped address as IPv4
    found = _special_kind(ipaddress.ip_network(addr))
    if found is None:
        return None
    kind, ranges = found
    return f"may not be unspecified ({ranges})" if kind == UNSPECIFIED else f"may not be in the {kind} range ({ranges})"


def _special_diag(doc: Document, path: PathT, what: str, ip: str) -> list[Diagnostic]:
    why = special_address(ip)
    return [doc.diag(path, f"{what} {ip} {why}")] if why else []


@dataclass(frozen=True, slots=True)
class _Span:
    """One node's podCIDR as an integer interval, for sorted sweeps."""

    first: int
    last: int
    version: int
    index: int  # the node's position in spec.nodes
    net: Net


def _spans(nodes: Sequence[Node]) -> list[_Span]:
    out = []
    for i, node in enumerate(nodes):
        net = _net(node.pod_cidr)
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


def _owner_of(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, outer: Sequence[_Span]) -> _Span | None:
    """The outermost podCIDR holding `addr`, by bisection of the sorted disjoint podCIDRs."""
    key: tuple[int, int] = (addr.version, int(addr))
    i = bisect.bisect_right(outer, key, key=lambda s: (s.version, s.first)) - 1
    if i >= 0 and outer[i].version == addr.version and outer[i].last >= int(addr):
        return outer[i]
    return None


def check_cluster_ranges(b: Build) -> list[Diagnostic]:
    """serviceCIDR against clusterCIDR: ClusterIPs and pod IPs must never be confused."""
    doc, c = b.cluster_doc, b.cluster
    spec = doc.obj.get("spec") or {}
    svc_net, cluster_net = _net(c.service_cidr), _net(c.cluster_cidr)
    if not _overlap(svc_net, cluster_net):
        return []
    if "serviceCIDR" in spec or "clusterCIDR" not in spec:
        return [doc.diag(("spec", "serviceCIDR"), f"serviceCIDR {svc_net} overlaps clusterCIDR {cluster_net}")]
    return [doc.diag(("spec", "clusterCIDR"), f"clusterCIDR {cluster_net} overlaps serviceCIDR {svc_net}")]


def check_nodes(b: Build) -> list[Diagnostic]:
    found: list[tuple[int, Diagnostic]] = []  # (node index, diagnostic), sorted at the end
    nodes = b.cluster.nodes
    doc = b.cluster_doc
    cluster_net, svc_net = _net(b.cluster.cluster_cidr), _net(b.cluster.service_cidr)
    seen_names: set[str] = set()
    seen_ips: dict[str, str] = {}
    spans = _spans(nodes)
    pairs, outer = overlapping_pod_cidrs(spans)
    for i, node in enumerate(nodes):
        base = ("spec", "nodes", i)
        if node.name in seen_names:
            found.append((i, doc.diag((*base, "name"), f"duplicate node name {node.name!r}")))
        seen_names.add(node.name)
        for j, ip in enumerate(node.addresses):
            path = (*base, "addresses", j)
            if ip in seen_ips:
                found.append((i, doc.diag(path, f"address {ip} is also used by node {seen_ips[ip]}")))
            seen_ips.setdefault(ip, node.name)
            addr = ipaddress.ip_address(ip)
            if _in(ip, svc_net):
                found.append((i, doc.diag(path, f"address {ip} lies inside serviceCIDR {svc_net}")))
            owner = _owner_of(addr, outer)
            if owner is not None:
                msg = f"address {ip} lies inside node {nodes[owner.index].name}'s podCIDR {owner.net}"
                found.append((i, doc.diag(path, msg)))
        net = _net(node.pod_cidr)
        if net.version != cluster_net.version or not net.subnet_of(cluster_net):  # type: ignore[arg-type]
            found.append((i, doc.diag((*base, "podCIDR"), f"podCIDR {net} lies outside clusterCIDR {cluster_net}")))
        where = special_range(net)
        if where:
            found.append((i, doc.diag((*base, "podCIDR"), f"podCIDR {net} overlaps {where}: its pods' addresses "
                                      "would be endpoints Kubernetes forbids")))
    for a, c in pairs:
        first, later = sorted((a, c), key=lambda s: s.index)  # reported at the later node
        msg = f"podCIDR {later.net} overlaps node {nodes[first.index].name}'s {first.net}"
        found.append((later.index, doc.diag(("spec", "nodes", later.index, "podCIDR"), msg)))
    found.sort(key=lambda f: f[0])
    return [d for _, d in found]


def check_pods(b: Build) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    nodes = {n.name: n for n in b.cluster.nodes}
    seen: dict[tuple[str, str], bool] = {}
    ips: dict[str, str] = {}
    for pod in b.cluster.pods:
        doc, base = b.pod_docs[(pod.namespace, pod.name)]
        key = (pod.namespace, pod.name)
        if key in seen:
            out.append(doc.diag(("metadata", "name"), f"duplicate pod {pod.namespace}/{pod.name}"))
        seen[key] = True
        node = nodes.get(pod.node_name)
        node_path = (*base, "spec", "nodeName") if base else ("spec", "nodeName")
        if not pod.node_name:
            out.append(doc.diag(node_path if base else ("spec",), f"pod {pod.name} has no spec.nodeName"))
        elif node is None:
            out.append(doc.diag(node_path, f"pod {pod.name} is on undeclared node {pod.node_name!r}"))
        ip_path = ("status", "podIP")
        if node is not None and not pod.ip:
            out.append(doc.diag(node_path, f"node {node.name}'s podCIDR {node.pod_cidr} has no free address"))
        if pod.ip and node is not None and key in b.explicit_pod_ips and not _in(pod.ip, _net(node.pod_cidr)):
            out.append(doc.diag(ip_path, f"pod IP {pod.ip} lies outside node {node.name}'s podCIDR {node.pod_cidr}"))
        if pod.ip and key in b.explicit_pod_ips:
            out.extend(_special_diag(doc, ip_path, "pod IP", pod.ip))  # it becomes an endpoint
        if pod.ip:
            if pod.ip in ips:
                out.append(doc.diag(ip_path, f"pod IP {pod.ip} is also used by pod {ips[pod.ip]}"))
            ips.setdefault(pod.ip, f"{pod.namespace}/{pod.name}")
    return out


def check_pod_security(b: Build) -> list[Diagnostic]:
    """securityContext problems, once per pod spec (a Deployment's replicas share their template's)."""
    out: list[Diagnostic] = []
    seen: set[tuple[int, tuple[str | int, ...]]] = set()
    for doc, base in b.pod_docs.values():
        if (id(doc), base) in seen:
            continue
        seen.add((id(doc), base))
        spec_path = (*base, "spec")
        pod_spec = doc.obj
        for part in spec_path:
            pod_spec = pod_spec.get(part) or {}
        out.extend(doc.diag((*spec_path, *f.path), f.message, f.severity) for f in security.check(pod_spec))
    return out


def check_services(b: Build) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    svc_net = _net(b.cluster.service_cidr)
    node_of_ip = {ip: n.name for n in reversed(b.cluster.nodes) for ip in n.addresses}
    lo, hi = b.cluster.node_port_range
    cluster_ips: dict[str, str] = {}
    node_ports: dict[tuple[int, str], str] = {}
    pods_by_ns = defaultdict(list)
    for pod in b.cluster.pods:
        pods_by_ns[pod.namespace].append(pod)
    for svc in b.cluster.services:
        doc = b.service_docs[svc.key]
        spec = doc.obj.get("spec") or {}
        raw_ports = spec.get("ports") or []
        name = f"{svc.namespace}/{svc.name}"
        if svc.key in b.explicit_cluster_ips:
            ip = svc.cluster_ip
            if not _in(ip, svc_net):
                out.append(doc.diag(("spec", "clusterIP"), f"clusterIP {ip} lies outside serviceCIDR {svc_net}"))
            if ip in cluster_ips:
                out.append(doc.diag(("spec", "clusterIP"), f"clusterIP {ip} is also used by service {cluster_ips[ip]}"))
            if ip in node_of_ip:
                out.append(doc.diag(("spec", "clusterIP"), f"clusterIP {ip} is node {node_of_ip[ip]}'s address"))
            cluster_ips.setdefault(ip, name)
        elif svc.cluster_ip:
            cluster_ips.setdefault(svc.cluster_ip, name)
        elif spec.get("clusterIP") != "None":
            out.append(doc.diag(("spec",), f"serviceCIDR {svc_net} has no free address for {name}"))
        for i, ext in enumerate(spec.get("externalIPs") or ()):
            out.extend(_special_diag(doc, ("spec", "externalIPs", i), "externalIP", ext))
        if len(svc.ports) > 1:
            for i, port in enumerate(svc.ports):
                if not port.name:
                    out.append(doc.diag(("spec", "ports", i), "ports of a multi-port service must be named"))
        seen_ports: dict[tuple[int, str], int] = {}
        seen_names: dict[str, int] = {}
        for i, port in enumerate(svc.ports):
            if (port.port, port.protocol) in seen_ports:
                out.append(
                    doc.diag(("spec", "ports", i, "port"), f"duplicate port {port.port}/{port.protocol}")
                )
            seen_ports.setdefault((port.port, port.protocol), i)
            if port.name and port.name in seen_names:
                out.append(doc.diag(("spec", "ports", i, "name"), f"duplicate port name {port.name!r}"))
            seen_names.setdefault(port.name, i)
            if port.node_port:
                path = ("spec", "ports", i, "nodePort")
                explicit = i < len(raw_ports) and raw_ports[i].get("nodePort")
                if explicit and not lo <= port.node_port <= hi:
                    out.append(doc.diag(path, f"nodePort {port.node_port} is outside the range {lo}-{hi}"))
                owner = node_ports.get((port.node_port, port.protocol))
                if owner:
                    out.append(doc.diag(path, f"nodePort {port.node_port}/{port.protocol} is also used by {owner}"))
                node_ports.setdefault((port.node_port, port.protocol), name)
            elif svc.type in ("NodePort", "LoadBalancer"):
                out.append(doc.diag(("spec", "ports", i), f"nodePort range {lo}-{hi} is exhausted"))
        if svc.health_check_node_port:
            owner = node_ports.get((svc.health_check_node_port, "TCP"))
            if owner and spec.get("healthCheckNodePort"):
                out.append(
                    doc.diag(
                        ("spec", "healthCheckNodePort"),
                        f"healthCheckNodePort {svc.health_check_node_port} is also used by {owner}",
                    )
                )
            node_ports.setdefault((svc.health_check_node_port, "TCP"), name)
        if svc.selector:
            selected = [p for p in pods_by_ns[svc.namespace] if selects(svc.selector, p)]
            if not selected:
                out.append(
                    doc.diag(
                        ("spec", "selector"),
                        f"selector matches no pod: traffic to {name} will be REJECTed",
                        WARNING,
                    )
                )
            for i, port in enumerate(svc.ports):
                named = isinstance(port.target_port, str) and not port.target_port.isdigit()
                if named and selected and all(resolve_target_port(port, p) is None for p in selected):
                    out.append(
                        doc.diag(
                            ("spec", "ports", i, "targetPort"),
                            f"targetPort {port.target_port!r} ({port.protocol}) is not a container port "
                            "name of any selected pod",
                        )
                    )
    return out


def check_slices(b: Build) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    services = {s.key for s in b.cluster.services}
    seen: set[tuple[str, str]] = set()
    for doc in b.slice_docs:
        meta = doc.obj.get("metadata") or {}
        ns = meta.get("namespace", "default")
        key = (ns, meta.get("name", ""))
        if key in seen:
            out.append(doc.diag(("metadata", "name"), f"duplicate EndpointSlice {ns}/{key[1]}"))
        seen.add(key)
        if doc.obj.get("addressType") != "FQDN":  # kube-proxy ignores FQDN slices
            for i, ep in enumerate(doc.obj.get("endpoints") or ()):
                for j, addr in enumerate(ep.get("addresses") or ()):
                    out.extend(_special_diag(doc, ("endpoints", i, "addresses", j), "endpoint address", addr))
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
        if svc and (ns, svc) not in services:
            out.append(
                doc.diag(
                    ("metadata", "labels", "kubernetes.io/service-name"),
                    f"no Service {ns}/{svc}: these endpoints are unused",
                    WARNING,
                )
            )
    return out


def check(b: Build) -> list[Diagnostic]:
    """Every semantic problem of a built description, in document order per check."""
    return [*check_cluster_ranges(b), *check_bridge(b), *check_nodes(b), *check_pods(b), *check_pod_security(b),
            *check_services(b), *check_slices(b)]
