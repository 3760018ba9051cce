"""Dual-stack descriptions: families settled as kube-apiserver settles them, ClusterIPs and pod IPs
allocated per family, and each API error located at the field it names.

The expected messages are kube-apiserver's: ValidateServiceClusterIPsRelatedFields
(pkg/apis/core/validation/validation.go) and Allocators.initIPFamilyFields
(pkg/registry/core/service/storage/alloc.go). These tests lift the IPv6-first gate with the keyword the
CLI never passes (`check_paths(..., ipv6=True)`: IPv6-first clusters); the CLI takes an IPv4-first one.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from svcnet.cli.main import cli
from svcnet.diagnostics import errors
from svcnet.model.build import Build
from svcnet.model.load import check_paths
from svcnet.model.types import Service
from svcnet.render.artifacts import node_artifacts

DUAL = """\
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: dual}
spec:
  serviceCIDR: [10.96.0.0/16, "fd00:10:96::/108"]
  clusterCIDR: [10.244.0.0/16, "fd00:10:244::/56"]
  nodes:
    - {name: node1, addresses: [192.168.56.11, "fd00:56::11"], podCIDR: 10.244.1.0/24,
       podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"]}
    - {name: node2, addresses: [192.168.56.12, "fd00:56::12"], podCIDR: 10.244.2.0/24,
       podCIDRs: [10.244.2.0/24, "fd00:10:244:2::/64"]}
"""
SINGLE = """\
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: single}
spec:
  serviceCIDR: 10.96.0.0/16
  clusterCIDR: 10.244.0.0/16
  nodes:
    - {name: node1, addresses: [192.168.56.11], podCIDR: 10.244.1.0/24}
    - {name: node2, addresses: [192.168.56.12], podCIDR: 10.244.2.0/24}
