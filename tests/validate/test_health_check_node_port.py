"""A Service's healthCheckNodePort is taken as the API server takes it: only on a LoadBalancer with
externalTrafficPolicy Local (ValidateService, validateServiceExternalTrafficPolicy), then from the
one allocator of nodePorts (allocHealthCheckNodePort): inside nodePortRange and free as a port
number, whatever the protocol of the port that already has it. Whole files: bad/63-* to bad/65-*.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from svcnet.diagnostics import errors
from svcnet.model.load import check_paths

CLUSTER = {
    "apiVersion": "svcnet.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "t"},
    "spec": {"nodePortRange": "30000-30999",
             "nodes": [{"name": "node1", "addresses": ["192.168.56.11"], "podCIDR": "10.244.1.0/24"}]},
}
NOT_ALLOWED = "healthCheckNodePort may only be set when type is LoadBalancer and externalTrafficPolicy is Local"


def _service(name: str, type_: str = "LoadBalancer", etp: str | None = "Local", hc: int | None = None,
             ports: tuple[tuple[int, str, int | None], ...] = ((80, "TCP", None),)) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "ports": [
        {"name": f"p{i}", "port": port, "protocol": proto, **({"nodePort": node_port} if node_port else {})}
        for i, (port, proto, node_port) in enumerate(ports)]}
    if etp:
        spec["externalTrafficPolicy"] = etp
    if hc is not None:
        spec["healthCheckNodePort"] = hc
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


def _errors(tmp_path: Path, *services: dict[str, Any]) -> list[str]:
    f = tmp_path / "d.yaml"
    f.write_text(yaml.safe_dump_all([CLUSTER, *services], sort_keys=False))
    return [f"{d.path}: {d.message}" for d in errors(check_paths([f]).diagnostics)]


@pytest.mark.parametrize(("type_", "etp", "instead"), [
    ("ClusterIP", None, "ClusterIP"),
    ("NodePort", "Local", "NodePort"),
    ("NodePort", "Cluster", "NodePort"),
    ("LoadBalancer", "Cluster", "externalTrafficPolicy Cluster"),
    ("LoadBalancer", None, "externalTrafficPolicy Cluster"),  # the API server defaults it to Cluster
])
def test_health_check_node_port_only_on_a_local_load_balancer(tmp_path: Path, type_: str, etp: str | None,
                                                              instead: str) -> None:
    assert _errors(tmp_path, _service("a", type_, etp, hc=30100)) == [
        f"spec.healthCheckNodePort: {NOT_ALLOWED} (not {instead})"]


def test_a_zero_health_check_node_port_is_no_health_check_node_port(tmp_path: Path) -> None:
    """0 is Go's zero value: the API server reads it as unset, on any type."""
    assert _errors(tmp_path, _service("a", "NodePort", None, hc=0)) == []
    f = tmp_path / "lb.yaml"
    f.write_text(yaml.safe_dump_all([CLUSTER, _service("a", hc=0)], sort_keys=False))
    checked = check_paths([f])
    assert errors(checked.diagnostics) == [] and checked.build is not None
    svc = checked.build.cluster.services[0]
    assert 30000 <= svc.health_check_node_port <= 30999 and not svc.health_check_node_port_given  # allocated


def test_a_stray_health_check_node_port_takes_no_port_from_another_service(tmp_path: Path) -> None:
    """The API server stores none for a Service that needs none, so only the rule is reported."""
    stray = _service("a", "NodePort", None, hc=30100)
    other = _service("b", hc=30100)
    assert _errors(tmp_path, stray, other) == [f"spec.healthCheckNodePort: {NOT_ALLOWED} (not NodePort)"]


@pytest.mark.parametrize("hc", [29999, 31000, 8080, 1])
def test_given_health_check_node_port_outside_the_range(tmp_path: Path, hc: int) -> None:
    assert _errors(tmp_path, _service("a", hc=hc)) == [
        f"spec.healthCheckNodePort: healthCheckNodePort {hc} is outside the range 30000-30999"]


@pytest.mark.parametrize("hc", [30000, 30999, 30500])
def test_given_health_check_node_port_inside_the_range_is_kept(tmp_path: Path, hc: int) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(yaml.safe_dump_all([CLUSTER, _service("a", hc=hc)], sort_keys=False))
    checked = check_paths([f])
    assert errors(checked.diagnostics) == []
    assert checked.build is not None
    assert checked.build.cluster.services[0].health_check_node_port == hc


@pytest.mark.parametrize("protocol", ["TCP", "UDP", "SCTP"])
def test_health_check_node_port_clashes_with_an_earlier_node_port_of_any_protocol(tmp_path: Path,
                                                                                  protocol: str) -> None:
    earlier = _service("a", "NodePort", None, ports=((53, protocol, 30053),))
    assert _errors(tmp_path, earlier, _service("b", hc=30053)) == [
        "spec.healthCheckNodePort: healthCheckNodePort 30053 is also used by default/a"]


@pytest.mark.parametrize("protocol", ["TCP", "UDP", "SCTP"])
def test_a_later_node_port_of_any_protocol_clashes_with_a_health_check_node_port(tmp_path: Path,
                                                                                 protocol: str) -> None:
    later = _service("b", "NodePort", None, ports=((53, protocol, 30053),))
    assert _errors(tmp_path, _service("a", hc=30053), later) == [
        f"spec.ports[0].nodePort: nodePort 30053/{protocol} is also used by default/a"]


def test_health_check_node_port_clashes_with_another_health_check_node_port(tmp_path: Path) -> None:
    assert _errors(tmp_path, _service("a", hc=30100), _service("b", hc=30100)) == [
        "spec.healthCheckNodePort: healthCheckNodePort 30100 is also used by default/a"]


def test_health_check_node_port_clashes_with_the_services_own_node_port(tmp_path: Path) -> None:
    """The API server allocates a Service's nodePorts and then its healthCheckNodePort in one operation."""
    own = _service("a", hc=30080, ports=((80, "UDP", 30080),))
    assert _errors(tmp_path, own) == ["spec.healthCheckNodePort: healthCheckNodePort 30080 is also used by default/a"]
