"""Defence in depth in the agent, for real on a scratch node: what a wrong or hostile request
cannot make it do (foreign chains through rules.restore, rules loaded outside a scratch namespace,
directories open to all under a permissive umask)."""

from __future__ import annotations

import json

import pytest
from agentnode import apply_req, node_state, seed_artifacts
from test_agent_rules import FOREIGN

from svcnet.transport import protocol

pytestmark = pytest.mark.lab

# Each line goes into the filter table of an otherwise good restore (or, for a table, after it).
CRAFTED = [
    "-A INPUT -j ACCEPT",
    "-F FORWARD",
    ":DOCKER - [0:0]",
    ":INPUT DROP [0:0]",
    "-X FOREIGN-CHAIN",
    "-E KUBE-FORWARD DOCKER",
    "-A KUBE-FORWARD -j ACCEPT -D INPUT 1",
    "*raw\n:KUBE-RAW - [0:0]\n-A KUBE-RAW -j NOTRACK\nCOMMIT",
]


def craft(restore: str, line: str) -> str:
    if line.startswith("*"):
        return restore + line + "\n"
    return restore.replace("COMMIT\n*nat", line + "\nCOMMIT\n*nat", 1)


def test_a_restore_naming_anything_but_owned_chains_is_refused(snode, tmp_path):
    for argv in FOREIGN:
        snode.sh(argv)
    assert snode.agent(apply_req(snode, seed_artifacts(tmp_path), "r0"))["ok"]
    before = node_state(snode)
    art2 = seed_artifacts(tmp_path, {"nodePort: 30000": "nodePort: 30001"})
    for n, line in enumerate(CRAFTED, 1):
        req = apply_req(snode, art2, f"r{n}")
        req["artifacts"]["rules.restore"] = craft(req["artifacts"]["rules.restore"], line)
        resp = snode.agent(req)
        assert not resp["ok"] and "rules.restore line" in resp["msg"], (line, resp)
        assert node_state(snode) == before, line
    assert snode.agent(apply_req(snode, art2, "r-ok"))["changed"]  # the control: the same restore, uncrafted


def test_boot_refuses_a_tampered_restore(snode, tmp_path):
    assert snode.agent(apply_req(snode, seed_artifacts(tmp_path), "r0"))["ok"]
    snode.simulate_reboot()
    restore = snode.etc / "rules.restore"
    restore.write_text(craft(restore.read_text(), "-A INPUT -j ACCEPT"))
    resp = snode.agent({"op": "boot", "run_id": "boot"})
    assert not resp["ok"] and "rules.restore line" in resp["msg"], resp
    assert "-A INPUT" not in snode.save("filter") and "KUBE-" not in snode.save("nat")


def test_scratch_normalize_is_refused_outside_a_scratch_namespace(snode, tmp_path):
    before = node_state(snode)
    req = {"op": "_scratch_normalize", "jumps": "-t filter -A INPUT -j KUBE-EVIL",
           "restore": "*filter\n:KUBE-EVIL - [0:0]\n-A KUBE-EVIL -j ACCEPT\nCOMMIT\n"}
    raw = json.dumps({"agent": protocol.agent_source(), "request": req})  # as a hostile controller would
    resp = protocol.parse_response(snode.sh(["python3", "-c", protocol.BOOTSTRAP], raw, check=False).stdout)
    assert not resp["ok"] and "fresh network namespace" in resp["msg"], resp
    assert node_state(snode) == before and "KUBE-EVIL" not in snode.save("filter")
    # the control: the agent's own use of it, from in_scratch_netns, still works (--check)
    check = snode.agent(apply_req(snode, seed_artifacts(tmp_path), "r1", check=True))
    assert check["ok"] and check["changed"] and "KUBE-SERVICES" in check["diff"]["rules"], check


@pytest.mark.parametrize("umask", ["000", "077"])
def test_directories_get_their_own_modes_whatever_the_umask(snode, tmp_path, umask):
    req = {**snode.paths(), **apply_req(snode, seed_artifacts(tmp_path), "r1", confirm_timeout=30)}
    proc = snode.sh(["sh", "-c", f'umask {umask}; exec python3 -c "$1"', "sh", protocol.BOOTSTRAP],
                    protocol.build_stdin(req))
    assert protocol.parse_response(proc.stdout)["pending"], proc.stdout
    dirs = [snode.etc, snode.state, snode.state / "backup", snode.state / "logs", "/run/svcnet/pods"]
    modes = snode.sh(["stat", "-c", "%a %n", *map(str, dirs)]).stdout.split("\n")[:-1]
    # The pods' and their logs' directories show the pods' commands: root's only (0700).
    private = {str(snode.state / "logs"), "/run/svcnet/pods"}
    assert modes == [f"{700 if str(d) in private else 755} {d}" for d in dirs]
    writable = snode.sh(["find", str(snode.etc), str(snode.state), "/run/svcnet", "-perm", "-o+w"]).stdout
    assert writable == ""
    assert snode.agent({"op": "confirm", "run_id": "r1"})["ok"]
