"""ProxyJump against real sshd in a lab whose nodes are reachable only through its bastion."""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from labrun import bastion_log, inventory_trusting

from svcnet.lab.pytest_fixtures import node_run
from svcnet.lab.spec import BASTION_NAME, LabNode
from svcnet.transport.gateway import Connector
from svcnet.transport.inventory import load_inventory
from svcnet.transport.ssh import Session, SSHError

pytestmark = pytest.mark.lab
NODES = [LabNode("node1", ("192.168.56.11",)), LabNode("node2", ("192.168.56.12",))]


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(NODES, bastion=True)


def ssh_peers(lab, machine: str) -> set[str]:
    """Addresses with an established connection to `machine`'s sshd."""
    out = node_run(lab, machine, "ss -Htn state established '( sport = :22 )'").stdout
    return {line.split()[-1].rsplit(":", 1)[0] for line in out.splitlines()}


def forwarded(lab, address: str) -> int:
    """How many connections the bastion has forwarded to `address`'s sshd."""
    return bastion_log(lab).count(f"target {address} port 22")


def known_hosts_without_bastion(lab) -> list[str]:
    return [ln for ln in lab.known_hosts_path.read_text().splitlines() if not ln.startswith(f"{BASTION_NAME},")]


def with_wrong_bastion_key(lab) -> str:
    """The lab's known_hosts, the bastion's line carrying the nodes' key (another machine answering)."""
    nodes = known_hosts_without_bastion(lab)
    names = next(ln for ln in lab.known_hosts_path.read_text().splitlines() if ln.startswith(f"{BASTION_NAME},"))
    return "\n".join([*nodes, f"{names.split()[0]} {nodes[0].split(maxsplit=1)[1]}", ""])


def test_every_node_is_reached_through_the_bastion(lab):
    inv = load_inventory(lab.inventory_path)
    _, bastion_ip = lab.bastion
    for node, (_, address) in lab.nodes.items():
        before = forwarded(lab, address)
        with Connector(inv).gateway(node) as gw:
            assert gw.run("hostname").stdout.strip() == node
            assert gw.session is not None and [jump.host for jump in gw.session.jumps] == [bastion_ip]
            assert ssh_peers(lab, node) == {bastion_ip}  # the node's sshd sees the bastion, nothing else
        assert forwarded(lab, address) == before + 1


def test_openssh_takes_the_same_way(lab):
    """The lab's ssh_config means the same to OpenSSH: ProxyJump first, the refusing ProxyCommand ignored."""
    address = lab.nodes["node2"][1]
    before = forwarded(lab, address)
    result = subprocess.run(["ssh", "-F", str(lab.ssh_config_path), "node2", "hostname"],
                            capture_output=True, text=True, timeout=30, check=False)
    assert (result.returncode, result.stdout.strip()) == (0, "node2"), result.stderr
    assert forwarded(lab, address) == before + 1


def test_a_wrong_bastion_host_key_is_refused_before_any_node_is_reached(lab, tmp_path: Path):
    inv = load_inventory(inventory_trusting(lab, tmp_path, with_wrong_bastion_key(lab)))
    address = lab.nodes["node1"][1]
    before = forwarded(lab, address)
    with pytest.raises(SSHError) as info:
        Session(inv.host_config("node1"), accept_new_host_keys=True).open()  # a changed key: even so
    assert info.value.host == "node1"
    assert info.value.message.startswith(f"jump host bastion: host key for {lab.bastion[1]} does not match")
    assert forwarded(lab, address) == before


def test_an_unknown_bastion_key_is_refused_or_recorded_once_on_first_use(lab, tmp_path: Path):
    inv = load_inventory(inventory_trusting(lab, tmp_path, "\n".join([*known_hosts_without_bastion(lab), ""])))
    with pytest.raises(SSHError, match=rf"^node1: jump host bastion: host key of {lab.bastion[1]} is not in .*"
                                       "--accept-new-host-keys"):
        Session(inv.host_config("node1")).open()
    # Every node meets the new jump host at once, as a run's parallel connections do.
    sessions = [Session(inv.host_config(node), accept_new_host_keys=True) for node in lab.nodes]
    errors: list[BaseException] = []

    def open_one(session: Session) -> None:
        try:
            session.open()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)  # generous: two connections each under a loaded machine
    try:
        assert not errors, errors
        assert [s.run("hostname").stdout.strip() for s in sessions] == list(lab.nodes)
    finally:
        for session in sessions:
            session.close()
    recorded = (tmp_path / "known_hosts").read_text().splitlines()
    assert len([ln for ln in recorded if ln.startswith(f"{lab.bastion[1]} ")]) == 1  # once, not once per node
    with Connector(inv).gateway("node2") as s:  # strict again, now known
        assert s.run("hostname").stdout.strip() == "node2"


def _edit_block(config: str, host: str, old: str, new: str) -> str:
    """`config` with `old` replaced by `new` in the Host block of `host` only."""
    blocks = config.split("\n\n")
    index = next(i for i, b in enumerate(blocks) if b.startswith(f"Host {host} "))
    assert old in blocks[index]
    blocks[index] = blocks[index].replace(old, new)
    return "\n\n".join(blocks)


def test_a_failing_jump_host_is_named_and_its_connection_closed(lab, tmp_path: Path):
    inventory = inventory_trusting(lab, tmp_path, lab.known_hosts_path.read_text())
    config = (tmp_path / "ssh_config").read_text()
    other_key = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_key)], check=True)
    node = load_inventory(inventory).host_config("node1")
    cases = {
        "no sshd there": (_edit_block(config, BASTION_NAME, "Port 22", "Port 2"), node,
                          f"jump host bastion: cannot connect to {lab.bastion[1]}:2 through its ProxyCommand: "
                          "no SSH server answered"),
        "refused key": (_edit_block(config, BASTION_NAME, f"IdentityFile {lab.key_path}", f"IdentityFile {other_key}"),
                        node, "jump host bastion: Authentication failed"),
        "cannot reach the node": (config, replace(node, port=2),
                                  "jump host bastion cannot reach 192.168.56.11:2: Connect failed"),
    }
    for case, (text, host, message) in cases.items():
        (tmp_path / "ssh_config").write_text(text)
        with pytest.raises(SSHError) as info:
            Session(host).open()
        assert (info.value.host, info.value.message[: len(message)]) == ("node1", message), (case, info.value)
    deadline = time.monotonic() + 10  # the bastion's sshd sees the close at once; 10 s for a loaded machine
    while ssh_peers(lab, BASTION_NAME) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ssh_peers(lab, BASTION_NAME) == set()  # a failed open closed the jump host's connection too
