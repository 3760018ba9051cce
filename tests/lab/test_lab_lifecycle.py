"""lab up/down leave the host as it was, survive killed processes, and run side by side."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from svcnet.lab import LabError, lab_down, lab_down_all, lab_up, load_lab
from svcnet.lab import procs as lab_procs
from svcnet.lab.pytest_fixtures import node_run, running_lab, unique_lab_name
from svcnet.lab.spec import lab_nodes_from_files

pytestmark = pytest.mark.lab
CLUSTER = Path(__file__).parent / "cluster.yaml"
ROOT_NS_VIEWS = (
    ["ip", "addr"],
    ["ip", "link"],
    ["ip", "route"],
    ["ip", "-6", "route"],
    ["ip", "rule"],
    ["iptables-save"],
    ["ip6tables-save"],
)


def _root_namespace_snapshot() -> dict[str, str]:
    """The root namespace's addresses, links, routes, rules and iptables (counters/dates removed)."""
    snapshot = {}
    for argv in ROOT_NS_VIEWS:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30).stdout
        out = "\n".join(line for line in out.splitlines() if not line.startswith("#"))
        out = re.sub(r"\[\d+:\d+\]", "[]", out)
        # A DHCP or SLAAC address counts its lifetimes down between two snapshots: not a change.
        snapshot[" ".join(argv)] = re.sub(r"(valid|preferred)_lft \S+", r"\1_lft -", out)
    return snapshot


def _lab_namespaces(lab_id: str) -> list[str]:
    return [ns for ns in os.listdir("/run/netns") if ns.startswith(f"svlab-{lab_id}-")]


def test_root_namespace_is_unchanged_by_up_and_down(tmp_path):
    before = _root_namespace_snapshot()
    with running_lab(CLUSTER, inventory_dir=tmp_path) as lab:
        during = _root_namespace_snapshot()
        assert node_run(lab, lab.node_names[0], "hostname").stdout.strip() == lab.node_names[0]
    after = _root_namespace_snapshot()
    assert during == before
    assert after == before


def _lab_traces(lab) -> tuple[set[int], set[int], set[int]]:
    """Inodes of the lab's network namespaces and of its machines' UTS and mount namespaces."""
    state = lab.state
    net = {lab_procs.netns_inode(ns) for ns in state.namespaces}
    return net, {n.anchor_uts for n in state.machines}, {n.anchor_mnt for n in state.machines}


def _assert_nothing_left(lab, traces, inventory: Path) -> None:
    net, uts, mnt = traces
    left = lab_procs.pids_in_namespaces({"net": net, "uts": uts, "mnt": mnt})
    assert left == {}
    assert _lab_namespaces(lab.state.id) == []
    assert not lab.dir.exists()
    assert not inventory.exists()
    for node in lab.state.machines:
        for pid in (node.anchor_pid, node.sshd_pid):
            assert not lab_procs.is_alive(pid) or lab_procs.ns_inode(pid, "uts") != node.anchor_uts


def test_down_removes_everything_after_processes_were_killed(tmp_path):
    name = unique_lab_name("k")
    lab = lab_up(lab_nodes_from_files([CLUSTER]), name, tmp_path)
    try:
        traces = _lab_traces(lab)
        first, second, third = lab.node_names
        # A pod namespace with a daemon inside a node: not a child of anything the lab started.
        node_run(lab, first, "ip netns add pod1 && setsid ip netns exec pod1 sleep 600 </dev/null >/dev/null 2>&1 &")
        deadline = time.monotonic() + 5
        while "sleep 600" not in node_run(lab, first, "ps -eo args").stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "sleep 600" in node_run(lab, first, "ps -eo args").stdout
        state = {n.name: n for n in lab.state.nodes}
        os.kill(state[first].sshd_pid, signal.SIGKILL)
        os.kill(state[second].anchor_pid, signal.SIGKILL)
        os.kill(state[third].sshd_pid, signal.SIGKILL)
        os.kill(state[third].anchor_pid, signal.SIGKILL)
        inventory = lab.inventory_path
        assert inventory.exists()
    finally:
        lab_down(name)
    _assert_nothing_left(lab, traces, inventory)


def test_a_lab_with_a_bastion_leaves_nothing_either(tmp_path):
    before = _root_namespace_snapshot()
    name = unique_lab_name("b")
    lab = lab_up(lab_nodes_from_files([CLUSTER]), name, tmp_path, bastion=True)
    try:
        traces = _lab_traces(lab)
        assert lab.bastion is not None and lab.bastion[0] in lab.state.namespaces
        assert node_run(lab, "bastion", "hostname").stdout.strip() == "bastion"
        assert _root_namespace_snapshot() == before
    finally:
        lab_down(name)
    _assert_nothing_left(lab, traces, lab.inventory_path)
    assert _root_namespace_snapshot() == before


def test_two_labs_of_the_same_cluster_run_side_by_side(lab, tmp_path):
    with running_lab(CLUSTER, inventory_dir=tmp_path) as other:
        assert set(other.nodes) == set(lab.nodes)
        assert {ns for ns, _ in other.nodes.values()}.isdisjoint(ns for ns, _ in lab.nodes.values())
        node = other.node_names[0]
        node_run(other, node, "echo other > /var/lib/svcnet/which")
        assert node_run(lab, node, "test -e /var/lib/svcnet/which", check=False).returncode == 1
        for each in (lab, other):
            result = subprocess.run(
                ["ssh", "-F", str(each.ssh_config_path), node, "cat /var/lib/svcnet/which 2>/dev/null; hostname"],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            assert result.stdout.split()[-1] == node
            assert ("other" in result.stdout) == (each is other)
        assert load_lab(other.name).nodes == other.nodes


def test_up_refuses_an_existing_lab_and_down_an_unknown_one(lab, tmp_path):
    with pytest.raises(LabError, match="already exists"):
        lab_up(lab_nodes_from_files([CLUSTER]), lab.name, tmp_path)
    assert load_lab(lab.name).nodes == lab.nodes  # the failed up left the running lab alone
    with pytest.raises(LabError, match="no lab named"):
        lab_down("no-such-lab-here")


def test_down_all_removes_every_lab_under_its_root(tmp_path):
    root = tmp_path / "labs"
    names = [unique_lab_name("a"), unique_lab_name("a")]
    labs = []
    try:
        for name in names:
            labs.append(lab_up(lab_nodes_from_files([CLUSTER]), name, tmp_path / name, root=root))
        traces = [_lab_traces(each) for each in labs]
        assert sorted(lab_down_all(root)) == sorted(names)
    finally:
        for name in names:
            with contextlib.suppress(LabError):
                lab_down(name, root)
    for each, trace in zip(labs, traces, strict=True):
        _assert_nothing_left(each, trace, each.inventory_path)
    assert list(root.iterdir()) == []
    assert not any((tmp_path / name).exists() for name in names)  # the labs created these dirs


def test_a_failed_up_removes_what_it_created(tmp_path, monkeypatch):
    from dataclasses import replace

    from svcnet.lab import up as up_module
    from svcnet.lab.layout import LabLayout

    real = up_module.require_all
    monkeypatch.setattr(up_module, "require_all", lambda: replace(real(), sshd="/bin/false"))
    name = unique_lab_name("f")
    with pytest.raises(LabError, match=r"node node[123]: sshd exited during start"):  # all fail; any may be first
        lab_up(lab_nodes_from_files([CLUSTER]), name, tmp_path / "inv")
    layout = LabLayout(name)
    assert _lab_namespaces(layout.id) == []
    assert not layout.dir.exists()
    assert not (tmp_path / "inv").exists()
