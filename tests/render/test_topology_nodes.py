"""PreferSameNode between two nodes of one zone, through the real path into iptables mode: each
node's KUBE-SVC chain jumps to its own pod only. Zone hints alone cannot give that (both pods are in
the node's zone), so this proves the node's name reaches CategorizeEndpoints (pkg/proxy/topology.go:
an endpoint whose hints name the node is the node's when every ready endpoint has a node hint)."""

from __future__ import annotations

import re
from pathlib import Path

from svcnet.model.load import load_cluster
from svcnet.render.artifacts import node_artifacts

DESCRIPTION = """\
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: same-zone}
spec:
  serviceCIDR: 10.96.0.0/12
  clusterCIDR: 10.244.0.0/16
  nodes:
    - {name: node1, addresses: [192.168.56.11], podCIDR: 10.244.1.0/24, zone: zone-a}
    - {name: node2, addresses: [192.168.56.12], podCIDR: 10.244.2.0/24, zone: zone-a}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: ns1}
spec:
  clusterIP: 10.96.0.11
  selector: {app: api}
  trafficDistribution: PreferSameNode
  ports:
    - {name: http, port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Pod
metadata: {name: api-a, namespace: ns1, labels: {app: api}}
spec:
  nodeName: node1
  containers: [{name: c, ports: [{containerPort: 8080}]}]
status: {podIP: 10.244.1.9}
---
apiVersion: v1
kind: Pod
metadata: {name: api-b, namespace: ns1, labels: {app: api}}
spec:
  nodeName: node2
  containers: [{name: c, ports: [{containerPort: 8080}]}]
status: {podIP: 10.244.2.9}
"""
SVC_JUMP = re.compile(r'^-A KUBE-SVC-\S+ -m comment --comment "ns1/api:http -> ([\d.]+):8080".* -j KUBE-SEP-\S+$')


def test_prefer_same_node_in_one_zone_sends_each_node_to_its_own_pod(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(DESCRIPTION)
    cluster = load_cluster([tmp_path])
    for node, own in (("node1", "10.244.1.9"), ("node2", "10.244.2.9")):
        rules = node_artifacts(cluster, node).restore
        targets = [m[1] for ln in rules.splitlines() if (m := SVC_JUMP.match(ln))]
        assert targets == [own], (node, rules)