"""
V6_FIRST = DUAL.replace('[10.96.0.0/16, "fd00:10:96::/108"]', '["fd00:10:96::/108", 10.96.0.0/16]')


def _service(name: str, spec: str) -> str:
    return f"---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n{spec}  ports: [{{port: 80}}]\n"


def _check(tmp_path: Path, *docs: str, gate_off: bool = True):
    f = tmp_path / "d.yaml"
    f.write_text("".join(docs))
    return f, check_paths([f], ipv6=gate_off)


def _build(tmp_path: Path, *docs: str) -> Build:
    _, checked = _check(tmp_path, *docs)
    assert not errors(checked.diagnostics), [str(d) for d in checked.diagnostics]
    assert checked.build is not None
    return checked.build


def _svc(b: Build, name: str) -> Service:
    return next(s for s in b.cluster.services if s.name == name)


def _errors(tmp_path: Path, *docs: str) -> list[str]:
    f, checked = _check(tmp_path, *docs)
    return [str(d).removeprefix(f"{f}:") for d in errors(checked.diagnostics)]


def _located(tmp_path: Path, *docs: str) -> list[tuple[str, str]]:
    """Each error as (the text of the line it points at, `path: message`)."""
    f, checked = _check(tmp_path, *docs)
    lines = f.read_text().splitlines()
    return [(lines[d.line - 1], f"{d.path}: {d.message}") for d in errors(checked.diagnostics)]


# --------------------------------------------------------------------------- defaulting


@pytest.mark.parametrize(("cluster", "spec", "policy", "families"), [
    (DUAL, "  selector: {app: a}\n", "SingleStack", (4,)),  # no policy: SingleStack, the default family
    (V6_FIRST, "  selector: {app: a}\n", "SingleStack", (6,)),  # the default family is serviceCIDR's first
    (DUAL, "  ipFamilyPolicy: PreferDualStack\n", "PreferDualStack", (4, 6)),
    (SINGLE, "  ipFamilyPolicy: PreferDualStack\n", "PreferDualStack", (4,)),  # no error, one family
    (DUAL, "  ipFamilyPolicy: RequireDualStack\n", "RequireDualStack", (4, 6)),
    (DUAL, "  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6]\n", "PreferDualStack", (6, 4)),
    (DUAL, "  ipFamilies: [IPv6]\n", "SingleStack", (6,)),
    (DUAL, '  clusterIP: "fd00:10:96::7"\n', "SingleStack", (6,)),  # inferred from the ClusterIP
    (DUAL, '  ipFamilyPolicy: RequireDualStack\n  clusterIPs: ["fd00:10:96::7"]\n', "RequireDualStack", (6, 4)),
    (DUAL, "  clusterIP: None\n", "RequireDualStack", (4, 6)),  # headless, no selector: dual
    (SINGLE, "  clusterIP: None\n", "RequireDualStack", (4, 6)),  # ... even on a single-stack cluster
    (DUAL, "  clusterIP: None\n  selector: {app: a}\n", "SingleStack", (4,)),
])
def test_families_default_as_the_api_server_defaults_them(tmp_path: Path, cluster: str, spec: str, policy: str,
                                                         families: tuple[int, ...]) -> None:
    svc = _svc(_build(tmp_path, cluster, _service("s", spec)), "s")
    assert (svc.ip_family_policy, svc.ip_families) == (policy, families)


def test_a_dual_stack_service_gets_a_cluster_ip_of_each_family_in_its_ranges(tmp_path: Path) -> None:
    b = _build(tmp_path, DUAL, _service("s", "  ipFamilyPolicy: PreferDualStack\n"))
    svc = _svc(b, "s")
    v4, v6 = svc.cluster_ips
    assert ipaddress.ip_address(v4) in ipaddress.ip_network("10.96.0.0/16")
    assert ipaddress.ip_address(v6) in ipaddress.ip_network("fd00:10:96::/108")
    assert svc.cluster_ip == v4
    port = b.cluster.service_ports[0]
    assert (port.cluster_ip_of(4), port.cluster_ip_of(6)) == (v4, v6)


def test_the_primary_cluster_ip_does_not_move_when_a_cluster_becomes_dual_stack(tmp_path: Path) -> None:
    """The first family keeps the allocation key single-stack Services always had."""
    single = _svc(_build(tmp_path, SINGLE, _service("s", "  selector: {app: a}\n")), "s")
    dual = _svc(_build(tmp_path, DUAL, _service("s", "  ipFamilyPolicy: PreferDualStack\n  selector: {app: a}\n")),
                "s")
    assert dual.cluster_ips[0] == single.cluster_ip


def test_a_given_ipv6_cluster_ip_is_kept_and_the_ipv4_one_allocated(tmp_path: Path) -> None:
    svc = _svc(_build(tmp_path, DUAL, _service(
        "s", '  ipFamilyPolicy: RequireDualStack\n  ipFamilies: [IPv6, IPv4]\n  clusterIP: "fd00:10:96::7"\n')), "s")
    assert svc.cluster_ips[0] == "fd00:10:96::7"
    assert ipaddress.ip_address(svc.cluster_ips[1]) in ipaddress.ip_network("10.96.0.0/16")
    assert svc.cluster_ips_given == (True, False)


DEPLOYMENT = """\
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, ports: [{containerPort: 8080}]}]}
"""


def test_deployments_expand_to_dual_stack_pods_on_a_dual_stack_cluster(tmp_path: Path) -> None:
    b = _build(tmp_path, DUAL, DEPLOYMENT, _service("v4", "  selector: {app: web}\n"),
               _service("both", "  ipFamilyPolicy: PreferDualStack\n  selector: {app: web}\n"))
    nodes = {n.name: n for n in b.cluster.nodes}
    assert len(b.cluster.pods) == 3
    for pod in b.cluster.pods:
        v4, v6 = pod.ips
        node = nodes[pod.node_name]
        assert pod.ip == v4 and ipaddress.ip_address(v4) in ipaddress.ip_network(node.pod_cidrs[0])
        assert ipaddress.ip_address(v6) in ipaddress.ip_network(node.pod_cidrs[1])
    ports = {p.name: p for p in b.cluster.service_ports}
    # The EndpointSlice controller writes a slice per family of the Service.
    assert sorted(e.ip for e in ports["v4"].endpoints) == sorted(p.ip for p in b.cluster.pods)
    assert sorted(e.ip for e in ports["both"].endpoints) == sorted(ip for p in b.cluster.pods for ip in p.ips)


def test_single_stack_pods_stay_single_stack(tmp_path: Path) -> None:
    b = _build(tmp_path, SINGLE, DEPLOYMENT)
    assert all(len(p.ips) == 1 for p in b.cluster.pods)


def test_given_pod_ips_are_kept_per_family(tmp_path: Path) -> None:
    pod = ("---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: node1, containers: [{name: c}]}\n"
           'status: {podIPs: [{ip: "fd00:10:244:1::9"}]}\n')
    b = _build(tmp_path, DUAL, pod)
    (p,) = b.cluster.pods
    assert p.ips[1] == "fd00:10:244:1::9"  # in the node's order: IPv4 (allocated) first
    assert ipaddress.ip_address(p.ips[0]) in ipaddress.ip_network("10.244.1.0/24")


def test_an_ipv6_endpointslice_gives_ipv6_endpoints(tmp_path: Path) -> None:
    slice_ = ("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
              "metadata: {name: s-1, labels: {kubernetes.io/service-name: s}}\naddressType: IPv6\n"
              'ports: [{port: 8080}]\nendpoints: [{addresses: ["fd00:99::1"]}]\n')
    b = _build(tmp_path, DUAL, _service("s", "  ipFamilies: [IPv6]\n"), slice_)
    assert [e.hostport for e in b.cluster.service_ports[0].endpoints] == ["[fd00:99::1]:8080"]


def test_a_single_string_cidr_is_still_read(tmp_path: Path) -> None:
    b = _build(tmp_path, SINGLE)
    assert (b.cluster.service_cidrs, b.cluster.families) == (("10.96.0.0/16",), (4,))


# --------------------------------------------------------------------------- the API server's errors

POLICY_MULTI = "must be 'RequireDualStack' or 'PreferDualStack' when multiple"


@pytest.mark.parametrize(("cluster", "spec", "expected"), [
    (DUAL, '  clusterIP: 10.96.0.7\n  clusterIPs: [10.96.0.8]\n',
     'spec.clusterIPs: Invalid value: ["10.96.0.8"]: first value must match `clusterIP`'),
    (DUAL, '  clusterIP: None\n  clusterIPs: [None, "fd00:10:96::7"]\n',
     "spec.clusterIPs: Invalid value: [\"None\", \"fd00:10:96::7\"]: 'None' must be the first and only value"),
    (DUAL, '  ipFamilyPolicy: PreferDualStack\n  clusterIPs: [10.96.0.7, ""]\n',
     'spec.clusterIPs[1]: Invalid value: "": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)'),
    (DUAL, '  ipFamilyPolicy: PreferDualStack\n  clusterIPs: [10.96.0.7, 10.96.0.8]\n',
     'spec.clusterIPs: Invalid value: ["10.96.0.7", "10.96.0.8"]: may specify no more than one IP for each '
     'IP family'),
    (DUAL, '  ipFamilyPolicy: PreferDualStack\n  ipFamilies: [IPv6, IPv4]\n  clusterIPs: [10.96.0.7]\n',
     'spec.clusterIPs[0]: Invalid value: "10.96.0.7": expected an IPv6 value as indicated by `ipFamilies[0]`'),
    (DUAL, '  clusterIPs: [10.96.0.7, "fd00:10:96::7"]\n',
     f'spec.ipFamilyPolicy: Invalid value: "SingleStack": {POLICY_MULTI} cluster IPs are specified'),
    (DUAL, "  ipFamilyPolicy: SingleStack\n  ipFamilies: [IPv4, IPv6]\n",
     f'spec.ipFamilyPolicy: Invalid value: "SingleStack": {POLICY_MULTI} IP families are specified'),
    (SINGLE, '  clusterIP: "fd00:10:96::7"\n',
     'spec.clusterIPs[0]: Invalid value: ["fd00:10:96::7"]: IPv6 is not configured on this cluster'),
    (SINGLE, "  ipFamilyPolicy: RequireDualStack\n",
     'spec.ipFamilyPolicy: Invalid value: "RequireDualStack": this cluster is not configured for '
     'dual-stack services'),
    (SINGLE, "  ipFamilies: [IPv6]\n",
     'spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster'),
    (DUAL, '  ipFamilyPolicy: RequireDualStack\n  clusterIPs: [10.96.0.7, "fd00:99::7"]\n',
     "spec.clusterIPs[1]: clusterIP fd00:99::7 lies outside serviceCIDR fd00:10:96::/108"),
], ids=["clusterIPs[0]", "None-alone", "invalid-ip", "one-per-family", "family-mismatch", "single-two-ips",
        "single-two-families", "ip-family-not-configured", "require-on-single", "family-not-configured",
        "outside-its-family-range"])
def test_each_api_error_is_located(tmp_path: Path, cluster: str, spec: str, expected: str) -> None:
    """One error, at the line of the field it names (the spec's first line for a defaulted policy)."""
    ((line, found),) = _located(tmp_path, cluster, _service("s", spec))
    assert found == expected
    key = expected.split(":", 1)[0].split(".")[1].split("[")[0]
    assert line.strip().startswith(f"{key}:") or (key not in spec and line == spec.splitlines()[0]), line


def test_an_exhausted_ipv6_service_range_is_a_located_error(tmp_path: Path) -> None:
    """fd00:10:96::/126 holds two ClusterIPs (the network address and the first are reserved)."""
    cluster = DUAL.replace('"fd00:10:96::/108"', '"fd00:10:96::/126"')
    docs = [_service(f"s{i}", "  ipFamilyPolicy: RequireDualStack\n") for i in range(3)]
    ((line, found),) = _located(tmp_path, cluster, *docs)
    assert re.fullmatch(r"spec: serviceCIDR fd00:10:96::/126 has no free address for default/s[012]", found)
    assert line == "  ipFamilyPolicy: RequireDualStack"


@pytest.mark.parametrize(("old", "new", "needle", "expected"), [
    ('[10.96.0.0/16, "fd00:10:96::/108"]', "[10.96.0.0/16, 10.97.0.0/16]", "serviceCIDR:",
     'spec.serviceCIDR: Invalid value: ["10.96.0.0/16", "10.97.0.0/16"]: may specify no more than one CIDR '
     "for each IP family"),
    ('[10.244.0.0/16, "fd00:10:244::/56"]', '["fd00:10:244::/56", "fd00:11::/56"]', "clusterCIDR:",
     'spec.clusterCIDR: Invalid value: ["fd00:10:244::/56", "fd00:11::/56"]: may specify no more than one '
     "CIDR for each IP family"),
    ('podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"]', 'podCIDRs: ["fd00:10:244:1::/64", 10.244.1.0/24]',
     "podCIDRs:", 'spec.nodes[0].podCIDRs[0]: Invalid value: "fd00:10:244:1::/64": first value must match `podCIDR`'),
    ('podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"]', "podCIDRs: [10.244.1.0/24, 10.244.3.0/24]", "podCIDRs:",
     'spec.nodes[0].podCIDRs: Invalid value: ["10.244.1.0/24", "10.244.3.0/24"]: may specify no more than '
     "one CIDR for each IP family"),
    ('podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"]', 'podCIDRs: [10.244.1.0/24, "fd00:99:1::/64"]', "podCIDRs:",
     "spec.nodes[0].podCIDRs[1]: podCIDR fd00:99:1::/64 lies outside clusterCIDR fd00:10:244::/56"),
    ('[10.244.0.0/16, "fd00:10:244::/56"]', "[10.244.0.0/16]", "fd00:10:244:1::/64",
     "spec.nodes[0].podCIDRs[1]: podCIDR fd00:10:244:1::/64: clusterCIDR has no IPv6 range"),
], ids=["serviceCIDR-one-per-family", "clusterCIDR-one-per-family", "podCIDRs[0]", "podCIDRs-one-per-family",
        "podCIDR-outside-its-family", "no-clusterCIDR-of-the-family"])
def test_each_cluster_range_error_is_located(tmp_path: Path, old: str, new: str, needle: str, expected: str) -> None:
    assert old in DUAL
    found = _located(tmp_path, DUAL.replace(old, new))
    assert found[0][1] == expected, found
    assert needle in found[0][0]


def _pod(status: str) -> str:
    return ("---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {nodeName: node1, containers: [{name: c}]}\n"
            f"status: {status}\n")


@pytest.mark.parametrize(("cluster", "status", "expected"), [
    (SINGLE, '{podIP: "fd00:10:244:1::9"}', "status.podIP: pod IP fd00:10:244:1::9: node node1 has no IPv6 podCIDR"),
    (DUAL, '{podIPs: [{ip: 10.244.1.9}, {ip: 10.244.1.10}]}',
     'status.podIPs: Invalid value: ["10.244.1.9", "10.244.1.10"]: may specify no more than one IP for each '
     "IP family"),
    (DUAL, '{podIP: 10.244.1.9, podIPs: [{ip: 10.244.1.10}]}',
     'status.podIPs[0].ip: Invalid value: "10.244.1.10": first value must match `podIP`'),
    (DUAL, '{podIPs: [{ip: 10.244.1.9}, {ip: "fd00:10:244:2::9"}]}',
     "status.podIPs[1].ip: pod IP fd00:10:244:2::9 lies outside node node1's podCIDR fd00:10:244:1::/64"),
], ids=["no-podCIDR-of-the-family", "podIPs-one-per-family", "podIPs[0]", "outside-its-family"])
def test_each_pod_ip_error_is_located(tmp_path: Path, cluster: str, status: str, expected: str) -> None:
    found = _located(tmp_path, cluster, _pod(status))
    assert (f"status: {status}", expected) in found, found


# --------------------------------------------------------------------------- the gate


GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "dual-stack.yaml"


def test_the_cli_takes_a_dual_stack_description_with_ipv4_first() -> None:
    result = CliRunner().invoke(cli, ["validate", str(GOLDEN)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- every combination

_POLICIES = (None, "SingleStack", "PreferDualStack", "RequireDualStack")
_FAMILIES = (None, ["IPv4"], ["IPv6"], ["IPv4", "IPv6"], ["IPv6", "IPv4"])
_IPS = (None, ["v4"], ["v6"], ["v4", "v6"], ["v6", "v4"], ["None"])


def _combinations() -> list[dict]:
    specs = []
    for i, (policy, families, ips, selector) in enumerate(itertools.product(_POLICIES, _FAMILIES, _IPS, (True, False))):
        spec: dict = {"ports": [{"port": 80}]}
        if policy:
            spec["ipFamilyPolicy"] = policy
        if families:
            spec["ipFamilies"] = families
        if ips:
            given = {"v4": f"10.96.{i // 200}.{i % 200 + 2}", "v6": f"fd00:10:96::{i + 2:x}", "None": "None"}
            spec["clusterIPs"] = [given[k] for k in ips]
        if selector:
            spec["selector"] = {"app": "web"}
        specs.append(spec)
    return specs


@pytest.mark.parametrize("cluster", [SINGLE, DUAL, V6_FIRST], ids=["single", "dual", "v6-first"])
def test_every_combination_is_an_api_error_or_renders_in_each_of_its_families(tmp_path: Path, cluster: str) -> None:
    """All 240 combinations of policy, ipFamilies, clusterIPs and selector: each Service is refused
    with errors located in its own document, or gets one ClusterIP per family in that family's
    range, and each family's proxier writes its ClusterIP, the other's never."""
    specs = _combinations()
    docs = [yaml.safe_dump({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"s{i}"}, "spec": spec})
            for i, spec in enumerate(specs)]
    f = tmp_path / "d.yaml"
    f.write_text(cluster + "".join(f"---\n{d}" for d in docs))
    checked = check_paths([f], ipv6=True)
    assert checked.build is not None
    refused = {d.line for d in errors(checked.diagnostics)}
    starts = [i + 1 for i, line in enumerate(f.read_text().splitlines()) if line == "---"]
    owner = {line: bisect.bisect_right(starts, line) - 1 for line in refused}
    bad = {f"s{owner[line]}" for line in refused}
    assert all(owner[line] >= 0 for line in refused), "an error outside the Services"
    cluster_model = checked.build.cluster
    art = node_artifacts(cluster_model, "node1")
    for svc in cluster_model.services:
        if svc.name in bad or svc.headless:
            continue
        assert len(svc.cluster_ips) == len(svc.ip_families) >= 1
        assert set(svc.ip_families) <= set(cluster_model.families)
        for ip, version in zip(svc.cluster_ips, svc.ip_families, strict=True):
            cidr = cluster_model.service_cidr_of(version)
            assert cidr and ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
            assert f" -d {ip} --dport 80 " in (art.restore_of(version) or "")
            assert f" -d {ip} --dport 80 " not in (art.restore_of(10 - version) or "")
    assert len(bad) < len(specs)
