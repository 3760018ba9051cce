"""kube-proxy's iptables chain names: fixed chains, hashed per-service chains, ownership.

Per-service names are `PREFIX + base32(sha256(input))[:16]` exactly as `proxier.go`'s
`portProtoHash` / `servicePortEndpointChainName` compute them (reference §1).
"""

from __future__ import annotations

import base64
import hashlib

from svcnet.model.types import Endpoint, ServicePort

TABLE_FILTER = "filter"
TABLE_NAT = "nat"

# Fixed chains (proxier.go constants).
KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"  # kubelet's chain; kube-proxy writes an identical copy

# Built-in chains the jump rules hang off.
INPUT, FORWARD, OUTPUT = "INPUT", "FORWARD", "OUTPUT"
PREROUTING, POSTROUTING = "PREROUTING", "POSTROUTING"

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


def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def port_proto_hash(spn: str, proto: str) -> str:
    """`portProtoHash`: 16 base32 characters of sha256(servicePortName + protocol)."""
    return _hash16(spn + proto)


def endpoint_hash(spn: str, proto: str, hostport: str) -> str:
    """16 base32 characters of sha256(servicePortName + protocol + `ip:port`)."""
    return _hash16(spn + proto + hostport)


def service_chain_names(sp: ServicePort) -> tuple[str, str, str, str]:
    """(KUBE-SVC-h, KUBE-SVL-h, KUBE-EXT-h, KUBE-FW-h) for one service port."""
    h = port_proto_hash(sp.spn, sp.proto)
    return SVC_PREFIX + h, SVL_PREFIX + h, EXT_PREFIX + h, FW_PREFIX + h


def endpoint_chain_name(sp: ServicePort, ep: Endpoint) -> str:
    """KUBE-SEP-h for one endpoint of one service port."""
    return SEP_PREFIX + endpoint_hash(sp.spn, sp.proto, ep.hostport)


def is_service_chain(name: str) -> bool:
    """True for chains with one of the five per-service prefixes (`isServiceChainName`)."""
    return name.startswith(SERVICE_CHAIN_PREFIXES)
