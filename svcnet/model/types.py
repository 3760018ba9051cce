"""Typed model of a cluster: what the loader builds and every backend reads.

The per-service-port view (`ServicePort`, `Endpoint`) mirrors kube-proxy's
`ServicePortInfo`/`Endpoint`, and `ProxierSettings` mirrors the proxier's
per-node configuration, so the renderer can follow `proxier.go` line by line.
All IPs and CIDRs here are already canonical (Python's `ipaddress` form), of either family
(svcnet.model.family). Fields named `*_given` say whether the description wrote a value or
svcnet defaulted or allocated it: the semantic checks judge only what the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from svcnet.model.family import IPV4, IPV6, family_of

TCP, UDP, SCTP = "TCP", "UDP", "SCTP"
PROTOCOLS = (TCP, UDP, SCTP)

# Service types.
CLUSTER_IP, NODE_PORT, LOAD_BALANCER = "ClusterIP", "NodePort", "LoadBalancer"


def allocates_node_ports(type_: str, allocate_lb_node_ports: bool = True) -> bool:
    """Whether the API server gives each port of a Service of `type_` a nodePort when it has none
    (pkg/registry/core/service/storage/alloc.go shouldAllocateNodePorts): a NodePort Service always,
    a LoadBalancer unless `allocateLoadBalancerNodePorts: false`. A port without one opens no
    NodePort: kube-proxy writes its NodePort rules only `if svcInfo.NodePort() != 0`."""
    return type_ == NODE_PORT or (type_ == LOAD_BALANCER and allocate_lb_node_ports)


DEFAULT_BRIDGE = "cni0"  # the pod bridge on every node
DEFAULT_HEALTHZ_BIND_ADDRESS = "0.0.0.0:10256"  # kube-proxy's default healthzBindAddress

# detectLocalMode values (KubeProxyConfiguration spelling).
DETECT_CLUSTER_CIDR = "ClusterCIDR"
DETECT_NODE_CIDR = "NodeCIDR"
DETECT_BRIDGE = "BridgeInterface"
DETECT_IFACE_PREFIX = "InterfaceNamePrefix"
DETECT_NONE = "None"

# Proxy modes (KubeProxyConfiguration `mode`).
MODE_IPTABLES, MODE_NFTABLES = "iptables", "nftables"

# nfacct counters kube-proxy creates when the kernel supports them.
NFACCT_INVALID_DROPPED = "ct_state_invalid_dropped_pkts"
NFACCT_LOCALHOST_NPS = "localhost_nps_accepted_pkts"

# The node label kube-proxy reads its zone from (v1.LabelTopologyZone).
LABEL_TOPOLOGY_ZONE = "topology.kubernetes.io/zone"

# Service.spec.trafficDistribution values (PreferClose is the deprecated name of PreferSameZone);
# the last two are also kube-proxy's topology modes (pkg/proxy/topology.go).
PREFER_CLOSE, PREFER_SAME_ZONE, PREFER_SAME_NODE = "PreferClose", "PreferSameZone", "PreferSameNode"
# Service annotations that ask the EndpointSlice controller for CPU-proportional zone hints.
ANNOTATION_TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
ANNOTATION_TOPOLOGY_AWARE_HINTS = "service.kubernetes.io/topology-aware-hints"  # deprecated; wins if set


@dataclass(frozen=True, slots=True)
class Source:
    """Where an object came from: file, 1-based line, and document index."""

    file: str
    line: int = 1
    doc: int = 0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One backend of a service port (an EndpointSlice endpoint or a selected pod)."""

    ip: str
    port: int
    node_name: str | None = None
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    target: str | None = None  # "Pod/name" for display, when known
    zone_hints: frozenset[str] = frozenset()  # hints.forZones names
    node_hints: frozenset[str] = frozenset()  # hints.forNodes names

    @property
    def serving_terminating(self) -> bool:
        """Usable while terminating (kube-proxy's fallback when no endpoint is ready)."""
        return self.serving and self.terminating

    @property
    def hostport(self) -> str:
        """`ip:port`, or `[ip]:port` for IPv6 (Go's net.JoinHostPort)."""
        return f"[{self.ip}]:{self.port}" if family_of(self.ip) == IPV6 else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServicePort:
    """One port of one Service, with its resolved endpoints (sorted by `ip:port` string)."""

    namespace: str
    name: str
    port_name: str
    protocol: str
    port: int
    cluster_ip: str | None  # the primary ClusterIP (the Service's first family)
    type: str = CLUSTER_IP
    target_port: int | str = 0
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    lb_ips: tuple[str, ...] = ()
    lb_source_ranges: tuple[str, ...] = ()
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    health_check_node_port: int = 0
    affinity_timeout: int | None = None  # seconds; None means sessionAffinity None
    endpoints: tuple[Endpoint, ...] = ()  # of every family the Service has
    cluster_ips: tuple[str, ...] = ()  # one per family, primary first; () means (cluster_ip,)

    def cluster_ip_of(self, version: int) -> str | None:
        """The ClusterIP of family `version` (kube-proxy's per-family proxier sees only that one)."""
        ips = self.cluster_ips or ((self.cluster_ip,) if self.cluster_ip else ())
        return next((ip for ip in ips if family_of(ip) == version), None)

    @property
    def spn(self) -> str:
        """kube-proxy's ServicePortName string: `ns/name` or `ns/name:port`."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port_name}" if self.port_name else base

    @property
    def proto(self) -> str:
        """Lower-case protocol as used in match modules (`tcp`)."""
        return self.protocol.lower()

    @property
    def externally_accessible(self) -> bool:
        """NodePort, externalIPs or LB ingress IPs present (serviceport.go)."""
        return bool(self.node_port or self.lb_ips or self.external_ips)

    @property
    def external_policy_local(self) -> bool:
        """Effective externalTrafficPolicy Local (service/util.go ExternalPolicyLocal)."""
        if self.external_traffic_policy != "Local":
            return False
        if self.type in (NODE_PORT, LOAD_BALANCER):
            return True
        return self.type == CLUSTER_IP and bool(self.external_ips)

    @property
    def internal_policy_local(self) -> bool:
        return self.internal_traffic_policy == "Local"

    @property
    def effective_health_check_node_port(self) -> int:
        """Health check port, only for LoadBalancer with effective eTP Local (NeedsHealthCheck)."""
        if self.type == LOAD_BALANCER and self.external_policy_local:
            return self.health_check_node_port
        return 0


@dataclass(frozen=True, slots=True)
class LocalDetector:
    """How kube-proxy tells pod traffic from other traffic (localdetector.go)."""

    mode: str = DETECT_CLUSTER_CIDR
    cidr: str | None = None
    interface: str | None = None  # bridge name or interface name prefix

    def if_local(self) -> tuple[str, ...]:
        """Match args for "traffic comes from a local pod"; empty if no detector."""
        return self._args(negate=False)

    def if_not_local(self) -> tuple[str, ...]:
        """Match args for "traffic does not come from a local pod"; empty if no detector."""
        return self._args(negate=True)

    @property
    def enabled(self) -> bool:
        return self.mode != DETECT_NONE and bool(self.cidr or self.interface)

    def _args(self, negate: bool) -> tuple[str, ...]:
        neg = ("!",) if negate else ()
        if self.mode in (DETECT_CLUSTER_CIDR, DETECT_NODE_CIDR) and self.cidr:
            return (*neg, "-s", self.cidr)
        if self.mode == DETECT_BRIDGE and self.interface:
            return (*neg, "-i", self.interface)
        if self.mode == DETECT_IFACE_PREFIX and self.interface:
            return (*neg, "-i", self.interface + "+")
        return ()


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What kube-proxy detects on a live node; offline defaults documented in the README."""

    random_fully: bool = True
    nfacct_counters: frozenset[str] = frozenset()
    tcp_be_liberal: bool = False


