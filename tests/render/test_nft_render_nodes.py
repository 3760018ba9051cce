"""nftables `render_nodes` (per-port blocks shared between nodes, node-dependent ports once per
variant) gives every node exactly the table `render_buffers` / `render_script` give it alone."""

from __future__ import annotations

from pathlib import Path

from render_helpers import make_port, make_settings

from svcnet.desired import desired_nodes
from svcnet.model.load import load_cluster
from svcnet.model.types import DETECT_NODE_CIDR, Endpoint, LocalDetector
from svcnet.render import nftables
from svcnet.render.artifacts import node_artifacts_all
from svcnet.render.chains import nft_port_chains


def _ep(ip: str, node: str, **kw: object) -> Endpoint:
    return Endpoint(ip=ip, port=80, node_name=node, **kw)  # type: ignore[arg-type]


PORTS = [
    make_port(name="a", eps=2),
    # Two ports of one Service: its ClusterIP element once, however the ports are split into blocks.
    make_port(name="a2", port_name="p80", eps=1, cluster_ip="172.30.0.50"),
    make_port(name="a2", port_name="p81", port=81, endpoints=(_ep("10.180.0.9", "n1"),), cluster_ip="172.30.0.50",
              internal_traffic_policy="Local"),
    make_port(name="b", endpoints=(_ep("10.180.0.1", "n1"), _ep("10.180.0.2", "n2")), type="LoadBalancer",
              node_port=3001, lb_ips=("5.6.7.8",), external_traffic_policy="Local",
              lb_source_ranges=("192.168.0.0/30",), health_check_node_port=30001, affinity_timeout=60),
    make_port(name="c", endpoints=(_ep("10.180.0.3", "n3"), _ep("10.180.0.4", "n3", ready=False, terminating=True)),
              internal_traffic_policy="Local"),
    # Only a serving-terminating endpoint on n2: its local list falls back to it.
    make_port(name="t", endpoints=(_ep("10.180.0.5", "n2", ready=False, terminating=True),),
              type="NodePort", node_port=3002, external_traffic_policy="Local"),
    make_port(name="d", eps=1, affinity_timeout=60),
    # Zone hints on every ready endpoint: n1 and n10 (za) get 10.180.0.6, n4 (zb) 10.180.0.7, nodes
    # of no hinted zone both.
    make_port(name="h", endpoints=(_ep("10.180.0.6", "n1", zone_hints=frozenset({"za"})),
                                   _ep("10.180.0.7", "n4", zone_hints=frozenset({"zb"})))),
    # Node hints (PreferSameNode) under an external Local policy: n1 and n2 each balance over their
    # own endpoint, n3 (no hint names it) over both ready ones.
    make_port(name="hn", endpoints=(_ep("10.180.0.10", "n1", node_hints=frozenset({"n1"})),
                                    _ep("10.180.0.11", "n2", node_hints=frozenset({"n2"})),
                                    _ep("10.180.0.12", "n3", ready=False, terminating=True)),
              type="NodePort", node_port=3005, external_traffic_policy="Local"),
    # Incomplete hints (one ready endpoint has none): every node gets both.
    make_port(name="hp", endpoints=(_ep("10.180.0.13", "n1", zone_hints=frozenset({"za"})), _ep("10.180.0.14", "n4"))),
    make_port(name="e", type="LoadBalancer", node_port=3003, lb_ips=("5.6.7.9",), lb_source_ranges=("192.168.0.4/32",),
              external_ips=("198.51.100.1",)),  # no endpoints: firewall chain and rejects
    make_port(name="f", eps=3, type="NodePort", node_port=3004),
]

SETTINGS = {
    "n1": make_settings(node_name="n1", node_ips=("192.168.0.1",), zone="za"),
    "n2": make_settings(node_name="n2", node_ips=("192.168.0.9",)),
    "n3": make_settings(node_name="n3", node_ips=("192.168.0.3",), nodeport_addresses=("192.168.0.0/24",)),
    "n4": make_settings(node_name="n4", node_ips=("192.168.0.4",), zone="zb",
                        local_detector=LocalDetector(mode=DETECT_NODE_CIDR, cidr="10.244.4.0/24")),
    "n5": make_settings(node_name="n5", node_ips=("192.168.0.5",), masquerade_all=True),
    "n6": make_settings(node_name="n6", node_ips=("192.168.0.6",)),
    "n7": make_settings(node_name="n7", node_ips=("192.168.0.7",)),
    # Differs from n6 only in its fixed objects (nodeport-ips): no port of it is node-dependent.
    "n9": make_settings(node_name="n9", node_ips=("192.168.0.10",), nodeport_addresses=("192.168.0.0/24",)),
    "n8": make_settings(node_name="n8", node_ips=("fd00::8",), ip_family=6, service_cidrs=()),
    # Differs from n6 only in its zone: its hinted ports are za's.
    "n10": make_settings(node_name="n10", node_ips=("192.168.0.11",), zone="za"),
}


