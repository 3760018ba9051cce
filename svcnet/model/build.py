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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from svcnet.diagnostics import ERROR, Diagnostic, PathT
from svcnet.load import Document
from svcnet.model import alloc, dualstack, names, security
from svcnet.model.family import family_of
from svcnet.model.types import (
    ANNOTATION_TOPOLOGY_AWARE_HINTS,
    ANNOTATION_TOPOLOGY_MODE,
    CLUSTER_IP,
    DEFAULT_BRIDGE,
    DEFAULT_HEALTHZ_BIND_ADDRESS,
    LABEL_TOPOLOGY_ZONE,
    LOAD_BALANCER,
    MODE_IPTABLES,
    MODE_NFTABLES,
    PREFER_CLOSE,
    PREFER_SAME_NODE,
    PREFER_SAME_ZONE,
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
    allocates_node_ports,
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


# The white space Go's strings.TrimSpace trims (unicode.IsSpace): the API server trims
# loadBalancerSourceRanges entries with it (ValidateService: "allowed to be space-padded"), and
# so does kube-proxy (pkg/proxy/util MapCIDRsByIPFamily). Python's str.strip() also trims U+001C..U+001F.
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a" \
           "\u2028\u2029\u202f\u205f\u3000"


def trim_space(value: str) -> str:
    """Go's strings.TrimSpace."""
    return value.strip(GO_SPACE)


def canonical_cidr(value: str) -> str:
    """Canonical network text, as Go's ParseCIDRSloppy reads it after strings.TrimSpace: leading
    zeros in an octet or the prefix length are decimal, host bits are masked."""
    addr, _, bits = trim_space(value).partition("/")
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


@dataclass(frozen=True, slots=True)
class PodOrigin:
    """The document a pod came from: a Pod, or a Deployment whose template it was expanded from."""

    doc: Document
    base: PathT = ()  # where the pod's fields sit in `doc`: () or ("spec", "template")

    def diag(self, path: PathT, message: str, severity: str = ERROR) -> Diagnostic:
        """A diagnostic at `path` of the pod's own fields (`("spec", "nodeName")`)."""
        return self.doc.diag((*self.base, *path), message, severity)


@dataclass(frozen=True, slots=True)
class BuiltPods:
    """Pods in (namespace, name) order, and where each came from (the first of a duplicated name)."""

    pods: tuple[Pod, ...]
    origins: dict[tuple[str, str], PodOrigin]


@dataclass(frozen=True, slots=True)
class BuiltServices:
    """Services in (namespace, name) order, and the document of each (the first of a duplicated name)."""

    services: tuple[Service, ...]
    docs: dict[tuple[str, str], Document]


@dataclass(frozen=True, slots=True)
class Build:
    """The model, and the documents the semantic checks locate its problems in."""

    cluster: Cluster
    cluster_doc: Document
    service_docs: dict[tuple[str, str], Document]
    pod_origins: dict[tuple[str, str], PodOrigin]
    slice_docs: list[Document]


def _meta(doc: Document) -> tuple[str, str]:
    ns = _get(doc.obj, "metadata", "namespace", default="default")
    return str(ns), str(_get(doc.obj, "metadata", "name", default=""))


def _labels(doc: Document) -> list[tuple[str, str]]:
    labels = _get(doc.obj, "metadata", "labels", default={})
    return [(str(k), str(v)) for k, v in labels.items()] if isinstance(labels, dict) else []


def _source(doc: Document) -> Source:
    return Source(doc.file, doc.line, doc.index)


def build_nodes(doc: Document) -> tuple[Node, ...]:
    nodes = []
    raw_nodes: list[dict[str, Any]] = doc.obj["spec"]["nodes"]
    for raw in raw_nodes:
        f = raw.get("facts") or {}
        facts = NodeFacts(
            random_fully=bool(f.get("randomFully", True)),
            nfacct_counters=frozenset(f.get("nfacctCounters") or ()),
            tcp_be_liberal=bool(f.get("tcpBeLiberal", False)),
        )
        pod_cidr = canonical_cidr(raw["podCIDR"])
        nodes.append(
            Node(
                name=raw["name"],
                addresses=tuple(canonical_ip(a) for a in raw["addresses"]),
                pod_cidr=pod_cidr,
                facts=facts,
                source=_source(doc),
                pod_cidrs=tuple(canonical_cidr(c) for c in raw.get("podCIDRs") or (pod_cidr,)),
                labels=node_labels(raw),
            )
        )
    return tuple(nodes)


def node_labels(raw: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """A node's labels, `zone` written as its topology.kubernetes.io/zone label (when both are
    given and differ, the semantic checks report it and `zone` wins here)."""
    labels = {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}
    if "zone" in raw:
        labels[LABEL_TOPOLOGY_ZONE] = str(raw["zone"])
    return tuple(sorted(labels.items()))


def hints_annotation(annotations: dict[str, Any]) -> bool:
    """The EndpointSlice controller's `hintsEnabled`: the deprecated topology-aware-hints annotation
    if present, else topology-mode, is "Auto" or "auto"."""
    val = annotations.get(ANNOTATION_TOPOLOGY_AWARE_HINTS, annotations.get(ANNOTATION_TOPOLOGY_MODE))
    return val in ("Auto", "auto")


def build_proxy(spec: dict) -> ProxyConfig:
    proxy = spec.get("proxy") or {}
    mode = proxy.get("mode", MODE_IPTABLES)
    ipt = proxy.get("iptables") or {}
    # The masquerade settings come from the mode's own block, as kube-proxy reads them.
    masq = (proxy.get("nftables") or {}) if mode == MODE_NFTABLES else ipt
    detect = proxy.get("detectLocal") or {}
    return ProxyConfig(
        mode=mode,
        detect_local_mode=proxy.get("detectLocalMode", "ClusterCIDR"),
        bridge_interface=detect.get("bridgeInterface"),
        interface_name_prefix=detect.get("interfaceNamePrefix"),
        masquerade_bit=int(masq.get("masqueradeBit", 14)),
        masquerade_all=bool(masq.get("masqueradeAll", False)),
        localhost_nodeports=bool(ipt.get("localhostNodePorts", True)),
        nodeport_addresses=tuple(canonical_cidr(c) for c in proxy.get("nodePortAddresses") or ()),
        healthz_bind_address=str(proxy.get("healthzBindAddress", DEFAULT_HEALTHZ_BIND_ADDRESS)),
    )


def cidrs(spec: dict, key: str, default: str) -> tuple[str, ...]:
    """`serviceCIDR`/`clusterCIDR`: one CIDR or a list of one per family, canonical, in order."""
    value = spec.get(key, default)
    return tuple(canonical_cidr(c) for c in (value if isinstance(value, list) else [value]))


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


def expand_deployment(doc: Document, node_names: list[str], taken: set[str]) -> list[tuple[dict, PathT]]:
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
    pods: list[tuple[dict, PathT]] = []
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
                    "ips": [],
                    "spec": pod_spec,
                    "owner": f"Deployment/{name}",
                },
                ("spec", "template"),
            )
        )
    return pods


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _pod_fields(doc: Document) -> dict:
    ns, name = _meta(doc)
    return {
        "namespace": ns,
        "name": name,
        "labels": _get(doc.obj, "metadata", "labels", default={}),
        "node": _get(doc.obj, "spec", "nodeName", default=""),
        "ip": _get(doc.obj, "status", "podIP"),
        "ips": [i.get("ip") for i in _list(_get(doc.obj, "status", "podIPs")) if isinstance(i, dict)],
        "spec": _get(doc.obj, "spec", default={}),
        "owner": None,
    }


