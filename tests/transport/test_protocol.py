"""The controller side of the agent's wire: requests as the agent reads them, answers read back typed."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from svcnet.agent import node
from svcnet.desired import node_netconf
from svcnet.model.load import load_cluster
from svcnet.render.artifacts import node_artifacts_all
from svcnet.transport import protocol

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"


@pytest.fixture(scope="module")
def seed():
    return load_cluster([SEED])


def artifacts(cluster, node_name: str = "node1"):
    return node_artifacts_all(cluster, [node_name])[node_name]


def test_remote_command_and_stdin():
    assert "'" not in protocol.BOOTSTRAP
    assert shlex.split(protocol.REMOTE_COMMAND)[-2:] == ["-c", protocol.BOOTSTRAP]  # flags: test_agent_isolation
    doc = json.loads(protocol.build_stdin({**protocol.StatusRequest("r1").to_wire(), "lock_wait": 3}))
    assert doc["agent"] == Path(node.__file__).read_text()
    assert doc["request"] == {"op": "status", "run_id": "r1", "lock_wait": 3}
    with pytest.raises(ValueError, match="unknown agent op"):
        protocol.build_stdin({"op": "reboot"})


def test_every_request_is_an_op_of_the_agent():
    for req in (protocol.ProbeRequest, protocol.PreflightRequest, protocol.ApplyRequest, protocol.ConfirmRequest,
                protocol.TeardownRequest, protocol.StatusRequest):
        assert req.OP in node.OPS


def test_the_wire_keeps_the_keys_and_values_the_agent_reads(seed):
    """Byte for byte what the controller sent before requests were typed (the agent reads these keys)."""
    art = artifacts(seed)
    assert json.dumps(protocol.ProbeRequest("r1").to_wire()) == '{"op": "probe", "run_id": "r1"}'
    assert json.dumps(protocol.StatusRequest("r1").to_wire()) == '{"op": "status", "run_id": "r1"}'
    assert json.dumps(protocol.ConfirmRequest("r1").to_wire()) == '{"op": "confirm", "run_id": "r1"}'
    assert json.dumps(protocol.TeardownRequest("r1", lock_wait=30.0, confirm_timeout=5.0).to_wire()) == (
        '{"op": "teardown", "run_id": "r1", "lock_wait": 30.0, "confirm_timeout": 5.0}')
    conf = node_netconf(seed, seed.node("node1"))
    assert protocol.PreflightRequest("r1", conf).to_wire() == {
        "op": "preflight", "run_id": "r1", "netconf": protocol.netconf_payload(conf)}
    assert protocol.PreflightRequest("r1").to_wire() == {"op": "preflight", "run_id": "r1"}

    apply = protocol.ApplyRequest("r1", art).to_wire()
    assert list(apply) == ["op", "run_id", "artifacts", "netconf", "parts", "desired_hashes", "confirm_timeout",
                           "check", "diff", "lock_wait", "podserver", "agent", "conntrack"]
    assert apply["conntrack"] == []  # the seed has no UDP port: nothing to clean, but the cleanup runs
    files = art.files()
    assert apply["artifacts"] == {n: files[n] for n in ("rules.restore", "jumps.rules", "netconf.sh", "health.json")}
    assert apply["netconf"] == protocol.netconf_payload(art.netconf)
    # The defaults, as the agent had them before: all parts, no guard, no check or diff, ints for the waits.
    assert json.dumps({k: apply[k] for k in ("parts", "confirm_timeout", "check", "diff", "lock_wait")}) == (
        '{"parts": ["network", "rules"], "confirm_timeout": 0, "check": false, "diff": false, "lock_wait": 30}')
    assert apply["agent"] == protocol.agent_source() and apply["podserver"] == protocol.podserver_source()


def test_parse_response_errors_are_clear():
    with pytest.raises(protocol.AgentProtocolError, match="no response from n1"):
        protocol.parse_response("\n", "n1")
    with pytest.raises(protocol.AgentProtocolError, match="not JSON"):
        protocol.parse_response("Traceback (most recent call last):\n  boom\n")
    with pytest.raises(protocol.AgentProtocolError, match="not an agent response"):
        protocol.parse_response("[1, 2]\n")
    assert protocol.parse_response('log line\n{"ok": true, "changed": false, "msg": ""}\n')["ok"] is True


def test_a_probe_answer_says_what_is_unchanged_and_the_facts():
    want = {"rules": "r", "network": "n"}
    wire = {"ok": True, "msg": "", "applied_hash": dict(want), "live_rules_hash": "a", "saved_rules_hash": "a",
            "netconf_ok": True, "stale_chains": ["KUBE-SVC-X"],
            "facts": {"random_fully": False, "nfacct_counters": ["x"], "tcp_be_liberal": True}}

    def unchanged(overrides: dict, want: dict, parts: tuple[str, ...] = protocol.PARTS) -> bool:
        return protocol.ProbeAnswer.from_wire({**wire, **overrides}).unchanged(want, parts)

    assert unchanged({}, want)
    assert not unchanged({}, {**want, "rules": "other"})
    assert unchanged({}, {**want, "rules": "other"}, ("network",))  # only that part asked
    assert not unchanged({"live_rules_hash": "b"}, want)
    assert unchanged({"live_rules_hash": "b"}, want, ("network",))
    assert not unchanged({"netconf_ok": False}, want)
    assert unchanged({"netconf_ok": False}, want, ("rules",))
    assert not unchanged({"applied_hash": None}, want)
    assert not unchanged({"conntrack_pending": True}, want)  # the rules' apply retries the conntrack cleanup
    assert unchanged({"conntrack_pending": True}, want, ("network",))
    assert not unchanged({"ok": False}, want)
    answer = protocol.ProbeAnswer.from_wire(wire)
    assert answer.facts is not None
    facts = answer.facts
    assert (facts.random_fully, facts.nfacct_counters, facts.tcp_be_liberal) == (False, frozenset({"x"}), True)
    assert answer.stale_chains == ("KUBE-SVC-X",)
    assert protocol.ProbeAnswer.from_wire({"ok": False, "msg": "boom"}).facts is None


def test_change_and_status_answers_read_the_agents_keys():
    applied = protocol.ApplyAnswer.from_wire({"ok": True, "changed": True, "msg": "m", "pending": True,
                                              "diff": {"rules": "-a\n+b\n", "netconf": ""}})
    assert (applied.ok, applied.changed, applied.msg, applied.pending, applied.rolled_back) == (
        True, True, "m", True, False)
    assert applied.diff == {protocol.DIFF_RULES: "-a\n+b\n", protocol.DIFF_NETCONF: ""}
    assert applied.conntrack_deleted is None and applied.conntrack_error is None
    cleaned = protocol.ApplyAnswer.from_wire({"ok": True, "changed": True, "msg": "m", "conntrack_deleted": 4,
                                              "conntrack_error": "timed out"})
    assert (cleaned.conntrack_deleted, cleaned.conntrack_error, cleaned.changed) == (4, "timed out", True)
    failed = protocol.TeardownAnswer.from_wire({"ok": False, "changed": False, "msg": "x", "rolled_back": True})
    assert (failed.ok, failed.rolled_back, failed.diff) == (False, True, None)
    status = protocol.StatusAnswer.from_wire({"ok": True, "changed": False, "msg": "", "pending": None, "pods": [
        {"pod": "ns/a", "netns": "n", "ip": "1.2.3.4", "has_command": True, "pid": 7, "running": True,
         "current": True}]})
    assert status.pods == (protocol.PodStatus("ns/a", running=True, current=True, pid=7),)


def test_desired_hash_follows_the_content(seed, tmp_path):
    changed = tmp_path / "seed"
    changed.mkdir()
    for f in SEED.glob("*.yaml"):
        (changed / f.name).write_text(f.read_text().replace("nodePort: 30000", "nodePort: 30001"))
    a, b = artifacts(seed), artifacts(load_cluster([changed]))
    assert protocol.desired_hashes(a) == protocol.desired_hashes(artifacts(load_cluster([SEED])))
    ha, hb = protocol.desired_hashes(a), protocol.desired_hashes(b)
    assert ha["rules"] != hb["rules"] and ha["network"] == hb["network"]  # a nodePort is a rules change
    req = protocol.ApplyRequest("r1", a, confirm_timeout=5).to_wire()
    assert req["desired_hashes"] == ha
    assert protocol.ApplyRequest("r1", b, hashes=ha).to_wire()["desired_hashes"] == ha  # the caller's, when given
    assert req["podserver"].startswith('"""Tiny pod server') and req["confirm_timeout"] == 5


