"""Pods and Deployment replicas: their node, their IP, and how their process runs."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator

from svcnet.diagnostics import Diagnostic, PathT
from svcnet.model import security
from svcnet.model.build import Build, PodOrigin
from svcnet.model.dualstack import FAMILY_NAMES
from svcnet.model.family import family_of
from svcnet.model.semantic.addresses import in_net, special_address
from svcnet.model.types import Node, Pod

NODE_NAME = ("spec", "nodeName")
POD_IP = ("status", "podIP")


def _node(pod: Pod, origin: PodOrigin, node: Node | None) -> Iterator[Diagnostic]:
    """A pod runs on a declared node. A Pod without nodeName is reported at its spec (the field
    is missing there); a Deployment's at its template's nodeName, which it would set."""
    if not pod.node_name:
        yield origin.diag(NODE_NAME if origin.base else ("spec",), f"pod {pod.name} has no spec.nodeName")
    elif node is None:
        yield origin.diag(NODE_NAME, f"pod {pod.name} is on undeclared node {pod.node_name!r}")


def _ip_path(pod: Pod, origin: PodOrigin, ip: str) -> PathT:
    """Where a pod's IP is written: status.podIPs[i].ip when podIPs gives it, else status.podIP."""
    status = origin.doc.obj.get("status") if not origin.base else None
    written = [i.get("ip") for i in (status or {}).get("podIPs") or () if isinstance(i, dict)]
    if written and ip in pod.given_ips:
        return ("status", "podIPs", pod.given_ips.index(ip), "ip")
    return POD_IP


def _given(pod: Pod, origin: PodOrigin) -> Iterator[Diagnostic]:
    """status.podIPs as Pod validation takes them: podIP first, at most one per family."""
    status = origin.doc.obj.get("status") if not origin.base else None
    podip = (status or {}).get("podIP")
    if len(pod.given_ips) > 1 and len({family_of(ip) for ip in pod.given_ips}) < len(pod.given_ips):
        yield origin.diag(("status", "podIPs"), f"Invalid value: {json.dumps(list(pod.given_ips))}: "
                                                "may specify no more than one IP for each IP family")
    written = [i.get("ip") for i in (status or {}).get("podIPs") or () if isinstance(i, dict)]
    if podip and written and written[0] != podip:
        yield origin.diag(("status", "podIPs", 0, "ip"), f"Invalid value: {json.dumps(written[0])}: "
                                                         "first value must match `podIP`")


def _ip(pod: Pod, origin: PodOrigin, node: Node | None, owners: dict[str, str]) -> Iterator[Diagnostic]:
    """A pod's IPs, one per podCIDR of its node: allocated, or given inside its node's podCIDR of
    their family and allowed as endpoints (they become ones); unique across pods (`owners`: IP ->
    the first pod that has it)."""
    yield from _given(pod, origin)
    if node is not None:
        for cidr in node.all_pod_cidrs:
            if not any(family_of(ip) == family_of(cidr) for ip in pod.all_ips):
                yield origin.diag(NODE_NAME, f"node {node.name}'s podCIDR {cidr} has no free address")
    for ip in pod.all_ips:
        path = _ip_path(pod, origin, ip)
        given = ip in pod.given_ips
        if given and node is not None:
            mine = node.pod_cidr_of(family_of(ip))
            if mine is None:
                yield origin.diag(path, f"pod IP {ip}: node {node.name} has no {FAMILY_NAMES[family_of(ip)]} podCIDR")
            elif not in_net(ip, ipaddress.ip_network(mine)):
                yield origin.diag(path, f"pod IP {ip} lies outside node {node.name}'s podCIDR {mine}")
        why = special_address(ip) if given else None
        if why:
            yield origin.diag(path, f"pod IP {ip} {why}")
        if ip in owners:
            yield origin.diag(path, f"pod IP {ip} is also used by pod {owners[ip]}")
        owners.setdefault(ip, f"{pod.namespace}/{pod.name}")


def check_pods(b: Build) -> list[Diagnostic]:
    """Every pod in (namespace, name) order: unique, on a declared node, with a usable IP."""
    out: list[Diagnostic] = []
    nodes = {n.name: n for n in b.cluster.nodes}
    seen: set[tuple[str, str]] = set()
    ip_owners: dict[str, str] = {}
    for pod in b.cluster.pods:
        key = (pod.namespace, pod.name)
        origin = b.pod_origins[key]
        if key in seen:
            out.append(origin.doc.diag(("metadata", "name"), f"duplicate pod {pod.namespace}/{pod.name}"))
        seen.add(key)
        node = nodes.get(pod.node_name)
        out.extend(_node(pod, origin, node))
        out.extend(_ip(pod, origin, node, ip_owners))
    return out


def check_pod_security(b: Build) -> list[Diagnostic]:
    """securityContext problems, once per pod spec (a Deployment's replicas share their template's)."""
    out: list[Diagnostic] = []
    seen: set[tuple[int, tuple[str | int, ...]]] = set()
    for origin in b.pod_origins.values():
        if (id(origin.doc), origin.base) in seen:
            continue
        seen.add((id(origin.doc), origin.base))
        pod_spec = origin.doc.obj
        for part in (*origin.base, "spec"):
            pod_spec = pod_spec.get(part) or {}
        out.extend(origin.diag(("spec", *f.path), f.message, f.severity) for f in security.check(pod_spec))
    return out
