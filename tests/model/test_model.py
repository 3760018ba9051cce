"""Model building: defaults, deterministic allocation, Deployment expansion, endpoints."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from svcnet.model.load import check_paths, load_cluster

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
BASE = Path(__file__).resolve().parents[1] / "validate" / "good" / "base-cluster.yaml"


def write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "objs.yaml"
    f.write_text(text)
    return f


def test_seed_model():
    c = load_cluster([SEED])
    assert [n.name for n in c.nodes] == ["node1", "node2"]
    (svc,) = c.services
    assert (svc.namespace, svc.name, svc.cluster_ip, svc.type) == ("k8s-test", "service", "10.111.35.139", "NodePort")
    assert svc.ports[0].node_port == 30000
    assert len(c.pods) == 2
    # one replica per node, each IP inside its node's podCIDR
    by_node = {p.node_name: p for p in c.pods}
    assert set(by_node) == {"node1", "node2"}
    assert by_node["node1"].ip.startswith("10.244.1.") and by_node["node2"].ip.startswith("10.244.2.")
    (sp,) = c.service_ports
    assert [e.hostport for e in sp.endpoints] == sorted(f"{p.ip}:8080" for p in c.pods)


def test_loading_is_deterministic():
    a, b = load_cluster([SEED]), load_cluster([SEED])
    assert a == b


def test_defaults_and_allocation(tmp_path: Path):
    f = write(tmp_path, """\
apiVersion: v1
kind: Service
metadata: {name: lb, namespace: web}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  ports: [{port: 80}]
""")
    c = load_cluster([BASE, f])
    (svc,) = c.services
    assert svc.cluster_ip.startswith("10.")  # from the default 10.96.0.0/12
    import ipaddress
    assert ipaddress.ip_address(svc.cluster_ip) in ipaddress.ip_network("10.96.0.0/12")
    assert 30000 <= svc.ports[0].node_port <= 32767
    assert 30000 <= svc.health_check_node_port <= 32767
    assert svc.health_check_node_port != svc.ports[0].node_port
    assert svc.affinity_timeout == 10800


def test_adding_a_service_does_not_move_others(tmp_path: Path):
    one = "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {type: NodePort, ports: [{port: 80}]}\n"
    two = one + "---\napiVersion: v1\nkind: Service\nmetadata: {name: b}\nspec: {type: NodePort, ports: [{port: 80}]}\n"
    c1 = load_cluster([BASE, write(tmp_path, one)])
    c2 = load_cluster([BASE, write(tmp_path, two)])
    a1 = c1.services[0]
    a2 = next(s for s in c2.services if s.name == "a")
    assert (a1.cluster_ip, a1.ports[0].node_port) == (a2.cluster_ip, a2.ports[0].node_port)


def test_named_target_port_resolves_per_pod(tmp_path: Path):
    f = write(tmp_path, """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: web}]
---
apiVersion: v1
kind: Pod
metadata: {name: a, labels: {app: web}}
spec:
  nodeName: node1
  containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]
status: {podIP: 10.244.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: b, labels: {app: web}}
spec:
  nodeName: node2
  containers: [{name: c, ports: [{name: web, containerPort: 9090}]}]
status: {podIP: 10.244.2.10}
""")
    c = load_cluster([BASE, f])
    (sp,) = c.service_ports
    assert [(e.hostport, e.node_name) for e in sp.endpoints] == [
        ("10.244.1.10:8080", "node1"), ("10.244.2.10:9090", "node2")]


def test_endpoint_slices_without_selector(tmp_path: Path):
    f = write(tmp_path, """\
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ext-1
  labels: {kubernetes.io/service-name: ext}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: [203.0.113.10]
    conditions: {ready: true}
  - addresses: [203.0.113.9]
    nodeName: node1
    conditions: {ready: false, serving: true, terminating: true}
  - addresses: [203.0.113.10]
    conditions: {ready: false, terminating: true}
""")
    c = load_cluster([BASE, f])
    (sp,) = c.service_ports
    eps = {e.hostport: e for e in sp.endpoints}
    # sorted by ip:port string; the duplicate keeps its non-terminating copy
    assert list(eps) == ["203.0.113.10:8080", "203.0.113.9:8080"]
    assert eps["203.0.113.10:8080"].ready and not eps["203.0.113.10:8080"].terminating
    assert eps["203.0.113.9:8080"].serving and eps["203.0.113.9:8080"].terminating
    assert eps["203.0.113.9:8080"].node_name == "node1"


def test_unknown_kubernetes_fields_warn_not_fail(tmp_path: Path):
    f = write(tmp_path, """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ports: [{port: 80}]
  publishNotReadyAddresses: true
  someFutureField: 1
""")
    checked = check_paths([BASE, f])
    assert checked.ok
    warnings = [str(d) for d in checked.diagnostics if d.severity == "warning"]
    assert any("someFutureField" in w for w in warnings), warnings


def test_selector_matching_nothing_is_a_warning(tmp_path: Path):
    f = write(tmp_path, "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
                        "spec: {selector: {app: nothing}, ports: [{port: 80}]}\n")
    checked = check_paths([BASE, f])
    assert checked.ok
    assert any("REJECT" in d.message and d.severity == "warning" for d in checked.diagnostics)


@pytest.mark.parametrize("replicas", [0, 1, 5])
def test_deployment_expansion(tmp_path: Path, replicas: int):
    f = write(tmp_path, f"""\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: shop}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers: [{{name: c, ports: [{{containerPort: 80}}]}}]
