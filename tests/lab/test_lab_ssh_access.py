"""Every lab node is reachable over SSH with strict host key checking: OpenSSH, fabric, testinfra."""

from __future__ import annotations

import subprocess

import paramiko
import pytest
import testinfra
from fabric import Config, Connection

pytestmark = pytest.mark.lab


def _ssh(lab, node, command, *extra):
    return subprocess.run(
        ["ssh", "-F", str(lab.ssh_config_path), *extra, node, command],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_openssh_reaches_every_node_by_name_and_address(lab):
    for node, (_, address) in lab.nodes.items():
        for target in (node, address):
            result = _ssh(lab, target, "hostname")
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == node


def test_openssh_refuses_an_unknown_host_key(lab, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    node = lab.node_names[0]
    result = _ssh(lab, node, "true", "-o", f"UserKnownHostsFile={empty}")
    assert result.returncode == 255
    assert "Host key verification failed" in result.stderr


def _fabric(lab, node, host_keys_file):
    config = Config(runtime_ssh_path=str(lab.ssh_config_path))
    conn = Connection(node, config=config, connect_timeout=10)
    conn.client.get_host_keys().clear()
    if host_keys_file:
        conn.client.load_host_keys(str(host_keys_file))
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


def test_fabric_with_reject_policy_reaches_every_node(lab):
    for node in lab.nodes:
        with _fabric(lab, node, lab.known_hosts_path) as conn:
            result = conn.run("hostname", hide=True, warn=True, in_stream=False)
            assert result.ok and result.stdout.strip() == node


def test_fabric_rejects_an_unknown_host_key(lab):
    conn = _fabric(lab, lab.node_names[0], None)
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        conn.open()
    conn.close()


def test_testinfra_ssh_backend_reaches_every_node(lab):
    for node in lab.nodes:
        host = testinfra.get_host(f"ssh://{node}?controlpersist=0", ssh_config=str(lab.ssh_config_path))
        assert host.check_output("hostname") == node
    first, (_, address) = next(iter(lab.nodes.items()))
    host = testinfra.get_host(f"ssh://{first}?controlpersist=0", ssh_config=str(lab.ssh_config_path))
    assert address in host.interface("eth0").addresses
    assert host.iptables.rules("nat") == [
        "-P PREROUTING ACCEPT",
        "-P INPUT ACCEPT",
        "-P OUTPUT ACCEPT",
        "-P POSTROUTING ACCEPT",
    ]
