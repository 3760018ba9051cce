"""Addresses Kubernetes forbids as endpoints, and the range check shared by every other check.

Kubernetes' ValidateEndpointIP (kubernetes/kubernetes pkg/apis/core/validation/validation.go;
used by the EndpointSlice validation in pkg/apis/discovery/validation and by ValidateService
for spec.externalIPs; older releases call it validateNonSpecialIP) refuses these. Unspecified
and loopback addresses make no sense as a destination, link-local ones are node-centric: with
route_localnet=1 a NodePort would expose a localhost-only daemon or the cloud metadata service
(169.254.169.254). Kubernetes rejects only link-local multicast and calls allowing the rest
"probably a bug"; svcnet rejects every multicast address: a DNAT to one never reaches a single
backend.
"""

from __future__ import annotations

import ipaddress

from svcnet.diagnostics import Diagnostic, PathT
from svcnet.load import Document
from svcnet.model.build import canonical_ip
from svcnet.model.family import IPNetwork, contains

UNSPECIFIED = "unspecified"
SPECIAL_RANGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (UNSPECIFIED, ("0.0.0.0", "::")),
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("link-local", ("169.254.0.0/16", "fe80::/10")),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
)
# Each range as (family, first, last) integers: a test per endpoint address is a few integer
# comparisons, not a network object per address (a description may hold 100,000 endpoints).
_SPECIAL_SPANS = tuple(
    (kind, ranges, tuple((n.version, int(n.network_address), int(n.broadcast_address))
                         for n in map(ipaddress.ip_network, ranges)))
    for kind, ranges in SPECIAL_RANGES
)


def in_net(ip: str, net: IPNetwork) -> bool:
    """The address `ip` (text) lies in `net` (never across families)."""
    return contains(net, ipaddress.ip_address(ip))


def _special_kind(version: int, first: int, last: int) -> tuple[str, str] | None:
    """(kind, its ranges as text) of the first forbidden range [first, last] meets, or None."""
    for kind, ranges, spans in _SPECIAL_SPANS:
        if any(v == version and lo <= last and first <= hi for v, lo, hi in spans):
            return kind, ", ".join(ranges)
    return None


def special_range(net: IPNetwork) -> str | None:
    """`the loopback range (127.0.0.0/8, ::1/128)` if `net` overlaps a forbidden range, else None."""
    found = _special_kind(net.version, int(net.network_address), int(net.broadcast_address))
    if found is None:
        return None
    kind, ranges = found
    return f"the unspecified address ({ranges})" if kind == UNSPECIFIED else f"the {kind} range ({ranges})"


def special_address(ip: str) -> str | None:
    """Why Kubernetes forbids `ip` as an endpoint or externalIP (its wording), or None."""
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped  # Go's net.IP checks an IPv4-mapped address as IPv4
    found = _special_kind(addr.version, int(addr), int(addr))
    if found is None:
        return None
    kind, ranges = found
    return f"may not be unspecified ({ranges})" if kind == UNSPECIFIED else f"may not be in the {kind} range ({ranges})"


def special_diag(doc: Document, path: PathT, what: str, ip: str) -> list[Diagnostic]:
    """A located error if `ip` (the `what` at `path`: "externalIP", as written: it may have
    leading zeros, see semantic.spelling) is a forbidden endpoint."""
    why = special_address(canonical_ip(ip))
    return [doc.diag(path, f"{what} {ip} {why}")] if why else []
