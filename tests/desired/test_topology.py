"""Endpoint selection per node (kube-proxy's CategorizeEndpoints), ported from kube-proxy's own tests.

Each case of `TestCategorizeEndpoints` that a description can express becomes YAML (a Cluster
whose test node has the case's zone label, a Service with the case's traffic policies, an
EndpointSlice with the case's endpoints, conditions and hints), goes through the real path
(files → schemas → model → semantic checks → desired state) and then through the renderer; the
expected sets are upstream's, copied from:

* [K8S] kubernetes/kubernetes@6c039d9075ef18d200bb0ba7dbdb362f4d0deef0 pkg/proxy/topology_test.go
  (zone hints; the version after hints stopped depending on a Service annotation);
* [ANT] antrea-io/antrea@03b8743a1ad732d15eff98509483e397d0d78ab1 pkg/agent/proxy/topology_test.go,
  which carries the PreferSameNode cases upstream added with KEP-3015 (the index holds no upstream
  test of that version); their expectations agree with [TOP]'s `topologyModeFromHints`.

In the Go tests an endpoint's `serving` and `terminating` default to false, while an EndpointSlice
condition left out reads as serving: every condition is written out here. `isLocal` becomes
`nodeName` of the test node, a remote endpoint is on node `remote`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from svcnet.desired import categorize_endpoints, cluster_endpoints, desired_nodes, shared_cluster_endpoints
from svcnet.diagnostics import errors
from svcnet.model.load import check_paths
from svcnet.model.types import Cluster, ServicePort
from svcnet.render.artifacts import node_artifacts
from svcnet.validate_schema import Schemas


@dataclass(frozen=True)
class Ep:
    """An upstream `BaseEndpointInfo`."""

    hp: str
    ready: bool = True
    serving: bool = False
    terminating: bool = False
    local: bool = False
    zones: tuple[str, ...] | None = None
    nodes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Case:
    """An upstream test case; `labels` None is a node without labels, `cluster`/`local` None a
    policy the service never uses."""

    source: str
    name: str
    endpoints: tuple[Ep, ...]
    cluster: frozenset[str] | None
    local: frozenset[str] | None
    all: frozenset[str] | None = None
    only_remote: bool = False
    labels: dict[str, str] | None = field(default_factory=lambda: {"topology.kubernetes.io/zone": "zone-a"})
    node: str = "test-node"
    itp_local: bool = False
    etp_local: bool = False
    node_port: bool = False

    @property
    def expected_all(self) -> frozenset[str]:
        if self.cluster is not None and self.local is None:
            return self.cluster
        if self.local is not None and self.cluster is None:
            return self.local
        assert self.all is not None
        return self.all


def S(*hps: str) -> frozenset[str]:
    """Upstream's `sets.New[string](...)`."""
    return frozenset(hps)


ZA = {"topology.kubernetes.io/zone": "zone-a"}
FOUR = ("10.1.2.3:80", "10.1.2.4:80", "10.1.2.5:80", "10.1.2.6:80")


def zoned(*zones: tuple[str, ...] | None, **kw: bool) -> tuple[Ep, ...]:
    return tuple(Ep(hp, zones=z, **kw) for hp, z in zip(FOUR, zones, strict=True))


