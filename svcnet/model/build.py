"""Turn schema-valid documents into the typed `Cluster` model.

Defaults are applied, ClusterIPs, nodePorts and pod IPs allocated, Deployments expanded
into pods and every service port's endpoints resolved, deterministically. Problems that
the schemas cannot see are reported by `svcnet.model.semantic` as located diagnostics.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from svcnet.diagnostics import Diagnostic
from svcnet.load import Document
from svcnet.model import alloc, names, security
from svcnet.model.types import (
    CLUSTER_IP,
    DEFAULT_BRIDGE,
    LOAD_BALANCER,
    NODE_PORT,
    TCP,
    Cluster,
    ContainerPort,
    Endpoint,
    Node,
    NodeFacts,
    Pod,
    ProxyConfig,
    Service,
    ServicePort,
    Source,
    SvcPortSpec,
)

DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
DEFAULT_CLUSTER_CIDR = "10.244.0.0/16"
DEFAULT_NODE_PORT_RANGE = "30000-32767"
DEFAULT_AFFINITY_TIMEOUT = 10800
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


# An IPv4 address already in canonical form (no leading zeros): the common case, kept fast.
_CANONICAL_V4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")


def canonical_ip(value: str) -> str:
    """Canonical text of an IP, tolerating leading zeros as Go's ParseIPSloppy does."""
    if _CANONICAL_V4.fullmatch(value):
        return value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        parts = value.split(".")
        return str(ipaddress.ip_address(".".join(str(int(p)) for p in parts)))


def canonical_cidr(value: str) -> str:
    """Canonical network text; host bits are masked as Go's net.ParseCIDR does."""
    addr, _, bits = value.strip().partition("/")
    return str(ipaddress.ip_network(f"{canonical_ip(addr)}/{int(bits)}", strict=False))


def _get(obj: object, *path: str, default: object = None) -> object:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return default
        obj = obj[part]
    return default if obj is None else obj


@dataclass
class Objects:
    """Documents sorted by kind, with the document each object came from."""

    cluster: list[Document] = field(default_factory=list)
    services: list[Document] = field(default_factory=list)
    pods: list[Document] = field(default_factory=list)
    deployments: list[Document] = field(default_factory=list)
    slices: list[Document] = field(default_factory=list)


@dataclass
class Build:
    """The model plus the provenance that semantic checks need to locate problems."""

    cluster: Cluster
    service_docs: dict[tuple[str, str], Document]
    pod_docs: dict[tuple[str, str], tuple[Document, tuple[str | int, ...]]]
    node_docs: dict[str, tuple[Document, int]]
    slice_docs: list[Document]
    explicit_cluster_ips: dict[tuple[str, str], str]
    explicit_pod_ips: set[tuple[str, str]]
    cluster_doc: Document
    diagnostics: list[Diagnostic] = field(default_factory=list)


def _meta(doc: Document) -> tuple[str, str]:
    ns = _get(doc.obj, "metadata", "namespace", default="default")
    return str(ns), str(_get(doc.obj, "metadata", "name", default=""))


def _labels(doc: Document) -> list[tuple[str, str]]:
    labels = _get(doc.obj, "metadata", "labels", default={})
    return [(str(k), str(v)) for k, v in labels.items()] if isinstance(labels, dict) else []


def _source(doc: Document) -> Source:
    return Source(doc.file, doc.line, doc.index)


def build_nodes(doc: Document) -> tuple[tuple[Node, ...], dict[str, tuple[Document, int]]]:
    nodes = []
    where: dict[str, tuple[Document, int]] = {}
    raw_nodes: list[dict[str, Any]] = doc.obj["spec"]["nodes"]
    for i, raw in enumerate(raw_nodes):
        f = raw.get("facts") or {}
        facts = NodeFacts(
            random_fully=bool(f.get("randomFully", True)),
            nfacct_counters=frozenset(f.get("nfacctCounters") or ()),
            tcp_be_liberal=bool(f.get("tcpBeLiberal", False)),
        )
        node = Node(
            name=raw["name"],
            addresses=tuple(canonical_ip(a) for a in raw["addresses"]),
            pod_cidr=canonical_cidr(raw["podCIDR"]),
            facts=facts,
            source=_source(doc),
        )
        nodes.append(node)
        where.setdefault(node.name, (doc, i))
    return tuple(nodes), where


