"""Shared builders for the renderer tests (imported as a plain module, not a conftest)."""

from __future__ import annotations

from svcnet.model.types import Endpoint, LocalDetector, NodeFacts, ProxierSettings, ServicePort
from svcnet.render.dump import parse_dump

NODE = "node-a"


def make_settings(**kw) -> ProxierSettings:
    """Fake-proxier-like defaults (mark 0x4000, ClusterCIDR 10.0.0.0/8, no random-fully/nfacct)."""
    base = dict(
        node_name=NODE, node_ips=("192.168.0.2",), masquerade_mark="0x4000",
        local_detector=LocalDetector(cidr="10.0.0.0/8"), facts=NodeFacts(random_fully=False),
    )
    base.update(kw)
    return ProxierSettings(**base)


def make_port(name: str = "svc1", ns: str = "ns1", port_name: str = "p80", eps: int = 1, **kw) -> ServicePort:
    """A TCP port 80 service on 172.30.0.41 with `eps` endpoints 10.180.0.N:80 (sorted)."""
    endpoints = kw.pop("endpoints", None)
    if endpoints is None:
        endpoints = tuple(Endpoint(ip=f"10.180.0.{i + 1}", port=80) for i in range(eps))
    base = dict(namespace=ns, name=name, port_name=port_name, protocol="TCP", port=80,
                cluster_ip="172.30.0.41", endpoints=tuple(endpoints))
    base.update(kw)
    return ServicePort(**base)


def chain_rules(text: str, table: str, chain: str) -> list[str]:
    """`-A CHAIN ...` lines of one chain in write order (empty if the chain is not declared)."""
    found = parse_dump(text).chain(table, chain)
    return [f"-A {chain} {r}" for r in found.rules] if found else []


def chain_names(text: str, table: str) -> list[str]:
    t = parse_dump(text).tables.get(table)
    return list(t.chains) if t else []