CASES = [
    Case("K8S", "should use topology since all endpoints have hints, node has a zone label and and there are "
         "endpoints for the node's zone", zoned(("zone-a",), ("zone-b",), ("zone-c",), ("zone-a",)),
         S("10.1.2.3:80", "10.1.2.6:80"), None),
    Case("K8S", "externalTrafficPolicy: Local, topology ignored for Local endpoints",
         (Ep("10.1.2.3:80", zones=("zone-a",), local=True), Ep("10.1.2.4:80", zones=("zone-b",), local=True),
          Ep("10.1.2.5:80", zones=("zone-c",)), Ep("10.1.2.6:80", zones=("zone-a",))),
         S("10.1.2.3:80", "10.1.2.6:80"), S("10.1.2.3:80", "10.1.2.4:80"),
         all=S("10.1.2.3:80", "10.1.2.4:80", "10.1.2.6:80"), etp_local=True, node_port=True),
    Case("K8S", "internalTrafficPolicy: Local, topology ignored for Local endpoints",
         (Ep("10.1.2.3:80", zones=("zone-a",), local=True), Ep("10.1.2.4:80", zones=("zone-b",), local=True),
          Ep("10.1.2.5:80", zones=("zone-c",)), Ep("10.1.2.6:80", zones=("zone-a",))),
         S("10.1.2.3:80", "10.1.2.6:80"), S("10.1.2.3:80", "10.1.2.4:80"),
         all=S("10.1.2.3:80", "10.1.2.4:80", "10.1.2.6:80"), itp_local=True, node_port=True),
    Case("K8S", "empty node labels", (Ep("10.1.2.3:80", zones=("zone-a",)),), S("10.1.2.3:80"), None,
         labels=None),
    Case("K8S", "empty zone label", (Ep("10.1.2.3:80", zones=("zone-a",)),), S("10.1.2.3:80"), None,
         labels={"topology.kubernetes.io/zone": ""}),
    Case("K8S", "node in different zone, no endpoint filtering", (Ep("10.1.2.3:80", zones=("zone-a",)),),
         S("10.1.2.3:80"), None, labels={"topology.kubernetes.io/zone": "zone-b"}),
    Case("K8S", "unready endpoint",
         (*zoned(("zone-a",), ("zone-b",), ("zone-c",), ("zone-a",))[:3], Ep("10.1.2.6:80", False, zones=("zone-a",))),
         S("10.1.2.3:80"), None),
    Case("K8S", "only unready endpoints in same zone (should not filter)",
         (Ep("10.1.2.3:80", False, zones=("zone-a",)), Ep("10.1.2.4:80", zones=("zone-b",)),
          Ep("10.1.2.5:80", zones=("zone-c",)), Ep("10.1.2.6:80", False, zones=("zone-a",))),
         S("10.1.2.4:80", "10.1.2.5:80"), None),
    Case("K8S", "missing hints, no filtering applied", zoned(("zone-a",), ("zone-b",), None, ("zone-a",)),
         S(*FOUR), None),
    Case("K8S", "multiple hints per endpoint, filtering includes any endpoint with zone included",
         zoned(("zone-a", "zone-b", "zone-c"), ("zone-b", "zone-c"), ("zone-b", "zone-d"), ("zone-c",)),
         S("10.1.2.3:80", "10.1.2.4:80", "10.1.2.6:80"), None, labels={"topology.kubernetes.io/zone": "zone-c"}),
    Case("K8S", "conflicting topology and localness require merging allEndpoints",
         (Ep("10.0.0.0:80", zones=("zone-a",), local=True), Ep("10.0.0.1:80", zones=("zone-b",), local=True),
          Ep("10.0.0.2:80", zones=("zone-a",)), Ep("10.0.0.3:80", zones=("zone-b",))),
         S("10.0.0.0:80", "10.0.0.2:80"), S("10.0.0.0:80", "10.0.0.1:80"),
         all=S("10.0.0.0:80", "10.0.0.1:80", "10.0.0.2:80"), etp_local=True, node_port=True),
    Case("K8S", "internalTrafficPolicy: Local, with empty endpoints", (), None, S(), labels=None, itp_local=True),
    Case("K8S", "internalTrafficPolicy: Local, but all endpoints are remote",
         (Ep("10.0.0.0:80"), Ep("10.0.0.1:80")), None, S(), only_remote=True, labels=None, itp_local=True),
    Case("K8S", "internalTrafficPolicy: Local, all endpoints are local",
         (Ep("10.0.0.0:80", local=True), Ep("10.0.0.1:80", local=True)), None, S("10.0.0.0:80", "10.0.0.1:80"),
         labels=None, itp_local=True),
    Case("K8S", "internalTrafficPolicy: Local, some endpoints are local",
         (Ep("10.0.0.0:80", local=True), Ep("10.0.0.1:80")), None, S("10.0.0.0:80"), labels=None, itp_local=True),
    Case("K8S", "Cluster traffic policy, endpoints not Ready", (Ep("10.0.0.0:80", False), Ep("10.0.0.1:80", False)),
         S(), None, labels=None),
    Case("K8S", "Cluster traffic policy, some endpoints are Ready", (Ep("10.0.0.0:80", False), Ep("10.0.0.1:80")),
         S("10.0.0.1:80"), None, labels=None),
    Case("K8S", "Cluster traffic policy, all endpoints are terminating",
         (Ep("10.0.0.0:80", False, True, True, local=True), Ep("10.0.0.1:80", False, True, True)),
         S("10.0.0.0:80", "10.0.0.1:80"), None, labels=None),
    Case("K8S", "iTP: Local, eTP: Cluster, some endpoints local",
         (Ep("10.0.0.0:80", local=True), Ep("10.0.0.1:80")), S("10.0.0.0:80", "10.0.0.1:80"), S("10.0.0.0:80"),
         all=S("10.0.0.0:80", "10.0.0.1:80"), labels=None, itp_local=True, node_port=True),
    Case("K8S", "iTP: Cluster, eTP: Local, some endpoints local",
         (Ep("10.0.0.0:80", local=True), Ep("10.0.0.1:80")), S("10.0.0.0:80", "10.0.0.1:80"), S("10.0.0.0:80"),
         all=S("10.0.0.0:80", "10.0.0.1:80"), labels=None, etp_local=True, node_port=True),
    Case("K8S", "iTP: Local, eTP: Local, some endpoints local",
         (Ep("10.0.0.0:80", local=True), Ep("10.0.0.1:80")), S("10.0.0.0:80", "10.0.0.1:80"), S("10.0.0.0:80"),
         all=S("10.0.0.0:80", "10.0.0.1:80"), labels=None, itp_local=True, etp_local=True, node_port=True),
    Case("K8S", "iTP: Local, eTP: Local, all endpoints remote", (Ep("10.0.0.0:80"), Ep("10.0.0.1:80")),
         S("10.0.0.0:80", "10.0.0.1:80"), S(), all=S("10.0.0.0:80", "10.0.0.1:80"), labels=None, itp_local=True,
         etp_local=True, node_port=True),
    Case("K8S", "iTP: Local, eTP: Local, all endpoints remote and terminating",
         (Ep("10.0.0.0:80", False, True, True), Ep("10.0.0.1:80", False, True, True)),
         S("10.0.0.0:80", "10.0.0.1:80"), S(), all=S("10.0.0.0:80", "10.0.0.1:80"), only_remote=True, labels=None,
         itp_local=True, etp_local=True, node_port=True),
    Case("K8S", "iTP: Cluster, eTP: Local, with terminating endpoints",
         (Ep("10.0.0.0:80"), Ep("10.0.0.1:80", False, False, local=True),
          Ep("10.0.0.2:80", False, True, True, local=True), Ep("10.0.0.3:80", False, True, True)),
         S("10.0.0.0:80"), S("10.0.0.2:80"), all=S("10.0.0.0:80", "10.0.0.2:80"), labels=None, etp_local=True,
         node_port=True),
    Case("K8S", "no cluster endpoints for iTP:Local internal-only service",
         (Ep("10.0.0.0:80"), Ep("10.0.0.1:80", local=True)), None, S("10.0.0.1:80"), all=S("10.0.0.1:80"),
         labels=None, itp_local=True),
    Case("ANT", "PreferSameNode available",
         tuple(Ep(hp, zones=(z,), nodes=(n,)) for hp, z, n in zip(
             FOUR, ("zone-a", "zone-b", "zone-c", "zone-a"), ("node-1", "node-2", "node-3", "node-4"), strict=True)),
         S("10.1.2.3:80"), None, node="node-1"),
    Case("ANT", "PreferSameNode ignored if some endpoints unhinted",
         (Ep("10.1.2.3:80", zones=("zone-a",), nodes=("node-1",)), Ep("10.1.2.4:80"),
          Ep("10.1.2.5:80", zones=("zone-c",), nodes=("node-3",)),
          Ep("10.1.2.6:80", zones=("zone-a",), nodes=("node-4",))),
         S(*FOUR), None, node="node-1"),
    Case("ANT", "PreferSameNode falls back to PreferSameZone if no endpoint for node",
         tuple(Ep(hp, zones=(z,), nodes=(n,)) for hp, z, n in zip(
             FOUR, ("zone-a", "zone-b", "zone-c", "zone-a"), ("node-1", "node-2", "node-3", "node-4"), strict=True)),
         S("10.1.2.3:80", "10.1.2.6:80"), None, node="node-0"),
]