def _vmap_targets(table: str, port_name: str) -> list[str]:
    """The endpoint IPs a service chain's numgen vmap balances over."""
    chain = nft_port_chains(next(p for p in PORTS if p.name == port_name))[0]
    lines = [ln for ln in table.splitlines() if ln.startswith(f"add rule ip kube-proxy {chain} numgen ")]
    assert len(lines) == 1, lines
    return [t.split("__")[1].split("/")[0] for t in lines[0].split("goto ")[1:]]


def test_render_nodes_equals_each_node_rendered_alone() -> None:
    ports = [*PORTS, make_port(name="v6", cluster_ip="fd00:30::1",
                               endpoints=(_ep("fd00:10::1", "n8"),), internal_traffic_policy="Local")]
    # n2 holds a chain of a gone service and one this render writes (not repeated).
    stale = {"n2": ("service-ZZZZZZZZ-ns1/gone/tcp/p80", nft_port_chains(PORTS[0])[0]), "n8": ("bogus",)}
    together = nftables.render_nodes(SETTINGS, ports, stale)
    tables = nftables.render_tables(SETTINGS, ports, stale)
    assert list(together) == list(tables) == list(SETTINGS)
    for node, s in SETTINGS.items():
        alone = nftables.render_buffers(s, ports, stale.get(node, ()))
        assert together[node].dump() == alone.dump(), node
        assert tables[node] == alone.dump(), node
        if node not in stale:
            assert nftables.script(node, tables[node], s.ip_family) == nftables.render_script(s, ports), node
    # Identical nodes share one table; every setting that differs gives a different one.
    assert together["n6"] is together["n7"] and tables["n6"] is tables["n7"]
    distinct = [tables[n] for n in ("n1", "n2", "n3", "n4", "n5", "n6", "n8", "n9", "n10")]
    assert len(set(distinct)) == len(distinct)
    assert "add chain ip kube-proxy service-ZZZZZZZZ-ns1/gone/tcp/p80\n" in tables["n2"]
    assert tables["n2"].count(f"add chain ip kube-proxy {nft_port_chains(PORTS[0])[0]}\n") == 1
    # Topology: each node's cluster endpoints (CategorizeEndpoints), not every node's.
    assert _vmap_targets(tables["n1"], "h") == _vmap_targets(tables["n10"], "h") == ["10.180.0.6"]
    assert _vmap_targets(tables["n4"], "h") == ["10.180.0.7"]
    assert _vmap_targets(tables["n6"], "h") == ["10.180.0.6", "10.180.0.7"]
    assert _vmap_targets(tables["n2"], "hn") == ["10.180.0.11"]
    assert _vmap_targets(tables["n1"], "hn") == ["10.180.0.10"]
    assert _vmap_targets(tables["n3"], "hn") == ["10.180.0.10", "10.180.0.11"]
    assert "10.180.0.10/80" in tables["n1"] and "10.180.0.10/80" not in tables["n2"]
    assert _vmap_targets(tables["n1"], "hp") == _vmap_targets(tables["n4"], "hp") == ["10.180.0.13", "10.180.0.14"]


def test_node_dependent_ports_are_rendered_once_per_variant(monkeypatch) -> None:
    """Per-node work is the assembly: a port every node shares is written once for all of them."""
    written: list[str] = []
    real = nftables._write_port

    def spy(ctx, port, local_eps, allow, w, cluster=None):  # type: ignore[no-untyped-def]
        written.append(port.spn)
        real(ctx, port, local_eps, allow, w, cluster)

    monkeypatch.setattr(nftables, "_write_port", spy)
    many = {f"m{i}": make_settings(node_name=f"m{i}", node_ips=(f"192.168.1.{i + 1}",)) for i in range(20)}
    ports = [make_port(name="shared", eps=2),
             make_port(name="local", endpoints=(_ep("10.180.0.1", "m3"),), internal_traffic_policy="Local")]
    tables = nftables.render_tables(many, ports)
    assert written.count("ns1/shared:p80") == 1
    assert written.count("ns1/local:p80") == 2  # m3's variant and every other node's
    assert len({id(t) for t in tables.values()}) == 2


