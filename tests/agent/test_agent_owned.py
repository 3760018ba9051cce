"""svcnet changes only what it created, on a scratch node (real kernel, real agent).

Links svcnet creates carry the alias OWNER_ALIAS, routes the protocol ROUTE_PROTO, pod netns a
record in state.json; an existing link, route or netns without the mark is refused, never adopted,
and only marked ones are deleted. Teardown is guarded like an apply (backup, rollback, dead-man).
"""

from __future__ import annotations

import json
import re

import pytest
from agentnode import ScratchNode, apply_req, seed_artifacts, wait_until
from test_agent_pods import http, pod_pid

from svcnet.agent import node

pytestmark = pytest.mark.lab

BR0 = {"  nodePortRange: 30000-32767\n": "  nodePortRange: 30000-32767\n  bridge: br0\n"}
BR1 = {"  nodePortRange: 30000-32767\n": "  nodePortRange: 30000-32767\n  bridge: br1\n"}
TIMERS = re.compile(r"\b(\w+_timer)\s+[0-9.]+")  # a bridge's timers in `ip -d link`: they count down
POD_ROUTE = "10.244.2.0/24"  # node1's route to node2's podCIDR
# Links and routes svcnet did not create, on the node before svcnet comes (the kernel here has no
# dummy links: a veth pair and a bridge stand in for the host's own interfaces).
FOREIGN = [
    ["ip", "link", "add", "fgn0", "type", "veth", "peer", "name", "fgn0p"],
    ["ip", "link", "set", "dev", "fgn0", "up"],
    ["ip", "addr", "add", "198.51.100.1/24", "dev", "fgn0"],
    ["ip", "link", "add", "docker0", "type", "bridge"],
    ["ip", "route", "add", "203.0.113.0/24", "via", "192.168.56.1"],
]


def net_state(snode: ScratchNode) -> dict[str, object]:
    """Everything svcnet could touch, as the node's own tools print it (no counters, timers or timestamps)."""
    return {
        "links": TIMERS.sub(r"\1 -", snode.sh(["ip", "-d", "link"]).stdout),
        "addresses": snode.sh(["ip", "-4", "addr"]).stdout,  # (IPv6 link-local addresses settle by themselves)
        "routes": snode.sh(["ip", "route"]).stdout,
        "rules": snode.save("filter") + snode.save("nat"),
        "netns": snode.netns_list(),
    }


def baseline(snode: ScratchNode) -> dict[str, object]:
    """`net_state` of a node whose uplink has settled: a new veth's carrier comes up on its own time."""
    assert wait_until(lambda: "state UP" in snode.sh(["ip", "link", "show", "dev", "eth0"]).stdout, 10)
    return net_state(snode)


def recreated_state(snode: ScratchNode) -> dict[str, object]:
    """`net_state` up to what re-creating a link changes (its index and MAC address)."""
    links = json.loads(snode.sh(["ip", "-j", "link"]).stdout)
    seen = sorted((x["ifname"], x.get("ifalias", ""), x.get("master", ""), "UP" in x["flags"]) for x in links)
    return {**net_state(snode), "addresses": snode.sh(["ip", "-4", "-br", "addr"]).stdout, "links": seen}


def alias(snode: ScratchNode, dev: str) -> str | None:
    data = json.loads(snode.sh(["ip", "-j", "link", "show", "dev", dev], check=False).stdout or "[]")
    return data[0].get("ifalias", "") if data else None



def test_foreign_bridge_and_route_are_refused_before_anything_changes(snode, tmp_path):
    art = seed_artifacts(tmp_path, BR0)
    netns = art.netconf.pods[0].netns
    snode.sh(["ip", "link", "add", "br0", "type", "bridge"])
    snode.sh(["ip", "route", "add", POD_ROUTE, "via", "192.168.56.1"])
    snode.sh(["ip", "netns", "add", netns])  # a namespace of the pod's name, not svcnet's
    before = baseline(snode)

    pre = snode.agent({"op": "preflight", "run_id": "r1", "netconf": apply_req(snode, art, "r1")["netconf"]})
    assert not pre["ok"], pre
    assert "bridge br0: link br0 exists and was not created by svcnet" in pre["msg"], pre["msg"]
    assert f"route {POD_ROUTE}: route {POD_ROUTE} via 192.168.56.1 dev eth0 proto boot was not added by svcnet" \
        in pre["msg"], pre["msg"]
    assert f"pod k8s-test/{art.netconf.pods[0].name}: network namespace {netns} exists and was not created by " \
        "svcnet" in pre["msg"], pre["msg"]
    assert len(pre["foreign"]) == 3
    resp = snode.agent(apply_req(snode, art, "r2"))
    assert not resp["ok"] and not resp["changed"] and resp["foreign"] == pre["foreign"], resp
    check = snode.agent(apply_req(snode, art, "r3", check=True))
    assert not check["ok"] and check["foreign"] == pre["foreign"], check
    assert net_state(snode) == before
    assert not snode.etc.exists() or list(snode.etc.iterdir()) == []