def test_run_ids_are_new_each_time_and_the_agent_accepts_them():
    ids = {protocol.new_run_id() for _ in range(5)} | {protocol.new_run_id("verify")}
    assert len(ids) == 6
    assert all(node.RUN_ID_RE.fullmatch(i) for i in ids), ids


def test_an_apply_of_the_rules_sends_the_ports_whose_stale_conntrack_entries_to_delete():
    cluster = load_cluster([Path(__file__).resolve().parents[1] / "apply" / "stale-udp"])
    art = artifacts(cluster)
    apply = protocol.ApplyRequest("r1", art).to_wire()
    ips = sorted(p.ip for p in cluster.pods)
    assert apply["conntrack"] == [{"protocol": "UDP", "port": 53, "vips": ["10.96.0.53"], "node_port": 30053,
                                   "endpoints": ips}]
    assert node.ApplyRequest.parse(apply).conntrack == apply["conntrack"]  # the agent reads it as sent
    for no_cleanup in (protocol.ApplyRequest("r1", art, check=True), protocol.ApplyRequest("r1", art, ("network",))):
        assert "conntrack" not in no_cleanup.to_wire()


def test_netconf_payload_of_a_single_stack_node_has_no_dual_stack_keys(seed):
    """A single-stack node's payload (and so its network hash) is as before dual-stack: no re-apply."""
    payload = protocol.netconf_payload(node_netconf(seed, seed.node("node1")))
    assert sorted(payload) == ["bridge", "bridge_address", "pods", "routes", "sysctls"]
    assert sorted(payload["pods"][0]) == ["address", "command", "gateway", "name", "namespace", "netns", "ports",
                                          "veth"]


