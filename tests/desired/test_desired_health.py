"""Each node's health checks: kube-proxy's healthCheckNodePorts with their local ready endpoint counts."""

from __future__ import annotations

import json
from pathlib import Path

from svcnet.desired import HealthConf, ServiceHealth, desired_nodes
from svcnet.model.load import load_cluster
from svcnet.render.artifacts import HEALTH_FILE, node_artifacts_all

CLUSTER = """\
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: hc}
spec:
  proxy: {PROXY}
  nodes:
    - {name: node1, addresses: [192.168.56.11], podCIDR: 10.244.1.0/24}
    - {name: node2, addresses: [192.168.56.12], podCIDR: 10.244.2.0/24}
"""
SERVICES = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: 30100
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: alt, port: 81, targetPort: 8081}]
---
apiVersion: v1
kind: Service
metadata: {name: spread, namespace: shop}
spec:
  type: LoadBalancer
  selector: {app: web}
  ports: [{port: 82, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: outside, namespace: shop}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  healthCheckNodePort: 30101
  ports: [{port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: outside-1, namespace: shop, labels: {kubernetes.io/service-name: outside}}
addressType: IPv4
ports: [{port: 80}]
endpoints:
  - {addresses: [10.244.1.50], nodeName: node1, conditions: {ready: false}}
  - {addresses: [10.244.1.51], nodeName: node1}
  - {addresses: [10.244.2.50], nodeName: node2, conditions: {ready: false, serving: true, terminating: true}}
"""
POD = """\
---
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: shop, labels: {{app: web}}}}
spec:
  nodeName: {node}
  containers: [{{name: c, ports: [{{containerPort: 8080}}, {{containerPort: 8081}}]}}]
"""


def cluster(tmp_path: Path, proxy: str = "{}", pods: tuple[tuple[str, str], ...] = ()):  # type: ignore[no-untyped-def]
    (tmp_path / "cluster.yaml").write_text(CLUSTER.replace("{PROXY}", proxy))
    (tmp_path / "services.yaml").write_text(SERVICES + "".join(POD.format(name=n, node=nd) for n, nd in pods))
    return load_cluster([tmp_path])


def test_local_ready_endpoints_are_counted_per_service_by_ip(tmp_path: Path) -> None:
    c = cluster(tmp_path, pods=(("a", "node1"), ("b", "node1"), ("c", "node2")))
    health = {name: d.health for name, d in desired_nodes(c).items()}
    # two ports of the same pods count once per pod (kube-proxy squashes by IP); a not-ready or
    # terminating endpoint is not counted; eTP Cluster has no health check
    assert health["node1"] == HealthConf("0.0.0.0:10256", ("0.0.0.0",), (
        ServiceHealth("shop", "outside", 30101, 1), ServiceHealth("shop", "web", 30100, 2)))
    assert health["node2"].services == (ServiceHealth("shop", "outside", 30101, 0),
                                        ServiceHealth("shop", "web", 30100, 1))


def test_node_port_addresses_and_healthz_bind_address(tmp_path: Path) -> None:
    c = cluster(tmp_path, proxy='{healthzBindAddress: "127.0.0.1:10257", nodePortAddresses: [192.168.56.0/24, '
                                '127.0.0.0/8]}')
    conf = desired_nodes(c)["node2"].health
    assert (conf.healthz, conf.listen_ips) == ("127.0.0.1:10257", ("192.168.56.12", "127.0.0.1"))
    (tmp_path / "off").mkdir()
    c = cluster(tmp_path / "off", proxy='{healthzBindAddress: "", nodePortAddresses: [10.0.0.0/8]}')
    assert desired_nodes(c)["node1"].health.healthz == "" and desired_nodes(c)["node1"].health.listen_ips == ()


def test_the_health_file_is_the_desired_health(tmp_path: Path) -> None:
    c = cluster(tmp_path, pods=(("a", "node1"),))
    art = node_artifacts_all(c, ["node1"])["node1"]
    assert json.loads(art.files()[HEALTH_FILE]) == {
        "healthz": "0.0.0.0:10256", "listen": ["0.0.0.0"],
        "services": [{"namespace": "shop", "name": "outside", "port": 30101, "localEndpoints": 1},
                     {"namespace": "shop", "name": "web", "port": 30100, "localEndpoints": 1}]}
