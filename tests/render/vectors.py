"""Convert kube-proxy test vectors (tests/render/kube-proxy-vectors, a copy of the shared reference's
kube-proxy-vectors, which were copied from kube-proxy's own unit tests) into svcnet's model.

`load_vector(name)` returns a `Vector` with `ProxierSettings`, the sorted `ServicePort`s, the stale
chains, the expectation text and the upstream packet-flow tests (kept for the tracer tests).
IPs and CIDRs are canonicalised the way Go's `ParseIPSloppy` does (leading zeros are decimal).

This builds the renderer's inputs directly, beside the product's front half, so it is used only
where the product's front half is not the subject (the agent's acceptance of every rendered
vector, the nftables vectors the real path cannot express yet) and by the packet tracer's
tests. An omitted endpoint condition is read as kube-proxy reads it (endpointslicecache.go:
ready and serving true, terminating false), as the model does.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from svcnet.model.types import (
    CLUSTER_IP,
    DETECT_BRIDGE,
    DETECT_CLUSTER_CIDR,
    DETECT_IFACE_PREFIX,
    DETECT_NODE_CIDR,
    DETECT_NONE,
    Endpoint,
    LocalDetector,
    NodeFacts,
    ProxierSettings,
    ServicePort,
)

# Kept in the repository so a fresh clone runs every golden test (see the directory's README).
VECTOR_DIR = Path(__file__).resolve().parent / "kube-proxy-vectors"
DEFAULT_AFFINITY_TIMEOUT = 10800


@dataclass(frozen=True)
class PacketFlow:
    """One upstream packet-tracer expectation."""

    name: str
    source_ip: str
    dest_ip: str
    dest_port: int
    protocol: str
    output: str
    masq: bool


@dataclass(frozen=True)
class Vector:
    name: str
    settings: ProxierSettings
    ports: list[ServicePort]
    stale_chains: tuple[str, ...]
    sync_mode: str
    expect_scope: tuple[str, str] | None  # (table, chain) or None for the full restore input
    expected: str
    packet_flow_tests: tuple[PacketFlow, ...]
    tracer_local_ips: tuple[str, ...]
    raw: dict[str, Any]


def vector_dir() -> Path:
    """The vectors directory (part of the repository: its absence is an error, not a skip)."""
    if not VECTOR_DIR.is_dir():
        raise FileNotFoundError(f"kube-proxy vectors missing at {VECTOR_DIR}")
    return VECTOR_DIR


def vector_names() -> list[str]:
    """All vector names."""
    return sorted(p.name.removesuffix(".input.yaml") for p in vector_dir().glob("*.input.yaml"))


def canonical_ip(text: str) -> str:
    """Go `ParseIPSloppy(...).String()`: IPv4 octets with leading zeros are read as decimal."""
    text = str(text).strip()
    if ":" not in text and "." in text:
        parts = text.split(".")
        if len(parts) == 4 and all(p.isdigit() for p in parts):
            text = ".".join(str(int(p)) for p in parts)
    return str(ipaddress.ip_address(text))


def canonical_cidr(text: str) -> str:
    """Go `ParseCIDRSloppy` network, printed canonically: `203.0.113.000/025` -> `203.0.113.0/25`."""
    addr, _, prefix = str(text).strip().partition("/")
    return str(ipaddress.ip_network(f"{canonical_ip(addr)}/{int(prefix)}", strict=False))


def _family(ip: str) -> int:
    return 6 if ":" in ip else 4


def _detector(raw: dict[str, Any] | None) -> LocalDetector:
    raw = raw or {}
    mode = str(raw.get("mode", "none"))
    if mode in (DETECT_CLUSTER_CIDR, DETECT_NODE_CIDR):
        return LocalDetector(mode=mode, cidr=canonical_cidr(raw["cidr"]))
    if mode == DETECT_BRIDGE:
        return LocalDetector(mode=mode, interface=raw["interface"])
    if mode == DETECT_IFACE_PREFIX:
        return LocalDetector(mode=mode, interface=raw["prefix"])
    return LocalDetector(mode=DETECT_NONE)


def _settings(p: dict[str, Any]) -> ProxierSettings:
    family = 6 if p.get("ip_family") == "IPv6" else 4
    node_ip = canonical_ip(p["node_ip"])
    extra = [canonical_ip(a) for a in p.get("node_interface_addresses") or []]
    counters = frozenset(k for k, v in (p.get("nfacct_counters") or {}).items() if v)
    return ProxierSettings(
        node_name=p["node_name"],
        node_ips=(node_ip, *(a for a in extra if a != node_ip)),
        masquerade_mark=str(p.get("masquerade_mark", "0x4000")),
        masquerade_all=bool(p.get("masquerade_all", False)),
        local_detector=_detector(p.get("local_detector")),
        localhost_nodeports=bool(p.get("localhost_nodeports", True)),
        nodeport_addresses=tuple(canonical_cidr(c) for c in p.get("nodeport_addresses") or []),
        facts=NodeFacts(
            random_fully=bool(p.get("has_random_fully", False)),
            nfacct_counters=counters,
            tcp_be_liberal=bool(p.get("conntrack_tcp_liberal", False)),
        ),
        ip_family=family,
        large_cluster_threshold=int(p.get("large_cluster_endpoints_threshold", 1000)),
    )


def _endpoints(svc: dict[str, Any], port: dict[str, Any], slices: list[dict[str, Any]], family: int
               ) -> tuple[Endpoint, ...]:
    """Endpoints for one service port, merged over slices, deduplicated and sorted (ESC)."""
    by_hp: dict[str, Endpoint] = {}
    protocol = port.get("protocol", "TCP")
    for sl in slices:
        if (sl["namespace"], sl["service"]) != (svc["namespace"], svc["name"]):
            continue
        if (6 if sl.get("address_type") == "IPv6" else 4) != family:
            continue
        for sp in sl.get("ports") or []:
            if (sp.get("name") or "") != (port.get("name") or "") or sp.get("protocol", "TCP") != protocol:
                continue
            for e in sl.get("endpoints") or []:
                ip = canonical_ip(e["addresses"][0])
                ready = e.get("ready", True)
                ep = Endpoint(
                    ip=ip, port=int(sp["port"]), node_name=e.get("node_name"),
                    ready=bool(ready), serving=bool(e.get("serving", True)),
                    terminating=bool(e.get("terminating", False)),
                )
                old = by_hp.get(ep.hostport)
                if old is None or (old.terminating and not ep.terminating):
                    by_hp[ep.hostport] = ep
    return tuple(by_hp[hp] for hp in sorted(by_hp))


def _service_ports(raw: dict[str, Any], family: int) -> list[ServicePort]:
    out: list[ServicePort] = []
    slices = raw.get("endpoint_slices") or []
    for svc in raw.get("services") or []:
        stype = svc.get("type") or CLUSTER_IP
        cip = svc.get("cluster_ip")
        if stype == "ExternalName" or not cip or cip == "None":
            continue
        cip = canonical_ip(cip)
        if _family(cip) != family:
            continue
        ext_ips = tuple(canonical_ip(i) for i in svc.get("external_ips") or [])
        lb_ips = tuple(
            canonical_ip(i["ip"]) for i in svc.get("load_balancer_ingress") or []
            if i.get("ip") and i.get("ip_mode", "VIP") != "Proxy"
        )
        ranges = tuple(canonical_cidr(r) for r in svc.get("load_balancer_source_ranges") or [])
        affinity = None
        if svc.get("session_affinity") == "ClientIP":
            affinity = int(svc.get("session_affinity_timeout_seconds") or DEFAULT_AFFINITY_TIMEOUT)
        for port in svc.get("ports") or []:
            out.append(ServicePort(
                namespace=svc["namespace"], name=svc["name"], port_name=port.get("name") or "",
                protocol=port.get("protocol", "TCP"), port=int(port["port"]), cluster_ip=cip,
                type=stype, target_port=port.get("target_port") or int(port["port"]),
                node_port=int(port.get("node_port") or 0),
                external_ips=tuple(i for i in ext_ips if _family(i) == family),
                lb_ips=tuple(i for i in lb_ips if _family(i) == family),
                lb_source_ranges=tuple(r for r in ranges if _family(r) == family),
                external_traffic_policy=svc.get("external_traffic_policy") or "Cluster",
                internal_traffic_policy=svc.get("internal_traffic_policy") or "Cluster",
                health_check_node_port=int(svc.get("health_check_node_port") or 0),
                affinity_timeout=affinity,
                endpoints=_endpoints(svc, port, slices, family),
            ))
    out.sort(key=lambda sp: (sp.namespace, sp.name, sp.port_name, sp.protocol))
    return out


def convert(raw: dict[str, Any], expected: str = "") -> Vector:
    """Turn one parsed `*.input.yaml` document into a `Vector`."""
    settings = _settings(raw["proxier"])
    sync = raw.get("sync") or {}
    scope = raw.get("expect_scope")
    flows = tuple(
        PacketFlow(name=f["name"], source_ip=f["source_ip"], dest_ip=f["dest_ip"],
                   dest_port=int(f["dest_port"]), protocol=f.get("protocol", "TCP"),
                   output=f.get("output") or "", masq=bool(f.get("masq", False)))
        for f in raw.get("packet_flow_tests") or []
    )
    return Vector(
        name=raw["name"],
        settings=settings,
        ports=_service_ports(raw, settings.ip_family),
        stale_chains=tuple(sync.get("existing_nat_chains") or ()),
        sync_mode=sync.get("mode", "full"),
        expect_scope=tuple(scope.split("/", 1)) if scope else None,  # type: ignore[arg-type]
        expected=expected,
        packet_flow_tests=flows,
        tracer_local_ips=tuple(raw.get("tracer_local_ips") or ()),
        raw=raw,
    )


def load_vector(name: str) -> Vector:
    """Load `NAME.input.yaml` + `NAME.expected.rules` (skips the test if the vectors are absent)."""
    base = vector_dir()
    raw = yaml.safe_load((base / f"{name}.input.yaml").read_text())
    expected_path = base / f"{name}.expected.rules"
    expected = expected_path.read_text() if expected_path.exists() else ""
    return convert(raw, expected)