def test_netconf_payload_of_a_dual_stack_node_is_what_the_agent_reads():
    from svcnet.model.load import check_paths

    checked = check_paths([SEED.parent / "dual-stack"])
    assert checked.build is not None
    conf = node_netconf(checked.build.cluster, checked.build.cluster.node("node2"))
    payload = protocol.netconf_payload(conf)
    assert payload[node.SECOND_BRIDGE_ADDRESS] == "fd00:10:244:2::1/64"
    (pod,) = payload["pods"]
    assert pod["second_gateway"] == "fd00:10:244:2::1" and pod["second_address"].endswith("/64")
    agent_conf = node.validate_netconf(json.loads(json.dumps(payload)))
    assert node.bridge_addresses(agent_conf) == ["10.244.2.1/24", "fd00:10:244:2::1/64"]
    facts = [ln for ln in node.desired_lines(agent_conf) if ln.startswith(("bridge", "pod")) and "(running)" not in ln]
    assert facts == [
        "bridge cni0 10.244.2.1/24 up", "bridge cni0 fd00:10:244:2::1/64 up",
        f"pod k8s-test/{pod['name']} netns {pod['netns']} veth {pod['veth']} {pod['address']} via 10.244.2.1",
        f"pod k8s-test/{pod['name']} netns {pod['netns']} veth {pod['veth']} {pod['second_address']} via "
        "fd00:10:244:2::1"]
    bad = {**payload, "pods": [{**pod, "second_gateway": "not an ip"}]}
    with pytest.raises(node.AgentError, match=r"pods\[0\].second_gateway"):
        node.validate_netconf(bad)
