"""The SSH transport against real sshd in the lab: strict host keys by default."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from svcnet.lab.pytest_fixtures import node_run
from svcnet.transport.gateway import Connector
from svcnet.transport.inventory import load_inventory
from svcnet.transport.protocol import StatusRequest
from svcnet.transport.ssh import Session, SSHError, known_hosts_path

pytestmark = pytest.mark.lab
CLUSTER = Path(__file__).resolve().parents[1] / "lab" / "cluster.yaml"


@pytest.fixture(scope="module")
def lab(lab_factory):
    return lab_factory(CLUSTER)


def inventory_with_known_hosts(lab, tmp_path: Path, known_hosts: Path):
    """A copy of the lab's ssh_config and inventory that trusts only `known_hosts`."""
    cfg = lab.ssh_config_path.read_text().replace(str(lab.known_hosts_path), str(known_hosts))
    (tmp_path / "ssh_config").write_text(cfg)
    inv = yaml.safe_load(lab.inventory_path.read_text())
    for host in inv["all"]["hosts"].values():
        host["ansible_ssh_common_args"] = f"-F {tmp_path / 'ssh_config'}"
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump(inv))
    return load_inventory(tmp_path / "inv.yaml")


def test_every_node_answers_with_verified_host_key(lab):
    inv = load_inventory(lab.inventory_path)
    for node in ("node1", "node2", "node3"):
        with Connector(inv).gateway(node) as gw:
            assert known_hosts_path(gw.host) == lab.known_hosts_path
            r = gw.run("hostname")
            assert (r.rc, r.stdout.strip()) == (0, node)


def test_stdin_is_fed_and_closed_and_exit_codes_propagate(lab):
    inv = load_inventory(lab.inventory_path)
    data = bytes(range(256)) * 4096  # 1 MiB, binary
    with Connector(inv).gateway("node1") as s:
        r = s.run("sha256sum", stdin=data)
        import hashlib

        assert r.stdout.split()[0] == hashlib.sha256(data).hexdigest()
        assert s.run("exit 7").rc == 7
        r = s.run("echo out; echo err >&2")
        assert (r.stdout, r.stderr) == ("out\n", "err\n")


def test_unknown_host_key_is_refused_by_default(lab, tmp_path: Path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    inv = inventory_with_known_hosts(lab, tmp_path, empty)
    with pytest.raises(SSHError, match=r"not in .*--accept-new-host-keys"):
        Connector(inv).gateway("node1").open()


def test_accept_new_records_the_key_then_strict_checking_passes(lab, tmp_path: Path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    inv = inventory_with_known_hosts(lab, tmp_path, known)
    with Connector(inv, accept_new_host_keys=True).gateway("node2") as s:
        assert s.run("true").rc == 0
    assert "192.168.56.12" in known.read_text()
    with Connector(inv).gateway("node2") as s:  # strict again, now known
        assert s.run("hostname").stdout.strip() == "node2"


def test_changed_host_key_is_refused_even_with_accept_new(lab, tmp_path: Path):
    known = tmp_path / "known_hosts"
    real = lab.known_hosts_path.read_text().split()
    # the right host names with another (valid) ed25519 key
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    known.write_text(f"{real[0]} ssh-ed25519 {other}\n")
    inv = inventory_with_known_hosts(lab, tmp_path, known)
    with pytest.raises(SSHError, match="does not match"):
        Session(inv.host_config("node1"), accept_new_host_keys=True).open()


def test_a_stream_answers_line_by_line_and_reports_its_end(lab):
    inv = load_inventory(lab.inventory_path)
    with Session(inv.host_config("node1")) as s:
        stream = s.start("while read -r x; do echo \"got $x\"; done; echo bye >&2", b"one\n")
        assert stream.read_line(10) == "got one"
        stream.send(b"two\nthree\n")
        assert (stream.read_line(10), stream.read_line(10)) == ("got two", "got three")
        stream.chan.shutdown_write()  # end of input: the loop ends
        assert stream.read_line(10) is None and stream.stderr.decode() == "bye\n"
        stream.close()
        silent = s.start("sleep 30")
        with pytest.raises(SSHError, match="no answer within 1s"):
            silent.read_line(1)
        silent.close()


def test_a_gateway_keeps_one_agent_process_per_session(lab):
    inv = load_inventory(lab.inventory_path)
    client = Connector(inv).gateway("node2")
    # Agents in node2's own network namespace (the lab shares the host's pids); [i]: not this shell.
    mine = "--ns $$ --nslist net -f '[i]mport sys,json,os,marshal'"
    agents = f"pgrep -c {mine} || true"
    try:
        assert client.ask(StatusRequest("s1")).ok
        assert client.ask(StatusRequest("s2")).ok
        assert node_run(lab, "node2", agents).stdout.strip() == "1"  # one process served both
        node_run(lab, "node2", f"pkill {mine}")
        with pytest.raises(SSHError, match=r"remote command has ended|no response"):
            client.ask(StatusRequest("s3"))  # it died: this call fails, as with Ansible ...
        assert client.ask(StatusRequest("s4")).ok  # ... and the next starts another
    finally:
        client.close()
    deadline = time.monotonic() + 10
    while node_run(lab, "node2", agents).stdout.strip() != "0" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert node_run(lab, "node2", agents).stdout.strip() == "0"  # end of input ended it
