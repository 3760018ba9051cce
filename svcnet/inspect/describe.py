"""`svcnet describe service`: kubectl's describe layout, Endpoints included."""

from __future__ import annotations

from svcnet.inspect.get import NONE, endpoints_text
from svcnet.inspect.objects import cluster_ips, family_names
from svcnet.model.types import CLUSTER_IP, LOAD_BALANCER, Cluster, Service

LABEL_WIDTH = 26  # kubectl aligns service fields in a 26-column label


def _labels(pairs: tuple[tuple[str, str], ...] | None) -> str:
    return ",".join(f"{k}={v}" for k, v in pairs) if pairs else NONE


def describe_service(cluster: Cluster, svc: Service) -> str:
    lines: list[tuple[str, str]] = []

    def field(label: str, value: str) -> None:
        lines.append((label, value))

    field("Name:", svc.name)
    field("Namespace:", svc.namespace)
    field("Labels:", _labels(svc.labels))
    field("Annotations:", NONE)
    field("Selector:", _labels(svc.selector))
    field("Type:", svc.type)
    # kubectl: the policy, the families and every ClusterIP, primary first, comma-separated.
    field("IP Family Policy:", svc.ip_family_policy)
    field("IP Families:", ",".join(family_names(svc)) or NONE)
    field("IP:", svc.cluster_ip or "None")
    field("IPs:", ",".join(cluster_ips(svc)) or "None")
    if svc.external_ips:
        field("External IPs:", ",".join(svc.external_ips))
    if svc.type == LOAD_BALANCER and svc.lb_ips:
        field("LoadBalancer Ingress:", ", ".join(svc.lb_ips))
    ports = {(sp.port_name, sp.protocol): sp for sp in cluster.service_ports if (sp.namespace, sp.name) == svc.key}
    for p in svc.ports:
        name = p.name or "<unset>"
        field("Port:", f"{name}  {p.port}/{p.protocol}")
        field("TargetPort:", f"{p.target_port}/{p.protocol}")
        if p.node_port:
            field("NodePort:", f"{name}  {p.node_port}/{p.protocol}")
        sp = ports.get((p.name, p.protocol))
        field("Endpoints:", endpoints_text([sp], limit=10**6) if sp else NONE)
    field("Session Affinity:", svc.session_affinity)
    if svc.session_affinity == "ClientIP":
        field("Session Affinity Timeout:", f"{svc.affinity_timeout}s")
    if svc.type != CLUSTER_IP or svc.external_ips:
        field("External Traffic Policy:", svc.external_traffic_policy)
    field("Internal Traffic Policy:", svc.internal_traffic_policy)
    if svc.health_check_node_port and svc.type == LOAD_BALANCER and svc.external_traffic_policy == "Local":
        field("HealthCheck NodePort:", str(svc.health_check_node_port))
    if svc.lb_source_ranges:
        field("LoadBalancer Source Ranges:", ",".join(svc.lb_source_ranges))
    field("Events:", NONE)
    return "".join(f"{label.ljust(LABEL_WIDTH)}{value}\n" for label, value in lines)
