"""The guarded apply's commit, faulted for real on a scratch node.

The agent is killed (SIGKILL), failed or paused at its named points through the test-only
environment hook (node.TEST_HOOK_ENV); the node must always end in its previous state or, once
confirmed, in the new one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from agentnode import Events, ScratchNode, apply_req, hook, node_pids, node_state, release, seed_artifacts, wait_until

from svcnet.agent import node

pytestmark = pytest.mark.lab

# Both parts change: the NodePort (rules) and a second pod on node1 (netns, veth, process).
CHANGE = {"nodePort: 30000": "nodePort: 30001", "replicas: 2": "replicas: 4"}
POINTS = (*node.COMMIT_STEPS, "done")  # fault_point names of a commit, in order
# The dead-man acts at once when the agent dies (no confirmation asked) or at a 2 s deadline; a
# rollback with pods takes about a second. Generous for a loaded 2-core machine.
SETTLE_WAIT = 60


def deadman_pids(snode: ScratchNode) -> list[int]:
    """The node's running dead-man switches: the processes whose stdout is the dead-man's log."""
    log = str(snode.state / "logs" / "deadman.log")
    found = []
    for pid in node_pids(snode.pid, snode.ns):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/1") == log:
                found.append(pid)
    return found


def pending(snode: ScratchNode) -> dict | None:
    return node.read_json(str(snode.state / "pending.json"))



def killed_at(snode: ScratchNode, req: dict, point: str) -> None:
    proc = snode.agent_proc(req, env=hook(**{point: {"do": "kill"}}))
    assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), (point, proc.returncode, proc.stderr)
    assert not proc.stdout.strip(), proc.stdout  # it died where it was told to, before answering


@pytest.mark.parametrize("confirm_timeout", [0, 2], ids=["unguarded", "guarded"])
def test_an_agent_killed_at_any_step_leaves_the_old_state_or_the_new(snode, tmp_path, confirm_timeout):
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, CHANGE)
    assert snode.agent(apply_req(snode, art1, "r0"))["ok"]
    old = node_state(snode)
    for n, point in enumerate(POINTS, 1):
        killed_at(snode, apply_req(snode, art2, f"r{n}", confirm_timeout=confirm_timeout), point)
        # the dead-man, if this point was after arming, rolls back: once the agent is gone (no
        # confirmation asked) or at the deadline
        assert wait_until(lambda: not deadman_pids(snode), SETTLE_WAIT), point
        if point == "done" and confirm_timeout == 0:
            break  # applied and disarmed before the kill: the new state (below)
        assert node_state(snode) == old, f"killed at {point!r}: not the previous state"
        marker = pending(snode)
        assert marker is None or not node.deadman_alive(marker), marker
    if confirm_timeout:
        return
    new = node_state(snode)
    assert new != old and "--dport 30001" in new["nat"] and len(new["pods"]) == 2
    again = snode.agent(apply_req(snode, art2, "r-again"))
    assert again["ok"] and not again["changed"], again  # what the killed run recorded is what is there
    assert node_state(snode) == new and pending(snode) is None


def test_a_run_killed_after_its_apply_is_kept_once_confirmed(snode, tmp_path):
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, CHANGE)
    assert snode.agent(apply_req(snode, art1, "r0"))["ok"]
    killed_at(snode, apply_req(snode, art2, "r1", confirm_timeout=30), "done")
    assert pending(snode)["run_id"] == "r1" and node.deadman_alive(pending(snode))
    confirmed = snode.agent({"op": "confirm", "run_id": "r1"})
    assert confirmed["ok"] and confirmed["changed"], confirmed
    assert not deadman_pids(snode) and pending(snode) is None
    assert "--dport 30001" in snode.save("nat")
    assert not snode.agent(apply_req(snode, art2, "r2"))["changed"]


def test_a_run_killed_before_its_apply_finished_cannot_be_confirmed(snode, tmp_path):
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, CHANGE)
    assert snode.agent(apply_req(snode, art1, "r0"))["ok"]
    old = node_state(snode)
    killed_at(snode, apply_req(snode, art2, "r1", confirm_timeout=2), "record applied")
    late = snode.agent({"op": "confirm", "run_id": "r1"})
    assert not late["ok"] and "stopped before its apply finished" in late["msg"], late
    assert wait_until(lambda: not deadman_pids(snode), SETTLE_WAIT)
    assert node_state(snode) == old
    last = node.read_json(str(snode.state / "last-rollback.json"))
    assert last["run_id"] == "r1" and last["reason"] == "the apply stopped before it finished", last


def test_a_failure_at_any_step_leaves_the_old_state_and_no_guard(snode, tmp_path):
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, CHANGE)
    assert snode.agent(apply_req(snode, art1, "r0"))["ok"]
    old = node_state(snode)
    for n, step in enumerate(node.COMMIT_STEPS, 1):
        resp = snode.agent(apply_req(snode, art2, f"r{n}", confirm_timeout=30), env=hook(**{step: {"do": "fail"}}))
        assert not resp["ok"] and f"at step {step!r}: injected failure" in resp["msg"], resp
        changed_first = node.COMMIT_STEPS.index(step) >= node.COMMIT_STEPS.index(node.FIRST_CHANGE)
        assert bool(resp.get("rolled_back")) == changed_first, (step, resp)
        assert node_state(snode) == old, f"failed at {step!r}: not the previous state"
        assert pending(snode) is None and not deadman_pids(snode), step
    assert snode.agent(apply_req(snode, art2, "r-ok"))["changed"]


def _fill_dir(snode: ScratchNode, path: Path, how: str) -> None:
    """Inside the node's own mount namespace only: make `path` read-only or a full tmpfs (same files)."""
    if how == "read-only":
        snode.sh(["sh", "-c", 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1"', "sh", str(path)])
        return
    snode.sh(["sh", "-c", 'set -e; keep=$(mktemp -d /run/keep.XXXXXX); cp -a "$1"/. "$keep"/; '
              'mount -t tmpfs -o size=$(($(du -sk "$keep" | cut -f1) + 256))k,mode=0755 svcnet-full "$1"; '
              'cp -a "$keep"/. "$1"/; '
              'dd if=/dev/zero of="$1"/.filler bs=4k 2>/dev/null || true', "sh", str(path)])
    probe = snode.sh(["dd", "if=/dev/zero", f"of={path}/.probe", "bs=1k", "count=1"], check=False)
    assert "No space left" in probe.stderr, probe.stderr


@pytest.mark.parametrize("how", ["full", "read-only"])
def test_a_failing_write_of_the_record_leaves_the_node_as_it_was(snode, tmp_path, how):
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, CHANGE)
    assert snode.agent(apply_req(snode, art1, "r0"))["ok"]
    _fill_dir(snode, snode.etc, how)
    old = node_state(snode)
    resp = snode.agent(apply_req(snode, art2, "r1", confirm_timeout=30))
    assert not resp["ok"] and resp["rolled_back"], resp
    assert "at step 'record applied'" in resp["msg"], resp
    assert ("No space left" if how == "full" else "Read-only file system") in resp["msg"], resp
    assert node_state(snode) == old  # rules byte-identical, address config and pods too
    assert pending(snode) is None and not deadman_pids(snode)


def test_a_full_state_dir_stops_the_apply_before_any_change(snode, tmp_path):
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, CHANGE)
    assert snode.agent(apply_req(snode, art1, "r0"))["ok"]
    _fill_dir(snode, snode.state, "full")
    old = node_state(snode)
    resp = snode.agent(apply_req(snode, art2, "r1", confirm_timeout=30))
    assert not resp["ok"] and not resp.get("rolled_back") and "No space left" in resp["msg"], resp
    assert node_state(snode) == old
    assert pending(snode) is None and not deadman_pids(snode)


