"""JSON Schemas (schemas/*.json) and svcnet.validate_schema: good and bad documents, refs, speed."""

from __future__ import annotations

import copy
import datetime
import ipaddress
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import jsonschema_rs
import pytest
import referencing
import referencing.jsonschema
import yaml
from prereq import unavailable

from svcnet.model.types import ProxyConfig
from svcnet.validate_schema import EXPECTED, SchemaError, Schemas, format_path

# The files users read and give to check-jsonschema: copies of the shipped ones (tests/packaging).
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"
KIND_KEYS = ("cluster", "service", "pod", "deployment", "endpointslice")

CLUSTER = """
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: lab}
spec:
  serviceCIDR: 10.96.0.0/12
  clusterCIDR: 10.244.0.0/16
  nodePortRange: 30000-32767
  bridge: cni0
  proxy:
    mode: iptables
    detectLocalMode: BridgeInterface
    detectLocal: {bridgeInterface: cni0, interfaceNamePrefix: veth}
    iptables: {masqueradeBit: 14, masqueradeAll: false, localhostNodePorts: true}
    nodePortAddresses: [192.168.0.0/24, "fd00::/64"]
  nodes:
    - name: node-1
      addresses: [192.168.0.11, "fd00::11"]
      podCIDR: 10.244.1.0/24
      facts: {randomFully: true, nfacctCounters: [ct_state_invalid_dropped_pkts], tcpBeLiberal: false}
    - {name: node-2.lab, addresses: [192.168.0.12], podCIDR: 10.244.2.0/24}
"""

SERVICE = """
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels: {app.kubernetes.io/name: web, tier: frontend}
  annotations: {example.com/owner: "team a"}
  uid: 0b5e2d44-1c1b-4b8e-9f0e-1d1c8a7b6c5d
  resourceVersion: "123"
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  ipFamilies: [IPv4]
  ipFamilyPolicy: SingleStack
  ports:
    - {name: http, protocol: TCP, port: 80, targetPort: http, nodePort: 30080, appProtocol: http}
    - {name: dns, protocol: UDP, port: 53, targetPort: 5353}
  selector: {app.kubernetes.io/name: web}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
  externalTrafficPolicy: Local
  internalTrafficPolicy: Cluster
  healthCheckNodePort: 31000
  externalIPs: [192.168.0.100]
  loadBalancerSourceRanges: [203.0.113.0/24]
  loadBalancerIP: ""
  allocateLoadBalancerNodePorts: true
  publishNotReadyAddresses: false
status:
  loadBalancer:
    ingress: [{ip: 192.168.0.200, ipMode: VIP}, {hostname: lb.example.com}]
"""

POD = """
apiVersion: v1
kind: Pod
metadata: {name: client, labels: {app: client}}
spec:
  nodeName: node-1
  containers:
    - name: main
      image: busybox:1.36
      command: [sh, -c, 'echo "$(hostname)"; sleep 3600 && true']
      args: []
      ports: [{name: http, containerPort: 8080, protocol: TCP}]
status: {podIP: 10.244.1.5, podIPs: [{ip: 10.244.1.5}], phase: Running}
"""

DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop, labels: {app: web}}
spec:
  replicas: 3
  strategy: {type: RollingUpdate}
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
        - name: web
          image: registry.example.com/web@sha256:0123abcd
          command: [python3, -m, http.server, "8080"]
          ports: [{name: http, containerPort: 8080}]
          env: [{name: MODE, value: prod}]
          resources: {limits: {cpu: 500m, memory: 128Mi}, requests: {cpu: 100m}}
          readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 5}
          livenessProbe: {tcpSocket: {port: 8080}}
"""

ENDPOINTSLICE = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: shop
  labels: {kubernetes.io/service-name: web, endpointslice.kubernetes.io/managed-by: manual}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}, {name: "", port: 53, protocol: UDP}]
endpoints:
  - addresses: [10.244.1.5]
    conditions: {ready: true, serving: true, terminating: false}
    nodeName: node-1
    targetRef: {kind: Pod, name: web-1, namespace: shop, uid: abc}
    zone: a
    hints: {forZones: [{name: a}]}
  - addresses: [10.244.2.7]
    conditions: {ready: null}
"""

ENDPOINTSLICE6 = """
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-v6, labels: {kubernetes.io/service-name: web}}
addressType: IPv6
ports: null
endpoints: [{addresses: ["fd00:10:244:1::5"]}]
"""

INVENTORY = """
all:
  vars: {ansible_user: root, ansible_become: false}
  hosts:
    node-1: {ansible_host: 192.168.0.11, ansible_port: 22, ansible_ssh_private_key_file: ~/.ssh/id_ed25519}
    node-2: {ansible_host: node2.lab, ansible_port: "2222", ansible_python_interpreter: /usr/bin/python3}
    node-3:
  children:
    workers:
      hosts: {node-2: null}
      children: {edge: {hosts: {node-3: {ansible_ssh_common_args: "-o StrictHostKeyChecking=no"}}}}
"""

