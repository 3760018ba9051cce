"""Every iptables name svcnet writes or reads: tables, chains, targets, and the per-service chain hash.

Fixed names are `proxier.go`'s constants. Per-service names are `PREFIX + base32(sha256(input))[:16]`
exactly as its `portProtoHash` / `servicePortEndpointChainName` compute them; one helper per chain
kind says what that chain is for. The node agent (svcnet/agent/node.py) ships as one stdlib-only
file and so carries its own copies of a few of these; tests/render/test_chains_jumps.py checks
that they agree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from svcnet.model.types import Endpoint, ServicePort

TABLE_FILTER = "filter"
TABLE_NAT = "nat"
TABLES = (TABLE_FILTER, TABLE_NAT)

# Built-in chains: the jump rules hang off them, and a trace starts at their hooks.
PREROUTING, INPUT, FORWARD, OUTPUT, POSTROUTING = "PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"
BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    TABLE_NAT: (PREROUTING, INPUT, OUTPUT, POSTROUTING),
    TABLE_FILTER: (INPUT, FORWARD, OUTPUT),
}
ALL_BUILTIN_CHAINS = frozenset(name for names in BUILTIN_CHAINS.values() for name in names)

# Targets. The first two groups are what kube-proxy writes (and a trace models); the last are
# targets other software may have on a node, which never decide a packet's fate.
ACCEPT, DROP, REJECT, RETURN = "ACCEPT", "DROP", "REJECT", "RETURN"
DNAT, SNAT, MASQUERADE, REDIRECT, MARK = "DNAT", "SNAT", "MASQUERADE", "REDIRECT", "MARK"
NON_TERMINATING_TARGETS = frozenset({"LOG", "NFLOG", "CONNMARK", "CT", "NOTRACK", "TCPMSS", "TRACE", "AUDIT"})

# Fixed chains (proxier.go constants).
KUBE_SERVICES = "KUBE-SERVICES"  # entry point of service traffic, both tables
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"  # filter: external traffic without endpoints
KUBE_NODEPORTS = "KUBE-NODEPORTS"  # NodePorts (nat), health check node ports (filter)
KUBE_POSTROUTING = "KUBE-POSTROUTING"  # masquerades what KUBE-MARK-MASQ marked
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"  # marks a packet for masquerade
KUBE_FORWARD = "KUBE-FORWARD"  # lets marked and established service traffic be forwarded
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"  # drops LoadBalancer traffic its source ranges refuse
KUBE_FIREWALL = "KUBE-FIREWALL"  # kubelet's chain; kube-proxy writes an identical copy
OWNED_CHAIN_PREFIX = "KUBE-"  # every chain svcnet writes starts with it

# Per-service chain prefixes.
SVC_PREFIX = "KUBE-SVC-"  # cluster traffic policy
SVL_PREFIX = "KUBE-SVL-"  # local traffic policy
EXT_PREFIX = "KUBE-EXT-"  # external destinations
FW_PREFIX = "KUBE-FW-"  # loadBalancerSourceRanges
SEP_PREFIX = "KUBE-SEP-"  # one endpoint
SERVICE_CHAIN_PREFIXES = (SVC_PREFIX, SVL_PREFIX, SEP_PREFIX, FW_PREFIX, EXT_PREFIX)

# Fixed chains svcnet declares (and therefore flushes) in each restore, per table, in write order.
# KUBE-FIREWALL is only declared on IPv4 with localhost NodePorts enabled.
OWNED_CHAINS: dict[str, tuple[str, ...]] = {
    TABLE_FILTER: (
        KUBE_SERVICES,
        KUBE_EXTERNAL_SERVICES,
        KUBE_FORWARD,
        KUBE_NODEPORTS,
        KUBE_PROXY_FIREWALL,
        KUBE_FIREWALL,
    ),
    TABLE_NAT: (KUBE_SERVICES, KUBE_NODEPORTS, KUBE_POSTROUTING, KUBE_MARK_MASQ),
}

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)  # 10 bits -> 2 characters


def _hash16(text: str) -> str:
    """First 16 characters of base32(sha256(text)), i.e. base32 of its first 80 bits.

    Computed from those 80 bits directly (two characters per 10-bit table lookup): the renderer
    hashes every endpoint of every service, and `base64.b32encode` of the whole digest is slower.
    """
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    t = _B32_PAIRS
    return (t[n >> 70] + t[(n >> 60) & 1023] + t[(n >> 50) & 1023] + t[(n >> 40) & 1023]
            + t[(n >> 30) & 1023] + t[(n >> 20) & 1023] + t[(n >> 10) & 1023] + t[n & 1023])


def port_proto_hash(spn: str, proto: str) -> str:
    """`portProtoHash`: 16 base32 characters of sha256(servicePortName + protocol)."""
    return _hash16(spn + proto)


def cluster_policy_chain(port_hash: str) -> str:
    """KUBE-SVC-h: spreads traffic over the endpoints "Cluster" traffic policy uses
    (`servicePortPolicyClusterChain`)."""
    return SVC_PREFIX + port_hash


def local_policy_chain(port_hash: str) -> str:
    """KUBE-SVL-h: spreads traffic over this node's endpoints only, for "Local" traffic policy
    (`servicePortPolicyLocalChainName`)."""
    return SVL_PREFIX + port_hash


def external_chain(port_hash: str) -> str:
    """KUBE-EXT-h: where NodePort, externalIP and LoadBalancer traffic goes first, to be masqueraded
    or short-circuited before its policy chain (`serviceExternalChainName`)."""
    return EXT_PREFIX + port_hash


def firewall_chain(port_hash: str) -> str:
    """KUBE-FW-h: passes LoadBalancer traffic from loadBalancerSourceRanges on to KUBE-EXT-h
    (`serviceFirewallChainName`)."""
    return FW_PREFIX + port_hash


def endpoint_chains(spn: str, proto: str, hostports: Iterable[str]) -> list[str]:
    """KUBE-SEP-h of each endpoint `ip:port` of one service port: the chain that DNATs to it
    (`servicePortEndpointChainName`). One call per port: the renderer hashes every endpoint."""
    key = spn + proto
    return [SEP_PREFIX + _hash16(key + hp) for hp in hostports]


def endpoint_chain(spn: str, proto: str, hostport: str) -> str:
    """KUBE-SEP-h of one endpoint."""
    return endpoint_chains(spn, proto, (hostport,))[0]


def service_port_chains(spn: str, proto: str) -> tuple[str, str, str, str]:
    """(KUBE-SVC-h, KUBE-SVL-h, KUBE-EXT-h, KUBE-FW-h): the four chains of one service port,
    which share one hash (`newServiceInfo`); hashed once."""
    h = port_proto_hash(spn, proto)
    return cluster_policy_chain(h), local_policy_chain(h), external_chain(h), firewall_chain(h)


def service_chain_names(sp: ServicePort) -> tuple[str, str, str, str]:
    """`service_port_chains` of a model service port."""
    return service_port_chains(sp.spn, sp.proto)


def port_chains(sp: ServicePort) -> list[str]:
    """Every chain that belongs to one service port: its SVC, SVL, EXT and FW chains and the
    KUBE-SEP chain of each endpoint (what verify and review map back to the port)."""
    return [*service_chain_names(sp), *(endpoint_chain_name(sp, ep) for ep in sp.endpoints)]


def endpoint_chain_name(sp: ServicePort, ep: Endpoint) -> str:
    """KUBE-SEP-h for one endpoint of one service port."""
    return endpoint_chain(sp.spn, sp.proto, ep.hostport)


def is_service_chain(name: str) -> bool:
    """True for chains with one of the five per-service prefixes (`isServiceChainName`)."""
    return name.startswith(SERVICE_CHAIN_PREFIXES)


# --------------------------------------------------------------------------- nftables mode
# kube-proxy's nftables proxier (the layout of ../shared/reference/kube-proxy-nftables.md): one table
# of its own per IP family, fixed chains, sets and maps by name, and per-service chains named
# `PREFIX + H-ns/name/proto/portname` (`servicePortChainNameBase`).

NFT_TABLE = "kube-proxy"
NFT_FAMILIES = {4: "ip", 6: "ip6"}  # IP version -> nft table family

# Base chains: (name, type, hook, priority), kube-proxy's priorities as numbers (proxier.go's
# `knftables.DNATPriority` etc.).
NFT_FILTER_PREROUTING_PRE_DNAT = "filter-prerouting-pre-dnat"
NFT_FILTER_OUTPUT_PRE_DNAT = "filter-output-pre-dnat"
NFT_NAT_PREROUTING = "nat-prerouting"
NFT_NAT_OUTPUT = "nat-output"
NFT_FILTER_INPUT = "filter-input"
NFT_FILTER_FORWARD = "filter-forward"
NFT_FILTER_OUTPUT = "filter-output"
NFT_NAT_POSTROUTING = "nat-postrouting"
NFT_BASE_CHAINS: tuple[tuple[str, str, str, int], ...] = (
    (NFT_FILTER_PREROUTING_PRE_DNAT, "filter", "prerouting", -110),  # dstnat-10: sees the original destination
    (NFT_FILTER_OUTPUT_PRE_DNAT, "filter", "output", -110),
    (NFT_NAT_PREROUTING, "nat", "prerouting", -100),  # dstnat
    (NFT_NAT_OUTPUT, "nat", "output", -100),
    (NFT_FILTER_INPUT, "filter", "input", 0),  # filter: after DNAT, sees only what was not DNATed
    (NFT_FILTER_FORWARD, "filter", "forward", 0),
    (NFT_FILTER_OUTPUT, "filter", "output", 0),
    (NFT_NAT_POSTROUTING, "nat", "postrouting", 100),  # srcnat
)

# Fixed regular chains.
NFT_SERVICES = "services"  # service-ips / service-nodeports lookups
NFT_FIREWALL_CHECK = "firewall-check"  # firewall-ips lookup (loadBalancerSourceRanges)
NFT_SERVICE_ENDPOINTS_CHECK = "service-endpoints-check"  # no-endpoint-services lookup
NFT_NODEPORT_ENDPOINTS_CHECK = "nodeport-endpoints-check"  # no-endpoint-nodeports lookup
NFT_CLUSTER_IPS_CHECK = "cluster-ips-check"  # unknown ports of ClusterIPs, unallocated ClusterIPs
NFT_REJECT_CHAIN = "reject-chain"  # the verdict of services without endpoints
NFT_MARK_FOR_MASQUERADE = "mark-for-masquerade"
NFT_MASQUERADING = "masquerading"

# Sets and maps.
NFT_CLUSTER_IPS = "cluster-ips"
NFT_NODEPORT_IPS = "nodeport-ips"
NFT_SERVICE_IPS = "service-ips"
NFT_SERVICE_NODEPORTS = "service-nodeports"
NFT_FIREWALL_IPS = "firewall-ips"
NFT_NO_ENDPOINT_SERVICES = "no-endpoint-services"
NFT_NO_ENDPOINT_NODEPORTS = "no-endpoint-nodeports"

# Per-service-port and per-endpoint prefixes (the affinity set shares its endpoint's base).
NFT_SERVICE_PREFIX = "service-"  # cluster traffic policy
NFT_LOCAL_PREFIX = "local-"  # local traffic policy
NFT_EXTERNAL_PREFIX = "external-"  # NodePorts, externalIPs, LoadBalancer IPs
NFT_FIREWALL_PREFIX = "firewall-"  # loadBalancerSourceRanges
NFT_ENDPOINT_PREFIX = "endpoint-"  # one endpoint
NFT_AFFINITY_PREFIX = "affinity-"  # ClientIP affinity set of one endpoint
NFT_NAME_MAX = 240  # knftables' NameLengthMax 256 minus 16 kept for the prefixes


def nft_name_base(hash_input: str) -> str:
    """`H-input`: 8 base32 characters of sha256(input), '-', the input; cut to 237 + '...' when longer
    than NFT_NAME_MAX (`hashAndTruncate`)."""
    base = f"{_hash16(hash_input)[:8]}-{hash_input}"
    return base if len(base) <= NFT_NAME_MAX else base[:NFT_NAME_MAX - 3] + "..."


def nft_port_input(namespace: str, name: str, proto: str, port_name: str) -> str:
    """What a service port's chain names hash: `ns/name/proto/portname` (`servicePortChainNameBase`)."""
    return f"{namespace}/{name}/{proto}/{port_name}"