@dataclass(frozen=True, slots=True)
class ProxierSettings:
    """Everything the iptables renderer needs to know about one node."""

    node_name: str
    node_ips: tuple[str, ...]  # the first is the primary (InternalIP)
    masquerade_mark: str = "0x00004000"
    masquerade_all: bool = False
    local_detector: LocalDetector = field(default_factory=LocalDetector)
    localhost_nodeports: bool = True
    nodeport_addresses: tuple[str, ...] = ()  # CIDRs; empty means all local addresses
    facts: NodeFacts = field(default_factory=NodeFacts)
    ip_family: int = IPV4
    large_cluster_threshold: int = 1000
    proxy_mode: str = MODE_IPTABLES  # which kube-proxy mode's rules the node gets
    service_cidrs: tuple[str, ...] = ()  # of ip_family; nftables mode drops traffic to unallocated ClusterIPs
    zone: str = ""  # the node's topology.kubernetes.io/zone label ("" when it has none)

    @property
    def primary_ip(self) -> str:
        """The node IP of this proxier's family (kube-proxy's `nodeIP`), or '' if it has none."""
        v6 = self.ip_family == 6
        return next((ip for ip in self.node_ips if (":" in ip) == v6), "")


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """The Cluster's `spec.proxy` (named after KubeProxyConfiguration)."""

    mode: str = MODE_IPTABLES
    detect_local_mode: str = DETECT_CLUSTER_CIDR
    bridge_interface: str | None = None
    interface_name_prefix: str | None = None
    masquerade_bit: int = 14
    masquerade_all: bool = False
    localhost_nodeports: bool = True
    nodeport_addresses: tuple[str, ...] = ()
    healthz_bind_address: str = DEFAULT_HEALTHZ_BIND_ADDRESS  # "": no /healthz, /livez

    @property
    def masquerade_mark(self) -> str:
        """Go's `fmt.Sprintf("%#08x", 1<<bit)`: 14 gives 0x00004000."""
        return "0x" + format(1 << self.masquerade_bit, "08x")


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    addresses: tuple[str, ...]
    pod_cidr: str  # the first of pod_cidrs
    facts: NodeFacts = field(default_factory=NodeFacts)
    source: Source | None = None
    pod_cidrs: tuple[str, ...] = ()  # one per family (Node spec.podCIDRs); () means (pod_cidr,)
    labels: tuple[tuple[str, str], ...] = ()  # `zone` included as its label

    @property
    def internal_ip(self) -> str:
        return self.addresses[0]

    @property
    def all_pod_cidrs(self) -> tuple[str, ...]:
        return self.pod_cidrs or (self.pod_cidr,)

    def pod_cidr_of(self, version: int) -> str | None:
        """This node's podCIDR of family `version`, or None if it has none."""
        return next((c for c in self.all_pod_cidrs if family_of(c) == version), None)

    @property
    def zone_label(self) -> str | None:
        """The node's zone label, None if it has none (an EndpointSlice endpoint's `zone` then stays unset)."""
        return dict(self.labels).get(LABEL_TOPOLOGY_ZONE)