def _given_pod_ips(f: dict) -> tuple[str, ...]:
    """status.podIPs (each `{ip}`), else status.podIP, canonical, as written."""
    written = [ip for ip in f["ips"] if ip] or ([f["ip"]] if f["ip"] else [])
    return tuple(canonical_ip(str(ip)) for ip in written)


def _pod_ips(key: str, given: tuple[str, ...], node: Node | None, used: set[str]) -> list[str]:
    """One IP per podCIDR of the pod's node, in the node's order (a dual-stack node's pods are
    dual-stack, as a CNI's host-local IPAM gives them): the given IP of that family, else one
    allocated there ("" when none is free). Given IPs of a family the node has no podCIDR for
    follow (the semantic checks report them)."""
    cidrs_ = node.all_pod_cidrs if node is not None else ()
    out: list[str] = []
    for cidr in cidrs_:
        mine = next((ip for ip in given if family_of(ip) == family_of(cidr)), None)
        if mine is None:
            mine = alloc.allocate_ip(key if not out else f"{key}/{family_of(cidr)}", cidr, used) or ""
            if mine:
                used.add(mine)
        out.append(mine)
    families = {family_of(c) for c in cidrs_}
    out.extend(ip for ip in given if family_of(ip) not in families)
    return out


def build_pods(objs: Objects, nodes: tuple[Node, ...], bridge: str = DEFAULT_BRIDGE) -> BuiltPods:
    """Pods and expanded Deployment replicas, each with an IP (its own, or allocated from its node's
    podCIDR: "" when none is free) and a netns and veth name unique across the cluster."""
    raw: list[tuple[dict, Document, PathT]] = []
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
    used = {ip for f, _, _ in raw for ip in _given_pod_ips(f)}
    ifaces = names.pod_interfaces(((f["namespace"], f["name"]) for f, _, _ in raw), reserved=(bridge,))
    pods = []
    origins: dict[tuple[str, str], PodOrigin] = {}
    for f, doc, path in sorted(raw, key=lambda r: (r[0]["namespace"], r[0]["name"])):
        given = _given_pod_ips(f)
        ips = _pod_ips(f"{f['namespace']}/{f['name']}", given, by_node.get(f["node"]), used)
        pod = Pod(
            namespace=f["namespace"],
            name=f["name"],
            node_name=f["node"],
            ip=ips[0] if ips else "",
            netns=ifaces[(f["namespace"], f["name"])][0],
            veth=ifaces[(f["namespace"], f["name"])][1],
            labels=tuple(sorted((str(k), str(v)) for k, v in (f["labels"] or {}).items())),
            ports=_container_ports(f["spec"] or {}),
            command=_command(f["spec"] or {}),
            owner=f["owner"],
            source=_source(doc),
            security=security.process_security(f["spec"] or {}),
            ip_given=bool(given),
            ips=tuple(ip for ip in ips if ip),
            given_ips=given,
        )
        pods.append(pod)
        origins.setdefault((pod.namespace, pod.name), PodOrigin(doc, path))
    return BuiltPods(tuple(pods), origins)


