"""The apply renders probed hosts together, at most `forks` at a time, and drops texts once used."""

from __future__ import annotations

from applylab import SEED

from svcnet.apply.converge import Converge, HostState
from svcnet.desired import node_artifacts_all
from svcnet.model.load import load_cluster
from svcnet.transport.protocol import ProbeAnswer


def converge(hosts: list[str], stale: dict[str, list[str]]) -> Converge:
    c = Converge()
    for h in hosts:
        c.hosts[h] = HostState(probe=ProbeAnswer.from_wire({"ok": True, "stale_chains": stale.get(h, [])}))
    c.render_queue = list(hosts)
    return c


def alone(cluster, host: str, stale: tuple[str, ...] = ()):
    """The host's artifacts rendered for it alone."""
    return node_artifacts_all(cluster, [host], {host: stale})[host]


def test_batches_follow_forks_and_match_rendering_one_host_at_a_time():
    cluster = load_cluster([SEED])
    stale = {"node2": ["KUBE-SVC-GONEGONEGONEGONE"]}
    for forks, after_first in ((1, ["node2"]), (10, [])):
        c = converge(["node1", "node2"], stale)
        desired1, send1 = c.take_rendered("node1", cluster, forks)
        assert c.render_queue == after_first  # forks=1: node2 waits for its own pass
        assert desired1 == send1 == alone(cluster, "node1")
        desired2, send2 = c.take_rendered("node2", cluster, forks)
        assert desired2 == alone(cluster, "node2")
        assert send2 == alone(cluster, "node2", tuple(stale["node2"])) != desired2  # deletes the stale chain
        assert c.hosts["node1"].rendered is None and c.hosts["node2"].rendered is None  # dropped once taken


def test_a_host_probed_only_now_renders_alone():
    cluster = load_cluster([SEED])
    c = converge(["node1", "node2"], {})
    c.render_queue = []  # as with --tags rules: nothing was probed before the task
    assert c.take_rendered("node2", cluster, 10) == (alone(cluster, "node2"), alone(cluster, "node2"))
    assert c.hosts["node1"].rendered is None  # not rendered with it
