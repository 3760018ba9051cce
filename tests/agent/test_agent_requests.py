"""The agent's wire on the node: requests parsed and checked once, with their defaults; answers as dataclasses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from agentnode import seed_artifacts

from svcnet.agent import node
from svcnet.transport import protocol

RESTORE_ONLY = {"rules.restore": "*filter\n:KUBE-X - [0:0]\nCOMMIT\n"}


@pytest.fixture(autouse=True)
def no_op_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Requests here are only parsed: should one pass that must not, its op is not run on this
    machine (the test fails on the tripwire's answer instead)."""
    ran: list[str] = []

    def tripwire(req: node.Request) -> node.Answer:
        ran.append(type(req).__name__)
        return node.Answer(False, False, f"TRIPWIRE: {type(req).__name__} was run")

    for ops in (node.OPS, node.SCRATCH_OPS):
        for name, op in list(ops.items()):
            monkeypatch.setitem(ops, name, node.Op(op.request, tripwire))
    return ran


def test_an_apply_request_takes_its_defaults_from_one_place():
    req = node.ApplyRequest.parse({"op": "apply", "artifacts": RESTORE_ONLY})
    assert (req.run_id, req.owned_prefix, req.lock_wait, req.confirm_timeout) == ("", "KUBE-", 30.0, 0.0)
    assert req.paths == node.Paths("/etc/svcnet", "/var/lib/svcnet", "/run/svcnet")
    assert (req.parts, req.check, req.diff, req.desired_hashes) == (node.PARTS, False, False, {})
    assert req.netconf == node.empty_netconf() and req.agent is None and req.podserver is None
    # null, empty directories and an empty list of parts take the defaults too
    same = node.ApplyRequest.parse({"op": "apply", "artifacts": RESTORE_ONLY, "lock_wait": None, "etc_dir": "",
                                    "owned_prefix": "", "parts": [], "netconf": None, "confirm_timeout": None})
    assert same == req
    assert node.BootRequest.parse({"op": "boot"}).lock_wait == 60.0  # the only op with another default


def test_parts_come_in_the_one_order_of_PARTS():
    parse = node.ApplyRequest.parse
    assert parse({"op": "apply", "artifacts": RESTORE_ONLY, "parts": ["rules", "network"]}).parts == node.PARTS
    assert parse({"op": "apply", "artifacts": RESTORE_ONLY, "parts": [node.PART_RULES]}).parts == (node.PART_RULES,)


def controller_wires(art) -> tuple[dict, dict, dict]:
    """An apply (network only, confirm_timeout 5, diff, lock_wait 7), a preflight and a teardown
    (lock_wait 3, confirm_timeout 2) of run r1, as the controller's own code writes them."""
    return (protocol.ApplyRequest("r1", art, parts=(node.PART_NETWORK,), confirm_timeout=5, diff=True,
                                  lock_wait=7).to_wire(),
            protocol.PreflightRequest("r1", art.netconf).to_wire(),
            protocol.TeardownRequest("r1", lock_wait=3, confirm_timeout=2).to_wire())


def test_what_the_controller_sends_parses_to_the_same_values(tmp_path):
    art = seed_artifacts(tmp_path)
    apply, preflight, teardown = (json.loads(json.dumps(w)) for w in controller_wires(art))
    req = node.ApplyRequest.parse(apply)
    assert (req.run_id, req.confirm_timeout, req.diff, req.check, req.lock_wait) == ("r1", 5.0, True, False, 7.0)
    assert req.parts == (node.PART_NETWORK,) and req.desired_hashes == apply["desired_hashes"]
    assert req.artifacts == apply["artifacts"] and req.agent == Path(node.__file__).read_text()
    assert req.podserver == apply["podserver"] and req.netconf == node.validate_netconf(apply["netconf"])
    assert node.PreflightRequest.parse(preflight).netconf == req.netconf
    down = node.TeardownRequest.parse(teardown)
    assert (down.lock_wait, down.confirm_timeout) == (3.0, 2.0)


