"""Write a kube-proxy vector as svcnet description files and run the product's whole front half.

`vectors.py` builds the renderer's inputs directly; this module instead writes what a user
would write (a `Cluster` document, `v1 Service` and `discovery.k8s.io/v1 EndpointSlice`
manifests) and runs load → validate → model → desired → render on it, so endpoint merging, the
conditions' defaults, IP handling and the proxy settings are the product's, not test code.

The vector's values are written as they are (no canonicalisation, no defaulting: an omitted
condition stays omitted). The only translations are those every vector needs because the
vectors come from kube-proxy's fake proxier, not from a configuration:

* the fake proxier's mark is the literal `0x4000`; real kube-proxy prints `%#08x` of
  1<<masqueradeBit, `0x00004000` for the bit 14 written here (`MARK_FROM_BIT`);
* the node's podCIDR is not in the vectors (nothing in them depends on it); it is a /24
  inside the detector's clusterCIDR;
* the nodePortRange covers the vector's ports (the fake API has no range).

The vector's spellings stay as written too: IPs and CIDRs with leading zeros (`bad-ips`) and a
space-padded loadBalancerSourceRange (`overall`) go through the schemas and the model as the API
server and kube-proxy read them (issue 12's spelling rules), with located warnings. A LoadBalancer
port without a nodePort is written with `allocateLoadBalancerNodePorts: false`, the only way the
API server stores one.

`rewrites(raw)` lists the few values of a vector that no API server would store, each with the
API rule that refuses it; `describe(raw, rewrite=False)`
writes the vector without them, to show which svcnet rule rejects it. Every vector goes through
the real path: since the API's spelling rules (issue 12) and IPv6 rendering (issue 13) none is left
that only the converter (vectors.py) can express.

An IPv6 vector (kube-proxy's IPv6 proxier) is written as an IPv6 cluster (IPv6 serviceCIDR,
clusterCIDR and podCIDR) whose node keeps the vector's node addresses of both families, and runs
with the IPv6-first gate off (`check_paths(..., ipv6=True)`: svcnet renders an IPv6-first cluster
but refuses to apply one yet); its result is the node's ip6tables-restore input. An IPv4 vector's
IPv6 node addresses and nodePortAddresses stay (the IPv4 proxier filters them out by family).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from svcnet.diagnostics import errors
from svcnet.model.family import IPV4, IPV6
from svcnet.model.load import check_paths
from svcnet.model.types import DETECT_CLUSTER_CIDR, DETECT_NODE_CIDR
from svcnet.render.artifacts import node_artifacts

MARK_FROM_BIT = ("0x00004000", "0x4000")  # (masqueradeBit 14 as kube-proxy prints it, the fake's)
SERVICE_CIDR = {"IPv4": "172.30.0.0/16", "IPv6": "fd00:172:30::/64"}  # around every vector's ClusterIPs
DEFAULT_CLUSTER_CIDR = "10.0.0.0/8"  # the fake proxier's detector CIDR
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

Raw = dict[str, Any]


@dataclass(frozen=True)
class Rewrite:
    """One change to a vector's input, why the real path needs it, and the rule that stops the
    vector as written: an API server rule (the API server would never store the value) or svcnet's own."""

    why: str
    apply: Callable[[Raw], None]
    rule: str


def _service(raw: Raw, ns_name: str) -> Raw:
    ns, name = ns_name.split("/")
    return next(s for s in raw["services"] if (s["namespace"], s["name"]) == (ns, name))


def _set(ns_name: str, key: str, value: Any) -> Callable[[Raw], None]:
    def apply(raw: Raw) -> None:
        svc = _service(raw, ns_name)
        if value is None:
            svc.pop(key, None)
        else:
            svc[key] = value
    return apply


def _needs_health_check(svc: Raw) -> bool:
    """kube-proxy's and the API server's NeedsHealthCheck (eTP defaults to Cluster)."""
    return svc.get("type") == "LoadBalancer" and svc.get("external_traffic_policy") == "Local"


def _stray_health_check_node_ports(raw: Raw) -> list[Raw]:
    return [s for s in raw.get("services") or [] if s.get("health_check_node_port") and not _needs_health_check(s)]


def _drop_stray_health_check_node_ports(raw: Raw) -> None:
    for svc in _stray_health_check_node_ports(raw):
        del svc["health_check_node_port"]


