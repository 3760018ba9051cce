"""Renderer at scale (10k services x 5 endpoints, 100 nodes): same output per node however it is
rendered, and work shared between nodes. Timings live in bench/render_bench.py, not here."""

from __future__ import annotations

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


def _settings() -> dict:
    return {f"n{k}": make_settings(node_name=f"n{k}", node_ips=(f"192.168.0.{k + 1}",)) for k in range(NODES)}


def test_hundred_nodes_equal_one_node_renders_and_share_identical_output() -> None:
    ports = _ports(local_every=0)  # nothing node-dependent: every node gets the same rules
    settings = _settings()
    one = render_restore(settings["n0"], ports)
    assert one.count("\n") > 200_000
    many = render_nodes(settings, ports)
    assert many["n0"] == one
    assert len({id(text) for text in many.values()}) == 1  # rendered once, shared by all 100 nodes


def test_streaming_distinct_nodes_matches_single_renders() -> None:
    """eTP Local everywhere: every node differs; streaming gives each node its own full render."""
    ports = _ports(local_every=1)
    settings = _settings()
    streamed = dict(iter_render_nodes(settings, ports))
    assert list(streamed) == list(settings)
    for name in ("n0", "n37", "n99"):
        assert streamed[name] == render_restore(settings[name], ports)
    assert streamed["n0"] != streamed["n1"]
