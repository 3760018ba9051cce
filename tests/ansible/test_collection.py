"""The svcnet.cluster collection with real ansible-core against the seed lab, beside `svcnet apply`."""

from __future__ import annotations

import difflib
import json
import shutil
from pathlib import Path

import pytest
from ansiblevenv import Ansible
from labrun import SEED, apply, svcnet

from svcnet.lab.pytest_fixtures import node_run
from svcnet.lab.state import Lab
from svcnet.lab.users import SUDO_PASSWORD, LabUser, add_users, user_inventory

pytestmark = [pytest.mark.lab, pytest.mark.slow]
NODES = ("node1", "node2")
SITE, TEARDOWN = "svcnet.cluster.site", "svcnet.cluster.teardown"
# What an apply leaves on a node, read back: svcnet's chains as iptables-save prints them (counters
# stripped), the files it keeps, what its state says was applied, its routes and the nodes' IPv4
# addresses (name and address only: a bridge's operstate turns UP a moment after its first port does).
STATE_COMMAND = ("iptables-save -t filter; iptables-save -t nat; "
                 "for f in /etc/svcnet/*; do echo \"== $f\"; cat \"$f\"; done; echo; "
                 "ip route show proto 115; ip -4 -o addr | awk '{print $2, $4}'")


def node_state(lab: Lab, node: str) -> str:
    out = node_run(lab, node, STATE_COMMAND).stdout
    kept = [ln.split(" [")[0] if ln.startswith(":KUBE-") else ln for ln in out.splitlines() if not ln.startswith("#")]
    state = json.loads(node_run(lab, node, "cat /var/lib/svcnet/state.json").stdout)
    applied = {k: state.get(k) for k in ("applied_hash", "saved_rules_hash", "owned_netns")}
    return "\n".join(ln for ln in kept if "KUBE-" in ln or not ln.startswith((":", "-A", "*", "COMMIT"))) + \
        "\n" + json.dumps(applied, sort_keys=True)


def states(lab: Lab) -> dict[str, str]:
    return {n: node_state(lab, n) for n in NODES}


def state_diff(got: dict[str, str], want: dict[str, str]) -> str:
    """What differs, node by node, as a unified diff (the states are long)."""
    return "\n".join(line for n in NODES for line in difflib.unified_diff(
        want[n].splitlines(), got[n].splitlines(), f"{n} before", f"{n} after", lineterm=""))


@pytest.fixture(scope="module")
def lab(lab_factory) -> Lab:
    return lab_factory(SEED)


@pytest.fixture(scope="module")
def first_run(ansible: Ansible, lab: Lab):
    run = ansible.playbook(SITE, lab.inventory_path, SEED)
    assert run.rc == 0, run.out + run.err
    return run


def test_the_collection_builds_with_ansible_galaxy(ansible: Ansible):
    installed = ansible.home / "collections" / "ansible_collections" / "svcnet" / "cluster"
    files = {f["name"] for f in json.loads((installed / "FILES.json").read_text())["files"]}
    verbs = ("validate", "preflight", "network", "rules", "verify", "teardown")
    assert {f"plugins/action/{v}.py" for v in verbs} <= files
    assert {"playbooks/site.yml", "playbooks/teardown.yml"} <= files


def test_every_module_documents_the_shared_options_through_its_doc_fragment(ansible: Ansible):
    """ansible-doc reads each module of the built collection with svcnet's doc fragment merged in."""
    verbs = ("validate", "preflight", "network", "rules", "verify", "teardown")
    run = ansible.run("ansible-doc", "--json", *(f"svcnet.cluster.{v}" for v in verbs))
    assert run.rc == 0, run.out + run.err
    docs = json.loads(run.out)
    for verb in verbs:
        doc = docs[f"svcnet.cluster.{verb}"]["doc"]
        assert {"cluster", "confirm_timeout", "lock_wait"} <= set(doc["options"]), verb
        assert doc["options"]["cluster"]["required"] is True and doc["attributes"]["check_mode"]["support"] == "full"
    assert docs["svcnet.cluster.verify"]["doc"]["options"]["outside"]["choices"] == ["auto", "local", "none"]


def test_first_run_changes_every_node_and_verifies(first_run):
    recap = first_run.recap()
    assert set(recap) == set(NODES), first_run.out
    # network and rules changed; validate, preflight and verify (real traffic) ok
    assert all(r == {"ok": 5, "changed": 2, "unreachable": 0, "failed": 0} for r in recap.values()), first_run.out


def test_rerun_changes_nothing(ansible: Ansible, lab: Lab, first_run):
    before = states(lab)
    again = ansible.playbook(SITE, lab.inventory_path, SEED, "--skip-tags", "verify")  # the first run verified
    assert again.rc == 0, again.out + again.err
    assert {n: r["changed"] for n, r in again.recap().items()} == {n: 0 for n in NODES}, again.out
    assert states(lab) == before


