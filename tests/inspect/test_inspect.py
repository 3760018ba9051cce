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


# -- dual-stack (the CLI refuses IPv6 until svcnet applies it: these go through the functions the
# commands print, on a model built with the gate lifted, as tests/render does) ---------------------
DUAL = Path(__file__).resolve().parents[1] / "golden" / "dual-stack.yaml"


def dual_stack():  # type: ignore[no-untyped-def]
    from svcnet.model.load import check_paths

    checked = check_paths([DUAL], ipv6=True)
    assert checked.build is not None
    return checked.build.cluster


def describe_fields(text: str) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields.setdefault(line[:26].strip(), []).append(line[26:])
    return fields


def test_describe_shows_both_cluster_ips_as_kubectl_does():
    from svcnet.inspect.describe import describe_service

    cluster = dual_stack()
    web, web6 = cluster.services
    fields = describe_fields(describe_service(cluster, web))
    assert fields["IP Family Policy:"] == ["PreferDualStack"]
    assert fields["IP Families:"] == ["IPv4,IPv6"]
    assert fields["IP:"] == ["10.96.0.10"]
    assert fields["IPs:"] == ["10.96.0.10,fd00:10:96::10"]
    assert fields["Endpoints:"] == ["10.244.1.5:8080,[fd00:10:244:1::5]:8080"]
    fields = describe_fields(describe_service(cluster, web6))
    assert (fields["IP Family Policy:"], fields["IP Families:"], fields["IPs:"]) == (
        ["SingleStack"], ["IPv6"], ["fd00:10:96::20"])


def test_describe_of_a_single_stack_ipv4_service_is_unchanged():
    out = run("describe", "service", "service", "-n", "k8s-test", "-f", SEED)
    fields = describe_fields(out)
    assert fields["IP Family Policy:"] == ["SingleStack"] and fields["IP Families:"] == ["IPv4"]
    assert fields["IP:"] == fields["IPs:"] == ["10.111.35.139"]


def test_get_yaml_shows_both_families_of_services_pods_nodes_and_endpoint_slices():
    from svcnet.inspect.get import get

    cluster = dual_stack()
    web, web6 = yaml.safe_load(get(cluster, "services", "ns1", "yaml"))["items"]
    assert (web["spec"]["clusterIPs"], web["spec"]["ipFamilies"], web["spec"]["ipFamilyPolicy"]) == (
        ["10.96.0.10", "fd00:10:96::10"], ["IPv4", "IPv6"], "PreferDualStack")
    assert (web6["spec"]["clusterIPs"], web6["spec"]["ipFamilies"]) == (["fd00:10:96::20"], ["IPv6"])
    (pod,) = yaml.safe_load(get(cluster, "pods", "ns1", "yaml"))["items"]
    assert pod["status"] == {"podIP": "10.244.1.5", "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00:10:244:1::5"}]}
    (node,) = yaml.safe_load(get(cluster, "nodes", None, "yaml"))["items"]
    assert node["spec"]["podCIDRs"] == ["10.244.1.0/24", "fd00:10:244:1::/64"]
    slices = yaml.safe_load(get(cluster, "endpoints", "ns1", "yaml"))["items"]
    assert [(s["metadata"]["name"], s["addressType"], [e["addresses"] for e in s["endpoints"]]) for s in slices] == [
        ("web-http", "IPv4", [["10.244.1.5"]]),
        ("web-http-ipv6", "IPv6", [["fd00:10:244:1::5"]]),
        ("web6-http", "IPv6", [["fd00:10:244:1::5"]]),
    ]


def test_get_yaml_of_a_single_stack_service_names_its_one_family():
    (svc,) = yaml.safe_load(run("get", "services", "-n", "k8s-test", "-o", "yaml", "-f", SEED))["items"]
    assert (svc["spec"]["clusterIPs"], svc["spec"]["ipFamilies"], svc["spec"]["ipFamilyPolicy"]) == (
        ["10.111.35.139"], ["IPv4"], "SingleStack")
