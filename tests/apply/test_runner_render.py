"""The runner renders probed hosts together, at most `forks` at a time, and drops texts once used."""

from __future__ import annotations

import io
from typing import Any

from applylab import SEED

from svcnet.apply.runner import HostState, Options, Runner
from svcnet.model.load import load_cluster


def runner(forks: int, hosts: list[str], stale: dict[str, list[str]]) -> Runner:
    r = Runner(inventory=None, options=Options(forks=forks), out=io.StringIO())  # type: ignore[arg-type]
    for h in hosts:
        client: Any = None  # never called here
        r.hosts[h] = HostState(client, probe={"stale_chains": stale.get(h, [])})
    r.render_queue = list(hosts)
    return r


def test_batches_follow_forks_and_match_rendering_one_host_at_a_time():
    cluster = load_cluster([SEED])
    stale = {"node2": ["KUBE-SVC-GONEGONEGONEGONE"]}
    for forks, after_first in ((1, ["node2"]), (10, [])):
        r = runner(forks, ["node1", "node2"], stale)
        desired1, send1 = r.take_rendered("node1", cluster) or (None, None)
        assert r.render_queue == after_first  # forks=1: node2 waits for its own pass
        assert desired1 == send1 == r.artifacts("node1", cluster)
        desired2, send2 = r.take_rendered("node2", cluster) or (None, None)
        assert desired2 == r.artifacts("node2", cluster)
        assert send2 == r.artifacts("node2", cluster, stale["node2"]) != desired2  # deletes the stale chain
        assert r.take_rendered("node1", cluster) is None  # taken once, then dropped