STRAY_HEALTH_CHECK_NODE_PORT = Rewrite(
    "healthCheckNodePort dropped where the Service is not a LoadBalancer with externalTrafficPolicy Local "
    "(overall's ns5/svc5, eTP Cluster): kube-proxy ignores it there (NeedsHealthCheck), and svcnet rejects it "
    "at spec.healthCheckNodePort as the API server does",
    _drop_stray_health_check_node_ports,
    "ValidateService (validateServiceExternalTrafficPolicy): healthCheckNodePort \"may only be set "
    "when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'\"")


# Changes the real path needs, per vector: values the fake proxier takes that no API server stores.
REWRITES: dict[str, tuple[Rewrite, ...]] = {
    "overall": (
        Rewrite("ns4/svc4 is type NodePort with no nodePort. Written as ClusterIP: kube-proxy reads the type "
                "only in ExternalPolicyLocal and NeedsHealthCheck, both false for it, so its rules are the same",
                _set("ns4/svc4", "type", "ClusterIP"),
                "the API server allocates a nodePort to every port of a NodePort Service that has none "
                "(pkg/registry/core/service/storage/alloc.go shouldAllocateNodePorts: NodePort always; "
                "allocateLoadBalancerNodePorts opts out only a LoadBalancer)"),
    ),
}


def rewrites(raw: Raw) -> tuple[Rewrite, ...]:
    """The rewrites the real path needs for this vector (empty for most)."""
    general: tuple[Rewrite, ...] = ()
    if _stray_health_check_node_ports(raw):
        general = (*general, STRAY_HEALTH_CHECK_NODE_PORT)
    return (*general, *REWRITES.get(raw["name"], ()))


def _cluster_doc(raw: Raw) -> Raw:
    p = raw["proxier"]
    family = p.get("ip_family", "IPv4")
    detector = p.get("local_detector") or {}
    mode = {"none": "None"}.get(detector.get("mode", "none"), detector.get("mode", "none"))
    cluster_cidr = detector.get("cidr", DEFAULT_CLUSTER_CIDR) if mode in (DETECT_CLUSTER_CIDR, DETECT_NODE_CIDR) \
        else DEFAULT_CLUSTER_CIDR
    proxy: Raw = {
        "mode": "iptables",
        "detectLocalMode": mode,
        "iptables": {
            "masqueradeBit": 14,
            "masqueradeAll": bool(p.get("masquerade_all", False)),
            "localhostNodePorts": bool(p.get("localhost_nodeports", True)),
        },
    }
    if detector.get("interface"):
        proxy["detectLocal"] = {"bridgeInterface": detector["interface"]}
    if detector.get("prefix"):
        proxy["detectLocal"] = {"interfaceNamePrefix": detector["prefix"]}
    if p.get("nodeport_addresses"):
        proxy["nodePortAddresses"] = list(p["nodeport_addresses"])
    extra = [a for a in p.get("node_interface_addresses") or [] if a != p["node_ip"]]
    counters = [k for k, on in (p.get("nfacct_counters") or {}).items() if on]
    node = {
        "name": p["node_name"],
        "addresses": [p["node_ip"], *extra],
        "podCIDR": _pod_cidr(cluster_cidr),
        "facts": {
            "randomFully": bool(p.get("has_random_fully", False)),
            "nfacctCounters": counters,
            "tcpBeLiberal": bool(p.get("conntrack_tcp_liberal", False)),
        },
    }
    return {
        "apiVersion": "svcnet.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": raw["name"]},
        "spec": {
            "serviceCIDR": SERVICE_CIDR[family],
            "clusterCIDR": cluster_cidr,
            "nodePortRange": _port_range(raw),
            "proxy": proxy,
            "nodes": [node],
        },
    }


def _pod_cidr(cluster_cidr: str) -> str:
    base, _, bits = cluster_cidr.partition("/")
    if ":" in base:
        return f"{base}/{max(int(bits), 64)}"
    return f"{base}/{max(int(bits), 24)}"


def _port_range(raw: Raw) -> str:
    ports = [int(p.get("node_port") or 0) for s in raw.get("services") or [] for p in s.get("ports") or []]
    ports += [int(s.get("health_check_node_port") or 0) for s in raw.get("services") or []]
    ports = [p for p in ports if p]
    return f"{min([*ports, 30000])}-{max([*ports, 32767])}"