# Upstream cases no description the API server accepts can express, and why.
NOT_EXPRESSIBLE = {
    "externalTrafficPolicy ignored if not externally accessible":
        "the API server refuses externalTrafficPolicy on a Service that is not externally accessible "
        "(ValidateService: \"may only be set for externally-accessible services\")",
    "PreferSameNode falls back to same-zone when feature gate disabled":
        "svcnet follows kube-proxy with PreferSameTrafficDistribution on (its default since 1.34, GA in 1.35)",
}


def description(case: Case) -> list[dict]:
    node: dict = {"name": case.node, "addresses": ["192.168.56.11"], "podCIDR": "10.244.1.0/24"}
    if case.labels is not None:
        node["labels"] = case.labels
    remote = {"name": "remote", "addresses": ["192.168.56.12"], "podCIDR": "10.244.2.0/24", "zone": "zone-b"}
    port: dict = {"name": "p80", "port": 80, "targetPort": 80}
    spec: dict = {"clusterIP": "10.96.0.10", "ports": [port]}
    if case.node_port:
        spec["type"] = "NodePort"
        port["nodePort"] = 30080
    if case.itp_local:
        spec["internalTrafficPolicy"] = "Local"
    if case.etp_local:
        spec["externalTrafficPolicy"] = "Local"
    endpoints = []
    for ep in case.endpoints:
        ip, _ = ep.hp.split(":")
        out: dict = {"addresses": [ip], "nodeName": case.node if ep.local else "remote",
                     "conditions": {"ready": ep.ready, "serving": ep.serving, "terminating": ep.terminating}}
        hints = {}
        if ep.zones is not None:
            hints["forZones"] = [{"name": z} for z in ep.zones]
        if ep.nodes is not None:
            hints["forNodes"] = [{"name": n} for n in ep.nodes]
        if hints:
            out["hints"] = hints
        endpoints.append(out)
    return [
        {"apiVersion": "svcnet.dev/v1alpha1", "kind": "Cluster", "metadata": {"name": "topology"},
         "spec": {"nodes": [node, remote]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "ns"}, "spec": spec},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": "svc-1", "namespace": "ns", "labels": {"kubernetes.io/service-name": "svc"}},
         "addressType": "IPv4", "ports": [{"name": "p80", "port": 80, "protocol": "TCP"}],
         "endpoints": endpoints},
    ]