def test_rename_and_teardown_leave_foreign_links_and_routes(snode, tmp_path):
    for argv in FOREIGN:
        snode.sh(argv)
    before = baseline(snode)
    assert snode.agent(apply_req(snode, seed_artifacts(tmp_path, BR0), "r1"))["ok"]
    assert alias(snode, "br0") == node.OWNER_ALIAS
    routes = json.loads(snode.sh(["ip", "-j", "-N", "route", "show", "exact", POD_ROUTE]).stdout)
    assert [r.get("protocol") for r in routes] == [str(node.ROUTE_PROTO)]

    renamed = snode.agent(apply_req(snode, seed_artifacts(tmp_path, BR1), "r2"))
    assert renamed["ok"] and renamed["changed"], renamed
    assert alias(snode, "br0") is None and alias(snode, "br1") == node.OWNER_ALIAS
    assert http(snode)  # the pod moved to the new bridge and answers
    links = str(net_state(snode)["links"])
    assert all(ln in links for ln in str(before["links"]).splitlines())  # every foreign link as it was

    # Someone replaces svcnet's route with their own: it is theirs now, and a teardown leaves it.
    snode.sh(["ip", "route", "del", POD_ROUTE])
    snode.sh(["ip", "route", "add", POD_ROUTE, "via", "192.168.56.1"])
    theirs = next(ln for ln in snode.sh(["ip", "route"]).stdout.splitlines() if ln.startswith(POD_ROUTE))
    down = snode.agent({"op": "teardown", "run_id": "r3"})
    assert down["ok"] and down["changed"], down
    after = net_state(snode)
    assert sorted(str(after["routes"]).splitlines()) == sorted([*str(before["routes"]).splitlines(), theirs])
    assert {**after, "routes": before["routes"]} == before


def test_a_failed_first_apply_does_not_delete_a_foreign_link(snode, tmp_path):
    before = baseline(snode)
    req = apply_req(snode, seed_artifacts(tmp_path), "r1")
    # Another program creates a link of the bridge's name just as the apply starts (after the agent's
    # check, as netconf.sh begins), and the apply then fails: the rollback must leave that link alone.
    req["artifacts"]["netconf.sh"] = req["artifacts"]["netconf.sh"].replace(
        "set -eu\n", "set -eu\nip link add cni0 type bridge\n", 1) + "exit 4\n"
    resp = snode.agent(req)
    assert not resp["ok"] and resp["rolled_back"], resp
    assert alias(snode, "cni0") == ""  # still there, never marked (nor adopted: no address)
    assert "10.244.1.1" not in snode.sh(["ip", "addr", "show", "dev", "cni0"]).stdout
    snode.sh(["ip", "link", "del", "cni0"])
    assert net_state(snode) == before


def strip_marks(snode: ScratchNode) -> None:
    """Make an applied node look as an svcnet before the marks left it: unmarked links, routes and netns."""
    conf = json.loads((snode.etc / "netconf.json").read_text())
    for dev in [conf["bridge"], *(p["veth"] for p in conf["pods"])]:
        snode.sh(["ip", "link", "set", "dev", dev, "alias", ""])
    for r in conf["routes"]:
        snode.sh(["ip", "route", "replace", r["dst"], "via", r["via"]])
    state_file = snode.state / "state.json"
    state = json.loads(state_file.read_text())
    del state[node.MARKS_KEY], state[node.OWNED_NETNS_KEY]
    state_file.write_text(json.dumps(state))