@dataclass
class _Allocator:
    """ClusterIPs and nodePorts for the values the description leaves out, deterministically.

    It starts with everything the description gives (and the nodes' addresses), so an allocated
    value never takes one a user wrote, whatever the order of the services.
    """

    service_cidrs: tuple[str, ...]  # one per family
    port_range: tuple[int, int]
    ips: set[str]
    ports: set[int]

    def cluster_ip(self, key: str, version: int) -> str:
        """A free address of the serviceCIDR of family `version`, or "" if none is left (or the
        cluster has no such range: the semantic checks report that family)."""
        cidr = next((c for c in self.service_cidrs if family_of(c) == version), None)
        if cidr is None:
            return ""
        # Kubernetes reserves the first address of the range (e.g. for the API server).
        ip = alloc.allocate_ip(key, cidr, self.ips, reserved_low=1)
        if ip is None:
            return ""
        self.ips.add(ip)
        return ip

    def node_port(self, key: str) -> int:
        """A free port of the nodePort range, or 0 if none is left."""
        port = alloc.allocate_port(key, *self.port_range, self.ports)
        if port is None:
            return 0
        self.ports.add(port)
        return port


def _spec(doc: Document) -> dict[str, Any]:
    spec = _get(doc.obj, "spec", default={})
    assert isinstance(spec, dict)
    return spec


