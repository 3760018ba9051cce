"""The node lock, for real on a scratch node: never two holders, whatever happens to its file."""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from agentnode import Events, apply_req, hook, release, seed_artifacts, unchanged

pytestmark = pytest.mark.lab


@pytest.mark.parametrize("remover", ["teardown", "someone"])
def test_three_runs_never_hold_the_lock_together(snode, tmp_path, remover):
    """T holds the lock while A waits; T ends (a teardown) or the lock file is removed meanwhile; B
    arrives while A holds it. B must wait for A (each agent reports, in order, when it waits and
    when it holds the lock, and holds it until the test lets it go)."""
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, {"nodePort: 30000": "nodePort: 30001"})
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    events = Events(hooks / "events")
    gates = {tag: hooks / f"{tag}.go" for tag in "TAB"}
    for g in gates.values():
        os.mkfifo(g)

    def env(tag: str) -> dict[str, str]:
        return hook(**{"lock wait": {"do": "report", "tag": tag, "events": events.path},
                       "locked": {"do": "pause", "tag": tag, "events": events.path, "release": str(gates[tag])}})

    pool = ThreadPoolExecutor(3)
    runs: dict[str, Future] = {}
    held = None
    try:
        runs["T"] = pool.submit(snode.agent, {"op": "teardown", "run_id": "t", "lock_wait": 60}, 120, env("T"))
        assert events.next() == ("T", "locked")
        held = os.open(snode.state / "lock", os.O_RDONLY)  # held open: its inode number cannot be reused
        runs["A"] = pool.submit(snode.agent, apply_req(snode, art1, "ra", lock_wait=60), 120, env("A"))
        assert events.next() == ("A", "lock wait")
        if remover == "someone":
            os.unlink(snode.state / "lock")
        assert release(gates["T"])
        assert runs["T"].result(timeout=120)["ok"]
        assert events.next() == ("A", "locked")
        if remover == "teardown":  # the file A waited on is still the lock: the teardown left it in place
            assert (snode.state / "lock").stat().st_ino == os.fstat(held).st_ino
        runs["B"] = pool.submit(snode.agent, apply_req(snode, art2, "rb", lock_wait=60), 120, env("B"))
        assert events.next() == ("B", "lock wait"), "B holds the lock while A does"
        assert release(gates["A"])
        assert runs["A"].result(timeout=120)["ok"]
        assert events.next() == ("B", "locked")
        assert release(gates["B"])
        resp = runs["B"].result(timeout=120)
        assert resp["ok"] and resp["changed"], resp
    finally:
        for g in gates.values():  # never leave an agent paused (the node's teardown also kills them)
            release(g)
        pool.shutdown(wait=False)
        events.close()
        if held is not None:
            os.close(held)
    probe = snode.agent({"op": "probe", "run_id": "p"})
    assert unchanged(probe, apply_req(snode, art2, "x")["desired_hashes"]), probe
    assert (snode.state / "lock").exists()