def _service_doc(svc: Raw) -> Raw:
    spec: Raw = {}
    if svc.get("type"):
        spec["type"] = svc["type"]
    spec["clusterIP"] = svc["cluster_ip"]
    ports = []
    for port in svc.get("ports") or []:
        out: Raw = {"name": port["name"], "port": port["port"], "protocol": port.get("protocol", "TCP")}
        if port.get("target_port"):
            out["targetPort"] = port["target_port"]
        if port.get("node_port"):
            out["nodePort"] = port["node_port"]
        ports.append(out)
    spec["ports"] = ports
    if svc.get("type") == "LoadBalancer" and not all(p.get("node_port") for p in svc.get("ports") or []):
        spec["allocateLoadBalancerNodePorts"] = False  # else the API server would allocate the missing ones
    for key, field in (("external_ips", "externalIPs"), ("load_balancer_source_ranges", "loadBalancerSourceRanges"),
                       ("external_traffic_policy", "externalTrafficPolicy"),
                       ("internal_traffic_policy", "internalTrafficPolicy"),
                       ("health_check_node_port", "healthCheckNodePort"),
                       ("session_affinity", "sessionAffinity")):
        if svc.get(key):
            spec[field] = svc[key]
    if svc.get("session_affinity_timeout_seconds"):
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": svc["session_affinity_timeout_seconds"]}}
    doc: Raw = {"apiVersion": "v1", "kind": "Service",
                "metadata": {"namespace": svc["namespace"], "name": svc["name"]}, "spec": spec}
    ingress = [{"ip": i["ip"], **({"ipMode": i["ip_mode"]} if i.get("ip_mode") else {})}
               for i in svc.get("load_balancer_ingress") or []]
    if ingress:
        doc["status"] = {"loadBalancer": {"ingress": ingress}}
    return doc


_CONDITIONS = ("ready", "serving", "terminating")


def _endpoint(e: Raw) -> Raw:
    out: Raw = {"addresses": list(e["addresses"])}
    if e.get("node_name"):
        out["nodeName"] = e["node_name"]
    conditions = {k: e[k] for k in _CONDITIONS if k in e}  # omitted stays omitted (nil in Go)
    if conditions:
        out["conditions"] = conditions
    hints: Raw = {}
    if e.get("zone_hints"):
        hints["forZones"] = [{"name": z} for z in e["zone_hints"]]
    if e.get("node_hints"):
        hints["forNodes"] = [{"name": n} for n in e["node_hints"]]
    if hints:
        out["hints"] = hints
    return out


def _slice_doc(sl: Raw) -> Raw:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"namespace": sl["namespace"], "name": sl["name"],
                     "labels": {SERVICE_NAME_LABEL: sl["service"]}},
        "addressType": sl.get("address_type", "IPv4"),
        "ports": [{"name": p["name"], "port": p["port"], "protocol": p.get("protocol", "TCP")}
                  for p in sl.get("ports") or []],
        "endpoints": [_endpoint(e) for e in sl.get("endpoints") or []],
    }


def describe(raw: Raw, rewrite: bool = True) -> tuple[list[Raw], tuple[str, ...]]:
    """The description documents for a vector, and the reasons of the rewrites applied."""
    raw = yaml.safe_load(yaml.safe_dump(raw))  # a deep copy the rewrites may change
    applied = rewrites(raw) if rewrite else ()
    for r in applied:
        r.apply(raw)
    docs = [_cluster_doc(raw)]
    docs += [_service_doc(s) for s in raw.get("services") or []]
    docs += [_slice_doc(sl) for sl in raw.get("endpoint_slices") or []]
    return docs, tuple(r.why for r in applied)


def write(docs: Iterable[Raw], directory: Path) -> Path:
    path = directory / "description.yaml"
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return path


@dataclass(frozen=True)
class RealPath:
    """What the product made of a vector: its errors, or the node's restore input."""

    errors: tuple[str, ...]
    restore: str


def run(raw: Raw, directory: Path, rewrite: bool = True) -> RealPath:
    """load → validate → model → desired → render for the vector's node."""
    docs, _ = describe(raw, rewrite)
    checked = check_paths([write(docs, directory)], ipv6=_family(raw) == IPV6)
    found = tuple(f"{d.path}: {d.message}" for d in errors(checked.diagnostics))
    if found or checked.build is None:
        return RealPath(found, "")
    cluster = checked.build.cluster
    stale = (raw.get("sync") or {}).get("existing_nat_chains") or ()
    restore = node_artifacts(cluster, raw["proxier"]["node_name"], stale).restore_of(_family(raw))
    assert restore is not None, "the node has no proxier of the vector's family"
    return RealPath((), restore.replace(*MARK_FROM_BIT))


def _family(raw: Raw) -> int:
    return IPV6 if raw["proxier"].get("ip_family", "IPv4") == "IPv6" else IPV4