@dataclass(frozen=True, slots=True)
class ContainerPort:
    name: str | None
    port: int
    protocol: str = TCP


@dataclass(frozen=True, slots=True)
class ProcessSecurity:
    """How a pod's process runs, from its pod's and container's securityContext (svcnet.model.security).

    Capabilities are Kubernetes names (`NET_BIND_SERVICE`). The process keeps `capabilities` in
    its bounding set (None: every capability, a privileged container); `ambient` are those it
    also keeps as a non-root user (the ones the container adds).
    """

    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()
    capabilities: tuple[str, ...] | None = None
    ambient: tuple[str, ...] = ()
    no_new_privs: bool = False
    read_only_root: bool = False


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    node_name: str
    ip: str
    netns: str  # the pod's network namespace on its node (svcnet.model.names)
    veth: str  # the host side of its veth
    labels: tuple[tuple[str, str], ...] = ()
    ports: tuple[ContainerPort, ...] = ()
    command: tuple[str, ...] = ()
    owner: str | None = None  # "Deployment/name" for expanded pods
    source: Source | None = None
    security: ProcessSecurity | None = None  # None: no securityContext, the process runs as root
    ip_given: bool = False  # status.podIP(s) (else allocated from its node's podCIDR; "" if none was free)
    ips: tuple[str, ...] = ()  # every IP, one per family, `ip` first; () means (ip,)
    given_ips: tuple[str, ...] = ()  # the IPs status.podIP/podIPs gave, in written order

    @property
    def all_ips(self) -> tuple[str, ...]:
        return self.ips or ((self.ip,) if self.ip else ())

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


