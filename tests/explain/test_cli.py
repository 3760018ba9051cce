"""`svcnet explain` on the seed example (its NodePort service), via click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from svcnet.cli.explain import explain

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
CLUSTER_IP = "10.111.35.139"
NODE1 = "192.168.56.11"


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(explain, ["-f", str(SEED), "--node", "node1", *args])


def test_cluster_ip_from_pod_text() -> None:
    res = invoke("--src", "10.244.1.5", "--dst", f"{CLUSTER_IP}:8080")
    assert res.exit_code == 0, res.output
    assert "from pod (input interface cni0)" in res.output
    assert "== nat PREROUTING ==" in res.output and "filter/FORWARD" in res.output
    outcome = res.output.split("Outcome:")[1]
    assert outcome.count("50%  DNAT → 10.244.") == 2 and "not masqueraded" in outcome


def test_nodeport_from_outside_json() -> None:
    res = invoke("--src", "203.0.113.9:5555", "--dst", f"{NODE1}:30000", "-o", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["packet"]["origin"] == "outside" and data["packet"]["src_port"] == 5555
    assert [o["probability"] for o in data["outcomes"]] == [0.5, 0.5]
    assert all(o["masqueraded"] and o["destination"].endswith(":8080") for o in data["outcomes"])
    assert "KUBE-MARK-MASQ" in data["paths"][0]["masquerade_reason"]


def test_node_origin_is_inferred() -> None:
    res = invoke("--src", NODE1, "--dst", f"{CLUSTER_IP}:8080", "--only-matched")
    assert res.exit_code == 0, res.output
    assert "from node" in res.output and "nat OUTPUT → filter OUTPUT → nat POSTROUTING" in res.output
    assert "non-matching rule" in res.output


@pytest.mark.parametrize(("args", "code", "message"), [
    (("--src", "10.244.1.5", "--dst", "bad:1"), 2, "expected IP:PORT"),
    (("--src", "10.244.1.5", "--dst", CLUSTER_IP), 2, "needs a port"),
    (("--src", "fd00::1", "--dst", f"{CLUSTER_IP}:80"), 2, "different IP families"),
    (("--src", "10.244.1.5", "--dst", f"{CLUSTER_IP}:80", "--local-ip", "nope"), 2, "not an IP"),
    (("--src", "10.244.1.5", "--dst", f"{CLUSTER_IP}:80", "--live"), 2, "--live needs -i INVENTORY"),
])
def test_bad_input_is_a_clear_error(args: tuple[str, ...], code: int, message: str) -> None:
    res = invoke(*args)
    assert res.exit_code == code
    assert message in res.output and "Traceback" not in res.output


def test_unknown_node() -> None:
    res = CliRunner().invoke(explain, ["-f", str(SEED), "--node", "nope", "--src", "1.1.1.1",
                                       "--dst", "2.2.2.2:1"])
    assert res.exit_code == 1 and "no node 'nope'" in res.output