""")
    c = load_cluster([BASE, f])
    assert len(c.pods) == replicas
    assert len({p.ip for p in c.pods}) == replicas
    assert all(p.name.startswith("web-") and p.owner == "Deployment/web" for p in c.pods)
    if replicas >= 2:
        assert {p.node_name for p in c.pods} == {"node1", "node2"}


def test_headless_service_is_accepted_and_gets_no_rules(tmp_path: Path):
    f = write(tmp_path, "apiVersion: v1\nkind: Service\nmetadata: {name: db}\n"
                        "spec: {clusterIP: None, ports: [{port: 5432}]}\n")
    c = load_cluster([BASE, f])
    assert [s.name for s in c.services] == ["db"] and c.services[0].cluster_ip == ""
    assert c.service_ports == ()  # kube-proxy skips headless services


def test_omitted_serving_condition_means_serving(tmp_path: Path):
    # kube-proxy reads a nil `serving` as true, not as `ready` (endpointslicecache.go), so a
    # not-ready terminating endpoint without `serving` is a fallback endpoint, not "no endpoints".
    f = write(tmp_path, """\
apiVersion: v1
kind: Service
metadata: {name: ext}
spec:
  ports: [{name: http, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ext-1
  labels: {kubernetes.io/service-name: ext}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: [203.0.113.1]
    conditions: {ready: false, terminating: true}
  - addresses: [203.0.113.2]
    conditions: {ready: false, serving: null, terminating: true}
  - addresses: [203.0.113.3]
    conditions: {ready: false, serving: false, terminating: true}
  - addresses: [203.0.113.4]
""")
    (sp,) = load_cluster([BASE, f]).service_ports
    got = {e.ip: (e.ready, e.serving, e.terminating) for e in sp.endpoints}
    assert got == {
        "203.0.113.1": (False, True, True),
        "203.0.113.2": (False, True, True),
        "203.0.113.3": (False, False, True),
        "203.0.113.4": (True, True, False),
    }


def test_deployment_template_with_non_string_keys_builds(tmp_path):
    # Found by tests/fuzz: YAML keys may be ints, nulls or lists; hashing the template sorted
    # them against strings and raised TypeError (a traceback from `svcnet validate`).
    f = write(tmp_path, """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: x}
spec:
  selector: {matchLabels: {app: a}}
  template:
    metadata: {labels: {app: a}}
    spec:
      containers: [{name: c, image: i}]
      extra: {1: a, b: c, null: d}
      ? [a, b]
      : c
""")
    checked = check_paths([BASE, f])
    assert checked.ok, [str(d) for d in checked.diagnostics]
    (pod,) = checked.build.cluster.pods
    assert pod.name.startswith("d-")


def test_the_model_says_which_values_the_description_gave(tmp_path: Path):
    # The semantic checks judge only what a user wrote (an allocated value is free and in range
    # by construction), so the model records it instead of the checks re-reading the YAML.
    f = write(tmp_path, """\
apiVersion: v1
kind: Service
metadata: {name: given}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  clusterIP: 10.96.0.10
  healthCheckNodePort: 30100
  ports: [{name: a, port: 80, nodePort: 30080}, {name: b, port: 81}]
---
apiVersion: v1
kind: Service
metadata: {name: allocated}
spec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: headless}
spec: {clusterIP: None, ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {nodeName: node1, containers: [{name: c}]}
status: {podIP: 10.244.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: q}
spec: {nodeName: node1, containers: [{name: c}]}
""")
    c = load_cluster([BASE, f])
    svcs = {s.name: s for s in c.services}
    given, allocated, headless = svcs["given"], svcs["allocated"], svcs["headless"]
    assert (given.cluster_ip, given.cluster_ip_given, given.headless) == ("10.96.0.10", True, False)
    assert (given.health_check_node_port, given.health_check_node_port_given) == (30100, True)
    assert [(p.node_port_given, p.node_port == 30080) for p in given.ports] == [(True, True), (False, False)]
    assert allocated.cluster_ip and not allocated.cluster_ip_given and not allocated.headless
    assert allocated.health_check_node_port and not allocated.health_check_node_port_given
    assert allocated.ports[0].node_port and not allocated.ports[0].node_port_given
    assert (headless.cluster_ip, headless.cluster_ip_given, headless.headless) == ("", False, True)
    assert {p.name: (p.ip_given, bool(p.ip)) for p in c.pods} == {"p": (True, True), "q": (False, True)}
    assert not c.service_cidr_given and not c.cluster_cidr_given


def test_allocation_keeps_the_family_of_the_range():
    # `ipaddress.ip_address(int)` makes an IPv4 address of any integer below 2**32: an address
    # of ::1:0/120 came out as "0.1.0.222".
    from svcnet.model.alloc import allocate_ip

    ip = allocate_ip("default/web", "::1:0/120", set())
    assert ip is not None and ipaddress.ip_address(ip) in ipaddress.ip_network("::1:0/120")
    assert allocate_ip("default/web", "10.96.0.0/30", set()) == "10.96.0.2"
    # No broadcast address in IPv6: the last address of the range is allocatable.
    assert allocate_ip("x", "fd00::/126", {"fd00::2"}) == "fd00::3"
    assert allocate_ip("x", "10.0.0.0/30", {"10.0.0.2"}) is None