# Should the parser regress, the tripwire answers; the directories are the test's own all the same.
APPLY = {"op": "apply", "run_id": "r1", "artifacts": RESTORE_ONLY, "etc_dir": "/nonexistent/svcnet-test/e",
         "state_dir": "/nonexistent/svcnet-test/s", "run_dir": "/nonexistent/svcnet-test/r"}


@pytest.mark.parametrize("fields, says", [
    ({"lock_wait": "30"}, "'lock_wait' must be a number of seconds >= 0, not '30'"),
    ({"lock_wait": True}, "'lock_wait' must be a number of seconds"),
    ({"lock_wait": -1}, "'lock_wait' must be a number of seconds >= 0"),
    ({"confirm_timeout": float("inf")}, "'confirm_timeout' must be a number of seconds"),
    ({"check": "yes"}, "'check' must be true or false, not 'yes'"),
    ({"diff": 1}, "'diff' must be true or false"),
    ({"parts": "rules"}, "'parts' must be a list of parts (network, rules)"),
    ({"parts": ["rules", "dns"]}, "'parts' must be a list of parts"),
    ({"desired_hashes": ["x"]}, "'desired_hashes' must be an object of a text per part"),
    ({"desired_hashes": {"dns": "x"}}, "'desired_hashes' must be an object"),
    ({"desired_hashes": {"rules": 1}}, "'desired_hashes' must be an object"),
    ({"artifacts": ["rules.restore"]}, "'artifacts' must be an object of the files"),
    ({"artifacts": {**RESTORE_ONLY, "evil.sh": "reboot"}}, "'artifacts' must be an object of the files"),
    ({"artifacts": {"rules.restore": 1}}, "artifacts.rules.restore must be text"),
    ({"artifacts": {"jumps.rules": ""}}, "apply needs artifacts with rules.restore"),
    ({"netconf": "bridge"}, "netconf must be an object"),
    ({"etc_dir": 5}, "'etc_dir' must be text, not 5"),
    ({"agent": ["print(1)"]}, "'agent' must be text"),
    ({"run_id": 7}, "invalid run_id 7"),
    ({"owned_prefix": "DOCKER-"}, "owned_prefix must be KUBE- followed by"),
    ({"confirm_timout": 30}, "apply request: unknown field 'confirm_timout' (known: agent, artifacts,"),
])
def test_a_malformed_request_gets_one_clear_answer(fields, says, no_op_runs):
    answer = node.handle({**APPLY, **fields})
    assert answer == {"ok": False, "changed": False, "msg": answer["msg"]}, answer
    assert says in answer["msg"] and no_op_runs == []


def test_a_well_formed_request_reaches_its_op(no_op_runs):
    """The control of the two tests around: the same requests, well formed, are run."""
    assert "TRIPWIRE" in node.handle(APPLY)["msg"] and no_op_runs == ["ApplyRequest"]
    assert "TRIPWIRE" in node.handle({"op": "teardown", "run_id": "r1"})["msg"]


@pytest.mark.parametrize("raw, says", [
    (["op", "status"], "request must be a JSON object"),
    ({"op": "reboot"}, "unknown op 'reboot' (expected one of probe, preflight, apply, confirm, rollback, "
                       "teardown, boot, status)"),
    ({"op": ["status"]}, "unknown op ['status']"),
    ({"run_id": "r1"}, "unknown op None"),
    ({"op": "status", "artifacts": RESTORE_ONLY}, "status request: unknown field 'artifacts'"),
    ({"op": "teardown", "check": True}, "teardown request: unknown field 'check'"),
    ({"op": "_scratch_normalize", "restore": 1}, "'restore' must be text"),
])
def test_a_request_for_no_op_or_with_another_ops_fields_is_refused(raw, says, no_op_runs):
    answer = node.handle(raw)
    assert answer == {"ok": False, "changed": False, "msg": answer["msg"]} and says in answer["msg"], answer
    assert no_op_runs == []


