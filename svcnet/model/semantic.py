"""Semantic checks the schemas cannot express, each located at the offending field."""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from svcnet.diagnostics import WARNING, Diagnostic
from svcnet.model import security
from svcnet.model.build import Build, resolve_target_port, selects


def _net(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr)


def _in(ip: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    addr = ipaddress.ip_address(ip)
    return addr.version == net.version and addr in net


def check_nodes(b: Build) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    cluster_net = _net(b.cluster.cluster_cidr)
    seen_names: set[str] = set()
    seen_ips: dict[str, str] = {}
    nets: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network, int]] = []
    for i, node in enumerate(b.cluster.nodes):
        doc, _ = b.node_docs[node.name]
        base = ("spec", "nodes", i)
        if node.name in seen_names:
            out.append(doc.diag((*base, "name"), f"duplicate node name {node.name!r}"))
        seen_names.add(node.name)
        for j, ip in enumerate(node.addresses):
            if ip in seen_ips:
                out.append(doc.diag((*base, "addresses", j), f"address {ip} is also used by node {seen_ips[ip]}"))
            seen_ips.setdefault(ip, node.name)
        net = _net(node.pod_cidr)
        if net.version != cluster_net.version or not net.subnet_of(cluster_net):  # type: ignore[arg-type]
            out.append(
                doc.diag((*base, "podCIDR"), f"podCIDR {net} lies outside clusterCIDR {cluster_net}")
            )
        for other_name, other, _ in nets:
            if net.version == other.version and net.overlaps(other):  # type: ignore[arg-type]
                out.append(doc.diag((*base, "podCIDR"), f"podCIDR {net} overlaps node {other_name}'s {other}"))
        nets.append((node.name, net, i))
    return out


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
            cluster_ips.setdefault(ip, name)
        elif svc.cluster_ip:
            cluster_ips.setdefault(svc.cluster_ip, name)
        elif spec.get("clusterIP") != "None":
            out.append(doc.diag(("spec",), f"serviceCIDR {svc_net} has no free address for {name}"))
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
    return [*check_nodes(b), *check_pods(b), *check_pod_security(b), *check_services(b), *check_slices(b)]
