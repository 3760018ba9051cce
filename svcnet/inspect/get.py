"""`svcnet get`: kubectl's tables for services, pods, endpoints and nodes."""

from __future__ import annotations

import json
from collections.abc import Sequence

import yaml

from svcnet.inspect import objects
from svcnet.model.types import LOAD_BALANCER, Cluster, Pod, Service, ServicePort

RESOURCES = {
    "services": "services", "service": "services", "svc": "services",
    "pods": "pods", "pod": "pods", "po": "pods",
    "endpoints": "endpoints", "endpoint": "endpoints", "ep": "endpoints",
    "nodes": "nodes", "node": "nodes", "no": "nodes",
}
NONE = "<none>"
UNKNOWN_AGE = "<unknown>"  # kubectl's AGE for objects without a creationTimestamp


def table(rows: Sequence[Sequence[str]]) -> str:
    """kubectl's column layout: left-aligned, three spaces between columns."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["   ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


def service_ports_text(svc: Service) -> str:
    parts = []
    for p in svc.ports:
        parts.append(f"{p.port}:{p.node_port}/{p.protocol}" if p.node_port else f"{p.port}/{p.protocol}")
    return ",".join(parts) or NONE


def external_ip_text(svc: Service) -> str:
    ips = list(svc.external_ips)
    if svc.type == LOAD_BALANCER:
        ips = list(svc.lb_ips) + ips
        return ",".join(ips) if ips else "<pending>"
    return ",".join(ips) if ips else NONE


def endpoints_text(ports: Sequence[ServicePort], limit: int = 3) -> str:
    """`ip:port,...`, ready endpoints only, with kubectl's `+ N more...` after `limit`."""
    eps = [ep.hostport for sp in ports for ep in sp.endpoints if ep.ready]
    seen = list(dict.fromkeys(eps))
    if not seen:
        return NONE
    text = ",".join(seen[:limit])
    if len(seen) > limit:
        text += f" + {len(seen) - limit} more..."
    return text


def _ns_col(all_ns: bool, ns: str) -> list[str]:
    return [ns] if all_ns else []


def get_services(cluster: Cluster, namespace: str | None, wide: bool) -> str:
    all_ns = namespace is None
    head = [*(["NAMESPACE"] if all_ns else []), "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    if wide:
        head.append("SELECTOR")
    rows = [head]
    for svc in objects.cluster_services(cluster, namespace):
        row = [*_ns_col(all_ns, svc.namespace), svc.name, svc.type, svc.cluster_ip or "None",
               external_ip_text(svc), service_ports_text(svc), UNKNOWN_AGE]
        if wide:
            row.append(",".join(f"{k}={v}" for k, v in svc.selector) if svc.selector else NONE)
        rows.append(row)
    return table(rows)


def _pods(cluster: Cluster, namespace: str | None) -> list[Pod]:
    return [p for p in cluster.pods if namespace is None or p.namespace == namespace]


def get_pods(cluster: Cluster, namespace: str | None, wide: bool) -> str:
    all_ns = namespace is None
    head = [*(["NAMESPACE"] if all_ns else []), "NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        head += ["IP", "NODE", "NOMINATED NODE", "READINESS GATES"]
    rows = [head]
    for p in _pods(cluster, namespace):
        row = [*_ns_col(all_ns, p.namespace), p.name, "1/1", "Running", "0", UNKNOWN_AGE]
        if wide:
            row += [p.ip or NONE, p.node_name, NONE, NONE]
        rows.append(row)
    return table(rows)


def get_endpoints(cluster: Cluster, namespace: str | None, wide: bool) -> str:
    all_ns = namespace is None
    rows = [[*(["NAMESPACE"] if all_ns else []), "NAME", "ENDPOINTS", "AGE"]]
    for svc in objects.cluster_services(cluster, namespace):
        ports = [sp for sp in cluster.service_ports if (sp.namespace, sp.name) == svc.key]
        rows.append([*_ns_col(all_ns, svc.namespace), svc.name, endpoints_text(ports), UNKNOWN_AGE])
    return table(rows)


def get_nodes(cluster: Cluster, wide: bool) -> str:
    head = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    if wide:
        head += ["INTERNAL-IP", "EXTERNAL-IP", "POD-CIDR"]
    rows = [head]
    for n in cluster.nodes:
        row = [n.name, "Unknown", NONE, UNKNOWN_AGE, "svcnet"]
        if wide:
            row += [n.internal_ip, NONE, n.pod_cidr]
        rows.append(row)
    return table(rows)


def get_objects(cluster: Cluster, resource: str, namespace: str | None) -> list[dict]:
    if resource == "services":
        return [objects.service_object(s) for s in objects.cluster_services(cluster, namespace)]
    if resource == "pods":
        return [objects.pod_object(p) for p in _pods(cluster, namespace)]
    if resource == "endpoints":
        ports = [sp for sp in cluster.service_ports if namespace is None or sp.namespace == namespace]
        return objects.endpoint_slice_objects(ports)
    return [objects.node_object(n) for n in cluster.nodes]


def get(cluster: Cluster, resource: str, namespace: str | None, output: str | None) -> str:
    """Render `svcnet get RESOURCE` in kubectl's format (`namespace=None` means all namespaces)."""
    kind = RESOURCES[resource]
    if output in ("yaml", "json"):
        doc = objects.as_list(get_objects(cluster, kind, namespace))
        if output == "json":
            return json.dumps(doc, indent=4) + "\n"
        return yaml.safe_dump(doc, sort_keys=False)
    wide = output == "wide"
    if kind == "services":
        return get_services(cluster, namespace, wide)
    if kind == "pods":
        return get_pods(cluster, namespace, wide)
    if kind == "endpoints":
        return get_endpoints(cluster, namespace, wide)
    return get_nodes(cluster, wide)