PLAYBOOK = """
- name: services
  hosts: workers:&edge
  cluster: [cluster.yaml, services.yaml]
  serial: 30%
  tags: [net]
  vars: {anything: goes}
  tasks:
    - validate:
    - {name: rules, rules: {dry_run: true}, tags: always}
    - verify: null
- hosts: all
  serial: 2
  cluster: cluster.yaml
  tasks: [{teardown: {}}]
"""

GOOD = {
    "cluster": CLUSTER,
    "service": SERVICE,
    "pod": POD,
    "deployment": DEPLOYMENT,
    "endpointslice": ENDPOINTSLICE,
    "inventory": INVENTORY,
    "playbook": PLAYBOOK,
}


@pytest.fixture(scope="module")
def rs() -> Schemas:
    schemas = Schemas.load()
    assert schemas.backend == "jsonschema-rs"
    return schemas


@pytest.fixture(scope="module")
def py() -> Schemas:
    schemas = Schemas.load(use_rust=False)
    assert schemas.backend == "python-jsonschema"
    return schemas


@pytest.fixture(scope="module", params=["rs", "py"])
def both(request: pytest.FixtureRequest) -> Schemas:
    return request.getfixturevalue(request.param)


def doc(key: str) -> Any:
    return yaml.safe_load(GOOD[key])