def test_check_diff_after_an_edit_shows_the_rule_diff_and_changes_nothing(ansible: Ansible, lab: Lab, first_run,
                                                                         tmp_path: Path):
    edited = tmp_path / "seed"
    shutil.copytree(SEED, edited)
    service = edited / "service.yaml"
    service.write_text(service.read_text().replace("nodePort: 30000", "nodePort: 30001"))
    before = states(lab)
    check = ansible.playbook(SITE, lab.inventory_path, edited, "--check", "--diff")
    assert check.rc == 0, check.out + check.err
    assert {n: r["changed"] for n, r in check.recap().items()} == {n: 1 for n in NODES}, check.out
    lines = check.out.splitlines()
    for port, sign in (("30000", "-"), ("30001", "+")):
        hits = [ln for ln in lines if ln.startswith(f"{sign}-A KUBE-NODEPORTS") and f"--dport {port} " in ln]
        assert len(hits) == len(NODES), check.out  # once per node
    assert states(lab) == before  # --check changed nothing


def test_the_result_is_what_svcnet_apply_leaves(ansible: Ansible, lab: Lab, first_run):
    by_ansible = states(lab)
    same = apply(lab, SEED, extra=("--skip-tags", "verify"))
    assert same.rc == 0, same.out + same.err
    assert {n: r["changed"] for n, r in same.recap().items()} == {n: 0 for n in NODES}, same.out
    down = svcnet("playbook", "teardown.yaml", "-i", str(lab.inventory_path), "--confirm-timeout", "15")
    assert down.rc == 0, down.out + down.err
    fresh = apply(lab, SEED, extra=("--skip-tags", "verify"))
    assert fresh.rc == 0, fresh.out + fresh.err
    now = states(lab)
    assert now == by_ansible, state_diff(now, by_ansible)
    back = ansible.playbook(SITE, lab.inventory_path, SEED, "--skip-tags", "verify")  # and the other way round
    assert back.rc == 0, back.out + back.err
    assert {n: r["changed"] for n, r in back.recap().items()} == {n: 0 for n in NODES}, back.out


def test_teardown_removes_everything_and_a_second_changes_nothing(ansible: Ansible, lab: Lab, first_run):
    down = ansible.playbook(TEARDOWN, lab.inventory_path, SEED)
    assert down.rc == 0, down.out + down.err
    assert {n: r["changed"] for n, r in down.recap().items()} == {n: 1 for n in NODES}, down.out
    for node in NODES:
        assert "KUBE-" not in node_run(lab, node, "iptables-save").stdout
        assert node_run(lab, node, "ip route show proto 115; ip -br link show cni0", check=False).stdout == ""
    again = ansible.playbook(TEARDOWN, lab.inventory_path, SEED)
    assert {n: r["changed"] for n, r in again.recap().items()} == {n: 0 for n in NODES}, again.out


def test_become_with_a_sudo_password_from_a_vault(ansible: Ansible, lab: Lab, first_run, tmp_path: Path):
    """Logged in as a user whose sudo asks for a password, which comes from an Ansible vault: the
    whole description is applied, as root, on nodes svcnet's own teardown left bare."""
    user = LabUser("svansible", 4201, SUDO_PASSWORD, "vaulted-sudo-pw-3f1b")
    for node in NODES:
        add_users(lab, node, [user])
    down = svcnet("playbook", "teardown.yaml", "-i", str(lab.inventory_path), "--confirm-timeout", "15")
    assert down.rc == 0, down.out + down.err
    inventory = user_inventory(lab, user.name, tmp_path / "inventory.yaml")
    (tmp_path / "vault-pass").write_text("vault-pw-for-the-test\n")
    vault = ("--vault-password-file", str(tmp_path / "vault-pass"))
    secret = ansible.run("ansible-vault", "encrypt_string", *vault, user.password, "--name", "ansible_become_password")
    assert secret.rc == 0, secret.err
    (tmp_path / "become.yaml").write_text(secret.out)
    run = ansible.playbook(SITE, inventory, SEED, "-e", f"@{tmp_path / 'become.yaml'}", *vault, "--skip-tags", "verify")
    assert run.rc == 0, run.out + run.err
    assert {n: r["changed"] for n, r in run.recap().items()} == {n: 2 for n in NODES}, run.out
    for node in NODES:
        assert "--dport 30000" in node_run(lab, node, "iptables -t nat -S KUBE-NODEPORTS").stdout
    assert user.password not in run.out + run.err


def test_an_invalid_description_fails_every_host_with_located_errors_and_changes_nothing(
        ansible: Ansible, lab: Lab, first_run, tmp_path: Path):
    bad = tmp_path / "seed"
    shutil.copytree(SEED, bad)
    service = bad / "service.yaml"
    service.write_text(service.read_text().replace("nodePort: 30000", "nodePort: 70000"))
    before = states(lab)
    run = ansible.playbook(SITE, lab.inventory_path, bad)
    assert run.rc == 2, run.out + run.err
    assert {n: (r["ok"], r["failed"]) for n, r in run.recap().items()} == {n: (0, 1) for n in NODES}, run.out
    assert f"{service}:" in run.out and "must be <= 65535" in run.out and "Traceback" not in run.out + run.err
    assert states(lab) == before
