"""Semantic checks as functions: forbidden endpoint addresses.

The located errors of whole files are in test_bad_files.py (bad/41-* to bad/44-*, bad/50-*).
"""

from __future__ import annotations

import ipaddress

import pytest

from svcnet.model import semantic

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
    assert semantic.special_address(ip) == why


@pytest.mark.parametrize(
    "ip",
    ["10.0.0.1", "8.8.8.8", "126.255.255.255", "128.0.0.0", "169.253.255.255", "169.255.0.0", "0.0.0.1",
     "223.255.255.255", "240.0.0.1", "192.168.56.11", "::2", "fd00::1", "fec0::1", "fe7f:ffff::1", "fec0::",
     "2001:db8::1", "feff::1", "::ffff:10.0.0.1"],
)
def test_ordinary_addresses_are_allowed(ip: str):
    assert semantic.special_address(ip) is None


def test_special_range_of_a_cidr():
    assert semantic.special_range(ipaddress.ip_network("169.254.169.0/24")) == (
        "the link-local range (169.254.0.0/16, fe80::/10)"
    )
    assert semantic.special_range(ipaddress.ip_network("0.0.0.0/8")) == "the unspecified address (0.0.0.0, ::)"
    assert semantic.special_range(ipaddress.ip_network("10.244.0.0/16")) is None
