"""IPv6 rules beside IPv4 ones, for real on a scratch node: one guarded apply of both families.

The rules are the renderer's for tests/golden/dual-stack.yaml (the IPv6 gate lifted as the render
tests lift it); only the rules part is applied (the IPv6 address config is not the agent's rules).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from agentnode import ScratchNode, apply_req, hook, seed_artifacts, unchanged, wait_until

from svcnet.agent import node
from svcnet.model.load import check_paths
from svcnet.render.artifacts import NodeArtifacts, node_artifacts

pytestmark = pytest.mark.lab

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "dual-stack.yaml"
RULES = (node.PART_RULES,)
NODEPORT_CHANGE = {"nodePort: 30080": "nodePort: 30081"}
FAMILIES = (node.IPV4, node.IPV6)
FOREIGN6 = [
    ["ip6tables", "-t", "filter", "-A", "INPUT", "-s", "2001:db8::7", "-j", "ACCEPT"],
    ["ip6tables", "-t", "filter", "-I", "INPUT", "1", "-p", "tcp", "--dport", "2222", "-j", "DROP"],
    ["ip6tables", "-t", "filter", "-N", "FOREIGN-CHAIN"],
    ["ip6tables", "-t", "filter", "-A", "FOREIGN-CHAIN", "-m", "comment", "--comment", "not svcnet", "-j", "RETURN"],
    ["ip6tables", "-t", "filter", "-A", "FORWARD", "-j", "FOREIGN-CHAIN"],
    ["ip6tables", "-t", "nat", "-A", "PREROUTING", "-p", "udp", "--dport", "53", "-j", "DNAT",
     "--to-destination", "[2001:db8::53]:53"],
    ["ip6tables", "-t", "nat", "-A", "POSTROUTING", "-s", "2001:db8:1::/64", "-j", "MASQUERADE"],
]


def dual_artifacts(tmp_path: Path, replace: dict[str, str] | None = None) -> NodeArtifacts:
    text = GOLDEN.read_text()
    for old, new in (replace or {}).items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"dual-stack-{len(list(tmp_path.glob('dual-stack-*')))}.yaml"
    path.write_text(text)
    checked = check_paths([path], ipv6=True)
    assert checked.build is not None, checked.diagnostics
    return node_artifacts(checked.build.cluster, "node1")


def rules_state(snode: ScratchNode) -> dict:
    """Both families' filter and nat tables (byte for byte, counters aside) and etc_dir's files."""
    saves = {f"{family}/{table}": snode.save(table, family) for family in FAMILIES for table in node.TABLES}
    etc = {p.name: p.read_text() for p in sorted(snode.etc.iterdir())} if snode.etc.is_dir() else {}
    return {**saves, "etc": etc}


def foreign(text: str) -> list[str]:
    """A save without svcnet's own chains and rules."""
    return [ln for ln in text.splitlines() if "KUBE-" not in ln]


def add_foreign6(snode: ScratchNode) -> dict[str, str]:
    for argv in FOREIGN6:
        snode.sh(argv)
    return {t: snode.save(t, node.IPV6) for t in node.TABLES}


def test_both_families_applied_probed_repaired_and_torn_down(snode, tmp_path):
    before6 = add_foreign6(snode)
    art = dual_artifacts(tmp_path)
    req = apply_req(snode, art, "r1", parts=RULES)
    first = snode.agent(req)
    assert first["ok"] and first["changed"], first
    nat6 = snode.save("nat", node.IPV6)
    assert "-d fd00:10:96::10/128" in nat6 and "-d fd00:10:96::20/128" in nat6
    assert "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in nat6
    assert "-d 10.96.0.10/32" in snode.save("nat") and "fd00" not in snode.save("nat")
    assert (snode.etc / node.RESTORE6_FILE).read_text() == art.restore6
    for t in node.TABLES:  # foreign ip6tables rules untouched, in place and order
        assert foreign(snode.save(t, node.IPV6)) == foreign(before6[t]), t

    probe = snode.agent({"op": "probe", "run_id": "r2"})
    assert probe["live_rules_hash"] == probe["saved_rules_hash"]
    assert unchanged(probe, req["desired_hashes"], RULES)
    again = snode.agent(apply_req(snode, art, "r3", parts=RULES))
    assert again["ok"] and not again["changed"] and "already in the desired state" in again["msg"], again

    # IPv6 drift is seen by the health hash and repaired by the next apply
    snode.sh(["ip6tables", "-t", "nat", "-F", "KUBE-MARK-MASQ"])
    drifted = snode.agent({"op": "probe", "run_id": "r4"})
    assert drifted["live_rules_hash"] != drifted["saved_rules_hash"]
    assert not unchanged(drifted, req["desired_hashes"], RULES)
    repaired = snode.agent(apply_req(snode, art, "r5", parts=RULES))
    assert repaired["ok"] and repaired["changed"], repaired
    assert snode.save("nat", node.IPV6) == nat6

    down = snode.agent({"op": "teardown", "run_id": "r6"})
    assert down["ok"] and down["changed"], down
    assert {t: snode.save(t, node.IPV6) for t in node.TABLES} == before6
    assert "KUBE-" not in snode.save("nat") and "KUBE-" not in snode.save("filter")