def build_proxy(spec: dict) -> ProxyConfig:
    proxy = spec.get("proxy") or {}
    ipt = proxy.get("iptables") or {}
    detect = proxy.get("detectLocal") or {}
    return ProxyConfig(
        mode=proxy.get("mode", "iptables"),
        detect_local_mode=proxy.get("detectLocalMode", "ClusterCIDR"),
        bridge_interface=detect.get("bridgeInterface"),
        interface_name_prefix=detect.get("interfaceNamePrefix"),
        masquerade_bit=int(ipt.get("masqueradeBit", 14)),
        masquerade_all=bool(ipt.get("masqueradeAll", False)),
        localhost_nodeports=bool(ipt.get("localhostNodePorts", True)),
        nodeport_addresses=tuple(canonical_cidr(c) for c in proxy.get("nodePortAddresses") or ()),
    )


def parse_port_range(text: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    return int(lo), int(hi or lo)


def _container_ports(pod_spec: dict) -> tuple[ContainerPort, ...]:
    ports = []
    for c in pod_spec.get("containers") or ():
        for p in c.get("ports") or ():
            ports.append(ContainerPort(p.get("name"), int(p["containerPort"]), p.get("protocol", TCP)))
    return tuple(ports)


def _command(pod_spec: dict) -> tuple[str, ...]:
    index = security.command_container(pod_spec)
    if index is None:
        return ()
    c = pod_spec["containers"][index]
    return tuple(str(a) for a in [*c["command"], *(c.get("args") or ())])


def template_hash(template: object) -> str:
    """Stand-in for Kubernetes' pod-template-hash: 10 characters from the template."""
    return alloc.k8s_suffix(json.dumps(_string_keys(template), sort_keys=True, default=str), 10)


def _string_keys(obj: object) -> object:
    """`obj` with every mapping key a string, as in JSON: YAML keys may be ints, nulls or lists,
    which `sort_keys` cannot order against strings."""
    if isinstance(obj, dict):
        return {str(k): _string_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_string_keys(v) for v in obj]
    return obj


def expand_deployment(
    doc: Document, node_names: list[str], taken: set[str]
) -> list[tuple[dict, tuple[str | int, ...]]]:
    """Pods of a Deployment as raw pod fields, spread round-robin across the nodes.

    `taken` holds the pod names already used in the Deployment's namespace; each replica's
    name is probed until it is free (and added), so replicas never share a name.
    """
    ns, name = _meta(doc)
    spec = _get(doc.obj, "spec", default={})
    assert isinstance(spec, dict)
    replicas = int(spec.get("replicas", 1))
    template = spec.get("template") or {}
    pod_spec = template.get("spec") or {}
    labels = (template.get("metadata") or {}).get("labels") or {}
    thash = template_hash(template)
    pinned = pod_spec.get("nodeName")
    start = alloc.stable_hash(f"{ns}/{name}") % len(node_names) if node_names else 0
    pods: list[tuple[dict, tuple[str | int, ...]]] = []
    for i in range(replicas):
        node = pinned or (node_names[(start + i) % len(node_names)] if node_names else "")
        pods.append(
            (
                {
                    "namespace": ns,
                    "name": names.first_free(partial(names.replica_pod_name, ns, name, thash, i), taken),
                    "labels": {**labels, "pod-template-hash": thash},
                    "node": node,
                    "ip": None,
                    "spec": pod_spec,
                    "owner": f"Deployment/{name}",
                },
                ("spec", "template"),
            )
        )
    return pods


def _pod_fields(doc: Document) -> dict:
    ns, name = _meta(doc)
    return {
        "namespace": ns,
        "name": name,
        "labels": _get(doc.obj, "metadata", "labels", default={}),
        "node": _get(doc.obj, "spec", "nodeName", default=""),
        "ip": _get(doc.obj, "status", "podIP"),
        "spec": _get(doc.obj, "spec", default={}),
        "owner": None,
    }


def build_pods(
    objs: Objects, nodes: tuple[Node, ...], bridge: str = DEFAULT_BRIDGE
) -> tuple[tuple[Pod, ...], dict[tuple[str, str], tuple[Document, tuple[str | int, ...]]], set[tuple[str, str]]]:
    raw: list[tuple[dict, Document, tuple[str | int, ...]]] = []
    for doc in objs.pods:
        raw.append((_pod_fields(doc), doc, ()))
    node_names = [n.name for n in nodes]
    # Deployments name their pods around the Pods' names, in a fixed order (documents arrive
    # in the order of the files given, which may change between runs).
    taken: dict[str, set[str]] = defaultdict(set)
    for f, _, _ in raw:
        taken[f["namespace"]].add(f["name"])
    for doc in sorted(objs.deployments, key=_meta):
        raw.extend((f, doc, path) for f, path in expand_deployment(doc, node_names, taken[_meta(doc)[0]]))
    by_node = {n.name: n for n in nodes}
    used = {canonical_ip(f["ip"]) for f, _, _ in raw if f["ip"]}
    explicit = {(f["namespace"], f["name"]) for f, _, _ in raw if f["ip"]}
    ifaces = names.pod_interfaces(((f["namespace"], f["name"]) for f, _, _ in raw), reserved=(bridge,))
    pods = []
    where: dict[tuple[str, str], tuple[Document, tuple[str | int, ...]]] = {}
    for f, doc, path in sorted(raw, key=lambda r: (r[0]["namespace"], r[0]["name"])):
        ip = canonical_ip(f["ip"]) if f["ip"] else None
        node = by_node.get(f["node"])
        if ip is None and node is not None:
            ip = alloc.allocate_ip(f"{f['namespace']}/{f['name']}", node.pod_cidr, used)
            if ip:
                used.add(ip)
        pod = Pod(
            namespace=f["namespace"],
            name=f["name"],
            node_name=f["node"],
            ip=ip or "",
            netns=ifaces[(f["namespace"], f["name"])][0],
            veth=ifaces[(f["namespace"], f["name"])][1],
            labels=tuple(sorted((str(k), str(v)) for k, v in (f["labels"] or {}).items())),
            ports=_container_ports(f["spec"] or {}),
            command=_command(f["spec"] or {}),
            owner=f["owner"],
            source=_source(doc),
            security=security.process_security(f["spec"] or {}),
        )
        pods.append(pod)
        where.setdefault((pod.namespace, pod.name), (doc, path))
    return tuple(pods), where, explicit


def build_services(
    objs: Objects, service_cidr: str, port_range: tuple[int, int], node_ips: Iterable[str] = ()
) -> tuple[list[Service], dict[tuple[str, str], Document], dict[tuple[str, str], str]]:
    """Services with ClusterIPs and nodePorts allocated; an allocated ClusterIP is never a node's
    address (a node address inside serviceCIDR is reported by the semantic checks)."""
    docs: dict[tuple[str, str], Document] = {}
    for doc in objs.services:
        docs.setdefault(_meta(doc), doc)
    explicit_ips: dict[tuple[str, str], str] = {}
    used_ips: set[str] = set(node_ips)
    used_ports: set[int] = set()
    for key, doc in docs.items():
        spec = _get(doc.obj, "spec", default={})
        assert isinstance(spec, dict)
        cip = spec.get("clusterIP")
        if cip and cip != "None":
            explicit_ips[key] = canonical_ip(cip)
            used_ips.add(explicit_ips[key])
        for p in spec.get("ports") or ():
            if p.get("nodePort"):
                used_ports.add(int(p["nodePort"]))
        if spec.get("healthCheckNodePort"):
            used_ports.add(int(spec["healthCheckNodePort"]))
    services = []
    for key in sorted(docs):
        doc = docs[key]
        spec = _get(doc.obj, "spec", default={})
        assert isinstance(spec, dict)
        typ = spec.get("type", CLUSTER_IP)
        cip = explicit_ips.get(key)
        if cip is None and spec.get("clusterIP") != "None":
            # Kubernetes reserves the first address of the range (e.g. for the API server).
            cip = alloc.allocate_ip(f"{key[0]}/{key[1]}", service_cidr, used_ips, reserved_low=1) or ""
            used_ips.add(cip)
        ports = []
        for i, p in enumerate(spec.get("ports") or ()):
            node_port = int(p.get("nodePort") or 0)
            if not node_port and typ in (NODE_PORT, LOAD_BALANCER):
                node_port = alloc.allocate_port(f"{key[0]}/{key[1]}/{i}", *port_range, used_ports) or 0
                used_ports.add(node_port)
            ports.append(
                SvcPortSpec(
                    name=p.get("name") or "",
                    protocol=p.get("protocol", TCP),
                    port=int(p["port"]),
                    target_port=p.get("targetPort", p["port"]),
                    node_port=node_port,
                )
            )
        etp = spec.get("externalTrafficPolicy", "Cluster")
        hc = int(spec.get("healthCheckNodePort") or 0)
        if not hc and typ == LOAD_BALANCER and etp == "Local":
            hc = alloc.allocate_port(f"{key[0]}/{key[1]}/healthcheck", *port_range, used_ports) or 0
            used_ports.add(hc)
        selector = spec.get("selector")
        ingress = _get(doc.obj, "status", "loadBalancer", "ingress", default=[])
        assert isinstance(ingress, list)
        services.append(
            Service(
                namespace=key[0],
                name=key[1],
                type=typ,
                cluster_ip=cip or "",
                ports=tuple(ports),
                selector=tuple(sorted((str(k), str(v)) for k, v in selector.items())) if selector else None,
                session_affinity=spec.get("sessionAffinity", "None"),
                affinity_timeout=int(
                    _get(spec, "sessionAffinityConfig", "clientIP", "timeoutSeconds",  # type: ignore[call-overload]
                         default=DEFAULT_AFFINITY_TIMEOUT)
                ),
                external_traffic_policy=etp,
                internal_traffic_policy=spec.get("internalTrafficPolicy", "Cluster"),
                health_check_node_port=hc,
                external_ips=tuple(canonical_ip(ip) for ip in spec.get("externalIPs") or ()),
                lb_source_ranges=tuple(canonical_cidr(c) for c in spec.get("loadBalancerSourceRanges") or ()),
                lb_ips=tuple(
                    canonical_ip(i["ip"]) for i in ingress if i.get("ip") and i.get("ipMode", "VIP") != "Proxy"
                ),
                labels=tuple(sorted(_labels(doc))),
                source=_source(doc),
            )
        )
    return services, docs, explicit_ips


def selects(selector: tuple[tuple[str, str], ...], pod: Pod) -> bool:
    labels = pod.label_map
    return all(labels.get(k) == v for k, v in selector)


def resolve_target_port(port: SvcPortSpec, pod: Pod) -> int | None:
    """The pod's port for a service port: a number as is, a name looked up (protocol must match)."""
    if isinstance(port.target_port, int):
        return port.target_port
    if isinstance(port.target_port, str) and port.target_port.isdigit():
        return int(port.target_port)
    for cp in pod.ports:
        if cp.name == port.target_port and cp.protocol == port.protocol:
            return cp.port
    return None


def _slice_endpoints(slices: Iterable[Document]) -> dict[tuple[str, str], list[tuple[dict, dict]]]:
    """(namespace, service) -> [(slice port, endpoint)] from EndpointSlices."""
    out: dict[tuple[str, str], list[tuple[dict, dict]]] = defaultdict(list)
    for doc in slices:
        ns, _ = _meta(doc)
        svc = _get(doc.obj, "metadata", "labels", SERVICE_NAME_LABEL)
        if not svc or _get(doc.obj, "addressType", default="IPv4") == "FQDN":
            continue
        obj = doc.obj
        assert isinstance(obj, dict)
        for sp in obj.get("ports") or [{}]:
            for ep in obj.get("endpoints") or ():
                out[(ns, str(svc))].append((sp, ep))
    return out


def endpoints_for(
    svc: Service, port: SvcPortSpec, pods: Iterable[Pod], slice_eps: list[tuple[dict, dict]]
) -> tuple[Endpoint, ...]:
    """Endpoints of one service port, merged by ip:port (non-terminating wins), sorted by ip:port."""
    found: dict[str, Endpoint] = {}

    def add(ep: Endpoint) -> None:
        prev = found.get(ep.hostport)
        if prev is None or (prev.terminating and not ep.terminating):
            found[ep.hostport] = ep

    if svc.selector:
        for pod in pods:
            if pod.namespace != svc.namespace or not pod.ip or not selects(svc.selector, pod):
                continue
            target = resolve_target_port(port, pod)
            if target is not None:
                add(Endpoint(pod.ip, target, pod.node_name, target=f"Pod/{pod.name}"))
    for sp, ep in slice_eps:
        if (sp.get("name") or "") != port.name or sp.get("protocol", TCP) != port.protocol:
            continue
        if "port" not in sp:
            continue
        cond = ep.get("conditions") or {}
        # An omitted (or null) condition is read as kube-proxy reads it, not as the API docs
        # suggest ("serving: defer to ready"): pkg/proxy/endpointslicecache.go addEndpoints has
        # `ready := Ready == nil || *Ready`, `serving := Serving == nil || *Serving`,
        # `terminating := Terminating != nil && *Terminating` (the version the vectors name).
        ready = cond.get("ready") is not False
        serving = cond.get("serving") is not False
        ref = ep.get("targetRef") or {}
        for addr in ep.get("addresses") or ():
            add(
                Endpoint(
                    canonical_ip(addr),
                    int(sp["port"]),
                    ep.get("nodeName"),
                    ready=ready,
                    serving=serving,
                    terminating=bool(cond.get("terminating", False)),
                    target=f"{ref['kind']}/{ref['name']}" if ref.get("kind") and ref.get("name") else None,
                )
            )
    return tuple(found[k] for k in sorted(found))


def service_ports(
    services: Iterable[Service], pods: tuple[Pod, ...], slices: list[Document]
) -> tuple[ServicePort, ...]:
    """kube-proxy's per-port view, sorted by (namespace, name, port name, protocol)."""
    slice_eps = _slice_endpoints(slices)
    pods_by_ns: dict[str, list[Pod]] = defaultdict(list)
    for pod in pods:
        pods_by_ns[pod.namespace].append(pod)
    out = []
    for svc in services:
        if not svc.cluster_ip:
            continue  # headless: kube-proxy writes nothing
        for port in svc.ports:
            out.append(
                ServicePort(
                    namespace=svc.namespace,
                    name=svc.name,
                    port_name=port.name,
                    protocol=port.protocol,
                    port=port.port,
                    cluster_ip=svc.cluster_ip,
                    type=svc.type,
                    target_port=port.target_port,
                    node_port=port.node_port,
                    external_ips=svc.external_ips,
                    lb_ips=svc.lb_ips if svc.type == LOAD_BALANCER else (),
                    lb_source_ranges=svc.lb_source_ranges if svc.type == LOAD_BALANCER else (),
                    external_traffic_policy=svc.external_traffic_policy,
                    internal_traffic_policy=svc.internal_traffic_policy,
                    health_check_node_port=svc.health_check_node_port,
                    affinity_timeout=svc.affinity_timeout if svc.session_affinity == "ClientIP" else None,
                    endpoints=endpoints_for(svc, port, pods_by_ns[svc.namespace], slice_eps.get(svc.key, [])),
                )
            )
    out.sort(key=lambda sp: (sp.namespace, sp.name, sp.port_name, sp.protocol))
    return tuple(out)


def build(objs: Objects) -> Build:
    """Build the model from documents that passed the schemas (exactly one Cluster)."""
    cdoc = objs.cluster[0]
    spec = _get(cdoc.obj, "spec", default={})
    assert isinstance(spec, dict)
    nodes, node_docs = build_nodes(cdoc)
    service_cidr = canonical_cidr(spec.get("serviceCIDR", DEFAULT_SERVICE_CIDR))
    port_range = parse_port_range(str(spec.get("nodePortRange", DEFAULT_NODE_PORT_RANGE)))
    bridge = str(spec.get("bridge", DEFAULT_BRIDGE))
    pods, pod_docs, explicit_pod_ips = build_pods(objs, nodes, bridge)
    node_ips = [a for n in nodes for a in n.addresses]
    services, service_docs, explicit_ips = build_services(objs, service_cidr, port_range, node_ips)
    cluster = Cluster(
        name=str(_get(cdoc.obj, "metadata", "name", default="cluster")),
        service_cidr=service_cidr,
        cluster_cidr=canonical_cidr(spec.get("clusterCIDR", DEFAULT_CLUSTER_CIDR)),
        node_port_range=port_range,
        proxy=build_proxy(spec),
        nodes=nodes,
        services=tuple(services),
        pods=pods,
        service_ports=service_ports(services, pods, objs.slices),
        bridge=bridge,
    )
    return Build(cluster, service_docs, pod_docs, node_docs, objs.slices, explicit_ips, explicit_pod_ips, cdoc)
