"""`svcnet lab` commands, run as a user would (a separate process per command)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from svcnet.lab import load_lab
from svcnet.lab.pytest_fixtures import unique_lab_name

CLUSTER = Path(__file__).parent / "cluster.yaml"


def svcnet_lab(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "svcnet.cli.lab", *args],
        capture_output=True, text=True, timeout=60, check=False, cwd=cwd,
    )  # fmt: skip


@pytest.mark.lab
def test_up_status_exec_down(tmp_path):
    name = unique_lab_name("c")
    up = svcnet_lab("up", "-f", str(CLUSTER), "--name", name, cwd=tmp_path)
    try:
        assert up.returncode == 0, up.stderr
        inventory = tmp_path / "inventory" / f"{name}.yaml"
        hosts = yaml.safe_load(inventory.read_text())["all"]["hosts"]
        assert sorted(hosts) == ["node1", "node2", "node3"]
        assert hosts["node2"]["ansible_host"] == "192.168.56.12"

        status = svcnet_lab("status", "--name", name)
        assert status.returncode == 0, status.stderr
        assert status.stdout.count("ssh ok") == 3

        hostname = svcnet_lab("exec", "--name", name, "node3", "--", "hostname")
        assert (hostname.returncode, hostname.stdout.strip()) == (0, "node3")
        client = svcnet_lab("exec", "--name", name, "client", "--", "ip", "-br", "addr", "show", "eth0")
        assert load_lab(name).client_ip in client.stdout
        failing = svcnet_lab("exec", "--name", name, "node1", "--", "sh", "-c", "exit 7")
        assert failing.returncode == 7

        unknown = svcnet_lab("exec", "--name", name, "node9", "--", "true")
        assert unknown.returncode == 1
        assert "has no node 'node9'" in unknown.stderr and "Traceback" not in unknown.stderr
    finally:
        down = svcnet_lab("down", "--name", name)
    assert down.returncode == 0, down.stderr
    assert not (tmp_path / "inventory").exists()
    gone = svcnet_lab("status", "--name", name)
    assert gone.returncode == 1 and "no lab named" in gone.stderr and "Traceback" not in gone.stderr


@pytest.mark.lab
def test_the_client_routes_load_balancer_ips_and_has_a_second_address(tmp_path):
    protocols = Path(__file__).resolve().parents[1] / "verify" / "protocols"
    name = unique_lab_name("c")
    up = svcnet_lab("up", "-f", str(protocols), "--name", name, cwd=tmp_path)
    try:
        assert up.returncode == 0, up.stderr
        assert "routes 192.168.59.10 to node1 (a LoadBalancer or external IP)" in up.stdout, up.stdout
        lab_vars = yaml.safe_load((tmp_path / "inventory" / f"{name}.yaml").read_text())["all"]["vars"]["svcnet_lab"]
        assert lab_vars["client_addresses"] == ["192.168.58.254", "192.168.58.253"]
        assert lab_vars["routes"] == {"192.168.59.30": "node1", "192.168.59.11": "node1", "192.168.59.10": "node1"}
        route = svcnet_lab("exec", "--name", name, "client", "--", "ip", "route", "get", "192.168.59.10")
        assert "via 192.168.58.11 dev eth0" in route.stdout, route.stdout + route.stderr
        addrs = svcnet_lab("exec", "--name", name, "client", "--", "ip", "-br", "addr", "show", "eth0")
        assert "192.168.58.254/24 192.168.58.253/24" in addrs.stdout, addrs.stdout
    finally:
        down = svcnet_lab("down", "--name", name)
    assert down.returncode == 0, down.stderr


def test_bad_input_is_reported_without_traceback(tmp_path):
    bad = tmp_path / "cluster.yaml"
    bad.write_text("apiVersion: svcnet.dev/v1alpha1\nkind: Cluster\nmetadata: {name: b}\nspec:\n  nodes:\n"
                   "    - name: Bad_Name\n      addresses: [10.0.0.1]\n      podCIDR: 10.244.1.0/24\n")
    result = svcnet_lab("up", "-f", str(bad), "--name", unique_lab_name("b"), cwd=tmp_path)
    assert result.returncode == 1
    assert "cluster.yaml:6:13: spec.nodes[0].name: 'Bad_Name' is not a valid DNS-1123" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "inventory").exists()
