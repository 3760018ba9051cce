"""The model as Kubernetes objects (with allocated values filled in), for `-o yaml|json`."""

from __future__ import annotations

from svcnet.model.dualstack import FAMILY_NAMES
from svcnet.model.family import IPV4, family_of
from svcnet.model.types import CLUSTER_IP, LOAD_BALANCER, Cluster, Endpoint, Node, Pod, Service, ServicePort


def _meta(namespace: str | None, name: str, labels: tuple[tuple[str, str], ...] = ()) -> dict:
    meta: dict = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def cluster_ips(svc: Service) -> list[str]:
    """spec.clusterIPs as the API server stores them: one per family, primary first (none if headless)."""
    return [ip for ip in svc.cluster_ips or (svc.cluster_ip,) if ip]


def family_names(svc: Service) -> list[str]:
    """spec.ipFamilies: `IPv4`, `IPv6`, primary first."""
    return [FAMILY_NAMES[f] for f in svc.ip_families]


def service_object(svc: Service) -> dict:
    spec: dict = {"type": svc.type, "clusterIP": svc.cluster_ip or "None"}
    if svc.cluster_ip:
        spec["clusterIPs"] = cluster_ips(svc)
    spec["ipFamilies"] = family_names(svc)
    spec["ipFamilyPolicy"] = svc.ip_family_policy
    ports = []
    for p in svc.ports:
        port: dict = {"protocol": p.protocol, "port": p.port, "targetPort": p.target_port}
        if p.name:
            port = {"name": p.name, **port}
        if p.node_port:
            port["nodePort"] = p.node_port
        ports.append(port)
    spec["ports"] = ports
    if svc.selector:
        spec["selector"] = dict(svc.selector)
    spec["sessionAffinity"] = svc.session_affinity
    if svc.session_affinity == "ClientIP":
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": svc.affinity_timeout}}
    if svc.type != CLUSTER_IP or svc.external_ips:
        spec["externalTrafficPolicy"] = svc.external_traffic_policy
    spec["internalTrafficPolicy"] = svc.internal_traffic_policy
    if svc.health_check_node_port:
        spec["healthCheckNodePort"] = svc.health_check_node_port
    if svc.external_ips:
        spec["externalIPs"] = list(svc.external_ips)
    if svc.lb_source_ranges:
        spec["loadBalancerSourceRanges"] = list(svc.lb_source_ranges)
    if svc.type == LOAD_BALANCER:  # the API server sets it on every LoadBalancer (default true)
        spec["allocateLoadBalancerNodePorts"] = svc.allocate_lb_node_ports
    status: dict = {"loadBalancer": {}}
    if svc.type == LOAD_BALANCER and svc.lb_ips:
        status["loadBalancer"] = {"ingress": [{"ip": ip} for ip in svc.lb_ips]}
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(svc.namespace, svc.name, svc.labels),
            "spec": spec, "status": status}


def pod_object(pod: Pod) -> dict:
    meta = _meta(pod.namespace, pod.name, pod.labels)
    if pod.owner:
        kind, _, name = pod.owner.partition("/")
        meta["ownerReferences"] = [{"kind": kind, "name": name}]
    container: dict = {"name": "main"}
    if pod.command:
        container["command"] = list(pod.command)
    if pod.ports:
        container["ports"] = [
            {**({"name": p.name} if p.name else {}), "containerPort": p.port, "protocol": p.protocol}
            for p in pod.ports
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
            "spec": {"nodeName": pod.node_name, "containers": [container]},
            "status": {"podIP": pod.ip, "podIPs": [{"ip": ip} for ip in pod.all_ips]}}


def endpoint_slice_objects(ports: list[ServicePort]) -> list[dict]:
    """One EndpointSlice per service port and IP family, as the EndpointSlice controller would roughly
    make (a slice holds one addressType; a dual-stack Service gets one of each)."""
    out = []
    for sp, version, eps in _slices(ports):
        endpoints = [
            {
                "addresses": [ep.ip],
                "conditions": {"ready": ep.ready, "serving": ep.serving, "terminating": ep.terminating},
                **({"nodeName": ep.node_name} if ep.node_name else {}),
                **({"targetRef": {"kind": ep.target.split("/")[0], "name": ep.target.split("/", 1)[1]}}
                   if ep.target else {}),
                **({"hints": _hints(ep)} if ep.zone_hints or ep.node_hints else {}),
            }
            for ep in eps
        ]
        slice_name = f"{sp.name}-{sp.port_name}" if sp.port_name else sp.name
        if version != _families(sp)[0]:
            slice_name += f"-{FAMILY_NAMES[version].lower()}"
        out.append({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name, "namespace": sp.namespace,
                         "labels": {"kubernetes.io/service-name": sp.name}},
            "addressType": FAMILY_NAMES[version],
            "ports": [{"name": sp.port_name, "port": eps[0].port if eps else None,
                       "protocol": sp.protocol}],
            "endpoints": endpoints,
        })
    return out


def _families(sp: ServicePort) -> list[int]:
    """The port's families, primary first: its ClusterIPs', else (headless) its endpoints', else IPv4."""
    ips = [*(sp.cluster_ips or (sp.cluster_ip or "",)), *(ep.ip for ep in sp.endpoints)]
    return list(dict.fromkeys(family_of(ip) for ip in ips if ip and ip != "None")) or [IPV4]


def _slices(ports: list[ServicePort]) -> list[tuple[ServicePort, int, list[Endpoint]]]:
    """(port, family, its endpoints of that family) per slice: every family of the port, one slice each."""
    return [(sp, v, [ep for ep in sp.endpoints if family_of(ep.ip) == v]) for sp in ports for v in _families(sp)]


def _hints(ep: Endpoint) -> dict:
    """An endpoint's hints as an EndpointSlice spells them (names sorted: the model keeps sets)."""
    out: dict = {}
    if ep.zone_hints:
        out["forZones"] = [{"name": z} for z in sorted(ep.zone_hints)]
    if ep.node_hints:
        out["forNodes"] = [{"name": n} for n in sorted(ep.node_hints)]
    return out


def node_object(node: Node) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": _meta(None, node.name, tuple(sorted(node.labels))),
            "spec": {"podCIDR": node.pod_cidr, "podCIDRs": list(node.all_pod_cidrs)},
            "status": {"addresses": [{"type": "InternalIP", "address": a} for a in node.addresses]}}


def as_list(items: list[dict]) -> dict:
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}


def cluster_services(cluster: Cluster, namespace: str | None) -> list[Service]:
    return [s for s in cluster.services if namespace is None or s.namespace == namespace]
