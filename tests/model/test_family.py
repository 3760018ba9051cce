"""IPv6 is refused where it appears, until svcnet applies it: the gate every command goes through."""

from __future__ import annotations

from pathlib import Path

from svcnet.diagnostics import errors
from svcnet.model.load import check_paths

BASE = Path(__file__).resolve().parents[1] / "validate" / "good" / "base-cluster.yaml"
V6 = "IPv6 apply is not supported yet (svcnet cannot apply IPv6 rules and addresses to nodes)"

IPV6_ONLY = """\
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: v6}
spec:
  serviceCIDR: fd00:10:96::/108
  clusterCIDR: fd00:10:244::/56
  proxy: {nodePortAddresses: ["fd00:56::/64"]}
  nodes:
    - {name: node1, addresses: ["fd00:56::11"], podCIDR: "fd00:10:244:1::/64"}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: LoadBalancer
  clusterIP: fd00:10:96::10
  clusterIPs: [fd00:10:96::10]
  externalIPs: ["fd00:56::100"]
  loadBalancerSourceRanges: ["2001:db8::/64"]
  selector: {app: web}
  ports: [{port: 80}]
status: {loadBalancer: {ingress: [{ip: "2001:db8::10"}]}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, labels: {app: web}}
spec: {nodeName: node1, containers: [{name: c}]}
status: {podIP: "fd00:10:244:1::5"}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-ext, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
endpoints: [{addresses: ["fd00:99::1"]}]
"""


def test_ipv6_only_description_is_a_located_error_at_every_ipv6_value(tmp_path: Path) -> None:
    f = tmp_path / "v6.yaml"
    f.write_text(IPV6_ONLY)
    found = [str(d) for d in errors(check_paths([f]).diagnostics) if V6 in d.message]
    at = [s.split(f": {V6}")[0].removeprefix(f"{f}:") for s in found]
    assert at == [
        "5:16: spec.serviceCIDR",
        "6:16: spec.clusterCIDR",
        "7:31: spec.proxy.nodePortAddresses[0]",
        "9:33: spec.nodes[0].addresses[0]",
        "9:58: spec.nodes[0].podCIDR",
        "16:14: spec.clusterIP",
        "17:16: spec.clusterIPs[0]",
        "18:17: spec.externalIPs[0]",
        "19:30: spec.loadBalancerSourceRanges[0]",
        "22:40: status.loadBalancer.ingress[0].ip",
        "28:17: status.podIP",
        "33:14: addressType",
    ]


def test_an_ipv6_address_beside_ipv4_ones_is_refused_too(tmp_path: Path) -> None:
    f = tmp_path / "svc.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
                 "spec: {externalIPs: [192.168.56.100, 'fd00:1:2:3:4:5:6:100'], ports: [{port: 80}]}\n")
    msgs = [(d.path, d.message) for d in errors(check_paths([BASE, f]).diagnostics)]
    assert msgs == [("spec.externalIPs[1]", f"{V6}: fd00:1:2:3:4:5:6:100")]


def test_ipv4_descriptions_get_no_family_error() -> None:
    checked = check_paths([BASE])
    assert checked.ok and not checked.diagnostics