def test_a_node_applied_before_the_marks_is_taken_over_once(snode, tmp_path):
    art = seed_artifacts(tmp_path)
    assert snode.agent(apply_req(snode, art, "r1"))["ok"]
    strip_marks(snode)
    netconf = apply_req(snode, art, "r2")["netconf"]
    assert snode.agent({"op": "preflight", "run_id": "r2", "netconf": netconf})["ok"]
    pid = pod_pid(snode)

    # The next network apply marks what the previous version's state names (here also a pod restart
    # is not needed: the pod keeps running), and from then on only the marks count.
    resp = snode.agent(apply_req(snode, seed_artifacts(tmp_path, {"nodePort: 30000": "nodePort: 30001"}), "r3"))
    assert resp["ok"] and resp["changed"], resp
    assert alias(snode, "cni0") == node.OWNER_ALIAS and pod_pid(snode) == pid
    assert alias(snode, art.netconf.pods[0].veth) == node.OWNER_ALIAS
    routes = json.loads(snode.sh(["ip", "-j", "-N", "route", "show", "exact", POD_ROUTE]).stdout)
    assert [r.get("protocol") for r in routes] == [str(node.ROUTE_PROTO)]
    snode.sh(["ip", "link", "set", "dev", "cni0", "alias", ""])  # unmarked now means: not svcnet's
    refused = snode.agent({"op": "preflight", "run_id": "r4", "netconf": netconf})
    assert not refused["ok"] and "bridge cni0: link cni0 exists" in refused["msg"], refused
    snode.sh(["ip", "link", "set", "dev", "cni0", "alias", node.OWNER_ALIAS])

    # A teardown of a node the previous version applied removes its unmarked objects too.
    strip_marks(snode)
    assert snode.agent({"op": "teardown", "run_id": "r5"})["ok"]
    assert alias(snode, "cni0") is None and snode.netns_list() == []
    assert POD_ROUTE not in snode.sh(["ip", "route"]).stdout


def test_renaming_the_bridge_of_a_node_applied_before_the_marks(snode, tmp_path):
    assert snode.agent(apply_req(snode, seed_artifacts(tmp_path), "r1"))["ok"]
    strip_marks(snode)
    resp = snode.agent(apply_req(snode, seed_artifacts(tmp_path, BR1), "r2"))
    assert resp["ok"], resp
    assert alias(snode, "cni0") is None and alias(snode, "br1") == node.OWNER_ALIAS


def test_teardown_is_rolled_back_unless_confirmed(snode, tmp_path):
    art = seed_artifacts(tmp_path)
    assert snode.agent(apply_req(snode, art, "r1"))["ok"]
    applied = recreated_state(snode)
    files = sorted(p.name for p in snode.etc.iterdir())

    down = snode.agent({"op": "teardown", "run_id": "r2", "confirm_timeout": 2})
    assert down["ok"] and down["changed"] and down["pending"], down
    assert "KUBE-" not in snode.save("nat") and alias(snode, "cni0") is None
    # no confirmation arrives: the dead-man puts svcnet back as it was
    assert wait_until(lambda: snode.agent({"op": "probe", "run_id": "x"})["pending"] is None, 15)
    assert wait_until(lambda: http(snode), 10)
    assert recreated_state(snode) == applied
    assert sorted(p.name for p in snode.etc.iterdir()) == files
    late = snode.agent({"op": "confirm", "run_id": "r2"})
    assert not late["ok"] and late["rolled_back"], late
    probe = snode.agent({"op": "probe", "run_id": "x"})
    assert probe["netconf_ok"] and probe["live_rules_hash"] == probe["saved_rules_hash"], probe

    down = snode.agent({"op": "teardown", "run_id": "r3", "confirm_timeout": 30})
    assert down["pending"], down
    confirmed = snode.agent({"op": "confirm", "run_id": "r3"})
    assert confirmed["ok"] and confirmed["changed"], confirmed
    # Nothing is left but the node lock file, which is never removed (a waiter may hold it open).
    assert list(snode.etc.iterdir()) == [] and [p.name for p in snode.state.iterdir()] == ["lock"]
    assert alias(snode, "cni0") is None and snode.netns_list() == [] and "KUBE-" not in snode.save("nat")


def test_a_failed_teardown_rolls_back(snode, tmp_path):
    assert snode.agent(apply_req(snode, seed_artifacts(tmp_path), "r1"))["ok"]
    # a foreign rule that jumps to svcnet's chain: svcnet's chains cannot be deleted
    snode.sh(["iptables", "-t", "nat", "-N", "FOREIGN"])
    snode.sh(["iptables", "-t", "nat", "-A", "FOREIGN", "-j", "KUBE-SERVICES"])
    before, pid = recreated_state(snode), pod_pid(snode)
    down = snode.agent({"op": "teardown", "run_id": "r2", "confirm_timeout": 30})
    assert not down["ok"] and down["rolled_back"] and "teardown failed" in down["msg"], down
    assert recreated_state(snode) == before and pod_pid(snode) == pid
    assert snode.agent({"op": "probe", "run_id": "x"})["pending"] is None
