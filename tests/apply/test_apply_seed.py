"""The main job in the lab: the seed example applied to 2 nodes, with real traffic."""

from __future__ import annotations

import pytest
from applylab import REQUESTS, SEED, answers, apply, owned_rules, settled_answers, svcnet

from svcnet.lab.pytest_fixtures import node_run
from svcnet.model.load import load_cluster

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def seed_lab(lab_factory):
    lab = lab_factory(SEED)
    first = apply(lab, SEED)
    assert first.rc == 0, first.out + first.err
    return lab, first


def test_first_apply_changes_both_nodes(seed_lab):
    _, first = seed_lab
    recap = first.recap()
    assert set(recap) == {"node1", "node2"}
    assert all(r["changed"] >= 1 and r["failed"] == 0 for r in recap.values()), first.out


def test_cluster_ip_answered_by_both_pods_from_every_node_and_pod(seed_lab):
    lab, _ = seed_lab
    cluster = load_cluster([SEED])
    pods = {p.name for p in cluster.pods}
    for node in ("node1", "node2"):
        got = settled_answers(lab, node, "http://10.111.35.139:8080/")
        assert "FAIL" not in got and set(got) == pods, (node, got)
    for pod in cluster.pods:
        got = answers(lab, pod.node_name, "http://10.111.35.139:8080/", netns=pod.netns)
        assert "FAIL" not in got and set(got) == pods, (pod.name, got)
    assert len(got) == REQUESTS


def test_node_port_answers_from_the_client_on_every_node(seed_lab):
    lab, _ = seed_lab
    pods = {p.name for p in load_cluster([SEED]).pods}
    for node in ("node1", "node2"):
        ip = lab.nodes[node][1]
        got = answers(lab, "client", f"http://{ip}:30000/")
        assert "FAIL" not in got and set(got) == pods, (node, got)


def test_second_run_changes_nothing_and_sends_no_restore(seed_lab):
    lab, _ = seed_lab
    before = {n: owned_rules(lab, n) for n in ("node1", "node2")}
    again = apply(lab, SEED)
    assert again.rc == 0, again.out + again.err
    assert {n: r["changed"] for n, r in again.recap().items()} == {"node1": 0, "node2": 0}
    assert {n: owned_rules(lab, n) for n in ("node1", "node2")} == before


def test_check_mode_changes_nothing_and_diff_shows_drift(seed_lab):
    lab, _ = seed_lab
    svc_chain = next(ln.split()[0][1:] for ln in owned_rules(lab, "node1").splitlines()
                     if ln.startswith(":KUBE-SVC-"))
    node_run(lab, "node1", f"iptables -t nat -F {svc_chain}")
    drifted = owned_rules(lab, "node1")
    check = apply(lab, SEED, extra=("--check", "--diff"))
    assert check.rc == 0, check.out + check.err
    assert check.recap()["node1"]["changed"] == 1 and check.recap()["node2"]["changed"] == 0
    assert f"-A {svc_chain}" in check.out and "+-A" in check.out.replace("+ -A", "+-A")
    assert owned_rules(lab, "node1") == drifted  # --check changed nothing
    fixed = apply(lab, SEED)
    assert fixed.recap()["node1"]["changed"] == 1
    assert f"-A {svc_chain}" in owned_rules(lab, "node1")


def test_invalid_description_changes_no_node(seed_lab, tmp_path):
    lab, _ = seed_lab
    before = owned_rules(lab, "node1")
    bad = tmp_path / "svc.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 99999}]}\n")
    run = svcnet("apply", "-i", str(lab.inventory_path), "-f", str(SEED), "-f", str(bad))
    assert run.rc == 1
    assert f"{bad}:4:" in run.err and "Traceback" not in run.err
    assert owned_rules(lab, "node1") == before
