"""Topology in the model: nodes' zones, EndpointSlice hints as the API server takes them, and the
hints svcnet writes for selected pods in the EndpointSlice controller's place (trafficDistribution),
with the located errors and warnings `svcnet validate` prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from svcnet.cli.main import cli
from svcnet.diagnostics import errors, warnings
from svcnet.model.load import check_paths
from svcnet.model.types import Cluster
from svcnet.validate_schema import Schemas

CLUSTER = """\
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: t}
spec:
  nodes:
    - {name: node1, addresses: [192.168.56.11], podCIDR: 10.244.1.0/24, zone: zone-a}
    - name: node2
      addresses: [192.168.56.12]
      podCIDR: 10.244.2.0/24
      labels: {topology.kubernetes.io/zone: zone-b}
    - {name: node3, addresses: [192.168.56.13], podCIDR: 10.244.3.0/24}
"""

PODS = "".join(f"""\
---
apiVersion: v1
kind: Pod
metadata: {{name: web-{i}, namespace: t, labels: {{app: web}}}}
spec: {{nodeName: node{i}, containers: [{{name: web}}]}}
status: {{podIP: 10.244.{i}.5}}
""" for i in (1, 2, 3))


def service(spec: str = "", annotations: str = "{}", selector: bool = True) -> str:
    sel = "\n  selector: {app: web}" if selector else ""
    return f"""\
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: t
  annotations: {annotations}
spec:{sel}
  clusterIP: 10.96.0.10
  ports: [{{name: http, port: 80, targetPort: 8080}}]
{spec}"""


SLICE = """\
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: web-1, namespace: t, labels: {{kubernetes.io/service-name: web}}}}
addressType: IPv4
ports: [{{name: http, port: 8080, protocol: TCP}}]
endpoints:
  - addresses: [10.244.1.5]
    nodeName: node1
    hints: {hints}
"""

_SCHEMAS: list[Schemas] = []


def check(tmp_path: Path, text: str) -> tuple[Path, list[str], list[str], Cluster | None]:
    """(file, errors, warnings, cluster) as `svcnet validate` finds them; messages without the file name."""
    f = tmp_path / "topology.yaml"
    f.write_text(text)
    if not _SCHEMAS:
        _SCHEMAS.append(Schemas.load())
    result = check_paths([f], _SCHEMAS[0])
    strip = f"{f}:"
    errs = [str(d).removeprefix(strip) for d in errors(result.diagnostics)]
    warns = [str(d).removeprefix(strip) for d in warnings(result.diagnostics)]
    return f, errs, warns, result.build.cluster if result.build is not None and not errs else None


def hints(cluster: Cluster | None) -> dict[str, tuple[frozenset[str], frozenset[str]]]:
    """Each endpoint's (zone hints, node hints), by pod IP."""
    assert cluster is not None
    (sp,) = cluster.service_ports
    return {ep.ip: (ep.zone_hints, ep.node_hints) for ep in sp.endpoints}


# --------------------------------------------------------------------------- nodes


def test_zone_is_the_zone_label(tmp_path):
    _, errs, warns, cluster = check(tmp_path, CLUSTER)
    assert errs == warns == []
    assert cluster is not None
    assert [n.zone_label for n in cluster.nodes] == ["zone-a", "zone-b", None]


def test_zone_and_a_different_zone_label_contradict(tmp_path):
    text = CLUSTER.replace("zone: zone-a}", "zone: zone-a, labels: {topology.kubernetes.io/zone: zone-b}}")
    _, errs, _, _ = check(tmp_path, text)
    assert len(errs) == 1 and errs[0].startswith(
        "6:125: spec.nodes[0].labels.topology.kubernetes.io/zone: label topology.kubernetes.io/zone='zone-b' "
        "contradicts zone 'zone-a'"), errs
    same = CLUSTER.replace("zone: zone-a}", "zone: zone-a, labels: {topology.kubernetes.io/zone: zone-a}}")
    assert check(tmp_path, same)[1] == []


# --------------------------------------------------------------------------- EndpointSlice hints


@pytest.mark.parametrize(("given", "where"), [
    ("{forZones: [{name: zone-a}, {name: zone-b}, {name: zone-a}]}", "endpoints[0].hints.forZones[2].name"),
    ("{forNodes: [{name: node1}, {name: node1}]}", "endpoints[0].hints.forNodes[1].name"),
])
def test_a_hint_named_twice_is_refused_as_the_api_server_does(tmp_path, given, where):
    _, errs, _, _ = check(tmp_path, CLUSTER + service(selector=False) + SLICE.format(hints=given))
    assert len(errs) == 1 and f": {where}: Duplicate value: " in errs[0], errs