_SCHEMAS: list[Schemas] = []  # compiled once for the module


def load(case: Case, tmp_path: Path) -> Cluster:
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump_all(description(case), sort_keys=False))
    if not _SCHEMAS:
        _SCHEMAS.append(Schemas.load())
    checked = check_paths([path], _SCHEMAS[0])
    assert not errors(checked.diagnostics), [str(d) for d in checked.diagnostics]
    assert checked.build is not None
    return checked.build.cluster


def _hps(eps: tuple | None) -> frozenset[str] | None:
    return None if eps is None else frozenset(ep.hostport for ep in eps)


def _matches(expected: frozenset[str] | None, got: tuple | None) -> bool:
    """Upstream's check: None expected means the policy is unused (nothing returned); otherwise the
    sets are equal, nothing returned counting as empty (CategorizeEndpoints returns nil for no
    endpoints at all)."""
    if expected is None:
        return got is None
    return _hps(got or ()) == expected


_RULE = re.compile(r"-A (KUBE-(?:SVC|SVL|SEP)-\w+) (.*)")


def rendered_sets(restore: str, sp: ServicePort) -> tuple[set[str], set[str], set[str]]:
    """From the rules alone: the endpoints KUBE-SVC- and KUBE-SVL- send to, and those with a KUBE-SEP- chain."""
    dest: dict[str, str] = {}
    jumps: dict[str, set[str]] = {}
    for chain, rest in _RULE.findall(restore):
        target = rest.rsplit(" ", 1)[-1]
        if chain.startswith("KUBE-SEP-") and "--to-destination" in rest:
            dest[chain] = target
        elif target.startswith("KUBE-SEP-"):
            jumps.setdefault(chain[:9], set()).add(target)
    return ({dest[s] for s in jumps.get("KUBE-SVC-", ())}, {dest[s] for s in jumps.get("KUBE-SVL-", ())},
            set(dest.values()))


