"""Renderer speed: 10k services x 5 endpoints, one node and 100 nodes sharing work."""

from __future__ import annotations

import time

import pytest
from render_helpers import make_settings

from svcnet.model.types import Endpoint, ServicePort
from svcnet.render.iptables import iter_render_nodes, render_nodes, render_restore

pytestmark = pytest.mark.slow

SERVICES, ENDPOINTS, NODES = 10_000, 5, 100


def _ports(local_every: int) -> list[ServicePort]:
    out = []
    for i in range(SERVICES):
        eps = sorted((Endpoint(ip=f"10.{(i * ENDPOINTS + j) >> 16 & 255}.{(i * ENDPOINTS + j) >> 8 & 255}."
                               f"{(i * ENDPOINTS + j) & 255}", port=8080, node_name=f"n{(i + j) % NODES}")
                      for j in range(ENDPOINTS)), key=lambda e: e.hostport)
        nodeport = i % 10 == 0
        out.append(ServicePort(
            namespace=f"ns{i // 100:03d}", name=f"svc{i:05d}", port_name="http", protocol="TCP", port=80,
            cluster_ip=f"172.16.{i >> 8 & 255}.{i & 255}", type="NodePort" if nodeport else "ClusterIP",
            node_port=30000 + i % 2000 if nodeport else 0, endpoints=tuple(eps),
            external_traffic_policy="Local" if nodeport and local_every and i % local_every == 0 else "Cluster",
        ))
    return out


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def test_one_node_and_hundred_nodes() -> None:
    ports = _ports(local_every=100)
    settings = {f"n{k}": make_settings(node_name=f"n{k}", node_ips=(f"192.168.0.{k + 1}",)) for k in range(NODES)}
    one, t_one = _timed(lambda: render_restore(settings["n0"], ports))
    assert one.count("\n") > 200_000
    assert t_one < 3.0, f"one node took {t_one:.2f}s"
    many, t_many = _timed(lambda: render_nodes(settings, ports))
    assert many["n0"] == one
    assert t_many <= 3 * t_one + 0.3, f"100 nodes {t_many:.2f}s vs one node {t_one:.2f}s"


def test_streaming_all_distinct_nodes() -> None:
    """Every node differs (eTP Local endpoints everywhere): streaming keeps the cost near one node."""
    ports = _ports(local_every=1)
    settings = {f"n{k}": make_settings(node_name=f"n{k}", node_ips=(f"192.168.0.{k + 1}",)) for k in range(NODES)}
    _, t_one = _timed(lambda: render_restore(settings["n0"], ports))
    sizes, t_many = _timed(lambda: {n: len(t) for n, t in iter_render_nodes(settings, ports)})
    assert len(sizes) == NODES
    assert t_many <= 3 * t_one + 0.3, f"100 nodes streamed {t_many:.2f}s vs one node {t_one:.2f}s"