def test_an_apply_slower_than_the_timeout_still_gets_its_whole_confirmation_window(snode, tmp_path):
    """The dead-man, armed before the change, waits for the apply (it holds the lock) and then for
    the deadline the apply moved when it finished, not the one it was armed with."""
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, CHANGE)
    assert snode.agent(apply_req(snode, art1, "r0"))["ok"]
    events = Events(tmp_path / "events")
    gate = tmp_path / "go"
    os.mkfifo(gate)
    pool = ThreadPoolExecutor(1)
    try:
        slow = pool.submit(snode.agent, apply_req(snode, art2, "r1", confirm_timeout=3), 120,
                           hook(pods={"do": "pause", "events": events.path, "release": str(gate)}))
        assert events.next()[1] == "pods"
        armed = pending(snode)
        assert armed["phase"] == "applying" and node.deadman_alive(armed)
        assert wait_until(lambda: time.time() > armed["deadline"] + 1, 10)  # the armed deadline is long past
        assert release(gate)
        resp = slow.result(timeout=120)
    finally:
        release(gate)
        pool.shutdown(wait=False)
        events.close()
    assert resp["ok"] and resp["pending"], resp
    assert pending(snode)["deadline"] > armed["deadline"] + 1
    confirmed = snode.agent({"op": "confirm", "run_id": "r1"})
    assert confirmed["ok"] and confirmed["changed"], confirmed
    assert "--dport 30001" in snode.save("nat") and not deadman_pids(snode)