def with_value(obj: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """Deep copy of `obj` with `path` set to `value` (or deleted when value is DELETE)."""
    out = copy.deepcopy(obj)
    node = out
    for part in path[:-1]:
        node = node[part]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


DELETE = object()


# --------------------------------------------------------------------------- good documents
@pytest.mark.parametrize("key", sorted(GOOD))
def test_good_documents_validate(both: Schemas, key: str) -> None:
    assert both.validate(key, doc(key)) == []


@pytest.mark.parametrize("text", [CLUSTER, SERVICE, POD, DEPLOYMENT, ENDPOINTSLICE, ENDPOINTSLICE6])
def test_description_schema_dispatches_every_kind(both: Schemas, text: str) -> None:
    obj = yaml.safe_load(text)
    assert both.validate("description", obj) == []
    assert both.kind_key(obj["apiVersion"], obj["kind"]) in KIND_KEYS
    # a bad value inside is found through the dispatch too
    bad = with_value(obj, ("metadata", "name"), "Bad_Name")
    assert [e.path for e in both.validate("description", bad)] == [("metadata", "name")]


def test_kind_key_table(rs: Schemas) -> None:
    assert rs.kind_key("v1", "Service") == "service"
    assert rs.kind_key("svcnet.dev/v1alpha1", "Cluster") == "cluster"
    assert rs.kind_key("discovery.k8s.io/v1", "EndpointSlice") == "endpointslice"
    assert rs.kind_key("apps/v1", "Deployment") == "deployment"
    assert rs.kind_key("v1", "Pod") == "pod"
    assert rs.kind_key("v1", "Deployment") is None
    assert rs.kind_key("v1", "ConfigMap") is None
    assert set(rs.keys) == {*KIND_KEYS, "description", "inventory", "playbook"}


def test_description_rejects_unsupported_kind(both: Schemas) -> None:
    errors = both.validate("description", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    assert ("kind",) in [e.path for e in errors]
    mismatched = both.validate("description", {"apiVersion": "v1", "kind": "Deployment"})
    assert [e.path for e in mismatched] == [()]
    assert "supported apiVersion/kind pair" in mismatched[0].message


# --------------------------------------------------------------------------- bad values
IP_MSG = "is not a valid IPv4 or IPv6 address"
CIDR_MSG = "is not a valid CIDR"
BAD = [
    # Cluster (strict: svcnet's own API)
    ("cluster", ("spec", "serviceCIDR"), "10.96.0.0/33", None, CIDR_MSG),
    ("cluster", ("spec", "serviceCIDR"), "10.96.0.0", None, CIDR_MSG),
    ("cluster", ("spec", "serviceCIDR"), "10.096.0.0/12", None, CIDR_MSG),
    ("cluster", ("spec", "serviceCIDR"), " 10.96.0.0/12", None, CIDR_MSG),
    ("cluster", ("spec", "clusterCIDR"), "10.244.0.0/16; reboot", None, CIDR_MSG),
    ("cluster", ("spec", "nodePortRange"), "30000-70000", None, "is not a port range"),
    ("cluster", ("spec", "bridge"), "cni0 -j ACCEPT", None, "is not a valid interface name"),
    ("cluster", ("spec", "bridge"), "averyveryverylongbridge", None, "is not a valid interface name"),
    ("cluster", ("spec", "bridge"), "-cni", None, "is not a valid interface name"),
    ("cluster", ("spec", "proxy", "mode"), "ipvs", None, "'ipvs' is not one of: 'iptables', 'nftables'"),
    ("cluster", ("spec", "proxy", "detectLocalMode"), "Bridge", None, "is not one of"),
    ("cluster", ("spec", "proxy", "iptables", "masqueradeBit"), 32, None, "must be <= 31"),
    ("cluster", ("spec", "proxy", "iptables", "masqueradeBit"), -1, None, "must be >= 0"),
    ("cluster", ("spec", "proxy", "iptables", "masqueradeAll"), "yes", None, "must be a boolean"),
    ("cluster", ("spec", "proxy", "iptables", "masqeradeBit"), 3, None, "unknown field 'masqeradeBit'"),
    ("cluster", ("spec", "proxy", "nodePortAddresses", 0), "eth0", None, CIDR_MSG),
    ("cluster", ("spec", "proxy", "healthzBindAddress"), "0.0.0.0", None, "is not an IPv4 address and port"),
    ("cluster", ("spec", "proxy", "healthzBindAddress"), "0.0.0.0:70000", None, "is not an IPv4 address and port"),
    ("cluster", ("spec", "proxy", "healthzBindAddress"), "0.0.0.0:10256; reboot", None,
     "is not an IPv4 address and port"),
    ("cluster", ("spec", "nodes"), [], None, "must have at least 1 item"),
    ("cluster", ("spec", "nodes", 0, "name"), "Node_1", None, "is not a valid DNS-1123 subdomain"),
    ("cluster", ("spec", "nodes", 0, "addresses", 0), "192.168.0.256", None, IP_MSG),
    ("cluster", ("spec", "nodes", 0, "addresses", 0), "192.168.000.1", None, IP_MSG),
    ("cluster", ("spec", "nodes", 0, "addresses"), [], None, "must have at least 1 item"),
    ("cluster", ("spec", "nodes", 0, "podCIDR"), DELETE, None, "is a required property"),
    ("cluster", ("spec", "serviceCIDR"), ["10.96.0.0/12", "fd00::/108", "10.97.0.0/16"], None,
     "must be a valid CIDR (e.g. 10.0.0.0/8 or fd00::/64) or a list of one or two, one per IP family"),
    ("cluster", ("spec", "clusterCIDR"), [], None, "or a list of one or two, one per IP family"),
    ("cluster", ("spec", "clusterCIDR"), ["10.244.0.0/16", "fd00::/129"], None, "or a list of one or two"),
    ("cluster", ("spec", "nodes", 0, "podCIDRs"), ["10.244.1.0/24", "fd00::/64", "10.244.2.0/24"], None,
     "must have at most 2 item(s)"),
    ("cluster", ("spec", "nodes", 0, "podCIDRs"), ["10.244.1.0/33"], ("spec", "nodes", 0, "podCIDRs", 0), CIDR_MSG),
    ("cluster", ("spec", "nodes", 0, "facts", "nfacctCounters", 0), "bogus", None, "is not one of"),
    ("cluster", ("spec", "nodes", 0, "taints"), [], None, "unknown field 'taints'"),
    # A zone is a label value, as the node's topology.kubernetes.io/zone label is.
    ("cluster", ("spec", "nodes", 0, "zone"), "us-east/1a", None, "is not a valid label value"),
    ("cluster", ("spec", "nodes", 0, "zone"), "z" * 64, None, "is not a valid label value"),
    ("cluster", ("spec", "nodes", 0, "labels"), {"topology.kubernetes.io/zone": "-a"},
     ("spec", "nodes", 0, "labels", "topology.kubernetes.io/zone"), "is not a valid label value"),
    ("cluster", ("spec", "servicecidr"), "10.0.0.0/8", None, "unknown field 'servicecidr'"),
    # Service
    ("service", ("metadata", "name"), "1web", None, "is not a valid DNS-1035 label"),
    ("service", ("metadata", "name"), "w" * 64, None, "is not a valid DNS-1035 label"),
    ("service", ("metadata", "namespace"), "Shop", None, "is not a valid DNS-1123 label"),
    ("service", ("metadata", "labels", "tier"), "front end", None, "is not a valid label value"),
    ("service", ("metadata", "labels", "a b"), "x", None, "is not a valid label key"),
    ("service", ("metadata", "labels", "tier"), 3, None, "is not a valid label value"),
    ("service", ("spec", "type"), "ExternalName", None, "is not a Service type svcnet supports"),
    ("service", ("spec", "trafficDistribution"), "PreferNearby", None,
     "is not one of: 'PreferClose', 'PreferSameZone', 'PreferSameNode'"),
    ("service", ("spec", "clusterIP"), "none", None, "an IP address, \"\" or \"None\""),
    ("service", ("spec", "clusterIP"), "10.96.0.300", None, "is not an IP address"),
    ("service", ("spec", "ports"), [], None, "must have at least 1 item"),
    ("service", ("spec", "ports", 0, "port"), 65536, None, "must be <= 65535, got 65536"),
    ("service", ("spec", "ports", 0, "port"), 0, None, "must be >= 1"),
    ("service", ("spec", "ports", 0, "port"), "80", None, "must be an integer, got string '80'"),
    ("service", ("spec", "ports", 0, "port"), True, None, "must be an integer, got boolean"),
    ("service", ("spec", "ports", 0, "port"), 10**40, None, "must be <= 65535"),
    ("service", ("spec", "ports", 0, "port"), DELETE, None, "is a required property"),
    ("service", ("spec", "ports", 0, "protocol"), "ICMP", None, "is not one of: 'TCP', 'UDP', 'SCTP'"),
    ("service", ("spec", "ports", 0, "targetPort"), "HTTP", None, "is not a port number (1-65535) or a"),
    ("service", ("spec", "ports", 0, "targetPort"), "1234", None, "container port name"),
    ("service", ("spec", "ports", 0, "targetPort"), 70000, None, "container port name"),
    ("service", ("spec", "ports", 0, "name"), "Http", None, "is not a valid DNS-1123 label"),
    ("service", ("spec", "ports", 0, "nodePort"), -5, None, "must be >= 1"),
    ("service", ("spec", "selector", "app"), "web$(id)", None, "is not a valid label value"),
    ("service", ("spec", "selector"), ["app=web"], None, "must be a mapping, got list"),
    ("service", ("spec", "sessionAffinity"), "Sticky", None, "is not one of"),
    ("service", ("spec", "sessionAffinityConfig", "clientIP", "timeoutSeconds"), 86401, None, "<= 86400"),
    ("service", ("spec", "externalTrafficPolicy"), "local", None, "is not one of: 'Cluster', 'Local'"),
    ("service", ("spec", "healthCheckNodePort"), 99999, None, "must be <= 65535"),
    ("service", ("spec", "externalIPs", 0), "192.168.0.100\n-A INPUT", None, IP_MSG),
    ("service", ("spec", "externalIPs", 0), "192.168.0.100\n", None, IP_MSG),
    ("service", ("spec", "externalIPs", 0), "fe80::1%eth0", None, IP_MSG),
    ("service", ("spec", "loadBalancerSourceRanges", 0), "203.0.113.0 /24", None, CIDR_MSG),
    ("service", ("spec", "loadBalancerSourceRanges", 0), "\x1c203.0.113.0/24", None, CIDR_MSG),  # not Go space
    ("service", ("spec", "loadBalancerSourceRanges", 0), "203.0.113.0256/24", None, CIDR_MSG),
    ("service", ("spec", "clusterIP"), "10.96.0.0256", None, "is not an IP address"),
    ("service", ("spec", "externalIPs", 0), "1.2.3.04.", None, IP_MSG),
    ("endpointslice", ("endpoints", 0, "addresses", 0), "10.0.0.0256", None, "is not a valid IPv4 address"),
    ("service", ("spec", "ipFamilies", 0), "IPv5", None, "is not one of"),
    ("service", ("status", "loadBalancer", "ingress", 0, "ipMode"), "NAT", None, "is not one of"),
    ("service", ("status", "loadBalancer", "ingress", 0, "ip"), "lb", None, IP_MSG),
    ("service", ("kind",), "Services", None, "must be 'Service', got 'Services'"),
    ("service", ("spec",), DELETE, None, "is a required property"),
    # Pod
    ("pod", ("spec", "nodeName"), "node 1", None, "is not a valid DNS-1123 subdomain"),
    ("pod", ("spec", "containers"), [], None, "must have at least 1 item"),
    ("pod", ("spec", "containers", 0, "command", 1), "a\x00b", None, "without NUL characters"),
    ("pod", ("spec", "containers", 0, "command"), "sleep 1", None, "must be a list, got string"),
    ("pod", ("spec", "containers", 0, "ports", 0, "containerPort"), 65536, None, "must be <= 65535"),
    ("pod", ("spec", "containers", 0, "ports", 0, "name"), "http-too-long-name", None, "IANA_SVC_NAME"),
    ("pod", ("spec", "containers", 0, "name"), "Main", None, "is not a valid DNS-1123 label"),
    ("pod", ("status", "podIP"), "10.244.1.5/24", None, IP_MSG),
    ("pod", ("status", "podIPs", 0, "ip"), "::g", None, IP_MSG),
    # Deployment
    ("deployment", ("spec", "replicas"), 1001, None, "must be <= 1000"),
    ("deployment", ("spec", "replicas"), 2.5, None, "must be an integer, got number 2.5"),
    ("deployment", ("spec", "selector", "matchLabels", "app"), "-web", None, "is not a valid label value"),
    ("deployment", ("spec", "template", "spec", "containers", 0, "image"), "a b", None, "without whitespace"),
    ("deployment", ("spec", "template", "spec", "containers"), DELETE, None, "is a required property"),
    ("deployment", ("metadata",), "web", None, "must be a mapping, got string 'web'"),
    # EndpointSlice
    ("endpointslice", ("addressType",), "IPv7", None, "is not one of: 'IPv4', 'IPv6', 'FQDN'"),
    ("endpointslice", ("endpoints", 0, "addresses", 0), "fd00::5", None, "is not a valid IPv4 address"),
    ("endpointslice", ("endpoints", 0, "addresses"), [], None, "must have at least 1 item"),
    ("endpointslice", ("endpoints", 0, "conditions", "ready"), "yes", None, "must be a boolean or null"),
    ("endpointslice", ("endpoints", 0, "nodeName"), "node_1", None, "DNS-1123 subdomain"),
    # Hints as validateHints takes them: zone names are label values, node names node names, 8 at most.
    ("endpointslice", ("endpoints", 0, "hints"), {"forZones": [{"name": "zone a"}]}, ("endpoints", 0, "hints",
     "forZones", 0, "name"), "is not a valid label value"),
    ("endpointslice", ("endpoints", 0, "hints"), {"forZones": [{"name": f"z{i}"} for i in range(9)]},
     ("endpoints", 0, "hints", "forZones"), "must have at most 8 item(s)"),
    ("endpointslice", ("endpoints", 0, "hints"), {"forNodes": [{"name": "Node1"}]}, ("endpoints", 0, "hints",
     "forNodes", 0, "name"), "DNS-1123 subdomain"),
    ("endpointslice", ("endpoints", 0, "hints"), {"forNodes": [{}]},
     ("endpoints", 0, "hints", "forNodes", 0, "name"), "required"),
    ("endpointslice", ("endpoints", 0, "hints"), {"forNodes": [{"name": f"n{i}"} for i in range(9)]},
     ("endpoints", 0, "hints", "forNodes"), "must have at most 8 item(s)"),
    ("endpointslice", ("ports", 0, "port"), 70000, None, "must be <= 65535"),
    ("endpointslice", ("ports", 0, "name"), "HTTP", None, "is not a DNS-1123 label or \"\""),
    ("endpointslice", ("metadata", "labels", "kubernetes.io/service-name"), DELETE, None, "required"),
    ("endpointslice", ("metadata", "labels", "kubernetes.io/service-name"), "9web", None, "DNS-1035"),
    # Inventory and playbook
    ("inventory", ("all", "hosts", "node-1", "ansible_host"), "-oProxyCommand=x", None, "is not a host name"),
    ("inventory", ("all", "hosts", "node-1", "ansible_port"), 0, None, "is not a port number"),
    ("inventory", ("all", "vars", "ansible_user"), "-l root", None, "is not a user name"),
    ("inventory", ("all", "vars", "ansible_become"), "yes", None, "must be a boolean"),
    ("inventory", ("all", "host"), {}, None, "unknown field 'host'"),
    ("inventory", ("all", "children", "workers", "hosts", "bad name"), None, None, "is not a host or group name"),
    ("playbook", (0, "hosts"), DELETE, None, "is a required property"),
    ("playbook", (0, "serial"), "120%", None, "is not a positive integer or a percentage"),
    ("playbook", (0, "become"), True, None, "unknown field 'become'"),
    ("playbook", (0, "tasks", 0), {"validate": None, "rules": None}, None, "exactly one of"),
    ("playbook", (0, "tasks", 0), {"name": "x"}, None, "exactly one of"),
    ("playbook", (0, "tasks", 1, "rules"), "yes", None, "must be a mapping or null"),
    ("playbook", (0, "tasks", 1, "shell"), "rm -rf /", None, "unknown field 'shell'"),
]


@pytest.mark.parametrize(("key", "path", "value", "where", "message"), BAD)
def test_bad_value_is_located_and_explained(
    both: Schemas, key: str, path: tuple, value: Any, where: tuple | None, message: str
) -> None:
    errors = both.validate(key, with_value(doc(key), path, value))
    where = path if where is None else where
    assert errors, f"{format_path(path)} = {value!r} was accepted"
    assert [e.path for e in errors] == [where], [str(e) for e in errors]
    assert message in errors[0].message
    assert "^" not in errors[0].message, "messages must not dump regexes"


def test_backends_agree_on_every_bad_case(rs: Schemas, py: Schemas) -> None:
    for key, path, value, _, _ in BAD:
        obj = with_value(doc(key), path, value)
        assert rs.validate(key, obj) == py.validate(key, obj), (key, path, value)


def test_several_errors_sorted_by_path(both: Schemas) -> None:
    obj = doc("service")
    obj["spec"]["ports"][1]["port"] = 0
    obj["spec"]["ports"][0]["port"] = 70000
    obj["metadata"]["name"] = "Web"
    obj["spec"]["externalIPs"] = ["x", "192.168.0.1", "y"]
    errors = both.validate("service", obj)
    assert [format_path(e.path) for e in errors] == [
        "metadata.name",
        "spec.externalIPs[0]",
        "spec.externalIPs[2]",
        "spec.ports[0].port",
        "spec.ports[1].port",
    ]
    assert str(errors[0]).startswith("metadata.name: 'Web' is not a valid DNS-1035 label")


def test_missing_and_unknown_fields_point_at_the_field(both: Schemas) -> None:
    obj = {"apiVersion": "svcnet.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "x", "nmae": "y"},
           "spec": {"nodes": [{"name": "n", "adresses": ["10.0.0.1"], "podCIDR": "10.244.0.0/24"}]}}
    errors = both.validate("cluster", obj)
    assert errors == [
        SchemaError(("metadata", "nmae"), "unknown field 'nmae'"),
        SchemaError(("spec", "nodes", 0, "addresses"), "is a required property"),
        SchemaError(("spec", "nodes", 0, "adresses"), "unknown field 'adresses'"),
    ]


# --------------------------------------------------------------------------- odd inputs
@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ("apiVersion: v1", "must be a mapping, got string 'apiVersion: v1'"),
        (None, "must be a mapping, got null"),
        (42, "must be a mapping, got integer 42"),
        ([{"kind": "Service"}], "must be a mapping, got list"),
    ],
)
@pytest.mark.parametrize("key", KIND_KEYS)
def test_non_mapping_documents(both: Schemas, key: str, obj: Any, message: str) -> None:
    assert both.validate(key, obj) == [SchemaError((), message)]


