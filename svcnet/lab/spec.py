"""What the lab builds: one LabNode per cluster node, validated."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from svcnet.diagnostics import DescriptionError, errors
from svcnet.lab.errors import LabError
from svcnet.model.load import load_cluster
from svcnet.model.types import Cluster

CLIENT_NAME = "client"
BASTION_NAME = "bastion"  # the optional jump host's name: in ssh_config, known_hosts and `lab exec`
MAX_NODES = 200
_NODE_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_LAB_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class LabNode:
    """One lab machine: its hostname and the IP addresses it owns (first is primary)."""

    name: str
    addresses: tuple[str, ...]


@dataclass(frozen=True)
class LabRoute:
    """A route in the client: `destination` (one address) is sent to node `node`.

    The lab has no cloud load balancer nor router in front of the nodes; the client routes each
    LoadBalancer ingress IP and externalIP that no node holds to a node instead, as they would.
    """

    destination: str
    node: str


def validate_lab_name(name: str) -> str:
    """Return name if it is a safe lab name (used in paths and file names)."""
    if not _LAB_NAME_RE.match(name or ""):
        raise LabError(f"invalid lab name {name!r}: use 1-63 of [A-Za-z0-9_.-], starting alphanumeric")
    return name


def validate_nodes(nodes: Iterable[LabNode], bastion: bool = False) -> list[LabNode]:
    """Check names (DNS labels, unique, not 'client', nor 'bastion' with one) and addresses (unicast, unique)."""
    result = list(nodes)
    if not result:
        raise LabError("the cluster has no nodes")
    if len(result) > MAX_NODES:
        raise LabError(f"too many nodes ({len(result)}); the lab supports at most {MAX_NODES}")
    seen_names: set[str] = set()
    seen_ips: dict[str, str] = {}
    for node in result:
        if not _NODE_NAME_RE.match(node.name or ""):
            raise LabError(f"node {node.name!r}: name must be a DNS-1123 label (lowercase, digits, '-')")
        if node.name == CLIENT_NAME:
            raise LabError(f"node name {CLIENT_NAME!r} is reserved for the lab's outside machine")
        if bastion and node.name == BASTION_NAME:
            raise LabError(f"node name {BASTION_NAME!r} is reserved for the lab's jump host (--bastion)")
        if node.name in seen_names:
            raise LabError(f"node {node.name!r} appears twice")
        seen_names.add(node.name)
        if not node.addresses:
            raise LabError(f"node {node.name!r} has no addresses")
        for raw in node.addresses:
            ip = _parse_host_ip(node.name, raw)
            if str(ip) in seen_ips:
                raise LabError(f"node {node.name!r}: address {ip} is also used by node {seen_ips[str(ip)]!r}")
            seen_ips[str(ip)] = node.name
    return result


def _parse_host_ip(node: str, raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        ip = ipaddress.ip_address(str(raw))
    except ValueError:
        raise LabError(f"node {node!r}: {raw!r} is not an IP address") from None
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified or ip.is_link_local:
        raise LabError(f"node {node!r}: {ip} cannot be a node address (loopback/multicast/link-local)")
    return ip


def _cluster(paths: Iterable[str | Path]) -> Cluster:
    """The validated cluster description (files or directories, as everywhere in svcnet).

    A dual-stack description gives its nodes and the client both families. The IPv6-first gate
    does not apply: the lab only builds namespaces with the description's addresses."""
    try:
        return load_cluster([str(p) for p in paths], ipv6=True)
    except DescriptionError as exc:
        lines = "\n".join(str(d) for d in errors(exc.diagnostics))
        raise LabError(f"the cluster description is invalid:\n{lines}") from None


def lab_nodes_from_files(paths: Iterable[str | Path]) -> list[LabNode]:
    """The lab nodes (name, addresses) of a cluster description."""
    return validate_nodes([LabNode(n.name, n.addresses) for n in _cluster(paths).nodes])


def lab_routes(cluster: Cluster) -> list[LabRoute]:
    """A route per LoadBalancer ingress IP and externalIP no node holds, to the first node of its family."""
    held = {str(ipaddress.ip_address(a)) for n in cluster.nodes for a in n.addresses}
    routes: dict[str, LabRoute] = {}
    for sp in cluster.service_ports:
        for raw in (*sp.lb_ips, *sp.external_ips):
            ip = ipaddress.ip_address(raw)
            if str(ip) in held or str(ip) in routes:
                continue
            node = next((n for n in cluster.nodes
                         if any(ipaddress.ip_address(a).version == ip.version for a in n.addresses)), None)
            if node is not None:
                routes[str(ip)] = LabRoute(str(ip), node.name)
    return list(routes.values())


def lab_routes_from_files(paths: Iterable[str | Path]) -> list[LabRoute]:
    """The client's routes (`lab_routes`) for a cluster description."""
    return lab_routes(_cluster(paths))


def cluster_name_from_files(paths: Iterable[str | Path]) -> str | None:
    """metadata.name of the Cluster (used as the default lab name)."""
    try:
        return _cluster(paths).name
    except LabError:
        return None
