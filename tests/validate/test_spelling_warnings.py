"""The API server's spelling rules at validation: its legacy IP and CIDR fields take leading
zeros and padded source ranges, each with the API server's warning, located; svcnet's own fields
and everything else stay errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from svcnet.cli.main import cli
from svcnet.diagnostics import errors, warnings
from svcnet.model.load import check_paths
from svcnet.model.semantic.spelling import cidr_warnings, ip_warning

BASE = Path(__file__).parent / "good" / "base-cluster.yaml"
FUTURE = "will be considered invalid in a future Kubernetes release"

DESCRIPTION = """\
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: web}
spec:
  type: LoadBalancer
  clusterIP: 10.96.000.050
  clusterIPs: [10.96.000.050]
  externalIPs: [192.168.099.022, 192.168.99.23]
  loadBalancerIP: 1.2.3.004
  loadBalancerSourceRanges: [" 203.0.113.000/025", 10.1.2.3/8, 192.0.2.0/24]
  ports: [{port: 80}]
status: {loadBalancer: {ingress: [{ip: 1.2.3.004}]}}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: web}
spec: {nodeName: node1, containers: [{name: c, command: [sleep, "1"]}]}
status: {podIP: 10.244.001.005, podIPs: [{ip: 10.244.001.005}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: lb-1, namespace: web, labels: {kubernetes.io/service-name: lb}}
addressType: IPv4
ports: [{port: 8080}]
endpoints: [{addresses: [10.244.002.005, 10.244.2.6]}]
"""


def test_every_legacy_field_is_accepted_with_the_api_servers_warning(tmp_path: Path) -> None:
    f = tmp_path / "objs.yaml"
    f.write_text(DESCRIPTION)
    checked = check_paths([BASE, f])
    assert errors(checked.diagnostics) == []
    assert [str(d) for d in warnings(checked.diagnostics)] == [
        f'{f}:6:14: spec.clusterIP: warning: non-standard IP address "10.96.000.050" {FUTURE}: use "10.96.0.50"',
        f'{f}:7:16: spec.clusterIPs[0]: warning: non-standard IP address "10.96.000.050" {FUTURE}: use "10.96.0.50"',
        f'{f}:8:17: spec.externalIPs[0]: warning: non-standard IP address "192.168.099.022" {FUTURE}: '
        'use "192.168.99.22"',
        f'{f}:9:19: spec.loadBalancerIP: warning: non-standard IP address "1.2.3.004" {FUTURE}: use "1.2.3.4"',
        f'{f}:10:30: spec.loadBalancerSourceRanges[0]: warning: non-standard CIDR value "203.0.113.000/025" '
        f'{FUTURE}: use "203.0.113.0/25"',
        f'{f}:10:52: spec.loadBalancerSourceRanges[1]: warning: CIDR value "10.1.2.3/8" is ambiguous in this '
        'context (should be "10.0.0.0/8" or "10.1.2.3/32"?)',
        f'{f}:12:40: status.loadBalancer.ingress[0].ip: warning: non-standard IP address "1.2.3.004" {FUTURE}: '
        'use "1.2.3.4"',
        f'{f}:18:17: status.podIP: warning: non-standard IP address "10.244.001.005" {FUTURE}: use "10.244.1.5"',
        f'{f}:18:47: status.podIPs[0].ip: warning: non-standard IP address "10.244.001.005" {FUTURE}: '
        'use "10.244.1.5"',
        f'{f}:25:26: endpoints[0].addresses[0]: warning: non-standard IP address "10.244.002.005" {FUTURE}: '
        'use "10.244.2.5"',
    ]


@pytest.mark.parametrize(
    ("value", "found"),
    [("203.0.113.0/25", []), (" 203.0.113.0/25\t", []),
     ("203.0.113.000/25", [f'non-standard CIDR value "203.0.113.000/25" {FUTURE}: use "203.0.113.0/25"']),
     ("203.0.113.0/025", [f'non-standard CIDR value "203.0.113.0/025" {FUTURE}: use "203.0.113.0/25"']),
     ("10.0.0.01/08", ['CIDR value "10.0.0.01/08" is ambiguous in this context (should be "10.0.0.0/8" or '
                       '"10.0.0.1/32"?)', f'non-standard CIDR value "10.0.0.01/08" {FUTURE}: use "10.0.0.0/8"']),
     ("fd00::1/64", ['CIDR value "fd00::1/64" is ambiguous in this context (should be "fd00::/64" or '
                     '"fd00::1/128"?)'])],
)
def test_cidr_warnings_are_the_api_servers(value: str, found: list[str]) -> None:
    assert cidr_warnings(value) == found


@pytest.mark.parametrize(
    ("value", "found"),
    [("1.2.3.4", None), ("", None), ("None", None), ("fd00::01", None),
     ("1.2.3.04", f'non-standard IP address "1.2.3.04" {FUTURE}: use "1.2.3.4"')],
)
def test_ip_warning_is_the_api_servers(value: str, found: str | None) -> None:
    assert ip_warning(value) == found


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("externalIPs", "[127.000.000.001]", "spec.externalIPs[0]: externalIP 127.000.000.001 may not be in the "
      "loopback range"),
     ("loadBalancerSourceRanges", '["203.0.113.0/24 ;"]', "spec.loadBalancerSourceRanges[0]: "
      "'203.0.113.0/24 ;' is not a valid CIDR"),
     ("clusterIP", "10.96.0.0256", "spec.clusterIP: '10.96.0.0256' is not an IP address")],
)
def test_what_the_api_server_refuses_stays_a_located_error(tmp_path: Path, field: str, value: str,
                                                           message: str) -> None:
    f = tmp_path / "svc.yaml"
    f.write_text(f"apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec:\n  type: LoadBalancer\n"
                 f"  {field}: {value}\n  ports: [{{port: 80}}]\n")
    result = CliRunner().invoke(cli, ["validate", str(BASE), str(f)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{f}:6:" in result.output and message in result.output, result.output


def test_svcnets_own_fields_stay_strict(tmp_path: Path) -> None:
    f = tmp_path / "cluster.yaml"
    f.write_text(BASE.read_text().replace("192.168.56.11", "192.168.056.11"))
    result = CliRunner().invoke(cli, ["validate", str(f)])
    assert result.exit_code == 1
    assert "spec.nodes[0].addresses[0]: '192.168.056.11' is not a valid IPv4 or IPv6 address" in result.output
