"""Pods and Deployment replicas: their node, their IP, and how their process runs."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from svcnet.diagnostics import Diagnostic
from svcnet.model import security
from svcnet.model.build import Build, PodOrigin
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


def _ip(pod: Pod, origin: PodOrigin, node: Node | None, owners: dict[str, str]) -> Iterator[Diagnostic]:
    """A pod's IP: allocated, or given inside its node's podCIDR and allowed as an endpoint (it
    becomes one); unique across pods (`owners`: IP -> the first pod that has it)."""
    if node is not None and not pod.ip:
        yield origin.diag(NODE_NAME, f"node {node.name}'s podCIDR {node.pod_cidr} has no free address")
    if not pod.ip:
        return
    if pod.ip_given and node is not None and not in_net(pod.ip, ipaddress.ip_network(node.pod_cidr)):
        yield origin.diag(POD_IP, f"pod IP {pod.ip} lies outside node {node.name}'s podCIDR {node.pod_cidr}")
    why = special_address(pod.ip) if pod.ip_given else None
    if why:
        yield origin.diag(POD_IP, f"pod IP {pod.ip} {why}")
    if pod.ip in owners:
        yield origin.diag(POD_IP, f"pod IP {pod.ip} is also used by pod {owners[pod.ip]}")
    owners.setdefault(pod.ip, f"{pod.namespace}/{pod.name}")


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
