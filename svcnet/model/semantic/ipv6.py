"""IPv4 only, for now: every IPv6 value in a description is a located error.

The renderer writes kube-proxy's IPv4 ruleset; an IPv6 ClusterIP, endpoint, pod IP or CIDR
would otherwise be dropped without a word (an IPv6-only description validated cleanly and
rendered no rule for its Services). Until IPv6 is supported end to end, say so where it is.
"""

from __future__ import annotations

from collections.abc import Iterator

from svcnet.diagnostics import Diagnostic, PathT
from svcnet.load import Document
from svcnet.model.build import Objects
from svcnet.model.family import IPV6, family_of

ANY = "*"  # every item of a list

# Where each kind holds IP addresses or CIDRs that svcnet reads (the schemas checked their
# syntax, so `family_of` can tell an IPv6 value by its text).
_IP_FIELDS: dict[str, tuple[tuple[str, ...], ...]] = {
    "Cluster": (
        ("spec", "serviceCIDR"),
        ("spec", "clusterCIDR"),
        ("spec", "proxy", "nodePortAddresses", ANY),
        ("spec", "nodes", ANY, "addresses", ANY),
        ("spec", "nodes", ANY, "podCIDR"),
    ),
    "Service": (
        ("spec", "clusterIP"),
        ("spec", "clusterIPs", ANY),
        ("spec", "externalIPs", ANY),
        ("spec", "loadBalancerSourceRanges", ANY),
        ("status", "loadBalancer", "ingress", ANY, "ip"),
    ),
    "Pod": (("status", "podIP"),),
}
MESSAGE = "IPv6 is not supported yet (svcnet renders IPv4 rules only): {value} would be ignored"
SLICE_MESSAGE = "IPv6 is not supported yet (svcnet renders IPv4 rules only): these endpoints would be ignored"


def _values(obj: object, pattern: tuple[str, ...], path: PathT = ()) -> Iterator[tuple[PathT, object]]:
    if not pattern:
        yield path, obj
        return
    head, rest = pattern[0], pattern[1:]
    if head == ANY:
        if isinstance(obj, list):
            for i, item in enumerate(obj):
                yield from _values(item, rest, (*path, i))
    elif isinstance(obj, dict) and head in obj:
        yield from _values(obj[head], rest, (*path, head))


def _doc_errors(doc: Document) -> Iterator[Diagnostic]:
    obj = doc.obj
    assert isinstance(obj, dict)
    kind = obj.get("kind")
    if kind == "EndpointSlice" and obj.get("addressType") == "IPv6":
        yield doc.diag(("addressType",), SLICE_MESSAGE)
    for pattern in _IP_FIELDS.get(str(kind), ()):
        for path, value in _values(obj, pattern):
            if isinstance(value, str) and family_of(value) == IPV6:
                yield doc.diag(path, MESSAGE.format(value=value))


def ipv6_errors(objs: Objects) -> list[Diagnostic]:
    """One located error per IPv6 address, CIDR or EndpointSlice, in document order."""
    docs = [*objs.cluster, *objs.services, *objs.pods, *objs.slices]
    return [d for doc in sorted(docs, key=lambda d: (d.file, d.index)) for d in _doc_errors(doc)]
