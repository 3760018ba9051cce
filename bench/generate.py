"""Generated descriptions for the benchmarks: Services with EndpointSlices, and a Cluster."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence

FIRST_CLUSTER_IP = ipaddress.ip_address("10.96.0.10")


def cluster_yaml(name: str, cluster_cidr: str, nodes: Sequence[tuple[str, str, str]]) -> str:
    """A Cluster document; nodes are (name, address, podCIDR)."""
    out = [f"apiVersion: svcnet.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: {name}\nspec:\n"
           f"  serviceCIDR: 10.96.0.0/12\n  clusterCIDR: {cluster_cidr}\n  nodes:\n"]
    out += [f"    - name: {n}\n      addresses: [{addr}]\n      podCIDR: {cidr}\n" for n, addr, cidr in nodes]
    return "".join(out)


def services_yaml(n_services: int, endpoints: int, place: Callable[[int], tuple[str, str]]) -> str:
    """n_services Services (every tenth a NodePort) in namespace `bench`, each with one EndpointSlice
    of `endpoints` ready endpoints; `place(k)` gives endpoint k's (IP, nodeName)."""
    out = []
    for s in range(n_services):
        name = f"svc-{s:05d}"
        typ = "NodePort" if s % 10 == 0 else "ClusterIP"
        out.append(
            f"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: bench\n"
            f"spec:\n  type: {typ}\n  clusterIP: {FIRST_CLUSTER_IP + s}\n"
            f"  ports:\n    - name: http\n      protocol: TCP\n      port: 80\n      targetPort: 8080\n"
        )
        out.append(
            f"---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-1\n"
            f"  namespace: bench\n  labels:\n    kubernetes.io/service-name: {name}\n"
            f"addressType: IPv4\nports:\n  - name: http\n    port: 8080\n    protocol: TCP\nendpoints:\n"
        )
        for e in range(endpoints):
            ip, node = place(s * endpoints + e)
            out.append(f"  - addresses: [{ip}]\n    nodeName: {node}\n    conditions: {{ready: true}}\n")
    return "".join(out)
