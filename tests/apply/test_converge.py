"""The apply tasks over in-memory gateways: one guarded apply, confirmation, check, diff, rollbacks.

Unit tests of what the tasks send and how their answers become outcomes; the lab tests
(test_apply_seed.py, test_apply_faults.py) run the same paths against real nodes.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from applylab import SEED
from fakegateway import NETCONF_DIFF, RULES_DIFF, Fleet

from svcnet.cli.tasks import registry
from svcnet.playbook import recap
from svcnet.playbook.model import NETWORK, PREFLIGHT, RULES, TEARDOWN, VALIDATE, VERIFY, Play, Task
from svcnet.playbook.runner import Options, Runner
from svcnet.transport.ssh import SSHError

NODES = ("node1", "node2")
STALE_UDP = Path(__file__).parent / "stale-udp"  # a UDP and a TCP port
SITE = tuple(Task(name=v, action=v, tags=frozenset({v})) for v in (VALIDATE, PREFLIGHT, NETWORK, RULES))


def run(tmp_path: Path, fleet: Fleet, tasks: tuple[Task, ...] = SITE, description: Path = SEED,
        **opts) -> tuple[int, str]:
    from svcnet.transport.inventory import load_inventory

    (tmp_path / "hosts.ini").write_text("node1\nnode2\n")
    out = io.StringIO()
    runner = Runner(load_inventory(tmp_path / "hosts.ini"), Options(**opts), registry(), fleet.connect, out=out)
    return runner.run([Play("site", "all", (description,), tasks)]), out.getvalue()


def results(out: str, host: str) -> list[str]:
    """The host's line under each task banner, in order."""
    return re.findall(rf"^((?:ok|changed|skipping|fatal): \[{host}\].*)$", out, re.M)


def result_of(line: str) -> dict:
    return json.loads(line.split(" => ", 1)[1])


def test_both_parts_go_in_one_guarded_apply_confirmed_over_a_fresh_connection(tmp_path):
    fleet = Fleet(NODES)
    code, out = run(tmp_path, fleet)
    assert code == 0, out
    assert fleet.ops("node1") == ["preflight", "apply", "confirm (fresh)"]
    (apply,) = fleet.sent("node1", "apply")
    assert apply["parts"] == ["network", "rules"] and apply["confirm_timeout"] == 30.0 and not apply["check"]
    assert fleet.sent("node1", "confirm")[0]["run_id"] == apply["run_id"] == fleet.sent("node1", "preflight")[0][
        "run_id"]  # one run id for the run
    assert results(out, "node1") == ["ok: [node1]", "ok: [node1]", "changed: [node1]", "changed: [node1]"]

    again, out = run(tmp_path, fleet)  # the node now has what is desired: probed by the preflight, not sent
    assert again == 0 and fleet.ops("node1")[3:] == ["preflight"]
    assert results(out, "node1")[2:] == ["ok: [node1]", "ok: [node1]"]


def test_only_the_differing_part_is_sent(tmp_path):
    fleet = Fleet(NODES)
    run(tmp_path, fleet)
    fleet.nodes["node1"].applied["rules"] = "something else"
    code, out = run(tmp_path, fleet)
    assert code == 0
    assert fleet.sent("node1", "apply")[-1]["parts"] == ["rules"]
    assert results(out, "node1")[2:] == ["ok: [node1]", "changed: [node1]"]


def test_rules_alone_probes_first(tmp_path):
    fleet = Fleet(NODES)
    code, _ = run(tmp_path, fleet, tags=("rules",))
    assert code == 0
    assert fleet.ops("node2") == ["probe", "apply", "confirm (fresh)"]
    assert fleet.sent("node2", "apply")[0]["parts"] == ["rules"]


def test_check_mode_changes_nothing_and_skips_verify_and_teardown(tmp_path):
    fleet = Fleet(NODES)
    tasks = (*SITE, Task("verify", VERIFY), Task("teardown", TEARDOWN))
    code, out = run(tmp_path, fleet, tasks, check=True)
    assert code == 0, out
    assert fleet.ops("node1") == ["preflight", "apply"]  # no confirmation, no teardown
    (apply,) = fleet.sent("node1", "apply")
    assert apply["check"] is True and apply["confirm_timeout"] == 0.0
    assert fleet.nodes["node1"].applied == {}
    assert results(out, "node1") == ["ok: [node1]", "ok: [node1]", "changed: [node1]", "changed: [node1]",
                                     "skipping: [node1]", "skipping: [node1]"]


def test_diff_shows_each_part_under_its_own_task(tmp_path):
    fleet = Fleet(NODES)
    code, out = run(tmp_path, fleet, diff=True)
    assert code == 0
    assert fleet.sent("node1", "apply")[0]["diff"] is True
    network, rules = out.split("TASK [network]")[1].split("TASK [rules]")
    assert f"--- node1: netconf (live)\n+++ node1: netconf (desired)\n{NETCONF_DIFF}" in network
    assert "rules (live)" not in network and "netconf (live)" not in rules
    assert f"--- node1: rules (live)\n+++ node1: rules (desired)\n{RULES_DIFF}" in rules

    fleet.nodes["node1"].diff = {"rules": RULES_DIFF, "netconf": ""}  # only the rules differ
    fleet.nodes["node1"].applied.clear()
    _, out = run(tmp_path, fleet, diff=True)
    assert results(out, "node1")[2:] == ["ok: [node1]", "changed: [node1]"]  # ok: its own diff is empty


