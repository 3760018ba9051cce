"""Deterministic allocation of ClusterIPs, nodePorts, pod IPs and pod names.

Each object starts probing at a slot derived from a hash of its own name, so adding or
removing one object does not move the others (unlike first-free allocation).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable

from svcnet.model.family import last_host

# Kubernetes' SafeEncodeString alphabet (no vowels, no confusable digits).
_K8S_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def k8s_suffix(text: str, length: int) -> str:
    """A name suffix in Kubernetes' alphabet, derived from `text`."""
    n = stable_hash(text)
    out = []
    for _ in range(length):
        n, r = divmod(n, len(_K8S_ALPHABET))
        out.append(_K8S_ALPHABET[r])
    return "".join(out)


def probe(key: str, lo: int, hi: int, taken: Callable[[int], bool]) -> int | None:
    """First free value in [lo, hi], starting at a slot chosen by `key`'s hash."""
    size = hi - lo + 1
    if size <= 0:
        return None
    start = stable_hash(key) % size
    for i in range(size):
        value = lo + (start + i) % size
        if not taken(value):
            return value
    return None


def allocate_ip(key: str, cidr: str, used: set[str], reserved_low: int = 1) -> str | None:
    """An address of `cidr` for `key`, skipping the network address, the first
    `reserved_low` hosts (e.g. the bridge gateway), an IPv4 broadcast address and `used`."""
    net = ipaddress.ip_network(cidr)
    # The network's own address type: `ipaddress.ip_address(int)` makes an IPv4 address of any
    # integer below 2**32, which is also an IPv6 address (`::a.b.c.d`).
    address = type(net.network_address)
    first = int(net.network_address) + 1 + reserved_low
    value = probe(key, first, last_host(net), lambda v: str(address(v)) in used)
    return None if value is None else str(address(value))


def allocate_port(key: str, lo: int, hi: int, used: set[int]) -> int | None:
    return probe(key, lo, hi, lambda v: v in used)
