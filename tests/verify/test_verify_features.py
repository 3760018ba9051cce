"""Traffic checks on a lab with ClientIP affinity, eTP Local, a service without endpoints and an
EndpointSlice to an outside machine: they pass when applied, and catch the breakage they exist for."""

from __future__ import annotations

import pytest
from verifylab import FEATURES, applied_lab, apply, verify

from svcnet.lab.pytest_fixtures import node_run
from svcnet.model.load import load_cluster
from svcnet.render.chains import service_chain_names

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def features_lab(lab_factory):
    return applied_lab(lab_factory, FEATURES)


def test_feature_checks_pass(features_lab):
    run = verify(features_lab, FEATURES)
    assert run.rc == 0, run.out + run.err
    for test_id in (
        "test_node_port_answers[node1-vf/local:http]",  # the node with the local endpoint answers ...
        "test_node_port_answers[node2-vf/local:http]",  # ... the other does not (eTP Local)
        "test_node_port_preserves_client_ip[node1-vf/local:http]",
        "test_client_ip_affinity[node1-vf/sticky:http]",
        "test_client_ip_affinity[node2-vf/sticky:http]",
        "test_no_endpoints_rejected[node1-vf/nobody:http]",
        "test_no_endpoints_node_port_rejected[node2-vf/nobody:http]",
        "test_endpoints_share_traffic_evenly[node1-vf/split:http]",
        "test_external_address_answers[192.168.57.12-vf/split:http]",
        "test_service_rules_match_rendered[node1-vf/outside:http]",  # rules are still checked
    ):
        assert f"{test_id} PASSED" in run.out, test_id + "\n" + run.out
    assert "test_cluster_ip_answers[node1-vf/outside:http] SKIPPED" in run.out
    assert "203.0.113.10:8080 are not svcnet pods running podserver" in run.out
    assert "checked for rules only" in run.out


def reapply(lab) -> None:
    """Repair the lab after a breakage; a failure shows the whole run (which task, which check)."""
    run = apply(lab, FEATURES)
    assert run.rc == 0, run.out + run.err


def _edit(lab, node: str, table: str, drop: str) -> None:
    """Remove the rules containing `drop` from a table of `node` (inside the lab node only)."""
    node_run(lab, node, f"iptables-save -t {table} | grep -v -- '{drop}' | iptables-restore -T {table}")


def test_lost_affinity_is_caught(features_lab):
    _edit(features_lab, "node1", "nat", "--rcheck")
    try:
        run = verify(features_lab, FEATURES, "-k", "affinity and node1")
        assert run.rc == 1, run.out + run.err
        assert "node1 -> 10.100.0.11:80 (vf/sticky:http, ClientIP affinity): one client reached 2 endpoints" in run.out
    finally:
        reapply(features_lab)


def test_missing_reject_is_caught(features_lab):
    _edit(features_lab, "node1", "filter", "vf/nobody:http has no endpoints")
    try:
        run = verify(features_lab, FEATURES, "-k", "test_no_endpoints_rejected and node1")
        assert run.rc == 1, run.out + run.err
        assert "node1 -> 10.100.0.13:80 (vf/nobody:http, no endpoints): expected REJECT" in run.out
    finally:
        reapply(features_lab)


def test_local_policy_answering_without_local_endpoint_is_caught(features_lab):
    """Make node2 forward its NodePort like eTP Cluster: the eTP Local check must notice."""
    sp = next(sp for sp in load_cluster([FEATURES]).service_ports if sp.name == "local")
    svc, _, ext, _ = service_chain_names(sp)
    _edit(features_lab, "node2", "filter", "vf/local:http has no local endpoints")
    node_run(features_lab, "node2", f"iptables -t nat -A {ext} -j KUBE-MARK-MASQ && iptables -t nat -A {ext} -j {svc}")
    try:
        run = verify(features_lab, FEATURES, "-k", "test_node_port_answers and node2 and local")
        assert run.rc == 1, run.out + run.err
        assert "no local endpoint on node2, yet it answered" in run.out
    finally:
        reapply(features_lab)
