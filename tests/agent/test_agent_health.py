"""The health-check server on a scratch node: started by apply and boot, put back by a rollback."""

from __future__ import annotations

import pytest
from agentnode import apply_req, hook, seed_artifacts, unchanged

pytestmark = pytest.mark.lab

OTHER_PORT = {"detectLocalMode: ClusterCIDR": "detectLocalMode: ClusterCIDR\n    healthzBindAddress: 0.0.0.0:10257"}


def healthz(snode, port: int = 10256) -> str:
    """The status of GET /healthz from inside the node ("000": nothing listens), one bounded try."""
    return snode.sh(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                     f"http://127.0.0.1:{port}/healthz"], check=False).stdout


def test_boot_starts_the_health_server_again(snode, tmp_path):
    req = apply_req(snode, seed_artifacts(tmp_path), "r1")
    assert snode.agent(req)["ok"]
    assert healthz(snode) == "200"
    snode.simulate_reboot()
    assert healthz(snode) == "000"
    assert not unchanged(snode.agent({"op": "probe", "run_id": "p"}), req["desired_hashes"])
    booted = snode.agent_file("boot")
    assert booted["ok"], booted
    assert healthz(snode) == "200"
    assert unchanged(snode.agent({"op": "probe", "run_id": "p"}), req["desired_hashes"])


def test_a_failed_apply_puts_the_previous_health_checks_back(snode, tmp_path):
    assert snode.agent(apply_req(snode, seed_artifacts(tmp_path), "r1"))["ok"]
    moved = apply_req(snode, seed_artifacts(tmp_path, OTHER_PORT), "r2")
    failed = snode.agent(moved, env=hook(settle={"do": "fail"}))  # after the server moved to 10257
    assert not failed["ok"] and failed["rolled_back"], failed
    assert (healthz(snode), healthz(snode, 10257)) == ("200", "000")
    assert snode.agent(moved)["ok"]
    assert (healthz(snode), healthz(snode, 10257)) == ("000", "200")


def test_teardown_stops_the_server(snode, tmp_path):
    assert snode.agent(apply_req(snode, seed_artifacts(tmp_path), "r1"))["ok"]
    assert healthz(snode) == "200"
    assert snode.agent({"op": "teardown", "run_id": "t1"})["ok"]
    assert healthz(snode) == "000"
