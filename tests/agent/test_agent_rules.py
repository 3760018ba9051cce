"""The node agent for real, on a scratch node: apply, probe, check, rollback, dead-man, lock, teardown."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from agentnode import apply_req, legacy_bin, scratch_node, seed_artifacts, unchanged, wait_until

from svcnet.agent import node
from svcnet.transport import protocol

pytestmark = pytest.mark.lab

NODEPORT_CHANGE = {"nodePort: 30000": "nodePort: 30001"}
FOREIGN = [
    ["iptables", "-t", "filter", "-A", "INPUT", "-s", "198.51.100.7", "-j", "ACCEPT"],
    ["iptables", "-t", "filter", "-I", "INPUT", "1", "-p", "tcp", "--dport", "2222", "-j", "DROP"],
    ["iptables", "-t", "filter", "-A", "FORWARD", "-d", "198.51.100.0/24", "-j", "REJECT"],
    ["iptables", "-t", "filter", "-N", "FOREIGN-CHAIN"],
    ["iptables", "-t", "filter", "-A", "FOREIGN-CHAIN", "-m", "comment", "--comment", "not svcnet", "-j", "RETURN"],
    ["iptables", "-t", "filter", "-A", "OUTPUT", "-j", "FOREIGN-CHAIN"],
    ["iptables", "-t", "nat", "-A", "PREROUTING", "-p", "udp", "--dport", "53", "-j", "DNAT",
     "--to-destination", "198.51.100.53"],
    ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "203.0.113.0/24", "-j", "MASQUERADE"],
    ["iptables", "-t", "nat", "-N", "FOREIGN-NAT"],
    ["iptables", "-t", "nat", "-A", "FOREIGN-NAT", "-j", "RETURN"],
]


def foreign_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "KUBE-" not in ln]



def test_apply_then_probe_says_unchanged(snode, tmp_path):
    art = seed_artifacts(tmp_path)
    before = snode.agent({"op": "probe", "run_id": "r0"})
    assert before["ok"] and before["applied_hash"] is None and before["saved_rules_hash"] is None

    req = apply_req(snode, art, "r1")
    first = snode.agent(req)
    assert first["ok"] and first["changed"], first
    assert "-A KUBE-NODEPORTS" in snode.save("nat") and "--dport 30000" in snode.save("nat")

    probe = snode.agent({"op": "probe", "run_id": "r2"})
    assert probe["applied_hash"] == req["desired_hashes"]
    assert probe["live_rules_hash"] == probe["saved_rules_hash"]
    assert probe["netconf_ok"], probe["netconf_drift"]
    assert unchanged(probe, req["desired_hashes"])
    assert sorted(probe["stale_chains"]) == sorted(
        c for c in probe["stale_chains"] if c.startswith(("KUBE-SVC-", "KUBE-SEP-", "KUBE-EXT-")))
    assert any(c.startswith("KUBE-SEP-") for c in probe["stale_chains"])
    facts = protocol.ProbeAnswer.from_wire(probe).facts
    assert facts is not None and isinstance(facts.random_fully, bool)

    again = snode.agent(apply_req(snode, art, "r3"))
    assert again["ok"] and not again["changed"], again

    # drift: someone flushes one of svcnet's chains -> live != saved -> not unchanged, re-apply repairs
    snode.sh(["iptables", "-t", "nat", "-F", "KUBE-MARK-MASQ"])
    drifted = snode.agent({"op": "probe", "run_id": "r4"})
    assert drifted["live_rules_hash"] != drifted["saved_rules_hash"]
    assert not unchanged(drifted, req["desired_hashes"])
    repaired = snode.agent(apply_req(snode, art, "r5"))
    assert repaired["ok"] and repaired["changed"]
    assert unchanged(snode.agent({"op": "probe", "run_id": "r6"}), req["desired_hashes"])

    # address drift is seen too
    snode.sh(["ip", "route", "del", "10.244.2.0/24"])
    probe = snode.agent({"op": "probe", "run_id": "r7"})
    assert not probe["netconf_ok"] and any("10.244.2.0/24" in d for d in probe["netconf_drift"])


def test_check_mode_changes_nothing_and_reports_diff(snode, tmp_path):
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, NODEPORT_CHANGE)
    assert snode.agent(apply_req(snode, art1, "r1"))["ok"]
    saved = (snode.save("filter"), snode.save("nat"), sorted(os.listdir(snode.etc)),
             (snode.etc / "rules.restore").read_text())

    check = snode.agent(apply_req(snode, art2, "r2", check=True))
    assert check["ok"] and check["changed"], check
    rules_diff = check["diff"]["rules"]
    assert "--dport 30000" in rules_diff and "--dport 30001" in rules_diff
    assert any(ln.startswith("+") and "30001" in ln for ln in rules_diff.splitlines())
    assert (snode.save("filter"), snode.save("nat"), sorted(os.listdir(snode.etc)),
            (snode.etc / "rules.restore").read_text()) == saved

    same = snode.agent(apply_req(snode, art1, "r3", check=True))
    assert same["ok"] and not same["changed"] and same["diff"]["rules"] == ""
    assert same["diff"]["netconf"] == ""


def test_fresh_node_check_shows_netconf_diff(snode, tmp_path):
    check = snode.agent(apply_req(snode, seed_artifacts(tmp_path), "r1", check=True))
    assert check["changed"]
    assert "+bridge cni0 10.244.1.1/24 up" in check["diff"]["netconf"]
    assert "+route 10.244.2.0/24 via 192.168.56.12" in check["diff"]["netconf"]
    assert "KUBE-" not in snode.save("nat") and snode.netns_list() == []


def test_invalid_rule_is_refused_before_touching_the_node(snode, tmp_path):
    art1 = seed_artifacts(tmp_path)
    assert snode.agent(apply_req(snode, art1, "r1"))["ok"]
    before = (snode.save("filter"), snode.save("nat"), (snode.etc / "rules.restore").read_text())
    req = apply_req(snode, seed_artifacts(tmp_path, NODEPORT_CHANGE), "r2")
    req["artifacts"]["rules.restore"] = req["artifacts"]["rules.restore"].replace(
        "COMMIT\n*nat", "-A KUBE-FORWARD -m nosuchmatch --bogus -j ACCEPT\nCOMMIT\n*nat")
    resp = snode.agent(req)
    assert not resp["ok"] and "iptables-restore" in resp["msg"], resp
    assert (snode.save("filter"), snode.save("nat"), (snode.etc / "rules.restore").read_text()) == before


def test_failing_step_rolls_back_everything(snode, tmp_path):
    art1 = seed_artifacts(tmp_path)
    req1 = apply_req(snode, art1, "r1")
    assert snode.agent(req1)["ok"]
    before = (snode.save("filter"), snode.save("nat"))
    files = {f: (snode.etc / f).read_text() for f in os.listdir(snode.etc)}

    req = apply_req(snode, seed_artifacts(tmp_path, NODEPORT_CHANGE), "r2")
    req["artifacts"]["netconf.sh"] += "echo 'simulated failure' >&2\nexit 3\n"
    resp = snode.agent(req)
    assert not resp["ok"] and resp["rolled_back"], resp
    assert "netconf.sh" in resp["msg"] and "simulated failure" in resp["msg"]
    assert (snode.save("filter"), snode.save("nat")) == before
    assert {f: (snode.etc / f).read_text() for f in os.listdir(snode.etc)} == files
    probe = snode.agent({"op": "probe", "run_id": "r3"})
    assert unchanged(probe, req1["desired_hashes"]), probe
    assert probe["last_rollback"]["run_id"] == "r2"


def test_first_apply_failure_leaves_a_bare_node(snode, tmp_path):
    bare = (snode.save("filter"), snode.save("nat"))
    req = apply_req(snode, seed_artifacts(tmp_path), "r1")
    req["artifacts"]["netconf.sh"] += "exit 4\n"
    resp = snode.agent(req)
    assert not resp["ok"] and resp["rolled_back"]
    assert (snode.save("filter"), snode.save("nat")) == bare
    assert snode.netns_list() == []
    assert "cni0" not in snode.sh(["ip", "-br", "link"]).stdout


def test_explicit_rollback(snode, tmp_path):
    assert snode.agent(apply_req(snode, seed_artifacts(tmp_path), "r1"))["ok"]
    before = snode.save("nat")
    assert snode.agent(apply_req(snode, seed_artifacts(tmp_path, NODEPORT_CHANGE), "r2"))["changed"]
    assert snode.save("nat") != before
    assert not snode.agent({"op": "rollback", "run_id": "other"})["changed"]
    resp = snode.agent({"op": "rollback", "run_id": "r2"})
    assert resp["ok"] and resp["changed"] and resp["rolled_back"], resp
    assert snode.save("nat") == before
    assert not snode.agent({"op": "rollback", "run_id": "r2"})["changed"]


def test_dead_man_rolls_back_unless_confirmed(snode, tmp_path):
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, NODEPORT_CHANGE)
    assert snode.agent(apply_req(snode, art1, "r1"))["ok"]
    before = snode.save("nat")

    # The two checks below run inside r2's window: 10 s leaves room for them on a loaded machine.
    resp = snode.agent(apply_req(snode, art2, "r2", confirm_timeout=10))
    assert resp["ok"] and resp["pending"], resp
    assert "--dport 30001" in snode.save("nat")
    assert snode.agent({"op": "probe", "run_id": "x"})["pending"]["run_id"] == "r2"
    # the SSH session is long gone: the dead-man restores the previous rules on its own
    assert wait_until(lambda: snode.agent({"op": "probe", "run_id": "x"})["pending"] is None, 60)
    assert wait_until(lambda: snode.save("nat") == before, 5)
    late = snode.agent({"op": "confirm", "run_id": "r2"})
    assert not late["ok"] and late["rolled_back"], late
    last = json.loads((snode.state / "last-rollback.json").read_text())
    assert last["run_id"] == "r2" and last["ok"]

    # A window far longer than the probe and the confirmation below take, even on a loaded machine.
    resp = snode.agent(apply_req(snode, art2, "r3", confirm_timeout=60))
    assert resp["pending"]
    marker = snode.agent({"op": "probe", "run_id": "x"})["pending"]
    assert node.proc_start(marker["pid"]) == marker["start"]  # the switch is a live process ...
    confirmed = snode.agent({"op": "confirm", "run_id": "r3"})
    assert confirmed["ok"] and confirmed["changed"], confirmed
    # ... that the confirmation stopped (or left a zombie): no switch is left to roll back later,
    # so there is no need to wait out the window to see the rules stay
    assert node.proc_start(marker["pid"]) is None
    assert "--dport 30001" in snode.save("nat")
    assert snode.agent({"op": "probe", "run_id": "x"})["pending"] is None


def test_a_reused_pid_is_not_taken_for_the_dead_man(snode, tmp_path):
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, NODEPORT_CHANGE)
    assert snode.agent(apply_req(snode, art1, "r1", confirm_timeout=60))["pending"]
    marker_file = snode.state / "pending.json"
    marker = json.loads(marker_file.read_text())
    os.kill(marker["pid"], signal.SIGKILL)  # the switch dies (as in a crash) ...
    assert wait_until(lambda: node.proc_start(marker["pid"]) is None, 5)
    # ... and its pid now names another live process (here the scratch node's anchor)
    marker_file.write_text(json.dumps({**marker, "pid": snode.pid}))
    resp = snode.agent(apply_req(snode, art2, "r2", lock_wait=20))
    # r1 was rolled back as stale, not waited for: waiting ends in "awaiting confirmation" after 20 s
    assert resp["ok"] and resp["changed"], resp
    assert json.loads((snode.state / "last-rollback.json").read_text())["run_id"] == "r1"
    assert "--dport 30001" in snode.save("nat")


def test_pending_confirmation_blocks_other_runs_for_the_lock_wait(snode, tmp_path):
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, NODEPORT_CHANGE)
    assert snode.agent(apply_req(snode, art1, "r1", confirm_timeout=60))["pending"]
    started = time.monotonic()
    resp = snode.agent(apply_req(snode, art2, "r2", lock_wait=1))
    assert time.monotonic() - started >= 1.0
    assert not resp["ok"] and "awaiting confirmation of run r1" in resp["msg"] and "waited 1s" in resp["msg"], resp
    assert "--dport 30001" not in snode.save("nat")
    assert snode.agent({"op": "probe", "run_id": "x"})["pending"]["run_id"] == "r1"  # r1 is untouched

    # With time to wait, a run applies as soon as r1 is confirmed (the other run's confirm is not blocked).
    from agentnode import Events, hook

    events = Events(tmp_path / "events")
    reports = hook(locked={"do": "report", "tag": "r3", "events": events.path})
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(snode.agent, apply_req(snode, art2, "r3", lock_wait=60), 120, reports)
        # r3 takes the lock, sees r1's marker, lets the lock go and takes it again: it waits (an
        # event, not a sleep; Events.next's bound covers a loaded machine's agent start)
        assert events.next() == ("r3", "locked") and events.next() == ("r3", "locked")
        assert not waiting.done()
        assert snode.agent({"op": "confirm", "run_id": "r1"})["ok"]
        resp = waiting.result(timeout=60)
    events.close()
    assert resp["ok"] and resp["changed"], resp
    assert "--dport 30001" in snode.save("nat")


def test_lock_held_fails_clearly_and_concurrent_applies_serialise(snode, tmp_path):
    art1, art2 = seed_artifacts(tmp_path), seed_artifacts(tmp_path, NODEPORT_CHANGE)
    snode.state.mkdir(parents=True, exist_ok=True)
    with open(snode.state / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps({"run_id": "holder-run", "op": "apply", "pid": 1, "since": "then"}))
        f.flush()
        started = time.monotonic()
        resp = snode.agent(apply_req(snode, art1, "r1", lock_wait=1))
        waited = time.monotonic() - started
    assert not resp["ok"], resp
    assert "another svcnet apply holds the lock" in resp["msg"] and "holder-run" in resp["msg"]
    assert waited >= 1.0
    assert "KUBE-" not in snode.save("nat")

    results = {}

    def go(run_id, art):
        results[run_id] = snode.agent(apply_req(snode, art, run_id, lock_wait=60))

    threads = [threading.Thread(target=go, args=("ra", art1)), threading.Thread(target=go, args=("rb", art2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results["ra"]["ok"] and results["rb"]["ok"], results
    probe = snode.agent({"op": "probe", "run_id": "x"})
    assert probe["live_rules_hash"] == probe["saved_rules_hash"]


def test_foreign_rules_are_never_touched(snode, tmp_path):
    for argv in FOREIGN:
        snode.sh(argv)
    before = {t: snode.save(t) for t in ("filter", "nat")}
    assert snode.agent(apply_req(snode, seed_artifacts(tmp_path), "r1"))["changed"]
    for t in before:
        assert foreign_lines(snode.save(t)) == foreign_lines(before[t])
    assert snode.agent(apply_req(snode, seed_artifacts(tmp_path, NODEPORT_CHANGE), "r2"))["changed"]
    for t in before:
        assert foreign_lines(snode.save(t)) == foreign_lines(before[t])
    assert snode.agent({"op": "rollback", "run_id": "r2"})["changed"]
    for t in before:
        assert foreign_lines(snode.save(t)) == foreign_lines(before[t])

    ip_forward_before = "0"
    down = snode.agent({"op": "teardown", "run_id": "r3"})
    assert down["ok"] and down["changed"], down
    assert {t: snode.save(t) for t in before} == before
    assert snode.netns_list() == []
    links = snode.sh(["ip", "-br", "link"]).stdout
    assert "cni0" not in links and "veth" not in links
    assert "10.244.2.0/24" not in snode.sh(["ip", "route"]).stdout
    assert snode.sh(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == ip_forward_before
    assert os.listdir(snode.etc) == [] and os.listdir(snode.state) == ["lock"]  # the lock file stays: see NodeLock
    again = snode.agent({"op": "teardown", "run_id": "r4"})
    assert again["ok"] and not again["changed"], again


def test_one_transaction_repairs_jumps_and_drops_unlisted_owned_chains(snode, tmp_path):
    art = seed_artifacts(tmp_path)
    for argv in FOREIGN:
        snode.sh(argv)
    assert snode.agent(apply_req(snode, art, "r1"))["changed"]
    good = {t: snode.save(t) for t in ("filter", "nat")}
    portals = ["-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES"]
    snode.sh(["iptables", "-t", "nat", "-D", "PREROUTING", *portals])  # a lost jump
    snode.sh(["iptables", "-t", "nat", "-A", "OUTPUT", *portals])  # a duplicate one
    snode.sh(["iptables", "-t", "nat", "-N", "KUBE-LEFTOVER"])  # owned, but nothing renders it
    snode.sh(["iptables", "-t", "filter", "-N", "KUBE-OLD-JUMP-TARGET"])
    snode.sh(["iptables", "-t", "filter", "-I", "INPUT", "2", "-j", "KUBE-OLD-JUMP-TARGET"])  # an owned jump
    assert snode.agent({"op": "probe", "run_id": "p"})["live_rules_hash"] != (
        snode.agent({"op": "probe", "run_id": "p"})["saved_rules_hash"])

    fixed = snode.agent(apply_req(snode, art, "r2"))
    assert fixed["ok"] and fixed["changed"], fixed
    assert {t: snode.save(t) for t in ("filter", "nat")} == good  # exactly the first result, foreign rules too
    probe = snode.agent({"op": "probe", "run_id": "p2"})
    assert probe["live_rules_hash"] == probe["saved_rules_hash"]


def test_bad_requests_get_clear_errors(snode):
    raw = json.dumps({"agent": protocol.agent_source(), "request": {"op": "explode"}})
    out = snode.sh(["python3", "-c", protocol.BOOTSTRAP], raw, check=False).stdout
    assert "unknown op 'explode'" in protocol.parse_response(out)["msg"]
    garbage = snode.sh(["python3", "-c", protocol.BOOTSTRAP], json.dumps({"agent": protocol.agent_source(),
                                                                         "request": [1]}), check=False)
    assert protocol.parse_response(garbage.stdout) == {"ok": False, "changed": False,
                                                       "msg": "request must be a JSON object"}
    bad = snode.agent({"op": "apply", "run_id": "r1", "artifacts": {"rules.restore": "*nat\nCOMMIT\n"},
                       "netconf": {"bridge": "cni0; rm -rf /", "pods": []}})
    assert not bad["ok"] and "netconf.bridge" in bad["msg"]
    jumps = snode.agent({"op": "apply", "run_id": "r1",
                         "artifacts": {"rules.restore": "*nat\nCOMMIT\n", "jumps.rules": "-t nat -A INPUT -j ACCEPT"}})
    assert not jumps["ok"] and "jumps.rules line 1" in jumps["msg"]
    assert "invalid run_id" in snode.agent({"op": "probe", "run_id": "a b;c"})["msg"]


def test_legacy_backend_apply_failure_and_teardown(tmp_path):
    """The same contract with the legacy (x_tables) iptables backend."""
    with scratch_node(tmp_path, legacy_bin(tmp_path)) as node:
        for argv in FOREIGN:
            node.sh(argv)
        before = {t: node.save(t) for t in ("filter", "nat")}
        req = apply_req(node, seed_artifacts(tmp_path), "r1")
        assert node.agent(req)["changed"]
        probe = node.agent({"op": "probe", "run_id": "p"})
        assert probe["facts"]["iptables_backend"] == "legacy"
        assert unchanged(probe, req["desired_hashes"])
        applied = node.save("nat")
        bad = apply_req(node, seed_artifacts(tmp_path, NODEPORT_CHANGE), "r2")
        bad["artifacts"]["netconf.sh"] += "exit 5\n"
        assert node.agent(bad)["rolled_back"]
        assert node.save("nat") == applied
        assert node.agent({"op": "teardown", "run_id": "r3"})["changed"]
        assert {t: node.save(t) for t in before} == before
