"""The seed example applied and verified through a bastion (ProxyJump), the only way to the nodes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from applylab import SEED, apply, svcnet
from labrun import bastion_log, inventory_trusting, verify

from svcnet.lab.pytest_fixtures import node_run
from svcnet.lab.spec import BASTION_NAME

pytestmark = pytest.mark.lab
# What svcnet may leave on a node: its rules, its files, its runtime state.
FOOTPRINT = "iptables-save | grep -v '^#'; ls -AR /etc/svcnet /var/lib/svcnet /run"


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(SEED, bastion=True)


def footprint(lab, node: str) -> str:
    return re.sub(r"\[\d+:\d+\]", "[0:0]", node_run(lab, node, FOOTPRINT).stdout)


def test_a_wrong_bastion_key_leaves_every_node_untouched_and_unreachable(lab, tmp_path: Path):
    lines = lab.known_hosts_path.read_text().splitlines()
    node_key = lines[0].split(maxsplit=1)[1]
    wrong = [f"{ln.split()[0]} {node_key}" if ln.startswith(f"{BASTION_NAME},") else ln for ln in lines]
    inventory = inventory_trusting(lab, tmp_path, "\n".join([*wrong, ""]))
    before = {node: footprint(lab, node) for node in lab.nodes}
    run = svcnet("apply", "-i", str(inventory), "-f", str(SEED), "--confirm-timeout", "15")
    assert run.rc == 4, run.out + run.err  # a host was unreachable
    assert {n: r["unreachable"] for n, r in run.recap().items()} == {"node1": 1, "node2": 1}, run.out
    for node in lab.nodes:
        wanted = f'fatal: [{node}]: UNREACHABLE! => {{"msg": "jump host bastion: host key for {lab.bastion[1]} does not'
        assert wanted in run.out, run.out
    assert "Traceback" not in run.out + run.err
    assert {node: footprint(lab, node) for node in lab.nodes} == before


def test_the_seed_example_is_applied_and_verified_through_the_bastion(lab):
    first = apply(lab, SEED)
    assert first.rc == 0, first.out + first.err
    assert all(r["changed"] >= 1 and r["failed"] == 0 for r in first.recap().values()), first.out
    checked = verify(lab, SEED)
    assert checked.rc == 0, checked.out + checked.err
    log = bastion_log(lab)
    for _, address in lab.nodes.values():  # the bastion carried every node's connections
        assert f"target {address} port 22" in log