def test_a_failed_apply_that_was_rolled_back_is_exit_8(tmp_path):
    fleet = Fleet(NODES)
    fleet.nodes["node1"].answers["apply"] = {"ok": False, "changed": False, "rolled_back": True,
                                             "msg": "iptables-restore failed: line 3"}
    code, out = run(tmp_path, fleet)
    assert code == recap.EXIT_ROLLBACK, out
    (line,) = [ln for ln in results(out, "node1") if ln.startswith("fatal")]
    assert result_of(line) == {"msg": "iptables-restore failed: line 3", "rolled_back": True}
    assert len(results(out, "node1")) == 3  # the rules task skips the failed host
    assert results(out, "node2")[-1] == "changed: [node2]"  # the other node goes on
    assert recap.EXIT_ROLLBACK == 8


def test_a_failed_rollback_is_a_failure_not_a_rollback(tmp_path):
    fleet = Fleet(NODES)
    fleet.nodes["node2"].answers["apply"] = {"ok": False, "changed": True, "rolled_back": False,
                                             "msg": "rules failed; ROLLBACK FAILED: boom"}
    code, out = run(tmp_path, fleet)
    assert code == recap.EXIT_FAILED, out
    (line,) = [ln for ln in results(out, "node2") if ln.startswith("fatal")]
    assert result_of(line) == {"msg": "rules failed; ROLLBACK FAILED: boom"}


def test_a_confirmation_that_cannot_reach_the_node_leaves_it_to_its_dead_man_switch(tmp_path):
    fleet = Fleet(NODES)
    fleet.nodes["node1"].confirm_error = SSHError("node1", "cannot connect to 192.168.56.11:22")
    code, out = run(tmp_path, fleet, confirm_timeout=12)
    assert code == recap.EXIT_ROLLBACK, out
    assert fleet.ops("node1") == ["preflight", "apply", "confirm (fresh)"]
    (line,) = [ln for ln in results(out, "node1") if ln.startswith("fatal")]
    assert result_of(line) == {
        "msg": "applied but could not confirm over a fresh connection (cannot connect to 192.168.56.11:22); "
               "the node rolls itself back after 12s", "rolled_back": True}


def test_a_confirmation_refused_because_the_node_rolled_back(tmp_path):
    fleet = Fleet(NODES)
    fleet.nodes["node2"].answers["confirm"] = {"ok": False, "changed": False, "rolled_back": True,
                                               "msg": "run x was already rolled back"}
    code, out = run(tmp_path, fleet)
    assert code == recap.EXIT_ROLLBACK
    (line,) = [ln for ln in results(out, "node2") if ln.startswith("fatal")]
    assert result_of(line) == {"msg": "run x was already rolled back", "rolled_back": True}


def test_no_guard_means_no_confirmation(tmp_path):
    fleet = Fleet(NODES)
    code, _ = run(tmp_path, fleet, confirm_timeout=0)
    assert code == 0 and fleet.ops("node1") == ["preflight", "apply"]


def test_a_node_lost_during_the_apply_is_unreachable_and_the_others_go_on(tmp_path):
    fleet = Fleet(NODES)
    fleet.nodes["node2"].raises["apply"] = SSHError("node2", "connection lost: EOF")
    code, out = run(tmp_path, fleet)
    assert code == recap.EXIT_UNREACHABLE
    assert 'fatal: [node2]: UNREACHABLE! => {"msg": "connection lost: EOF"}' in out
    assert fleet.ops("node1") == ["preflight", "apply", "confirm (fresh)"]


def test_a_failed_preflight_stops_the_host(tmp_path):
    fleet = Fleet(NODES)
    fleet.nodes["node1"].answers["preflight"] = {"ok": False, "changed": False, "msg": "missing commands: ip"}
    code, out = run(tmp_path, fleet)
    assert code == recap.EXIT_FAILED and fleet.ops("node1") == ["preflight"]
    assert 'fatal: [node1]: FAILED! => {"msg": "missing commands: ip"}' in out


def test_a_failed_probe_fails_the_task(tmp_path):
    fleet = Fleet(NODES)
    fleet.nodes["node1"].answers["probe"] = {"ok": False, "changed": False, "msg": "internal error in probe"}
    code, out = run(tmp_path, fleet, tags=("rules",))
    assert code == recap.EXIT_FAILED, out
    assert fleet.ops("node1") == ["probe"]
    assert 'fatal: [node1]: FAILED! => {"msg": "internal error in probe"}' in out


