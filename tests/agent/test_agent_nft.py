"""The node agent in nftables mode, for real on a scratch node with real nft: apply, idempotence,
check/diff, a failed check, rollback, the dead-man switch, boot, teardown, switching modes, and
foreign nftables and iptables-nft content left byte-identical through all of it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil

import pytest
from agentnode import apply_req, seed_artifacts, unchanged, wait_until
from nftscript import NODEPORT_CHANGE, nft_req, overall, without_table
from prereq import unavailable
from test_agent_rules import FOREIGN, foreign_lines

from svcnet.agent import node

pytestmark = pytest.mark.lab

# Someone else's nftables content beside svcnet's table: a table of another family with svcnet's
# table name (not svcnet's: it owns `ip`/`ip6 kube-proxy` only) and one of another name.
FOREIGN_NFT = """table inet kube-proxy {
\tchain input {
\t\ttype filter hook input priority 0; policy accept;
\t\tip saddr 198.51.100.9 drop
\t}
}
table ip other-firewall {
\tset blocked {
\t\ttype ipv4_addr
\t\telements = { 198.51.100.10, 198.51.100.11 }
\t}
\tchain forward {
\t\ttype filter hook forward priority -5; policy accept;
\t\tip daddr @blocked reject
\t}
}
"""


@pytest.fixture(autouse=True)
def _need_nft():
    if not shutil.which("nft"):
        unavailable("nft is not installed (Debian package nftables; scripts/bootstrap.sh installs it)")


def ruleset(snode) -> str:
    """`nft -s list ruleset` in the node: stateless, so that counters moved by stray traffic (IPv6
    neighbour discovery on the uplink) do not count as a change. svcnet's tables in the agent's normal
    form (a rollback restores their objects in name order), everything else byte for byte."""
    text = snode.sh(["nft", "-s", "list", "ruleset"]).stdout
    for listed in node.nft_tables(text).values():
        text = text.replace(listed, node.nft_normal(listed))
    return text


def table(snode, family: str = "ip") -> str | None:
    out = snode.sh(["nft", "-s", "list", "table", family, node.NFT_TABLE], check=False)
    return out.stdout if out.returncode == 0 else None


def add_foreign(snode) -> str:
    """FOREIGN_NFT and the iptables rules of the iptables tests (iptables-nft: in the same ruleset)."""
    snode.sh(["nft", "-f", "-"], FOREIGN_NFT)
    for argv in FOREIGN:
        snode.sh(argv)
    return ruleset(snode)


def nft_apply(snode, tmp_path, run_id: str, script: str, **kw) -> dict:
    return nft_req(apply_req(snode, seed_artifacts(tmp_path), run_id, **kw), script)


def test_apply_is_one_table_idempotent_and_probed_unchanged(snode, tmp_path):
    req = nft_apply(snode, tmp_path, "r1", overall())
    first = snode.agent(req)
    assert first["ok"] and first["changed"], first
    live = table(snode)
    assert live is not None and "172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80" in live
    assert "KUBE-" not in snode.save("nat") + snode.save("filter")
    assert (snode.etc / "rules.nft").read_text() == req["artifacts"]["rules.nft"]
    assert not (snode.etc / "rules.restore").exists() and not (snode.etc / "jumps.rules").exists()

    probe = snode.agent({"op": "probe", "run_id": "p"})
    assert probe["live_rules_hash"] == probe["saved_rules_hash"]
    assert unchanged(probe, req["desired_hashes"])
    assert probe["facts"]["nft_version"]

    again = snode.agent(nft_apply(snode, tmp_path, "r2", overall()))
    assert again["ok"] and not again["changed"], again
    assert table(snode) == live

    # drift: someone deletes an element of svcnet's map -> seen, and the next apply repairs it
    snode.sh(["nft", "delete", "element", "ip", "kube-proxy", "cluster-ips", "{ 172.30.0.41 }"])
    drifted = snode.agent({"op": "probe", "run_id": "p2"})
    assert not unchanged(drifted, req["desired_hashes"])
    repaired = snode.agent(nft_apply(snode, tmp_path, "r3", overall()))
    assert repaired["ok"] and repaired["changed"], repaired
    assert table(snode) == live


def test_check_and_diff_show_the_table_change_and_change_nothing(snode, tmp_path):
    assert snode.agent(nft_apply(snode, tmp_path, "r1", overall()))["ok"]
    before = (ruleset(snode), sorted(os.listdir(snode.etc)), (snode.etc / "rules.nft").read_text())
    check = snode.agent(nft_apply(snode, tmp_path, "r2", overall(NODEPORT_CHANGE), check=True))
    assert check["ok"] and check["changed"], check
    diff = check["diff"]["rules"].splitlines()
    changes = [ln.rstrip(",") for ln in diff if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert "-\t\t\ttcp . 3001 : goto external-42NFTM6N-ns2/svc2/tcp/p80" in changes
    assert "+\t\t\ttcp . 3011 : goto external-42NFTM6N-ns2/svc2/tcp/p80" in changes
    assert '-\t\t\ttcp . 3001 comment "ns2/svc2:p80" : drop' in changes
    assert '+\t\t\ttcp . 3011 comment "ns2/svc2:p80" : drop' in changes
    assert (ruleset(snode), sorted(os.listdir(snode.etc)), (snode.etc / "rules.nft").read_text()) == before
    same = snode.agent(nft_apply(snode, tmp_path, "r3", overall(), check=True))
    assert same["ok"] and not same["changed"] and same["diff"]["rules"] == "", same

    applied = snode.agent(nft_apply(snode, tmp_path, "r4", overall(NODEPORT_CHANGE), diff=True))
    assert applied["changed"] and applied["diff"]["rules"] == check["diff"]["rules"]


def test_a_script_nft_refuses_leaves_everything_as_before(snode, tmp_path):
    base = add_foreign(snode)
    assert snode.agent(nft_apply(snode, tmp_path, "r1", overall()))["ok"]
    before = (ruleset(snode), {f: (snode.etc / f).read_text() for f in os.listdir(snode.etc)})
    bad = overall(NODEPORT_CHANGE) + "add rule ip kube-proxy no-such-chain accept\n"
    resp = snode.agent(nft_apply(snode, tmp_path, "r2", bad))
    assert not resp["ok"] and "nft --check" in resp["msg"] and "no-such-chain" in resp["msg"], resp
    assert not resp.get("rolled_back")  # refused before anything changed
    assert (ruleset(snode), {f: (snode.etc / f).read_text() for f in os.listdir(snode.etc)}) == before
    assert without_table(ruleset(snode)) == base

    hostile = overall() + "flush ruleset\n"
    resp = snode.agent(nft_apply(snode, tmp_path, "r3", hostile))
    assert not resp["ok"] and "rules.nft line" in resp["msg"], resp
    assert ruleset(snode) == before[0]


def test_failing_step_and_explicit_rollback_restore_the_table(snode, tmp_path):
    base = add_foreign(snode)
    req1 = nft_apply(snode, tmp_path, "r1", overall())
    assert snode.agent(req1)["ok"]
    applied = ruleset(snode)
    bad = nft_apply(snode, tmp_path, "r2", overall(NODEPORT_CHANGE))
    bad["artifacts"]["netconf.sh"] += "echo 'simulated failure' >&2\nexit 3\n"
    resp = snode.agent(bad)
    assert not resp["ok"] and resp["rolled_back"] and "simulated failure" in resp["msg"], resp
    assert ruleset(snode) == applied
    assert unchanged(snode.agent({"op": "probe", "run_id": "p"}), req1["desired_hashes"])

    assert snode.agent(nft_apply(snode, tmp_path, "r3", overall(NODEPORT_CHANGE)))["changed"]
    assert "tcp . 3011" in (table(snode) or "")
    assert without_table(ruleset(snode)) == base
    back = snode.agent({"op": "rollback", "run_id": "r3"})
    assert back["ok"] and back["rolled_back"] and "nft tables restored" in back["msg"], back
    assert ruleset(snode) == applied
    probe = snode.agent({"op": "probe", "run_id": "p2"})
    assert probe["live_rules_hash"] == probe["saved_rules_hash"]


def test_dead_man_rolls_the_table_back_unless_confirmed(snode, tmp_path):
    assert snode.agent(nft_apply(snode, tmp_path, "r1", overall()))["ok"]
    before = ruleset(snode)
    # The two checks below run inside r2's window: 10 s leaves room for them on a loaded machine.
    resp = snode.agent(nft_apply(snode, tmp_path, "r2", overall(NODEPORT_CHANGE), confirm_timeout=10))
    assert resp["ok"] and resp["pending"], resp
    assert "tcp . 3011" in (table(snode) or "")
    assert snode.agent({"op": "probe", "run_id": "x"})["pending"]["run_id"] == "r2"
    assert wait_until(lambda: snode.agent({"op": "probe", "run_id": "x"})["pending"] is None, 60)
    assert wait_until(lambda: ruleset(snode) == before, 5)
    assert snode.agent({"op": "confirm", "run_id": "r2"})["rolled_back"]

    # A window far longer than the confirmation below takes, even on a loaded machine.
    assert snode.agent(nft_apply(snode, tmp_path, "r3", overall(NODEPORT_CHANGE), confirm_timeout=60))["pending"]
    assert snode.agent({"op": "confirm", "run_id": "r3"})["ok"]
    assert "tcp . 3011" in (table(snode) or "")


def test_boot_restores_the_table(snode, tmp_path):
    req = nft_apply(snode, tmp_path, "r1", overall())
    assert snode.agent(req)["ok"]
    live = table(snode)
    snode.simulate_reboot()
    snode.sh(["nft", "flush", "ruleset"])  # (the scratch node's own namespace) as after a reboot
    assert table(snode) is None
    booted = snode.agent_file("boot")
    assert booted["ok"] and booted["changed"], booted
    assert table(snode) == live
    assert unchanged(snode.agent({"op": "probe", "run_id": "p"}), req["desired_hashes"])


def test_foreign_content_is_byte_identical_through_apply_rollback_and_teardown(snode, tmp_path):
    base = add_foreign(snode)
    assert snode.agent(nft_apply(snode, tmp_path, "r1", overall()))["changed"]
    assert table(snode) is not None and without_table(ruleset(snode)) == base
    assert snode.agent(nft_apply(snode, tmp_path, "r2", overall(NODEPORT_CHANGE)))["changed"]
    assert without_table(ruleset(snode)) == base
    assert snode.agent({"op": "rollback", "run_id": "r2"})["changed"]
    assert without_table(ruleset(snode)) == base
    down = snode.agent({"op": "teardown", "run_id": "r3"})
    assert down["ok"] and down["changed"], down
    assert ruleset(snode) == base  # svcnet's table gone, nothing else changed
    assert os.listdir(snode.etc) == [] and os.listdir(snode.state) == ["lock"]
    again = snode.agent({"op": "teardown", "run_id": "r4"})
    assert again["ok"] and not again["changed"], again


def test_switching_modes_removes_the_other_modes_rules_both_ways(snode, tmp_path):
    add_foreign(snode)
    foreign = {t: foreign_lines(snode.save(t)) for t in ("filter", "nat")}
    ipt = apply_req(snode, seed_artifacts(tmp_path), "r1")
    assert snode.agent(ipt)["changed"]
    iptables_state = (snode.save("filter"), snode.save("nat"))
    assert "-A KUBE-SERVICES" in iptables_state[1] and table(snode) is None

    # a failure in the switching apply: back to iptables mode, no table left
    bad = nft_apply(snode, tmp_path, "r2", overall())
    bad["artifacts"]["netconf.sh"] += "exit 3\n"
    assert snode.agent(bad)["rolled_back"]
    assert (snode.save("filter"), snode.save("nat")) == iptables_state and table(snode) is None
    assert (snode.etc / "rules.restore").exists() and not (snode.etc / "rules.nft").exists()

    # iptables -> nftables: svcnet's KUBE-* chains and jump rules go (kube-proxy's cleanup)
    to_nft = nft_apply(snode, tmp_path, "r3", overall(), diff=True)
    resp = snode.agent(to_nft)
    assert resp["ok"] and resp["changed"], resp
    assert "-:KUBE-SERVICES" in resp["diff"]["rules"] and "+table ip kube-proxy {" in resp["diff"]["rules"]
    assert "KUBE-" not in snode.save("filter") + snode.save("nat")
    assert {t: foreign_lines(snode.save(t)) for t in foreign} == foreign
    assert table(snode) is not None
    assert unchanged(snode.agent({"op": "probe", "run_id": "p"}), to_nft["desired_hashes"])

    # nftables -> iptables: svcnet's table goes
    back = snode.agent(apply_req(snode, seed_artifacts(tmp_path), "r4"))
    assert back["ok"] and back["changed"], back
    assert table(snode) is None and "inet kube-proxy" in ruleset(snode)
    assert (snode.save("filter"), snode.save("nat")) == iptables_state
    assert not (snode.etc / "rules.nft").exists()
    assert unchanged(snode.agent({"op": "probe", "run_id": "p2"}), ipt["desired_hashes"])

    # and a rollback of that switch brings the table back and removes the chains again
    assert snode.agent({"op": "rollback", "run_id": "r4"})["rolled_back"]
    assert table(snode) is not None and "KUBE-" not in snode.save("nat")


def test_preflight_checks_nft_and_the_kernel(snode):
    ready = snode.agent({"op": "preflight", "run_id": "p", "proxy_mode": "nftables"})
    assert ready["ok"], ready
    assert {k for k in ready["features"] if k.startswith("nft_")} == {name for name, _ in node.NFT_FEATURES}
    assert all(ready["features"].values())
    assert "svcnet-preflight" not in ruleset(snode)  # `nft --check` loaded nothing

    # the same node without nft: refused, naming the package
    bin_dir = snode.root / "no-nft-bin"
    bin_dir.mkdir()
    for d in os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep):
        for name in (os.listdir(d) if os.path.isdir(d) else ()):
            if name != "nft" and not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(os.path.join(d, name))
    env = {"PATH": str(bin_dir)}
    lacking = snode.agent({"op": "preflight", "run_id": "p", "proxy_mode": "nftables"}, env=env)
    assert not lacking["ok"] and "nft (apt install nftables)" in lacking["msg"], lacking
    iptables_only = snode.agent({"op": "preflight", "run_id": "p"}, env=env)
    assert iptables_only["ok"], iptables_only  # iptables mode does not need nft

    # an nft older than kube-proxy accepts (knftables refuses < 1.0.1): refused, naming both versions
    old_nft = bin_dir / "nft"
    old_nft.write_text('#!/bin/sh\necho "nftables v0.9.8 (E.D.S.)"\n')
    old_nft.chmod(0o755)
    too_old = snode.agent({"op": "preflight", "run_id": "p", "proxy_mode": "nftables"}, env=env)
    assert not too_old["ok"] and "nft 0.9.8 is too old" in too_old["msg"] and ">= 1.0.1" in too_old["msg"], too_old


def test_both_families_and_affinity_records(snode, tmp_path):
    six = ("add table ip6 kube-proxy\ndelete table ip6 kube-proxy\nadd table ip6 kube-proxy\n"
           "add chain ip6 kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }\n")
    both = nft_apply(snode, tmp_path, "r1", overall() + six)
    assert snode.agent(both)["changed"]
    assert table(snode) is not None and table(snode, "ip6") is not None

    # a client recorded by session affinity is traffic's state, not drift
    affinity = "affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80"
    snode.sh(["nft", "add", "element", "ip", "kube-proxy", affinity, "{ 10.0.0.99 timeout 1h }"])
    assert "10.0.0.99" in snode.sh(["nft", "list", "set", "ip", "kube-proxy", affinity]).stdout
    assert unchanged(snode.agent({"op": "probe", "run_id": "p"}), both["desired_hashes"])

    # a script without ip6: svcnet's ip6 table goes in the same transaction
    only_ip = snode.agent(nft_apply(snode, tmp_path, "r2", overall()))
    assert only_ip["ok"] and only_ip["changed"], only_ip
    assert table(snode) is not None and table(snode, "ip6") is None
    assert snode.agent({"op": "rollback", "run_id": "r2"})["rolled_back"]
    assert table(snode, "ip6") is not None
    assert snode.agent({"op": "teardown", "run_id": "r3"})["changed"]
    assert table(snode) is None and table(snode, "ip6") is None


def test_the_node_lock_holds_nftables_applies_too(snode, tmp_path):
    snode.state.mkdir(parents=True, exist_ok=True)
    with open(snode.state / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps({"run_id": "holder-run", "op": "apply", "pid": 1, "since": "then"}))
        f.flush()
        resp = snode.agent(nft_apply(snode, tmp_path, "r1", overall(), lock_wait=1))
    assert not resp["ok"] and "another svcnet apply holds the lock" in resp["msg"], resp
    assert table(snode) is None
