"""The runner renders probed hosts together, at most `forks` at a time, and drops texts once used."""

from __future__ import annotations

import io
from typing import Any

from applylab import SEED

from svcnet.apply.runner import HostState, Options, Runner
from svcnet.model.load import load_cluster
from svcnet.render.artifacts import node_artifacts_all


def runner(forks: int, hosts: list[str], stale: dict[str, list[str]]) -> Runner:
    r = Runner(inventory=None, options=Options(forks=forks), out=io.StringIO())  # type: ignore[arg-type]
    for h in hosts:
        client: Any = None  # never called here
        r.hosts[h] = HostState(client, probe={"stale_chains": stale.get(h, [])})
    r.render_queue = list(hosts)
    return r


def alone(cluster, host: str, stale: tuple[str, ...] = ()):
    """The host's artifacts rendered for it alone."""
    return node_artifacts_all(cluster, [host], {host: stale})[host]


def test_batches_follow_forks_and_match_rendering_one_host_at_a_time():
    cluster = load_cluster([SEED])
    stale = {"node2": ["KUBE-SVC-GONEGONEGONEGONE"]}
    for forks, after_first in ((1, ["node2"]), (10, [])):
        r = runner(forks, ["node1", "node2"], stale)
        desired1, send1 = r.take_rendered("node1", cluster)
        assert r.render_queue == after_first  # forks=1: node2 waits for its own pass
        assert desired1 == send1 == alone(cluster, "node1")
        desired2, send2 = r.take_rendered("node2", cluster)
        assert desired2 == alone(cluster, "node2")
        assert send2 == alone(cluster, "node2", tuple(stale["node2"])) != desired2  # deletes the stale chain
        assert r.hosts["node1"].rendered is None and r.hosts["node2"].rendered is None  # dropped once taken


def test_a_host_probed_only_now_renders_alone():
    cluster = load_cluster([SEED])
    r = runner(10, ["node1", "node2"], {})
    r.render_queue = []  # as with --tags rules: nothing was probed before the task
    assert r.take_rendered("node2", cluster) == (alone(cluster, "node2"), alone(cluster, "node2"))
    assert r.hosts["node1"].rendered is None  # not rendered with it
