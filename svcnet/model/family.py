"""IP families: the one place the model names them, so that no type or helper assumes IPv4.

The model holds either family and renders both (a Service's families are settled in
`svcnet.model.dualstack`); `svcnet.model.semantic.ipv6` refuses, with a located error, what is
not applied yet (IPv6 as a cluster's first or only family, IPv6 Services in nftables mode).
Addresses and CIDRs are canonical strings, and every comparison of two of them checks the family
first (Python's `ipaddress` raises TypeError when two families meet in `overlaps`/`subnet_of`, and
answers False in `in`).
"""

from __future__ import annotations

import ipaddress

IPV4, IPV6 = 4, 6  # `ipaddress`'s `.version`, and kube-proxy's IPFamily numbers

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def family_of(text: str) -> int:
    """The family of an address or CIDR in text form: IPv6 text always holds a ':', IPv4 never."""
    return IPV6 if ":" in text else IPV4


def contains(net: IPNetwork, addr: IPAddress) -> bool:
    """`addr` lies in `net` (never across families)."""
    return addr.version == net.version and addr in net


def overlaps(a: IPNetwork, b: IPNetwork) -> bool:
    """`a` and `b` share an address (never across families)."""
    return a.version == b.version and a.overlaps(b)  # type: ignore[arg-type]  # same family: checked


def subnet_of(a: IPNetwork, b: IPNetwork) -> bool:
    """Every address of `a` lies in `b` (never across families)."""
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]  # same family: checked


def last_host(net: IPNetwork) -> int:
    """The last address of `net` a host may have, as an integer: IPv4 keeps its last address
    for broadcast, IPv6 has no broadcast address."""
    return int(net.broadcast_address) - (1 if net.version == IPV4 else 0)
