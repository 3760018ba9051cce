"""The API server's spelling rules in the model: leading zeros are decimal, padded source ranges
are trimmed as Go trims them, and `allocateLoadBalancerNodePorts: false` allocates no nodePort."""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet.diagnostics import errors
from svcnet.model.build import canonical_cidr, canonical_ip, trim_space
from svcnet.model.load import check_paths, load_cluster
from svcnet.render.artifacts import node_artifacts

BASE = Path(__file__).resolve().parents[1] / "validate" / "good" / "base-cluster.yaml"
NODE = "node1"  # base-cluster.yaml's first node


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "objs.yaml"
    f.write_text(text)
    return f


LB = """\
apiVersion: v1
kind: Service
metadata: {{name: lb, namespace: web}}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  {allocate}
  ports: [{{name: a, port: 80}}, {{name: b, port: 81, nodePort: 30081}}]
status: {{loadBalancer: {{ingress: [{{ip: 192.0.2.10}}]}}}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: lb-1, namespace: web, labels: {{kubernetes.io/service-name: lb}}}}
addressType: IPv4
ports: [{{name: a, port: 8080}}, {{name: b, port: 8081}}]
endpoints: [{{addresses: [10.244.1.50], nodeName: node1}}]
"""


def test_allocate_lb_node_ports_false_allocates_none_unless_given(tmp_path: Path) -> None:
    c = load_cluster([BASE, write(tmp_path, LB.format(allocate="allocateLoadBalancerNodePorts: false"))])
    (svc,) = c.services
    assert [p.node_port for p in svc.ports] == [0, 30081]
    assert svc.health_check_node_port  # the API server still allocates it (eTP Local)
    restore = node_artifacts(c, NODE, ()).restore
    nodeports = [ln for ln in restore.splitlines() if ln.startswith("-A KUBE-NODEPORTS")]
    assert [ln for ln in nodeports if "web/lb:a" in ln and "health check" not in ln] == []
    assert any("web/lb:b" in ln and "--dport 30081" in ln for ln in nodeports)
    assert any(f"--dport {svc.health_check_node_port}" in ln for ln in nodeports)
    assert "-d 192.0.2.10 --dport 80" in restore  # the LB IP still takes port a's traffic


@pytest.mark.parametrize("allocate", ["", "allocateLoadBalancerNodePorts: true"])
def test_a_load_balancer_allocates_node_ports_by_default(tmp_path: Path, allocate: str) -> None:
    (svc,) = load_cluster([BASE, write(tmp_path, LB.format(allocate=allocate))]).services
    assert svc.ports[0].node_port and svc.ports[1].node_port == 30081


def test_no_exhausted_range_for_a_load_balancer_that_allocates_none(tmp_path: Path) -> None:
    base = tmp_path / "cluster.yaml"
    base.write_text(BASE.read_text().replace("spec:\n", "spec:\n  nodePortRange: 30081-30081\n"))
    checked = check_paths([base, write(tmp_path, LB.format(allocate="allocateLoadBalancerNodePorts: false")
                                       .replace("externalTrafficPolicy: Local", "externalTrafficPolicy: Cluster"))])
    assert [str(d) for d in errors(checked.diagnostics)] == []


@pytest.mark.parametrize(
    ("written", "read"),
    [("192.168.099.022", "192.168.99.22"), ("010.000.000.001", "10.0.0.1"), ("0000000000001.2.3.4", "1.2.3.4"),
     ("1.2.3.4", "1.2.3.4"), ("fd00::1", "fd00::1")],
)
def test_leading_zeros_are_decimal_as_kube_proxy_reads_them(written: str, read: str) -> None:
    assert canonical_ip(written) == read


@pytest.mark.parametrize(
    ("written", "read"),
    [(" 203.0.113.0/25", "203.0.113.0/25"), ("203.0.113.000/025", "203.0.113.0/25"),
     ("\t10.1.2.3/8\u3000\n", "10.0.0.0/8"), ("\u00a0\u2028fd00::/064\u0085", "fd00::/64")],
)
def test_source_ranges_are_trimmed_and_read_as_go_does(written: str, read: str) -> None:
    assert canonical_cidr(written) == read


def test_trim_space_is_gos_not_pythons() -> None:
    """Go's unicode.IsSpace leaves U+001C..U+001F (Python's isspace() does not)."""
    assert trim_space("\x1c\u2000 a \u205f\x1f") == "\x1c\u2000 a \u205f\x1f".strip("\u2000 \u205f")
    assert trim_space("\x1ca\x1f") == "\x1ca\x1f" != "\x1ca\x1f".strip()


def test_legacy_spellings_reach_the_model_canonical(tmp_path: Path) -> None:
    c = load_cluster([BASE, write(tmp_path, """\
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: web}
spec:
  type: LoadBalancer
  clusterIP: 10.96.000.050
  externalIPs: ["192.168.099.022"]
  loadBalancerSourceRanges: [" 203.0.113.000/025 "]
  ports: [{port: 80, nodePort: 30080}]
status: {loadBalancer: {ingress: [{ip: "1.2.3.004"}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lb-1, namespace: web, labels: {kubernetes.io/service-name: lb}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: ["10.244.001.050"]}]
""")])
    (svc,) = c.services
    assert (svc.cluster_ip, svc.external_ips, svc.lb_ips, svc.lb_source_ranges) == (
        "10.96.0.50", ("192.168.99.22",), ("1.2.3.4",), ("203.0.113.0/25",))
    (sp,) = c.service_ports
    assert [e.hostport for e in sp.endpoints] == ["10.244.1.50:8080"]