def test_check_and_diff_show_the_ipv6_changes(snode, tmp_path):
    art1, art2 = dual_artifacts(tmp_path), dual_artifacts(tmp_path, NODEPORT_CHANGE)
    assert snode.agent(apply_req(snode, art1, "r1", parts=RULES))["ok"]
    before = rules_state(snode)
    check = snode.agent(apply_req(snode, art2, "r2", parts=RULES, check=True))
    assert check["ok"] and check["changed"], check
    diff = check["diff"]

    def added(key: str) -> list[str]:
        return [ln for ln in diff[key].splitlines() if ln.startswith("+") and "--dport 30081" in ln]
    # the NodePort rule of each family, each in its family's diff (a chain has one name in both)
    assert len(added("rules")) == 1 and len(added(node.DIFF_RULES6)) == 1, diff
    assert rules_state(snode) == before
    applied = snode.agent(apply_req(snode, art2, "r3", parts=RULES, diff=True))
    assert applied["ok"], applied
    assert {k: applied["diff"][k] for k in node.PART_DIFF_KEYS[node.PART_RULES]} == {
        k: diff[k] for k in node.PART_DIFF_KEYS[node.PART_RULES]}, applied
    assert "--dport 30081" in snode.save("nat", node.IPV6)


def test_an_ip6tables_restore_refused_at_its_test_changes_neither_family(snode, tmp_path):
    add_foreign6(snode)
    art1, art2 = dual_artifacts(tmp_path), dual_artifacts(tmp_path, NODEPORT_CHANGE)
    assert snode.agent(apply_req(snode, art1, "r1", parts=RULES))["ok"]
    before = rules_state(snode)
    req = apply_req(snode, art2, "r2", parts=RULES)
    req["artifacts"][node.RESTORE6_FILE] = req["artifacts"][node.RESTORE6_FILE].replace(
        "COMMIT\n*nat", "-A KUBE-FORWARD -m nosuchmatch --bogus -j ACCEPT\nCOMMIT\n*nat")
    resp = snode.agent(req)
    assert not resp["ok"] and "ip6tables-restore --test" in resp["msg"] and not resp.get("rolled_back"), resp
    assert rules_state(snode) == before  # the IPv4 change was not applied either


@pytest.mark.parametrize("action", ["fail", "kill"])
def test_an_ipv6_failure_after_the_ipv4_rules_were_applied_rolls_both_back(snode, tmp_path, action):
    """A failure between the two restores (IPv4 applied, IPv6 not): a failure rolls back at once,
    a killed agent is rolled back by its dead-man switch; both families end as they were."""
    add_foreign6(snode)
    art1, art2 = dual_artifacts(tmp_path), dual_artifacts(tmp_path, NODEPORT_CHANGE)
    assert snode.agent(apply_req(snode, art1, "r1", parts=RULES))["ok"]
    before = rules_state(snode)
    req = apply_req(snode, art2, "r2", parts=RULES, confirm_timeout=30)
    proc = snode.agent_proc(req, env=hook(**{"rules ipv6": {"do": action}}))
    if action == "fail":
        resp = json.loads(proc.stdout.strip().splitlines()[-1])
        assert not resp["ok"] and resp["rolled_back"] and "injected failure at rules ipv6" in resp["msg"], resp
    else:
        assert proc.returncode in (-signal.SIGKILL, 128 + signal.SIGKILL), proc
        # the dead-man acts once the killed agent's lock is gone; generous for a loaded 2-core machine
        assert wait_until(lambda: not (snode.state / node.PENDING_FILE).exists(), 60)
        last = node.read_json(str(snode.state / node.LAST_ROLLBACK_FILE))
        assert last["run_id"] == "r2" and last["ok"] and "IPv6 rules restored" not in last["msg"], last
        assert "rules restored" in last["msg"], last
    assert rules_state(snode) == before
    probe = snode.agent({"op": "probe", "run_id": "r3"})
    assert probe["live_rules_hash"] == probe["saved_rules_hash"], probe


