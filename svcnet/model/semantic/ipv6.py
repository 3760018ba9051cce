"""The IPv6 gate: every IPv6 value in a description is a located error, until svcnet applies IPv6.

The model, its checks and the renderer handle IPv6 and dual-stack (ip6tables-restore input), but
the node agent cannot apply it yet (nor the address config, the lab or verify). Until it can,
every command refuses an IPv6 description here, in this one place: `check_paths` calls
`ipv6_errors` unless a test passes `ipv6=True`. Remove this module and that call when apply does IPv6.
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
        ("spec", "serviceCIDR", ANY),
        ("spec", "clusterCIDR"),
        ("spec", "clusterCIDR", ANY),
        ("spec", "proxy", "nodePortAddresses", ANY),
        ("spec", "nodes", ANY, "addresses", ANY),
        ("spec", "nodes", ANY, "podCIDR"),
        ("spec", "nodes", ANY, "podCIDRs", ANY),
    ),
    "Service": (
        ("spec", "clusterIP"),
        ("spec", "clusterIPs", ANY),
        ("spec", "ipFamilies", ANY),
        ("spec", "externalIPs", ANY),
        ("spec", "loadBalancerSourceRanges", ANY),
        ("status", "loadBalancer", "ingress", ANY, "ip"),
    ),
    "Pod": (("status", "podIP"), ("status", "podIPs", ANY, "ip")),
}
MESSAGE = "IPv6 apply is not supported yet (svcnet cannot apply IPv6 rules and addresses to nodes): {value}"
SLICE_MESSAGE = "IPv6 apply is not supported yet (svcnet cannot apply IPv6 rules and addresses to nodes): " \
    "these endpoints"


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
            if isinstance(value, str) and (family_of(value) == IPV6 or value == "IPv6"):
                yield doc.diag(path, MESSAGE.format(value=value))


def ipv6_errors(objs: Objects) -> list[Diagnostic]:
    """One located error per IPv6 address, CIDR or EndpointSlice, in document order."""
    docs = [*objs.cluster, *objs.services, *objs.pods, *objs.slices]
    return [d for doc in sorted(docs, key=lambda d: (d.file, d.index)) for d in _doc_errors(doc)]
