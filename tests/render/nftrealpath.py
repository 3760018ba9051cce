"""Write a kube-proxy nftables vector as svcnet description files and run the product's front half.

The nftables vectors (tests/render/kube-proxy-nft-vectors, a copy of the shared reference's
kube-proxy-nft-vectors, copied from kube-proxy's nftables unit tests) share the iptables vectors'
input schema, so they are written as description files by `realpath.describe` (same translations,
same rewrites: `overall` and `bad-ips` are the same upstream scenarios in both modes) with
`proxy.mode: nftables`, the masquerade settings in `proxy.nftables`, and the vector's ServiceCIDR.
`run` then goes load → validate → model → desired → render for the vector's node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import realpath
import yaml

from svcnet.diagnostics import errors
from svcnet.model.load import check_paths
from svcnet.render.artifacts import node_artifacts

NFT_VECTOR_DIR = Path(__file__).resolve().parent / "kube-proxy-nft-vectors"

# Vectors the real path cannot express, and a regex every error svcnet reports matches.
CANNOT_EXPRESS: dict[str, tuple[str, str]] = {
    **{name: ("an IPv6-only cluster: refused until a lab test applies one (svcnet.model.semantic.ipv6)",
              "IPv6 as a cluster.s first or only family is not supported yet")
       for name in ("nodeports-ipv6", "nodeports-ipv6-multiple-npa")},
}


def names() -> list[str]:
    return sorted(p.name.removesuffix(".input.yaml") for p in NFT_VECTOR_DIR.glob("*.input.yaml"))


def raw(name: str) -> realpath.Raw:
    return yaml.safe_load((NFT_VECTOR_DIR / f"{name}.input.yaml").read_text())


def expected(name: str) -> str:
    """The upstream dump in canonical order, without its final newline."""
    return (NFT_VECTOR_DIR / f"{name}.expected.nft").read_text().removesuffix("\n")


# Changes the real path needs beyond realpath.rewrites, per nftables vector, each with its reason.
# (None since svcnet accepts space-padded loadBalancerSourceRanges as the API server does.)
REWRITES: dict[str, tuple[realpath.Rewrite, ...]] = {}


def rewrites(vec: realpath.Raw) -> tuple[realpath.Rewrite, ...]:
    return (*realpath.rewrites(vec), *REWRITES.get(vec["name"], ()))


def _drop_empty_port_names(doc: realpath.Raw) -> None:
    """A port named "" is an unnamed port: written without `name`, as the API server returns it."""
    ports = doc.get("ports") if doc["kind"] == "EndpointSlice" else doc["spec"].get("ports")
    for port in ports or ():
        if port.get("name") == "":
            del port["name"]


def describe(vec: realpath.Raw, rewrite: bool = True) -> list[realpath.Raw]:
    vec = yaml.safe_load(yaml.safe_dump(vec))  # a deep copy the rewrites may change
    for r in REWRITES.get(vec["name"], ()) if rewrite else ():
        r.apply(vec)
    docs, _ = realpath.describe(vec, rewrite)
    for doc in docs[1:]:
        _drop_empty_port_names(doc)
    spec = docs[0]["spec"]
    p = vec["proxier"]
    proxy = spec["proxy"]
    proxy["mode"] = "nftables"
    proxy.pop("iptables", None)
    proxy["nftables"] = {"masqueradeBit": 14, "masqueradeAll": bool(p.get("masquerade_all", False))}
    family = p.get("ip_family", "IPv4")
    cidrs = p.get("service_cidrs") or []
    # Every vector's ClusterIPs lie in the fake proxier's one ServiceCIDR, which the Cluster names.
    assert cidrs == [realpath.SERVICE_CIDR[family]] or family == "IPv6", cidrs
    return docs


@dataclass(frozen=True)
class NftResult:
    """What the product made of a vector: its errors, or the node's nft script and table."""

    errors: tuple[str, ...]
    script: str
    table: str


def run(vec: realpath.Raw, directory: Path, rewrite: bool = True) -> NftResult:
    """load → validate (below the nftables gate) → model → desired → render for the vector's node."""
    checked = check_paths([realpath.write(describe(vec, rewrite), directory)])
    found = tuple(f"{d.path}: {d.message}" for d in errors(checked.diagnostics))
    if found or checked.build is None:
        return NftResult(found, "", "")
    stale = (vec.get("sync") or {}).get("stale_chains") or ()
    art = node_artifacts(checked.build.cluster, vec["proxier"]["node_name"], stale)
    mark = realpath.MARK_FROM_BIT
    return NftResult((), art.nft.replace(*mark), art.nft_table.replace(*mark))