def test_a_guarded_apply_not_confirmed_rolls_both_families_back(snode, tmp_path):
    add_foreign6(snode)
    art1, art2 = dual_artifacts(tmp_path), dual_artifacts(tmp_path, NODEPORT_CHANGE)
    assert snode.agent(apply_req(snode, art1, "r1", parts=RULES))["ok"]
    before = rules_state(snode)
    resp = snode.agent(apply_req(snode, art2, "r2", parts=RULES, confirm_timeout=1))
    assert resp["ok"] and resp["pending"] and "--dport 30081" in snode.save("nat", node.IPV6), resp
    # the dead-man rolls back at the deadline; generous for a loaded 2-core machine
    assert wait_until(lambda: not (snode.state / node.PENDING_FILE).exists(), 60)
    last = node.read_json(str(snode.state / node.LAST_ROLLBACK_FILE))
    assert last["ok"] and "IPv6 rules restored" in last["msg"] and "rules restored" in last["msg"], last
    assert rules_state(snode) == before


def test_boot_restores_both_families(snode, tmp_path):
    art = dual_artifacts(tmp_path)
    assert snode.agent(apply_req(snode, art, "r1", parts=RULES))["ok"]
    applied = rules_state(snode)
    snode.simulate_reboot()
    assert "KUBE-" not in snode.save("nat", node.IPV6)
    booted = snode.agent_file("boot")
    assert booted["ok"] and "differ" not in booted["msg"], booted
    assert rules_state(snode) == applied


def test_an_ipv4_only_apply_leaves_ip6tables_alone_and_removes_svcnet_ipv6_chains(snode, tmp_path):
    before6 = add_foreign6(snode)
    seed = seed_artifacts(tmp_path)
    assert snode.agent(apply_req(snode, seed, "r1", parts=RULES))["ok"]
    assert {t: snode.save(t, node.IPV6) for t in node.TABLES} == before6
    assert not (snode.etc / node.RESTORE6_FILE).exists() and not (snode.etc / node.JUMPS6_FILE).exists()
    again = snode.agent(apply_req(snode, seed, "r2", parts=RULES))
    assert again["ok"] and not again["changed"], again

    assert snode.agent(apply_req(snode, dual_artifacts(tmp_path), "r3", parts=RULES))["ok"]
    assert "KUBE-" in snode.save("nat", node.IPV6)
    back = snode.agent(apply_req(snode, seed, "r4", parts=RULES, diff=True))
    assert back["ok"] and back["changed"], back
    removed6 = [ln for ln in back["diff"][node.DIFF_RULES6].splitlines() if ln.startswith("-:KUBE-")]
    assert removed6 and node.IPV6_RULES_HEADER.strip() not in back["diff"]["rules"], back
    assert {t: snode.save(t, node.IPV6) for t in node.TABLES} == before6
    assert not (snode.etc / node.RESTORE6_FILE).exists()
    probe = snode.agent({"op": "probe", "run_id": "r5"})
    assert probe["live_rules_hash"] == probe["saved_rules_hash"]


def test_the_ipv6_chains_of_a_removed_service_go(snode, tmp_path):
    art1, art2 = dual_artifacts(tmp_path), dual_artifacts(tmp_path, {"name: web6": "name: web7"})
    assert snode.agent(apply_req(snode, art1, "r1", parts=RULES))["ok"]
    assert snode.agent(apply_req(snode, art2, "r2", parts=RULES))["ok"]
    live = set(node.parse_save(snode.save("nat", node.IPV6), "nat")["chains"])
    declared1, declared2 = (node.restore_chains(art.restore6 or "")["nat"][0] for art in (art1, art2))
    assert live == declared2 and declared1 - declared2, (live, declared1)