def _given_cluster_ips(spec: dict[str, Any]) -> list[str]:
    """The ClusterIPs the description gives (clusterIP and clusterIPs), canonical; not None or ""."""
    written = [spec.get("clusterIP"), *(spec.get("clusterIPs") or ())]
    return list(dict.fromkeys(canonical_ip(str(ip)) for ip in written if ip and ip != dualstack.NONE))


def _allocator(docs: dict[tuple[str, str], Document], service_cidrs: tuple[str, ...], port_range: tuple[int, int],
               node_ips: Iterable[str]) -> _Allocator:
    """An allocator that starts with every given ClusterIP, nodePort and healthCheckNodePort taken."""
    ips: set[str] = set(node_ips)
    ports: set[int] = set()
    for doc in docs.values():
        spec = _spec(doc)
        ips.update(_given_cluster_ips(spec))
        ports.update(int(p["nodePort"]) for p in spec.get("ports") or () if p.get("nodePort"))
        if spec.get("healthCheckNodePort"):
            ports.add(int(spec["healthCheckNodePort"]))
    return _Allocator(service_cidrs, port_range, ips, ports)


def _ports(key: str, spec: dict[str, Any], node_ports: bool, allocator: _Allocator) -> tuple[SvcPortSpec, ...]:
    """`spec.ports`, each with its nodePort (allocated when `node_ports` and not given)."""
    ports = []
    for i, p in enumerate(spec.get("ports") or ()):
        given = int(p.get("nodePort") or 0)
        ports.append(
            SvcPortSpec(
                name=p.get("name") or "",
                protocol=p.get("protocol", TCP),
                port=int(p["port"]),
                target_port=p.get("targetPort", p["port"]),
                node_port=given or (allocator.node_port(f"{key}/{i}") if node_ports else 0),
                node_port_given=bool(given),
            )
        )
    return tuple(ports)


def _cluster_ips(ident: str, settled: dualstack.Families, allocator: _Allocator
                 ) -> tuple[tuple[str, ...], tuple[bool, ...]]:
    """One ClusterIP per family, the given one or allocated ("" where none is free); the primary
    family keeps the key single-stack Services always had, so their ClusterIPs do not move."""
    if settled.headless:
        return (), ()
    ips = []
    for i, (version, given) in enumerate(zip(settled.families, settled.given, strict=True)):
        ips.append(canonical_ip(given) if given else allocator.cluster_ip(ident if i == 0 else f"{ident}/{version}",
                                                                          version))
    return tuple(ips), tuple(given is not None for given in settled.given)