def test_slice_hints_reach_the_model_as_given(tmp_path):
    """Hints the API server accepts are kept even when no node has the zone or name: kube-proxy
    then ignores them per node (CategorizeEndpoints), not the API server."""
    given = "{forZones: [{name: zone-a}, {name: zone-x}], forNodes: [{name: node9}]}"
    _, errs, warns, cluster = check(tmp_path, CLUSTER + service(selector=False) + SLICE.format(hints=given))
    assert errs == warns == []
    assert hints(cluster) == {"10.244.1.5": (frozenset({"zone-a", "zone-x"}), frozenset({"node9"}))}


# --------------------------------------------------------------------------- trafficDistribution


NONE: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


@pytest.mark.parametrize(("distribution", "expected"), [
    (None, {"10.244.1.5": NONE, "10.244.2.5": NONE, "10.244.3.5": NONE}),
    # The endpoint's zone is its node's zone label; a node without one gives no zone hint.
    ("PreferClose", {"10.244.1.5": ({"zone-a"}, set()), "10.244.2.5": ({"zone-b"}, set()),
                     "10.244.3.5": NONE}),
    ("PreferSameZone", {"10.244.1.5": ({"zone-a"}, set()), "10.244.2.5": ({"zone-b"}, set()),
                        "10.244.3.5": NONE}),
    # PreferSameNode hints the node, and the zone too (for kube-proxies without the node hints).
    ("PreferSameNode", {"10.244.1.5": ({"zone-a"}, {"node1"}), "10.244.2.5": ({"zone-b"}, {"node2"}),
                        "10.244.3.5": (set(), {"node3"})}),
])
def test_traffic_distribution_gives_selected_pods_the_controllers_hints(tmp_path, distribution, expected):
    spec = f"  trafficDistribution: {distribution}\n" if distribution else ""
    _, errs, warns, cluster = check(tmp_path, CLUSTER + service(spec) + PODS)
    assert errs == warns == []
    assert hints(cluster) == {ip: (frozenset(z), frozenset(n)) for ip, (z, n) in expected.items()}


def test_traffic_distribution_without_a_selector_warns_located(tmp_path):
    """Nothing writes hints for a selector-less Service's own EndpointSlices: the field would
    silently do nothing."""
    text = CLUSTER + service("  trafficDistribution: PreferSameZone\n", selector=False) + SLICE.format(hints="{}")
    f, errs, warns, cluster = check(tmp_path, text)
    assert errs == []
    assert warns == [
        "22:24: spec.trafficDistribution: warning: has no effect without a selector: the EndpointSlice "
        "controller writes hints only for a selector's pods; give this Service's EndpointSlices "
        "hints.forZones/forNodes"]
    assert hints(cluster) == {"10.244.1.5": NONE}
    # and `svcnet validate` prints it located, and accepts the description
    result = CliRunner().invoke(cli, ["validate", str(f)])
    assert result.exit_code == 0, result.output
    assert f"{f}:{warns[0]}" in result.output.splitlines()


@pytest.mark.parametrize(("key", "col"), [("service.kubernetes.io/topology-mode", 54),
                                          ("service.kubernetes.io/topology-aware-hints", 61)])
def test_topology_mode_auto_sets_no_hints_and_says_so(tmp_path, key, col):
    """Auto allocates by zones' CPU, which svcnet's nodes do not give: no hints, a warning; and the
    annotation wins over trafficDistribution, as in the EndpointSlice controller."""
    text = CLUSTER + service("  trafficDistribution: PreferSameNode\n", f"{{{key}: Auto}}") + PODS
    _, errs, warns, cluster = check(tmp_path, text)
    assert errs == []
    assert [w.split(": warning: ")[0] for w in warns] == [
        f"18:{col}: metadata.annotations.{key}", "23:24: spec.trafficDistribution"]
    assert "svcnet sets no topology hints for Auto" in warns[0]
    assert warns[1].endswith(f"ignored: the {key} annotation takes precedence (as in the EndpointSlice controller)")
    assert set(hints(cluster).values()) == {NONE}
