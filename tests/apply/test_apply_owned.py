"""svcnet changes only what it created: the real `svcnet` command against a lab.

A link or route of a name svcnet's address config uses, but that svcnet did not create, stops the
run in preflight (nothing changes); renaming svcnet's bridge and tearing svcnet down leave every
foreign link and route as it was.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from applylab import SEED, apply, owned_rules, svcnet

from svcnet.lab.pytest_fixtures import node_run
from svcnet.lab.state import Lab
from svcnet.render.netconf import OWNER_ALIAS, ROUTE_PROTO

pytestmark = pytest.mark.lab
ALIAS = "alias " + OWNER_ALIAS  # as `ip -d link` shows the mark of svcnet's links

# What a node's own tools print of everything svcnet could touch: links, routes, all of iptables.
NODE_NET = "ip -d link; echo; ip -4 addr; echo; ip route; echo; iptables-save"
# Kernel timers (`ip -d link` of a bridge) and packet counters (iptables-save) move by themselves.
MOVING = re.compile(r"\b(\w+_timer)\s+[0-9.]+|\[\d+:\d+\]")


def node_net(lab: Lab, node: str) -> str:
    out = node_run(lab, node, NODE_NET).stdout
    return "\n".join(MOVING.sub("-", ln) for ln in out.splitlines() if not ln.startswith("#"))


def foreign_net(lab: Lab, node: str) -> str:
    """`node_net` without what is svcnet's: its marked links (with their addresses and routes), its
    routes (by their protocol) and its rules."""
    links = json.loads(node_run(lab, node, "ip -j link").stdout)
    ours = {x["ifname"] for x in links if x.get("ifalias") == OWNER_ALIAS}
    kept, skip = [], False
    for ln in node_net(lab, node).splitlines():
        header = re.match(r"^\d+: ([^:@]+)", ln)
        if header or not ln.startswith(" "):
            skip = bool(header and header[1] in ours)
        route_dev = re.search(r" dev (\S+)", ln)
        if skip or "KUBE-" in ln or f" proto {ROUTE_PROTO} " in ln + " " or (route_dev and route_dev[1] in ours):
            continue
        kept.append(ln)
    return "\n".join(kept)


def with_bridge(tmp_path: Path, bridge: str) -> Path:
    """The seed description with `spec.bridge` set."""
    d = tmp_path / bridge
    shutil.copytree(SEED, d)
    cluster = d / "cluster.yaml"
    cluster.write_text(cluster.read_text().replace("spec:\n", f"spec:\n  bridge: {bridge}\n", 1))
    return d


def test_a_foreign_bridge_and_route_stop_the_apply_in_preflight(lab_factory, tmp_path):
    lab = lab_factory(SEED)
    node_run(lab, "node1", "ip link add br0 type bridge && ip route add 10.244.2.0/24 via 192.168.56.1")
    before = node_net(lab, "node1")
    run = apply(lab, with_bridge(tmp_path, "br0"))
    assert run.rc == 2 and run.recap()["node1"]["failed"] == 1, run.out + run.err
    assert "bridge br0: link br0 exists and was not created by svcnet" in run.out, run.out
    assert "route 10.244.2.0/24: route 10.244.2.0/24 via 192.168.56.1 dev eth0 proto boot was not added by " \
           "svcnet" in run.out, run.out
    assert "Traceback" not in run.out + run.err
    assert node_net(lab, "node1") == before


def test_renaming_the_bridge_and_teardown_leave_foreign_links_and_routes(lab_factory, tmp_path):
    lab = lab_factory(SEED)
    node_run(lab, "node1", " && ".join([  # the node's own link, address, route and firewall
        "ip link add fgn0 type veth peer name fgn0p", "ip link set fgn0 up", "ip addr add 198.51.100.1/24 dev fgn0",
        "ip route add 203.0.113.0/24 via 192.168.56.1",
        "iptables -A INPUT -i fgn0 -j ACCEPT", "iptables -t nat -A POSTROUTING -o fgn0 -j MASQUERADE"]))
    before = node_net(lab, "node1")
    assert apply(lab, with_bridge(tmp_path, "br0")).rc == 0
    assert foreign_net(lab, "node1") == before and ALIAS in node_run(lab, "node1", "ip -d link show dev br0").stdout
    # Someone else takes the name: svcnet's br0 is replaced by a bridge of theirs.
    node_run(lab, "node1", "ip link del br0 && ip link add br0 type bridge")
    theirs = foreign_net(lab, "node1")

    renamed = apply(lab, with_bridge(tmp_path, "br1"))  # svcnet's bridge is br1 now: the old name is not svcnet's
    assert renamed.rc == 0, renamed.out + renamed.err
    assert ALIAS in node_run(lab, "node1", "ip -d link show dev br1").stdout
    assert foreign_net(lab, "node1") == theirs

    # ... and the route to node2's pods too: svcnet's route is replaced by one of theirs.
    node_run(lab, "node1", "ip route del 10.244.2.0/24 && ip route add 10.244.2.0/24 via 192.168.56.1")
    theirs = foreign_net(lab, "node1")
    down = svcnet("playbook", "playbooks/teardown.yaml", "-i", str(lab.inventory_path))
    assert down.rc == 0 and down.recap()["node1"]["changed"] == 1, down.out + down.err
    assert owned_rules(lab, "node1") == "" and node_net(lab, "node1") == theirs  # nothing of svcnet's is left
    # the teardown was confirmed over a fresh connection: its backup and dead-man switch are gone too
    assert node_run(lab, "node1", "ls -A /etc/svcnet /var/lib/svcnet").stdout.split() == \
        ["/etc/svcnet:", "/var/lib/svcnet:", "lock"]
    node_run(lab, "node1", "ip link del br0 && ip route del 10.244.2.0/24")  # theirs gone, the node is as before
    assert node_net(lab, "node1") == before