def _service(key: tuple[str, str], doc: Document, allocator: _Allocator, families: tuple[int, ...]) -> Service:
    """One Service, allocating in a fixed order (ClusterIPs, each nodePort, healthCheckNodePort) so
    the same description always gets the same values."""
    spec = _spec(doc)
    ident = f"{key[0]}/{key[1]}"
    typ = spec.get("type", CLUSTER_IP)
    settled = dualstack.settle(spec, families)
    cluster_ips, given = _cluster_ips(ident, settled, allocator)
    headless = settled.headless
    cluster_ip = cluster_ips[0] if cluster_ips else ""
    # The API server defaults allocateLoadBalancerNodePorts to true for a LoadBalancer.
    allocate_lb = spec.get("allocateLoadBalancerNodePorts") is not False
    ports = _ports(ident, spec, allocates_node_ports(typ, allocate_lb), allocator)
    selector = spec.get("selector")
    ingress = _get(doc.obj, "status", "loadBalancer", "ingress", default=[])
    assert isinstance(ingress, list)
    timeout = _get(spec, "sessionAffinityConfig", "clientIP", "timeoutSeconds", default=DEFAULT_AFFINITY_TIMEOUT)
    annotations = _get(doc.obj, "metadata", "annotations")
    svc = Service(
        namespace=key[0],
        name=key[1],
        type=typ,
        cluster_ip=cluster_ip,
        ports=ports,
        selector=tuple(sorted((str(k), str(v)) for k, v in selector.items())) if selector else None,
        session_affinity=spec.get("sessionAffinity", "None"),
        affinity_timeout=int(timeout),  # type: ignore[call-overload]  # the schema made it an integer
        external_traffic_policy=spec.get("externalTrafficPolicy", "Cluster"),
        internal_traffic_policy=spec.get("internalTrafficPolicy", "Cluster"),
        health_check_node_port=int(spec.get("healthCheckNodePort") or 0),
        external_ips=tuple(canonical_ip(ip) for ip in spec.get("externalIPs") or ()),
        lb_source_ranges=tuple(canonical_cidr(c) for c in spec.get("loadBalancerSourceRanges") or ()),
        lb_ips=tuple(canonical_ip(i["ip"]) for i in ingress if i.get("ip") and i.get("ipMode", "VIP") != "Proxy"),
        labels=tuple(sorted(_labels(doc))),
        source=_source(doc),
        headless=headless,
        cluster_ip_given=bool(given and given[0]),
        health_check_node_port_given=bool(spec.get("healthCheckNodePort")),
        allocate_lb_node_ports=allocate_lb,
        cluster_ips=cluster_ips,
        ip_families=settled.families,
        ip_family_policy=settled.policy,
        cluster_ips_given=given,
        traffic_distribution=spec.get("trafficDistribution"),
        topology_auto=hints_annotation(annotations if isinstance(annotations, dict) else {}),
    )
    if not svc.health_check_node_port and svc.needs_health_check_node_port:
        return replace(svc, health_check_node_port=allocator.node_port(f"{ident}/healthcheck"))
    return svc


def build_services(
    objs: Objects, service_cidrs: str | tuple[str, ...], port_range: tuple[int, int], node_ips: Iterable[str] = ()
) -> BuiltServices:
    """Services with ClusterIPs and nodePorts allocated; an allocated ClusterIP is never a node's
    address (a node address inside serviceCIDR is reported by the semantic checks)."""
    docs: dict[tuple[str, str], Document] = {}
    for doc in objs.services:
        docs.setdefault(_meta(doc), doc)
    service_cidrs = (service_cidrs,) if isinstance(service_cidrs, str) else service_cidrs
    families = tuple(dict.fromkeys(family_of(c) for c in service_cidrs))
    allocator = _allocator(docs, service_cidrs, port_range, node_ips)
    return BuiltServices(tuple(_service(key, docs[key], allocator, families) for key in sorted(docs)), docs)


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


def _names(hints: object, key: str) -> frozenset[str]:
    """The names of `hints.forZones` or `hints.forNodes` (a missing name is "", as in Go)."""
    items = hints.get(key) if isinstance(hints, dict) else None
    return frozenset(str(h.get("name", "")) for h in items or () if isinstance(h, dict))


def controller_hints(svc: Service, node_name: str, zones: Mapping[str, str | None]) -> tuple[frozenset[str], ...]:
    """The hints the EndpointSlice controller gives a ready pod endpoint on `node_name`:
    (forZones, forNodes).

    With the topology-mode annotation "Auto" its topology cache allocates hints by the zones'
    allocatable CPU; svcnet's nodes have no CPU figures, the case where the controller removes all
    hints, so: none (the semantic checks warn). Otherwise `trafficDistribution` (trafficdist.go
    `preferCloseHeuristic`): PreferClose and PreferSameZone hint the endpoint's zone (its node's
    zone label, when the node has one), PreferSameNode also its node.
    """
    if svc.topology_auto or svc.traffic_distribution not in (PREFER_CLOSE, PREFER_SAME_ZONE, PREFER_SAME_NODE):
        return frozenset(), frozenset()
    zone = zones.get(node_name)
    for_zones = frozenset((zone,)) if zone is not None else frozenset()
    for_nodes = frozenset((node_name,)) if svc.traffic_distribution == PREFER_SAME_NODE else frozenset()
    return for_zones, for_nodes