@pytest.mark.parametrize("value", [10**20, 2**64, 10**400, -(10**400), float("inf"), float("nan")])
def test_huge_and_non_finite_numbers_fail_cleanly(both: Schemas, value: Any) -> None:
    obj = with_value(doc("service"), ("spec", "ports", 0, "port"), value)
    errors = both.validate("service", obj)
    assert errors and {e.path for e in errors} == {("spec", "ports", 0, "port")}
    assert all(len(e.message) < 120 for e in errors)
    assert "null" not in " ".join(e.message for e in errors)  # jsonschema-rs sees inf/nan as null


def test_yaml_timestamps_and_non_string_keys_fall_back_cleanly(rs: Schemas) -> None:
    obj = doc("service")
    obj["metadata"]["creationTimestamp"] = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    assert rs.validate("service", obj) == []  # jsonschema-rs cannot convert datetime: python fallback
    obj["spec"]["selector"] = {80: "web"}
    assert [str(e) for e in rs.validate("service", obj)] == [
        "spec.selector[80]: 80 is not a valid label key ([prefix/]name; name at most 63 characters of letters, "
        "digits, '-', '_', '.', starting and ending alphanumeric)"
    ]
    cluster = doc("cluster")
    cluster["spec"][True] = 1  # YAML 1.1 `on:` / `yes:` keys become booleans
    assert [e.message for e in rs.validate("cluster", cluster)] == ["unknown field true"]


