"""The API server's spelling rules for its legacy IP and CIDR fields: accepted, with its warnings.

Kubernetes validates these fields with netutils.ParseIPSloppy / ParseCIDRSloppy (apimachinery
util/validation IsValidIP and IsValidCIDR; IsValidIPForLegacyField and IsValidCIDRForLegacyField
since 1.33, strict only under the StrictIPCIDRValidation gate, off by default): an IPv4 octet or
a prefix length may have leading zeros, read as decimal, and ValidateService trims white space
around a loadBalancerSourceRanges entry ("allowed to be space-padded"). kube-proxy reads them
the same way (192.168.099.022 is 192.168.99.22) and so does svcnet's model (`canonical_ip`,
`canonical_cidr`). The API server warns about such values (GetWarningsForIP/GetWarningsForCIDR,
from pkg/api/service/warnings.go and the Pod and EndpointSlice strategies): svcnet gives the same
warnings, located. Unlike the API server, it judges a padded source range after trimming it (the
API server's warning check fails to parse the padded text and says nothing).

IPv6 spellings (non-RFC 5952 text, IPv4-mapped addresses) are left to the IPv6 checks.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator

from svcnet.diagnostics import WARNING, Diagnostic, PathT
from svcnet.load import Document
from svcnet.model.build import Objects, canonical_cidr, canonical_ip, trim_space
from svcnet.model.family import IPV6, family_of

ANY = "*"  # every item of a list

# The legacy fields svcnet reads, by kind: (path pattern, holds CIDRs).
_FIELDS: dict[str, tuple[tuple[tuple[str, ...], bool], ...]] = {
    "Service": (
        (("spec", "clusterIP"), False),
        (("spec", "clusterIPs", ANY), False),
        (("spec", "externalIPs", ANY), False),
        (("spec", "loadBalancerIP"), False),
        (("spec", "loadBalancerSourceRanges", ANY), True),
        (("status", "loadBalancer", "ingress", ANY, "ip"), False),
    ),
    "Pod": ((("status", "podIP"), False), (("status", "podIPs", ANY, "ip"), False)),
}  # and an IPv4 EndpointSlice's endpoint addresses (`_slice_warnings`: a slice may hold 100,000)
# An IPv4 octet with a leading zero: the one legacy spelling of an address that passed the schemas.
_LEADING_ZERO = re.compile(r"(?:^|\.)0[0-9]")
FUTURE = "will be considered invalid in a future Kubernetes release"


def _q(text: str) -> str:
    """Go's %q for the printable text these values are."""
    return json.dumps(text, ensure_ascii=False)


def ip_warning(value: str) -> str | None:
    """GetWarningsForIP's words for an IPv4 address written with leading zeros, else None."""
    if family_of(value) == IPV6 or not _LEADING_ZERO.search(value):
        return None
    return f"non-standard IP address {_q(value)} {FUTURE}: use {_q(canonical_ip(value))}"


def cidr_warnings(value: str) -> list[str]:
    """GetWarningsForCIDR's words for a source range (trimmed): host bits set, leading zeros."""
    text = trim_space(value)
    addr, _, bits = text.partition("/")
    network = canonical_cidr(text)
    ip = canonical_ip(addr)
    out = []
    if ipaddress.ip_address(ip) != ipaddress.ip_network(network).network_address:
        single = f"{ip}/{ipaddress.ip_address(ip).max_prefixlen}"
        out.append(f"CIDR value {_q(text)} is ambiguous in this context (should be {_q(network)} or {_q(single)}?)")
    leading_zeros = (family_of(addr) != IPV6 and ip != addr) or (len(bits) > 1 and bits.startswith("0"))
    if leading_zeros:
        out.append(f"non-standard CIDR value {_q(text)} {FUTURE}: use {_q(network)}")
    return out


def _values(obj: object, pattern: tuple[str, ...], path: PathT = ()) -> Iterator[tuple[PathT, object]]:
    """The values at `pattern` in `obj`, with their paths."""
    if not pattern:
        yield path, obj
        return
    head, rest = pattern[0], pattern[1:]
    if head == ANY:
        for i, item in enumerate(obj if isinstance(obj, list) else ()):
            yield from _values(item, rest, (*path, i))
    elif isinstance(obj, dict) and head in obj:
        yield from _values(obj[head], rest, (*path, head))


def _slice_warnings(obj: dict) -> Iterator[tuple[PathT, str]]:
    """(path, warning) of an IPv4 EndpointSlice's addresses (FQDN names are not addresses; IPv6
    slices are the IPv6 checks' business)."""
    if obj.get("addressType") != "IPv4":
        return
    for i, ep in enumerate(obj.get("endpoints") or ()):
        for j, addr in enumerate(ep.get("addresses") or ()):
            found = ip_warning(addr)
            if found:
                yield ("endpoints", i, "addresses", j), found


def _doc_warnings(doc: Document) -> Iterator[Diagnostic]:
    obj = doc.obj
    assert isinstance(obj, dict)
    kind = str(obj.get("kind"))
    if kind == "EndpointSlice":
        yield from (doc.diag(path, message, WARNING) for path, message in _slice_warnings(obj))
    for pattern, is_cidr in _FIELDS.get(kind, ()):
        for path, value in _values(obj, pattern):
            if not isinstance(value, str):
                continue
            found = cidr_warnings(value) if is_cidr else [w for w in [ip_warning(value)] if w]
            yield from (doc.diag(path, message, WARNING) for message in found)


def spelling_warnings(objs: Objects) -> list[Diagnostic]:
    """One located warning per legacy spelling, in document order (the documents passed the schemas)."""
    docs = [*objs.services, *objs.pods, *objs.slices]
    return [d for doc in sorted(docs, key=lambda d: (d.file, d.index)) for d in _doc_warnings(doc)]