def endpoints_for(
    svc: Service, port: SvcPortSpec, pods: Iterable[Pod], slice_eps: list[tuple[dict, dict]],
    zones: Mapping[str, str | None] | None = None,
) -> tuple[Endpoint, ...]:
    """Endpoints of one service port, merged by ip:port (non-terminating wins), sorted by ip:port.

    `zones`: each node's zone label (None: none), for the hints of selected pods."""
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
            if target is None:
                continue
            for_zones, for_nodes = controller_hints(svc, pod.node_name, zones or {})
            # The EndpointSlice controller writes a slice per family of the Service, each with
            # the pods' IPs of that family.
            for ip in pod.all_ips:
                if family_of(ip) in svc.ip_families:
                    add(Endpoint(ip, target, pod.node_name, target=f"Pod/{pod.name}",
                                 zone_hints=for_zones, node_hints=for_nodes))
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
        hints = ep.get("hints")
        for_zones, for_nodes = _names(hints, "forZones"), _names(hints, "forNodes")
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
                    zone_hints=for_zones,
                    node_hints=for_nodes,
                )
            )
    return tuple(found[k] for k in sorted(found))


def service_ports(
    services: Iterable[Service], pods: tuple[Pod, ...], slices: list[Document], nodes: Iterable[Node] = ()
) -> tuple[ServicePort, ...]:
    """kube-proxy's per-port view, sorted by (namespace, name, port name, protocol)."""
    zones = {n.name: n.zone_label for n in nodes}
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
                    cluster_ips=svc.cluster_ips if all(svc.cluster_ips) else tuple(filter(None, svc.cluster_ips)),
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
                    endpoints=endpoints_for(svc, port, pods_by_ns[svc.namespace], slice_eps.get(svc.key, []),
                                            zones),
                )
            )
    out.sort(key=lambda sp: (sp.namespace, sp.name, sp.port_name, sp.protocol))
    return tuple(out)


def build(objs: Objects) -> Build:
    """Build the model from documents that passed the schemas (exactly one Cluster)."""
    cdoc = objs.cluster[0]
    spec = _spec(cdoc)
    nodes = build_nodes(cdoc)
    service_cidrs = cidrs(spec, "serviceCIDR", DEFAULT_SERVICE_CIDR)
    cluster_cidrs = cidrs(spec, "clusterCIDR", DEFAULT_CLUSTER_CIDR)
    port_range = parse_port_range(str(spec.get("nodePortRange", DEFAULT_NODE_PORT_RANGE)))
    bridge = str(spec.get("bridge", DEFAULT_BRIDGE))
    built_pods = build_pods(objs, nodes, bridge)
    node_ips = [a for n in nodes for a in n.addresses]
    built_services = build_services(objs, service_cidrs, port_range, node_ips)
    cluster = Cluster(
        name=str(_get(cdoc.obj, "metadata", "name", default="cluster")),
        service_cidr=service_cidrs[0],
        cluster_cidr=cluster_cidrs[0],
        node_port_range=port_range,
        proxy=build_proxy(spec),
        nodes=nodes,
        services=built_services.services,
        pods=built_pods.pods,
        service_ports=service_ports(built_services.services, built_pods.pods, objs.slices, nodes),
        bridge=bridge,
        service_cidr_given="serviceCIDR" in spec,
        cluster_cidr_given="clusterCIDR" in spec,
        service_cidrs=service_cidrs,
        cluster_cidrs=cluster_cidrs,
    )
    return Build(cluster, cdoc, built_services.docs, built_pods.origins, objs.slices)
