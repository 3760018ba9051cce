"""IPv6 as a cluster's first or only family is refused, until a lab test applies such a cluster: the
gate every command goes through. IPv6 as a dual-stack cluster's second family passes (it is applied)."""

from __future__ import annotations

from pathlib import Path

from svcnet.diagnostics import errors
from svcnet.model.load import check_paths

BASE = Path(__file__).resolve().parents[1] / "validate" / "good" / "base-cluster.yaml"
V6 = ("IPv6 as a cluster's first or only family is not supported yet (svcnet applies IPv6 as the second "
      "family of a dual-stack cluster: list the IPv4 value first)")
DUAL_STACK = Path(__file__).resolve().parents[2] / "examples" / "dual-stack"

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


def test_ipv6_only_description_is_a_located_error_at_each_first_family_value(tmp_path: Path) -> None:
    f = tmp_path / "v6.yaml"
    f.write_text(IPV6_ONLY)
    found = [str(d) for d in errors(check_paths([f]).diagnostics) if V6 in d.message]
    at = [s.split(f": {V6}")[0].removeprefix(f"{f}:") for s in found]
    assert at == [
        "5:16: spec.serviceCIDR",
        "6:16: spec.clusterCIDR",
        "9:33: spec.nodes[0].addresses[0]",
        "9:58: spec.nodes[0].podCIDR",
    ]


def test_ipv6_first_dual_stack_is_refused_at_the_values_to_reorder(tmp_path: Path) -> None:
    text = "".join((DUAL_STACK / "cluster.yaml").read_text())
    f = tmp_path / "cluster.yaml"
    f.write_text(text.replace('[10.96.0.0/12, "fd00:10:96::/108"]', '["fd00:10:96::/108", 10.96.0.0/12]'))
    msgs = [(d.path, d.message) for d in errors(check_paths([f]).diagnostics)]
    assert msgs == [("spec.serviceCIDR[0]", f"{V6}: fd00:10:96::/108")]


def test_ipv6_as_the_second_family_passes() -> None:
    """examples/dual-stack: IPv4 first, IPv6 beside it (applied in tests/apply/test_apply_dual_stack_e2e.py)."""
    checked = check_paths([DUAL_STACK])
    assert checked.ok and not errors(checked.diagnostics), [str(d) for d in checked.diagnostics]


def test_an_ipv6_address_beside_ipv4_ones_gets_only_the_api_servers_own_errors(tmp_path: Path) -> None:
    f = tmp_path / "svc.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
                 "spec: {externalIPs: [192.168.56.100, 'fd00:1:2:3:4:5:6:100'], ports: [{port: 80}]}\n")
    assert not [d for d in errors(check_paths([BASE, f]).diagnostics) if V6 in d.message]


def test_ipv4_descriptions_get_no_family_error() -> None:
    checked = check_paths([BASE])
    assert checked.ok and not checked.diagnostics


def test_ipv6_services_in_nftables_mode_are_refused(tmp_path: Path) -> None:
    """nftables mode renders the `ip` table only: a dual-stack cluster's IPv6 Services would go unserved."""
    f = tmp_path / "cluster.yaml"
    f.write_text((DUAL_STACK / "cluster.yaml").read_text().replace("mode: iptables", "mode: nftables"))
    found = [(d.path, d.message) for d in errors(check_paths([f]).diagnostics)]
    assert found == [("spec.serviceCIDR[1]", "IPv6 Services in nftables mode are not supported yet (svcnet renders "
                      "no ip6 table): use proxy mode iptables for a dual-stack cluster: fd00:10:96::/108")]