def test_float_integers_follow_json_schema(both: Schemas) -> None:
    """JSON Schema counts 80.0 as an integer: the loader must coerce with int() (documented)."""
    assert both.validate("service", with_value(doc("service"), ("spec", "ports", 0, "port"), 80.0)) == []


# --------------------------------------------------------------------------- IP patterns vs ipaddress
def _is_ip(text: str) -> bool:
    if "%" in text:
        return False
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _ip_candidates() -> list[str]:
    rnd = random.Random(1234)
    out = ["0.0.0.0", "255.255.255.255", "1.2.3.04", "1.2.3", "::", "::1", "1::", "::ffff:1.2.3.4",
           "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "1::2:3:4:5:6:7",
           "1:2:3:4:5:6:7:8:9", "1::2::3", ":1::", "1:::2", "fe80::1%eth0", "::ffff:1.2.3.256", "01.1.1.1",
           "1.1.1.1.", " 1.1.1.1", "12345::1", "::1.2.3.4:1"]
    for _ in range(400):
        v4 = ipaddress.IPv4Address(rnd.getrandbits(32))
        v6 = ipaddress.IPv6Address(rnd.getrandbits(128) >> rnd.choice([0, 16, 64, 112]))
        out += [str(v4), str(v6), v6.exploded, v6.exploded.upper()]
        mutated = list(rnd.choice([str(v4), str(v6)]))
        mutated[rnd.randrange(len(mutated))] = rnd.choice("0123456789abcdefg:. ")
        out.append("".join(mutated))
    return list(dict.fromkeys(out))  # unique: a node's addresses must be


