"""`svcnet get` and `describe` print kubectl's layout for the seed example."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from svcnet.cli.main import cli

SEED = str(Path(__file__).resolve().parents[2] / "examples" / "seed")


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_get_services_columns():
    out = run("get", "services", "-n", "k8s-test", "-f", SEED).splitlines()
    assert out[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert out[1].split()[:5] == ["service", "NodePort", "10.111.35.139", "<none>", "8080:30000/TCP"]


def test_get_all_namespaces_adds_namespace_column():
    out = run("get", "svc", "-A", "-f", SEED).splitlines()
    assert out[0].split()[0] == "NAMESPACE" and out[1].split()[0] == "k8s-test"


def test_get_default_namespace_is_empty():
    assert run("get", "services", "-f", SEED).splitlines() == [
        "NAME   TYPE   CLUSTER-IP   EXTERNAL-IP   PORT(S)   AGE"]


def test_get_pods_wide_shows_ip_and_node():
    rows = [r.split() for r in run("get", "pods", "-n", "k8s-test", "-o", "wide", "-f", SEED).splitlines()[1:]]
    assert {r[6] for r in rows} == {"node1", "node2"}
    assert all(r[5].startswith("10.244.") for r in rows)


def test_get_endpoints_lists_both_pods():
    out = run("get", "endpoints", "-n", "k8s-test", "-f", SEED).splitlines()[1]
    eps = out.split()[1].split(",")
    assert len(eps) == 2 and all(e.endswith(":8080") for e in eps)


def test_get_yaml_and_json_are_kubernetes_lists():
    as_yaml = yaml.safe_load(run("get", "services", "-n", "k8s-test", "-o", "yaml", "-f", SEED))
    as_json = json.loads(run("get", "services", "-n", "k8s-test", "-o", "json", "-f", SEED))
    assert as_yaml == as_json
    (svc,) = as_json["items"]
    assert as_json["kind"] == "List"
    assert svc["spec"]["ports"][0]["nodePort"] == 30000
    assert svc["spec"]["clusterIP"] == "10.111.35.139"


def test_describe_service_fields_and_endpoints():
    out = run("describe", "service", "service", "-n", "k8s-test", "-f", SEED)
    fields = dict(line.split(None, 1) if ":" not in line[:26] else (line[:26].strip(), line[26:])
                  for line in out.splitlines())
    assert fields["Name:"] == "service"
    assert fields["Type:"] == "NodePort"
    assert fields["IP:"] == "10.111.35.139"
    assert fields["NodePort:"] == "http  30000/TCP"
    assert len(fields["Endpoints:"].split(",")) == 2


def test_describe_missing_service_fails():
    result = CliRunner().invoke(cli, ["describe", "service", "nope", "-n", "k8s-test", "-f", SEED])
    assert result.exit_code == 1
    assert 'services "nope" not found' in result.output


def test_get_yaml_shows_a_load_balancer_without_node_ports_as_the_api_server_stores_it(tmp_path: Path):
    base = Path(__file__).resolve().parents[1] / "validate" / "good" / "base-cluster.yaml"
    svc = tmp_path / "lb.yaml"
    svc.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n"
                   "  allocateLoadBalancerNodePorts: false\n  ports: [{name: a, port: 80}, "
                   "{name: b, port: 81, nodePort: 30081}]\n")
    (obj,) = yaml.safe_load(run("get", "svc", "-o", "yaml", "-f", str(base), "-f", str(svc)))["items"]
    assert obj["spec"]["allocateLoadBalancerNodePorts"] is False
    assert [p.get("nodePort") for p in obj["spec"]["ports"]] == [None, 30081]


def test_get_shows_zones_and_the_hints_svcnet_writes():
    """Nodes carry their labels (the zone among them); endpoints the hints kube-proxy reads,
    given in an EndpointSlice or written for trafficDistribution (PreferSameNode: zone and node)."""
    golden = str(Path(__file__).resolve().parents[1] / "golden" / "topology-zones.yaml")
    nodes = {n["metadata"]["name"]: n for n in yaml.safe_load(run("get", "nodes", "-o", "yaml", "-f", golden))["items"]}
    assert nodes["node1"]["metadata"]["labels"] == {"topology.kubernetes.io/zone": "zone-a"}
    assert nodes["node2"]["metadata"]["labels"] == {"rack": "r2", "topology.kubernetes.io/zone": "zone-b"}
    slices = yaml.safe_load(run("get", "endpoints", "-n", "ns1", "-o", "yaml", "-f", golden))["items"]
    hints = {s["metadata"]["name"]: {ep["addresses"][0]: ep.get("hints") for ep in s["endpoints"]} for s in slices}
    assert hints["api-http"] == {
        "10.244.1.9": {"forZones": [{"name": "zone-a"}], "forNodes": [{"name": "node1"}]},
        "10.244.2.9": {"forZones": [{"name": "zone-b"}], "forNodes": [{"name": "node2"}]}}
    assert hints["web-http"]["10.244.2.5"] == {"forZones": [{"name": "zone-b"}]}
