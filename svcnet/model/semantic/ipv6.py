"""IPv6 first: a cluster whose first (or only) family is IPv6 is a located error, until svcnet applies it.

svcnet applies IPv6 as the second family of a dual-stack cluster (ip6tables rules beside the IPv4
ones, the pods' and the bridge's IPv6 addresses, host-gw routes per family), and a lab test proves
it end to end (tests/apply/test_apply_dual_stack.py). A cluster whose Services, pods and nodes
default to IPv6 (IPv6 listed first) or that has no IPv4 at all is modelled and rendered, but no
test has applied one yet: refused here, at the value to reorder. So are IPv6 Services in nftables
mode (its renderer writes the `ip` table only). Remove this module and its call
in `check_paths` when such a cluster is proven in the lab.
"""

from __future__ import annotations

from collections.abc import Iterator

from svcnet.diagnostics import Diagnostic, PathT
from svcnet.model.build import Objects
from svcnet.model.family import IPV6, family_of

NFT_MESSAGE = ("IPv6 Services in nftables mode are not supported yet (svcnet renders no ip6 table): use proxy "
               "mode iptables for a dual-stack cluster: {value}")
MESSAGE = ("IPv6 as a cluster's first or only family is not supported yet (svcnet applies IPv6 as the "
           "second family of a dual-stack cluster: list the IPv4 value first): {value}")


def _first(obj: dict, key: str, path: PathT) -> Iterator[tuple[PathT, object]]:
    """The field's value, or its first item when it is a list (the family a cluster defaults to)."""
    value = obj.get(key)
    if isinstance(value, list):
        if value:
            yield (*path, key, 0), value[0]
    elif value is not None:
        yield (*path, key), value


def _firsts(spec: dict) -> Iterator[tuple[PathT, object]]:
    for key in ("serviceCIDR", "clusterCIDR"):
        yield from _first(spec, key, ("spec",))
    for i, node in enumerate(spec.get("nodes") or ()):
        if isinstance(node, dict):
            where = ("spec", "nodes", i)
            yield from _first(node, "addresses", where)
            yield from _first(node, "podCIDR", where)


def _nft_ipv6(spec: dict) -> Iterator[tuple[PathT, object]]:
    """In nftables mode, the IPv6 serviceCIDR (the IPv6 Services' range)."""
    proxy = spec.get("proxy")
    if not isinstance(proxy, dict) or proxy.get("mode") != "nftables":
        return
    cidrs = spec.get("serviceCIDR")
    for i, value in enumerate(cidrs if isinstance(cidrs, list) else ()):
        if isinstance(value, str) and family_of(value) == IPV6 and i > 0:  # the first: refused above
            yield ("spec", "serviceCIDR", i), value


def ipv6_errors(objs: Objects) -> list[Diagnostic]:
    """One located error per first value of a family list (or only value) that is IPv6, and per IPv6
    serviceCIDR in nftables mode."""
    out: list[Diagnostic] = []
    for doc in objs.cluster:
        obj = doc.obj
        spec = obj.get("spec") if isinstance(obj, dict) else None
        if not isinstance(spec, dict):
            continue
        out.extend(doc.diag(path, MESSAGE.format(value=value)) for path, value in _firsts(spec)
                   if isinstance(value, str) and family_of(value) == IPV6)
        out.extend(doc.diag(path, NFT_MESSAGE.format(value=value)) for path, value in _nft_ipv6(spec))
    return out