def _sloppy(text: str) -> str:
    """Go's ParseIPSloppy for IPv4 text: an octet's leading zeros are decimal (at least one digit)."""
    parts = text.split(".")
    if ":" in text or len(parts) != 4 or not all(p.isascii() and p.isdigit() for p in parts):
        return text
    return ".".join(str(int(p)) for p in parts)


def _rejected(both: Schemas, key: str, path: tuple[str | int, ...], candidates: list[str]) -> set[int]:
    obj = with_value(doc(key), path, candidates)
    return {e.path[len(path)] for e in both.validate(key, obj)}


def test_ip_patterns_agree_with_ipaddress(both: Schemas) -> None:
    """svcnet's own fields take strict IPs; Kubernetes' legacy ones also take leading zeros, as
    the API server does (ParseIPSloppy)."""
    candidates = _ip_candidates()
    strict = _rejected(both, "cluster", ("spec", "nodes", 0, "addresses"), candidates)
    legacy = _rejected(both, "service", ("spec", "externalIPs"), candidates)
    assert [c for i, c in enumerate(candidates) if (i not in strict) != _is_ip(c)] == []
    assert [c for i, c in enumerate(candidates) if (i not in legacy) != _is_ip(_sloppy(c))] == []
    assert 0 < len(legacy) < len(strict) < len(candidates)