def test_teardown_is_guarded_and_confirmed(tmp_path):
    fleet = Fleet(NODES)
    code, out = run(tmp_path, fleet, (Task("teardown", TEARDOWN),), confirm_timeout=9, lock_wait=4)
    assert code == 0
    assert fleet.ops("node1") == ["teardown", "confirm (fresh)"]
    assert fleet.sent("node1", "teardown") == [{"op": "teardown", "run_id": fleet.sent("node1", "confirm")[0]["run_id"],
                                                "lock_wait": 4.0, "confirm_timeout": 9.0}]
    assert results(out, "node1") == ["changed: [node1]"]
    fleet.nodes["node2"].confirm_error = SSHError("node2", "timed out")
    code, out = run(tmp_path, fleet, (Task("teardown", TEARDOWN),))
    assert code == recap.EXIT_ROLLBACK
    assert "removed but could not confirm over a fresh connection (timed out)" in out


def test_the_apply_sends_the_udp_ports_to_clean_and_verbose_shows_what_was_deleted(tmp_path):
    fleet = Fleet(NODES)
    fleet.nodes["node1"].answers["apply"] = {"ok": True, "changed": True, "msg": "applied", "pending": False,
                                             "conntrack_deleted": 3}
    code, out = run(tmp_path, fleet, description=STALE_UDP, verbose=1)
    assert code == 0, out
    (sent,) = fleet.sent("node1", "apply")
    assert [(p["protocol"], p["port"], p["vips"], p["node_port"]) for p in sent["conntrack"]] == [
        ("UDP", 53, ["10.96.0.53"], 30053)]  # the TCP port is not cleaned (kube-proxy's choice)
    assert len(sent["conntrack"][0]["endpoints"]) == 2
    assert result_of(results(out, "node1")[3])["msg"] == "applied; 3 stale conntrack entries deleted"
    assert "conntrack" not in result_of(results(out, "node2")[3])["msg"]  # the fake node2 answers none

    fleet.nodes["node1"].answers["apply"] = {**fleet.nodes["node1"].answers["apply"], "conntrack_deleted": 1,
                                             "conntrack_error": "conntrack cleanup ran out of its time"}
    fleet.nodes["node1"].applied.clear()
    _, out = run(tmp_path, fleet, description=STALE_UDP, verbose=1)
    assert result_of(results(out, "node1")[3])["msg"] == (
        "applied; 1 stale conntrack entries deleted (cleanup stopped: conntrack cleanup ran out of its time)")


def test_check_mode_and_a_network_only_apply_clean_nothing(tmp_path):
    fleet = Fleet(NODES)
    run(tmp_path, fleet, description=STALE_UDP, check=True)
    assert "conntrack" not in fleet.sent("node1", "apply")[0]
    run(tmp_path, fleet, description=STALE_UDP, tags=("network",))
    assert fleet.sent("node1", "apply")[-1]["parts"] == ["network"]
    assert "conntrack" not in fleet.sent("node1", "apply")[-1]


def test_a_conntrack_cleanup_that_stopped_short_is_retried_by_the_next_run(tmp_path):
    fleet = Fleet(NODES)
    run(tmp_path, fleet, description=STALE_UDP)
    node1 = fleet.nodes["node1"]
    node1.answers["preflight"] = {**node1.op_preflight({}), "conntrack_pending": True}
    code, out = run(tmp_path, fleet, description=STALE_UDP)
    assert code == 0, out
    assert fleet.ops("node1")[-2:] == ["preflight", "apply"]  # the rules are in place, yet applied again
    assert fleet.sent("node1", "apply")[-1]["parts"] == ["rules"] and fleet.sent("node1", "apply")[-1]["conntrack"]
    assert results(out, "node1")[2:] == ["ok: [node1]", "ok: [node1]"]
    assert fleet.ops("node2")[-1] == "preflight"  # nothing pending there: nothing sent


def test_the_clusters_proxy_mode_goes_to_preflight_and_apply(tmp_path, monkeypatch):
    """nftables mode is refused by validate until svcnet renders it: the description is made so here."""
    from dataclasses import replace

    from svcnet.playbook import runner as runner_module

    real = runner_module.check_paths

    def in_nftables_mode(paths):  # type: ignore[no-untyped-def]
        checked = real(paths)
        cluster = checked.build.cluster
        nft = replace(cluster, proxy=replace(cluster.proxy, mode="nftables"))
        return replace(checked, build=replace(checked.build, cluster=nft))

    fleet = Fleet(NODES)
    assert run(tmp_path, fleet)[0] == 0
    assert "proxy_mode" not in fleet.sent("node1", "preflight")[0]  # iptables mode: the wire as before
    assert "proxy_mode" not in fleet.sent("node1", "apply")[0]
    monkeypatch.setattr(runner_module, "check_paths", in_nftables_mode)
    fleet = Fleet(NODES)
    code, out = run(tmp_path, fleet)
    assert code == 0, out
    (preflight,), (apply,) = fleet.sent("node1", "preflight"), fleet.sent("node1", "apply")
    assert preflight["proxy_mode"] == apply["proxy_mode"] == "nftables"
    assert apply["artifacts"]["rules.restore"] == apply["artifacts"]["jumps.rules"] == ""
