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