@dataclass(frozen=True, slots=True)
class SvcPortSpec:
    """A Service's `spec.ports[]` entry after defaulting and allocation."""

    name: str
    protocol: str
    port: int
    target_port: int | str
    node_port: int = 0  # 0: none (a ClusterIP service), or the nodePort range had no free port
    node_port_given: bool = False


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    type: str
    cluster_ip: str  # the primary ClusterIP; "": headless, or serviceCIDR had no free address
    ports: tuple[SvcPortSpec, ...]
    selector: tuple[tuple[str, str], ...] | None = None  # None: no selector (EndpointSlices)
    session_affinity: str = "None"
    affinity_timeout: int = 10800
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    health_check_node_port: int = 0
    external_ips: tuple[str, ...] = ()
    lb_source_ranges: tuple[str, ...] = ()
    lb_ips: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    source: Source | None = None
    headless: bool = False  # clusterIP: None
    cluster_ip_given: bool = False  # the primary ClusterIP was given
    health_check_node_port_given: bool = False
    allocate_lb_node_ports: bool = True  # spec.allocateLoadBalancerNodePorts (a LoadBalancer's; default true)
    cluster_ips: tuple[str, ...] = ()  # one per family of ip_families ("" where none was free); () means (cluster_ip,)
    ip_families: tuple[int, ...] = (IPV4,)  # as the API server settles them (svcnet.model.dualstack)
    ip_family_policy: str = "SingleStack"
    cluster_ips_given: tuple[bool, ...] = ()  # per entry of cluster_ips: the description gave it
    traffic_distribution: str | None = None  # spec.trafficDistribution
    topology_auto: bool = False  # topology-mode (or topology-aware-hints) annotation "Auto"/"auto"

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @property
    def allocates_node_ports(self) -> bool:
        """Its ports without a nodePort get one allocated (see `allocates_node_ports`)."""
        return allocates_node_ports(self.type, self.allocate_lb_node_ports)

    @property
    def needs_health_check_node_port(self) -> bool:
        """A LoadBalancer with externalTrafficPolicy Local gets a healthCheckNodePort (Kubernetes'
        NeedsHealthCheck): its load balancer asks each node whether it has a local endpoint."""
        return self.type == LOAD_BALANCER and self.external_traffic_policy == "Local"


@dataclass(frozen=True, slots=True)
class Cluster:
    """The whole description after validation, defaulting and allocation."""

    name: str
    service_cidr: str
    cluster_cidr: str
    node_port_range: tuple[int, int]
    proxy: ProxyConfig
    nodes: tuple[Node, ...]
    services: tuple[Service, ...]
    pods: tuple[Pod, ...]
    service_ports: tuple[ServicePort, ...]  # sorted by (namespace, name, port name, protocol)
    bridge: str = DEFAULT_BRIDGE
    service_cidr_given: bool = False
    cluster_cidr_given: bool = False
    service_cidrs: tuple[str, ...] = ()  # one per family, the first is service_cidr; () means (service_cidr,)
    cluster_cidrs: tuple[str, ...] = ()  # likewise for cluster_cidr

    @property
    def families(self) -> tuple[int, ...]:
        """The IP families Services can have here (the serviceCIDRs'), the default first."""
        return tuple(dict.fromkeys(family_of(c) for c in self.service_cidrs or (self.service_cidr,)))

    def service_cidr_of(self, version: int) -> str | None:
        return next((c for c in self.service_cidrs or (self.service_cidr,) if family_of(c) == version), None)

    def cluster_cidr_of(self, version: int) -> str | None:
        return next((c for c in self.cluster_cidrs or (self.cluster_cidr,) if family_of(c) == version), None)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)