def test_every_upstream_case_is_ported_or_excused() -> None:
    names = [c.name for c in CASES]
    assert len(set(names)) == len(names)
    assert not set(names) & set(NOT_EXPRESSIBLE)
    assert len(CASES) + len(NOT_EXPRESSIBLE) == 30  # [K8S]'s 26 cases and [ANT]'s 4 PreferSameNode ones


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_categorize_endpoints_as_kube_proxy(case: Case, tmp_path: Path) -> None:
    cluster = load(case, tmp_path)
    (sp,) = cluster.service_ports
    proxier = desired_nodes(cluster, [case.node])[case.node].proxier
    got = categorize_endpoints(sp, sp.endpoints, proxier.node_name, proxier.zone)
    assert _matches(case.cluster, got.cluster), (_hps(got.cluster), case.cluster)
    assert _matches(case.local, got.local), (_hps(got.local), case.local)
    assert _hps(got.reachable) == case.expected_all
    assert got.has_any == (bool(case.expected_all) or case.only_remote)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rendered_rules_use_the_upstream_endpoints(case: Case, tmp_path: Path) -> None:
    """The same sets, read back from the restore input: what the KUBE-SVC (cluster) and KUBE-SVL
    (local) chains jump to, which endpoints get a KUBE-SEP chain, and REJECT without endpoints."""
    cluster = load(case, tmp_path)
    (sp,) = cluster.service_ports
    restore = node_artifacts(cluster, case.node).restore
    svc, svl, seps = rendered_sets(restore, sp)
    assert svc == set(case.cluster or ())
    assert svl == set(case.local or ())
    assert seps == set(case.expected_all)
    has_any = bool(case.expected_all) or case.only_remote
    assert ("has no endpoints" not in restore) == has_any


@dataclass(frozen=True)
class _Cat:
    """A `CategorizedEndpoint` for the pure functions."""

    ready: bool
    serving_terminating: bool
    node_name: str | None
    zone_hints: frozenset[str]
    node_hints: frozenset[str]


def _all_endpoint_lists() -> list[tuple[_Cat, ...]]:
    """Every list of up to three endpoints over a small space of conditions and hints."""
    kinds = [(True, False), (False, True), (False, False)]  # ready, serving-terminating, neither
    zones = [frozenset(), frozenset({"zone-a"}), frozenset({"zone-b"})]
    nodes = [frozenset(), frozenset({"n1"}), frozenset({"n2"})]
    one = [_Cat(r, st, n, z, h) for r, st in kinds for n in ("n1", "n2") for z in zones for h in nodes]
    out: list[tuple[_Cat, ...]] = [()]
    for a in one:
        out.append((a,))
        for b in one[::5]:
            out.append((a, b))
            out.extend((a, b, c) for c in one[::7])
    return out


def test_shared_cluster_endpoints_is_every_nodes_cluster_list_or_none() -> None:
    """The render's fast path: when it answers, every node (any name, any zone) gets exactly that
    list from `cluster_endpoints`; when it answers None, the lists may differ."""
    places = [(n, z) for n in ("n1", "n2", "n3") for z in ("zone-a", "zone-b", "zone-c", "")]
    none_seen = differ_seen = 0
    for eps in _all_endpoint_lists():
        shared = shared_cluster_endpoints(eps)
        per_node = {cluster_endpoints(eps, n, z) for n, z in places}
        if shared is None:
            none_seen += 1
            differ_seen += len(per_node) > 1
        else:
            assert per_node == {shared}, eps
    assert none_seen and differ_seen  # the space holds hinted lists, and some of them do differ
