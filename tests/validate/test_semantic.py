"""Semantic checks as functions: forbidden endpoint addresses, podCIDR overlaps, and their cost.

The located errors of whole files are in test_bad_files.py (bad/41-* to bad/50-*).
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from svcnet.model.build import Build
from svcnet.model.load import check_paths
from svcnet.model.semantic import addresses, cluster

LOOPBACK = "may not be in the loopback range (127.0.0.0/8, ::1/128)"
LINK_LOCAL = "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
UNSPECIFIED = "may not be unspecified (0.0.0.0, ::)"
MULTICAST = "may not be in the multicast range (224.0.0.0/4, ff00::/8)"


@pytest.mark.parametrize(
    ("ip", "why"),
    [
        ("127.0.0.1", LOOPBACK), ("127.0.0.0", LOOPBACK), ("127.255.255.255", LOOPBACK), ("::1", LOOPBACK),
        ("::ffff:127.0.0.1", LOOPBACK),  # Go's net.IP sees the IPv4 address in an IPv4-mapped one
        ("169.254.169.254", LINK_LOCAL), ("169.254.0.0", LINK_LOCAL), ("169.254.255.255", LINK_LOCAL),
        ("fe80::1", LINK_LOCAL), ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LINK_LOCAL),
        ("::ffff:169.254.169.254", LINK_LOCAL),
        ("0.0.0.0", UNSPECIFIED), ("::", UNSPECIFIED),
        ("224.0.0.0", MULTICAST), ("224.0.0.251", MULTICAST), ("239.255.255.255", MULTICAST),
        ("ff00::", MULTICAST), ("ff02::1", MULTICAST), ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", MULTICAST),
    ],
)
def test_kubernetes_forbidden_endpoint_addresses(ip: str, why: str):
    assert addresses.special_address(ip) == why


@pytest.mark.parametrize(
    "ip",
    ["10.0.0.1", "8.8.8.8", "126.255.255.255", "128.0.0.0", "169.253.255.255", "169.255.0.0", "0.0.0.1",
     "223.255.255.255", "240.0.0.1", "192.168.56.11", "::2", "fd00::1", "fec0::1", "fe7f:ffff::1", "fec0::",
     "2001:db8::1", "feff::1", "::ffff:10.0.0.1"],
)
def test_ordinary_addresses_are_allowed(ip: str):
    assert addresses.special_address(ip) is None


def test_special_range_of_a_cidr():
    assert addresses.special_range(ipaddress.ip_network("169.254.169.0/24")) == (
        "the link-local range (169.254.0.0/16, fe80::/10)"
    )
    assert addresses.special_range(ipaddress.ip_network("0.0.0.0/8")) == "the unspecified address (0.0.0.0, ::)"
    assert addresses.special_range(ipaddress.ip_network("10.244.0.0/16")) is None


def _pairs(cidrs: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    class N:
        def __init__(self, cidr: str):
            self.pod_cidr = cidr
            self.all_pod_cidrs = (cidr,)

    spans = cluster._spans([N(c) for c in cidrs])  # type: ignore[list-item]
    pairs, outer = cluster.overlapping_pod_cidrs(spans)
    return [(cidrs[a.index], cidrs[b.index]) for a, b in pairs], [cidrs[s.index] for s in outer]


def test_overlapping_pod_cidrs_finds_nested_and_equal_ranges_once_each():
    pairs, outer = _pairs(["10.0.2.0/24", "10.0.0.0/16", "10.0.1.128/25", "10.1.0.0/24", "10.0.2.0/24",
                           "fd00::/64", "fd00::/48", "10.0.0.0/24"])
    assert sorted(pairs) == sorted([
        ("10.0.0.0/16", "10.0.0.0/24"), ("10.0.0.0/16", "10.0.1.128/25"),
        ("10.0.0.0/16", "10.0.2.0/24"), ("10.0.0.0/16", "10.0.2.0/24"), ("fd00::/48", "fd00::/64"),
    ])
    assert outer == ["10.0.0.0/16", "10.1.0.0/24", "fd00::/48"]


def test_disjoint_pod_cidrs_do_not_overlap():
    pairs, outer = _pairs([f"10.244.{i}.0/24" for i in range(10)] + ["10.245.0.0/16", "fd00::/64"])
    assert pairs == [] and len(outer) == 12


def _cluster(tmp_path: Path, n: int) -> Build:
    lines = ["apiVersion: svcnet.dev/v1alpha1\nkind: Cluster\nmetadata: {name: big}\n"
             "spec:\n  clusterCIDR: 10.128.0.0/9\n  nodes:\n"]
    for i in range(n):
        hi, lo = i >> 8, i & 255
        lines.append(f"    - {{name: n{i}, addresses: [172.16.{hi}.{lo}], podCIDR: 10.{128 + hi}.{lo}.0/24}}\n")
    f = tmp_path / f"cluster-{n}.yaml"
    f.write_text("".join(lines))
    checked = check_paths([f])
    assert checked.ok and checked.build is not None, checked.diagnostics[:3]
    return checked.build


def _calls(fn: Callable[[], object]) -> int:
    """Python and C function calls made by `fn` (deterministic, unlike a time)."""
    count = 0

    def profile(frame: object, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return count


def test_node_checks_grow_near_linearly_with_the_nodes(tmp_path: Path):
    """6,000 nodes took 15-30 s when every podCIDR was compared with every other (O(n^2));
    bench/validate_bench.py prints the times."""
    small, large = _cluster(tmp_path, 300), _cluster(tmp_path, 1200)
    ratio = _calls(lambda: cluster.check_nodes(large)) / _calls(lambda: cluster.check_nodes(small))
    # 4x the nodes: about 4x the calls for O(n log n) with a C sort, 16x for O(n^2).
    assert ratio < 6, ratio