@pytest.mark.parametrize(
    ("cidr", "ok"),
    [("10.0.0.0/8", True), ("0.0.0.0/0", True), ("fd00::/64", True), ("::/0", True), ("1.2.3.4/32", True),
     ("2001:db8::/128", True), ("10.0.0.0/", False), ("fd00::/129", False),
     ("10.0.0.0/8/8", False), ("10.0.0.0 /8", False),
     # the API server's spellings: leading zeros (decimal), padding trimmed with Go's TrimSpace
     ("010.000.000.000/08", True), (" 10.0.0.0/8", True), ("\t10.0.0.0/8\u3000", True), (" fd00::/64\n", True),
     ("10.0.0.0/033", False), ("10.0.0.0/8\x1f", False), ("", False), (" ", False)],
)
def test_cidr_pattern(both: Schemas, cidr: str, ok: bool) -> None:
    obj = with_value(doc("service"), ("spec", "loadBalancerSourceRanges"), [cidr])
    assert (both.validate("service", obj) == []) is ok


# --------------------------------------------------------------------------- unknown fields
def test_unknown_fields_reports_typos_not_ignored_or_map_fields(rs: Schemas) -> None:
    for key in GOOD:
        assert rs.unknown_fields(key, doc(key)) == [], key
    svc = doc("service")
    svc["spec"]["selecter"] = {"app": "web"}
    svc["spec"]["ports"][0]["nodeport"] = 30001
    svc["metadata"]["lables"] = {}
    svc["spec"]["externalName"] = "x"  # known Kubernetes field svcnet ignores
    svc["status"]["conditions"] = []
    assert rs.unknown_fields("service", svc) == [
        (("metadata",), "lables"),
        (("spec",), "selecter"),
        (("spec", "ports", 0), "nodeport"),
    ]
    dep = doc("deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    dep["spec"]["template"]["spec"]["volumes"] = [{"name": "v", "emptyDir": {}}]
    assert rs.unknown_fields("deployment", dep) == [(("spec", "template", "spec", "containers", 0), "comand")]
    eps = doc("endpointslice")
    eps["endpoints"][1]["condition"] = {}
    assert rs.unknown_fields("endpointslice", eps) == [(("endpoints", 1), "condition")]


def test_unknown_fields_handles_odd_shapes(rs: Schemas) -> None:
    assert rs.unknown_fields("service", "text") == []
    assert rs.unknown_fields("service", {"spec": [1, 2], "extra": 1}) == [((), "extra")]
    assert rs.unknown_fields("playbook", [{"hosts": "all", "tasks": [{"rule": None}], "becom": 1}]) == [
        ((0,), "becom"),
        ((0, "tasks", 0), "rule"),
    ]


# --------------------------------------------------------------------------- the schema files
def _schema_files() -> dict[str, Any]:
    return {p.name: json.loads(p.read_text()) for p in sorted(SCHEMA_DIR.glob("*.schema.json"))}


def _walk(node: Any):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_schema_files_are_valid_2020_12_with_titles() -> None:
    files = _schema_files()
    assert set(files) == {f"{k}.schema.json" for k in (*KIND_KEYS, "defs", "description", "inventory", "playbook")}
    for name, schema in files.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        assert schema["title"] and schema["description"], name
        for sub in _walk(schema):
            if "pattern" in sub:
                assert sub["pattern"].startswith("^") and sub["pattern"].endswith("$"), (name, sub)
            if {"pattern", "anyOf", "oneOf"} & set(sub):
                assert EXPECTED in sub, f"{name}: {sub} needs {EXPECTED} for a readable message"


def test_cluster_defaults_match_the_model() -> None:
    spec = _schema_files()["cluster.schema.json"]["properties"]["spec"]["properties"]
    proxy, model = spec["proxy"]["properties"], ProxyConfig()
    assert proxy["mode"]["default"] == model.mode
    assert proxy["detectLocalMode"]["default"] == model.detect_local_mode
    assert proxy["iptables"]["properties"]["masqueradeBit"]["default"] == model.masquerade_bit
    assert proxy["iptables"]["properties"]["masqueradeAll"]["default"] == model.masquerade_all
    assert proxy["iptables"]["properties"]["localhostNodePorts"]["default"] == model.localhost_nodeports
    assert spec["bridge"]["default"] == "cni0"
    assert spec["serviceCIDR"]["default"] == "10.96.0.0/12"
    assert spec["nodePortRange"]["default"] == "30000-32767"


# --------------------------------------------------------------------------- refs, as third-party tools see them
def _file_retrieve(uri: str) -> referencing.Resource:
    assert uri.startswith("file://"), uri
    return referencing.jsonschema.DRAFT202012.create_resource(json.loads(Path(uri[7:]).read_text()))


@pytest.mark.parametrize("key", [*KIND_KEYS, "description"])
def test_relative_refs_resolve_from_file_location_python_jsonschema(key: str) -> None:
    """What check-jsonschema and editors do: the schema's file URI is the base for relative $refs."""
    path = SCHEMA_DIR / f"{key}.schema.json"
    schema = json.loads(path.read_text())
    registry = referencing.Registry(retrieve=_file_retrieve).with_resource(
        path.as_uri(), referencing.jsonschema.DRAFT202012.create_resource(schema)
    )
    validator = jsonschema.Draft202012Validator({"$ref": path.as_uri()}, registry=registry)
    good = yaml.safe_load(GOOD.get(key, SERVICE))
    assert list(validator.iter_errors(good)) == []
    bad = copy.deepcopy(good)
    bad["metadata"].setdefault("labels", {})["ok"] = "not ok!"
    assert {tuple(e.absolute_path) for e in validator.iter_errors(bad)} == {("metadata", "labels", "ok")}


@pytest.mark.parametrize("key", [*KIND_KEYS, "description"])
def test_relative_refs_resolve_from_file_location_jsonschema_rs(key: str) -> None:
    path = SCHEMA_DIR / f"{key}.schema.json"
    fetched: list[str] = []

    def retrieve(uri: str) -> Any:
        fetched.append(uri)
        return json.loads(Path(uri.removeprefix("file://")).read_text())

    validator = jsonschema_rs.validator_for(json.loads(path.read_text()), base_uri=path.as_uri(), retriever=retrieve)
    good = yaml.safe_load(GOOD.get(key, SERVICE))
    assert validator.is_valid(good)
    bad = copy.deepcopy(good)
    bad["metadata"].setdefault("labels", {})["ok"] = "not ok!"
    assert {tuple(e.instance_path) for e in validator.iter_errors(bad)} == {("metadata", "labels", "ok")}
    assert (SCHEMA_DIR / "defs.schema.json").as_uri() in fetched


def _check_jsonschema() -> str | None:
    # Beside this interpreter first: the dev extras install it into the same venv, which need not be on PATH.
    beside = Path(sys.executable).parent / "check-jsonschema"
    return os.environ.get("CHECK_JSONSCHEMA") or (str(beside) if beside.exists() else shutil.which("check-jsonschema"))


def test_check_jsonschema_cli(tmp_path: Path) -> None:
    """check-jsonschema takes one YAML document per file (it rejects `---` streams)."""
    if _check_jsonschema() is None:
        unavailable("check-jsonschema is not installed (the dev extras install it; or set CHECK_JSONSCHEMA)")
    good, slice_, bad = tmp_path / "good.yaml", tmp_path / "slice.yaml", tmp_path / "bad.yaml"
    good.write_text(SERVICE)
    slice_.write_text(ENDPOINTSLICE)
    bad.write_text(SERVICE.replace("clusterIP: 10.96.0.10", "clusterIP: 10.96.0.300"))
    cli = _check_jsonschema()
    assert cli is not None
    for schema in ("service", "description"):
        ok = subprocess.run([cli, "--schemafile", str(SCHEMA_DIR / f"{schema}.schema.json"), str(bad)],
                            capture_output=True, text=True, cwd="/", timeout=120)
        assert ok.returncode == 1 and "spec.clusterIP" in ok.stdout, ok.stdout + ok.stderr
    ok = subprocess.run([cli, "--schemafile", str(SCHEMA_DIR / "description.schema.json"), str(good), str(slice_)],
                        capture_output=True, text=True, cwd="/", timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr


# --------------------------------------------------------------------------- many documents
def _services_and_slices(n: int) -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for i in range(n):
        name, ip = f"svc-{i}", f"{i // 256 % 256}.{i % 256}"
        docs.append(("service", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "bench", "labels": {"app": name}},
            "spec": {"type": "NodePort", "clusterIP": f"10.96.{ip}", "selector": {"app": name},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        }))
        docs.append(("endpointslice", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-x", "namespace": "bench", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [f"10.244.{ip}"], "conditions": {"ready": True}, "nodeName": "node-1"}],
        }))
    return docs


