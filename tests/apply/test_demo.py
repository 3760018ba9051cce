"""`svcnet demo`, the README's main command, end to end in its own lab."""

from __future__ import annotations

import re

import pytest
from applylab import svcnet

from svcnet.lab.pytest_fixtures import unique_lab_name

pytestmark = pytest.mark.lab


def test_demo_applies_the_seed_and_shows_both_pods_answering():
    name = unique_lab_name("demo")
    try:
        run = svcnet("demo", "--name", name, timeout=300)
        assert run.rc == 0, run.out + run.err
        assert re.search(r"node1\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", run.out), run.out
        assert "KUBE-SERVICES → KUBE-SVC-" in run.out and "DNAT to 10.244." in run.out
        rows = re.findall(r"^(k8s-test-\S+)\s+(\d+)/200 .*?(\d+)/200", run.out, re.MULTILINE)
        assert len(rows) == 2, run.out
        assert sum(int(r[1]) for r in rows) == 200 and sum(int(r[2]) for r in rows) == 200
        assert all(int(r[1]) > 0 and int(r[2]) > 0 for r in rows)  # both pods serve both paths
        assert f"svcnet lab down --name {name}" in run.out
    finally:
        svcnet("lab", "down", "--name", name)