def nft_service_base(namespace: str, name: str, proto: str, port_name: str) -> str:
    """The base of a service port's service-/local-/external-/firewall- chains."""
    return nft_name_base(nft_port_input(namespace, name, proto, port_name))


def nft_endpoint_base(port_input: str, ip: str, port: int) -> str:
    """The base of an endpoint's endpoint- chain and affinity- set: `<port input>__IP/port`, an IPv6
    address's colons as dots (`servicePortEndpointChainNameBase`)."""
    return nft_name_base(f"{port_input}__{ip.replace(':', '.')}/{port}")


def nft_port_chains(sp: ServicePort) -> tuple[str, str, str, str]:
    """(service-, local-, external-, firewall-) chains of one service port, sharing one base."""
    base = nft_service_base(sp.namespace, sp.name, sp.proto, sp.port_name)
    return (NFT_SERVICE_PREFIX + base, NFT_LOCAL_PREFIX + base, NFT_EXTERNAL_PREFIX + base,
            NFT_FIREWALL_PREFIX + base)


def is_nft_service_chain(name: str) -> bool:
    """kube-proxy's own test for its per-service chains: only they hold a '/'."""
    return "/" in name


def nft_port_names(sp: ServicePort) -> list[str]:
    """Every nft name that belongs to one service port: its service-/local-/external-/firewall-
    chains, each endpoint's endpoint- chain and affinity- set, and its `ns/name/proto/port` (element
    comments): what verify maps drift back to the port."""
    port_input = nft_port_input(sp.namespace, sp.name, sp.proto, sp.port_name)
    bases = [nft_endpoint_base(port_input, ep.ip, ep.port) for ep in sp.endpoints]
    return [*nft_port_chains(sp), *(p + b for b in bases for p in (NFT_ENDPOINT_PREFIX, NFT_AFFINITY_PREFIX)),
            port_input]