def test_topology_variants_are_rendered_once_per_zone(monkeypatch) -> None:
    """A hinted port is written once per distinct cluster-endpoint choice, not once per node."""
    written: list[str] = []
    real = nftables._write_port

    def spy(ctx, port, local_eps, allow, w, cluster=None):  # type: ignore[no-untyped-def]
        written.append(port.spn)
        real(ctx, port, local_eps, allow, w, cluster)

    monkeypatch.setattr(nftables, "_write_port", spy)
    many = {f"m{i}": make_settings(node_name=f"m{i}", node_ips=(f"192.168.1.{i + 1}",), zone=("za", "zb", "zc")[i % 3])
            for i in range(21)}
    ports = [make_port(name="zoned", endpoints=(_ep("10.180.0.1", "m0", zone_hints=frozenset({"za"})),
                                                _ep("10.180.0.2", "m1", zone_hints=frozenset({"zb"}))))]
    tables = nftables.render_tables(many, ports)
    assert written.count("ns1/zoned:p80") == 3  # the default (zc: both endpoints), za's, zb's
    assert len({id(t) for t in tables.values()}) == 3
    for node, s in many.items():
        assert tables[node] == nftables.render_buffers(s, ports).dump(), node


DESCRIPTION = """\
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: nft-nodes}
spec:
  serviceCIDR: 10.96.0.0/12
  clusterCIDR: 10.244.0.0/16
  proxy: {mode: nftables, detectLocalMode: ClusterCIDR, nodePortAddresses: [192.168.56.0/24]}
  nodes:
    - {name: node1, addresses: [192.168.56.11], podCIDR: 10.244.1.0/24, zone: zone-a}
    - {name: node2, addresses: [192.168.57.12], podCIDR: 10.244.2.0/24, zone: zone-b}
    - {name: node3, addresses: [192.168.56.13], podCIDR: 10.244.3.0/24, zone: zone-b}
    - {name: node4, addresses: [192.168.56.14], podCIDR: 10.244.4.0/24, zone: zone-a}
---
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: ns1}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  externalTrafficPolicy: Local
  loadBalancerSourceRanges: [198.51.100.0/24, 192.168.56.0/25]
  ports:
    - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
status:
  loadBalancer:
    ingress: [{ip: 203.0.113.10}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lb-1, namespace: ns1, labels: {kubernetes.io/service-name: lb}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - {addresses: [10.244.1.5], nodeName: node1}
  - {addresses: [10.244.2.5], nodeName: node2}
---
apiVersion: v1
kind: Service
metadata: {name: internal, namespace: ns1}
spec:
  clusterIP: 10.96.0.11
  internalTrafficPolicy: Local
  ports:
    - {name: http, port: 80, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: internal-1, namespace: ns1, labels: {kubernetes.io/service-name: internal}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - {addresses: [10.244.3.5], nodeName: node3}
---
apiVersion: v1
kind: Service
metadata: {name: zoned, namespace: ns1}
spec:
  type: NodePort
  clusterIP: 10.96.0.12
  ports:
    - {name: http, port: 80, targetPort: 8080, nodePort: 30081}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: zoned-1, namespace: ns1, labels: {kubernetes.io/service-name: zoned}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - {addresses: [10.244.1.6], nodeName: node1, zone: zone-a, hints: {forZones: [{name: zone-a}]}}
  - {addresses: [10.244.2.6], nodeName: node2, zone: zone-b, hints: {forZones: [{name: zone-b}]}}
"""


def test_description_through_the_real_path_equals_single_node_renders(tmp_path: Path) -> None:
    desc = tmp_path / "desc.yaml"
    desc.write_text(DESCRIPTION)
    cluster = load_cluster([desc])
    arts = node_artifacts_all(cluster)
    settings = {name: d.proxier for name, d in desired_nodes(cluster, None).items()}
    assert sorted(arts) == ["node1", "node2", "node3", "node4"]
    for name, s in settings.items():
        assert arts[name].nft == nftables.render_script(s, cluster.service_ports), name
        assert arts[name].nft_table == nftables.render_buffers(s, cluster.service_ports).dump(), name
    # Each node's own variant: local endpoints, its IP in a source range or not, nodeport-ips.
    assert len({arts[n].nft_table for n in arts}) == 4
    assert "add element ip kube-proxy nodeport-ips { 192.168.56.11 }" in arts["node1"].nft_table
    assert "add element ip kube-proxy nodeport-ips" not in arts["node2"].nft_table  # not in 192.168.56.0/24