def test_twenty_thousand_documents_with_jsonschema_rs(rs: Schemas, py: Schemas) -> None:
    # How fast each backend is, is measured by bench/validate_bench.py, not asserted here.
    docs = _services_and_slices(10_000)
    docs[12_345][1]["endpoints"][0]["addresses"][0] = "10.244.0.999"
    failing = [i for i, (key, obj) in enumerate(docs) if rs.validate(key, obj)]
    assert failing == [12_345]
    sample = docs[12_000:12_400]  # python-jsonschema is ~300x slower: compare verdicts on a sample
    assert [py.validate(k, o) for k, o in sample] == [rs.validate(k, o) for k, o in sample]


@pytest.mark.parametrize("name", ["cni0", "br.0", "br_0", "br-0", "0", "a" * 15, "a" * 16, "_br0", "-br0", ".br0",
                                  "br 0", ""])
def test_the_schema_accepts_exactly_the_interface_names_the_agent_accepts(name: str):
    """Whatever validates must apply: the bridge name reaches the agent's IFNAME_RE."""
    from svcnet.agent.node import IFNAME_RE

    pattern = json.loads((SCHEMA_DIR / "defs.schema.json").read_text())["$defs"]["interfaceName"]["pattern"]
    assert bool(re.match(pattern, name)) == bool(IFNAME_RE.fullmatch(name))