def test_a_malformed_request_over_the_bootstrap_answers_one_json_line(tmp_path):
    paths = {"etc_dir": str(tmp_path / "e"), "state_dir": str(tmp_path / "s"), "run_dir": str(tmp_path / "r")}
    request = {"op": "status", "lock_wait": "soon", **paths}  # a harmless op, and the test's own directories
    stdin = json.dumps({"agent": Path(node.__file__).read_text(), "request": request}) + "\n"
    proc = subprocess.run([sys.executable, *node.PYTHON_FLAGS, "-c", node.BOOTSTRAP], input=stdin.encode(),
                          capture_output=True, timeout=60, check=False, cwd="/")
    assert proc.stdout.count(b"\n") == 1 and b"Traceback" not in proc.stdout + proc.stderr, proc
    answer = json.loads(proc.stdout)
    assert answer == {"ok": False, "changed": False, "msg": answer["msg"]}, answer
    assert "'lock_wait' must be a number of seconds" in answer["msg"]
    assert not (tmp_path / "s").exists()  # refused before anything on the node


def test_answers_leave_out_only_what_they_have_nothing_to_say_of():
    assert node.ChangeAnswer(True, False, "x").to_wire() == {"ok": True, "changed": False, "msg": "x"}
    applied = node.ChangeAnswer(True, True, "applied", pending=False, pods=[], diff={"rules": "", "netconf": ""})
    assert applied.to_wire() == {"ok": True, "changed": True, "msg": "applied", "pending": False, "pods": [],
                                 "diff": {"rules": "", "netconf": ""}}
    # a status's pending is always there (null: nothing awaits confirmation)
    assert node.StatusAnswer(True, False, "", pods=[], pending=None).to_wire()["pending"] is None
    assert set(node.DIFF_KEYS) == set(node.PARTS)


def test_the_plan_keeps_the_nodes_files_of_a_part_not_applied():
    sent = {"rules.restore": "new", "jumps.rules": "new jumps", "netconf.sh": "new sh", "health.json": "new hc"}
    on_node = {"rules.restore": "old", "jumps.rules": None, "netconf.sh": "old sh", "health.json": "old hc"}
    assert node.planned_files((node.PART_NETWORK,), sent, on_node) == {
        "rules.restore": "old", "jumps.rules": "", "rules.nft": "", "netconf.sh": "new sh", "health.json": "old hc",
        "rules6.restore": "", "jumps6.rules": ""}
    assert node.planned_files(node.PARTS, {"rules.restore": "new"}, on_node) == {
        "rules.restore": "new", "jumps.rules": "", "rules.nft": "", "netconf.sh": "", "health.json": "",
        "rules6.restore": "", "jumps6.rules": ""}


def _plan(**changes: object) -> node.ApplyPlan:
    live = node.empty_snapshot()
    base: dict = dict(parts=node.PARTS, arts={}, conf=node.empty_netconf(), old_conf=node.empty_netconf(),
                      claims=frozenset(), foreign=[], live=live, live_normal=node.normal_form(live),
                      have_lines=["bridge b 10.0.0.1/24 up"], want_lines=["bridge b 10.0.0.1/24 up"], files_same=True,
                      applied={"rules": "h1", "network": "h2"}, want={"rules": "h1", "network": "h2"},
                      saved_rules_hash=node.sha256(node.normal_form(live)))
    return node.ApplyPlan(**{**base, **changes})


def test_the_plan_says_unchanged_only_when_every_part_is_as_recorded_and_live():
    assert _plan().unchanged
    assert not _plan(want={"rules": "h9", "network": "h2"}).unchanged  # new rules
    assert not _plan(saved_rules_hash="drifted").unchanged  # the live rules are not what the last apply left
    assert _plan(saved_rules_hash="drifted", parts=(node.PART_NETWORK,)).unchanged  # ... but only the network asked
    assert not _plan(want_lines=["bridge b 10.0.0.2/24 up"]).unchanged  # the address config differs
    assert not _plan(files_same=False).unchanged
    assert not _plan(want={"rules": "", "network": "h2"}, applied={"rules": "", "network": "h2"}).unchanged
    diff = _plan(want_lines=["bridge b 10.0.0.2/24 up"]).diff(True)
    assert diff is not None and diff["rules"] == "" and "+bridge b 10.0.0.2/24 up" in diff["netconf"]
    assert _plan().diff(False) is None
