"""Names at the limits Kubernetes allows validate, apply to a lab node, and the pods answer.

Before derived names were fitted to the agent's limits, `svcnet validate` accepted such a
description and the agent then refused the pods' network namespace names.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from applylab import REQUESTS, answers, apply, settled_answers, svcnet

from svcnet.lab.pytest_fixtures import node_run
from svcnet.model.load import load_cluster

pytestmark = pytest.mark.lab

LONG_NAMES = Path(__file__).parent / "long-names"
CLUSTER_IP = "http://10.96.100.100:8080/"
ROUNDS = 4  # ClusterIP rounds of REQUESTS until every pod has answered: 4 pods miss one with p ~ 4e-12


def test_names_at_the_limits_validate_apply_and_answer(lab_factory):
    valid = svcnet("validate", str(LONG_NAMES))
    assert valid.rc == 0, valid.out + valid.err
    cluster = load_cluster([LONG_NAMES])
    pods = {p.name for p in cluster.pods}
    assert max(len(p) for p in pods) == 253 and len(cluster.pods[0].namespace) == 63

    lab = lab_factory(LONG_NAMES)
    run = apply(lab, LONG_NAMES)
    assert run.rc == 0, run.out + run.err

    netns = set(node_run(lab, "node1", "ip netns list").stdout.split())
    assert {p.netns for p in cluster.pods} <= netns
    for pod in cluster.pods:
        got = settled_answers(lab, "node1", f"http://{pod.ip}:8080/")
        assert got == [pod.name] * REQUESTS, (pod.name, got)
    seen: set[str] = set()
    for _ in range(ROUNDS):
        got = answers(lab, "node1", CLUSTER_IP)
        assert "FAIL" not in got and set(got) <= pods, got
        seen |= set(got)
        if seen == pods:
            break
    assert seen == pods
    got = answers(lab, "client", f"http://{lab.nodes['node1'][1]}:30080/")
    assert "FAIL" not in got and set(got) <= pods, got
