"""`svcnet explain` in nftables mode on examples/seed-nftables (one ClusterIP+NodePort service with
two endpoints), via click's CliRunner: the walk through base chains, maps, vmaps and numgen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from svcnet.cli.explain import explain

SEED_NFT = Path(__file__).resolve().parents[2] / "examples" / "seed-nftables"
CLUSTER_IP = "10.111.35.139"
NODE1 = "192.168.56.11"
ENDPOINTS = ("10.244.1.240:8080", "10.244.2.124:8080")


def invoke(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(explain, ["-f", str(SEED_NFT), "--node", "node1", *args])


def test_cluster_ip_from_pod_walks_the_map_and_numgen_with_probabilities() -> None:
    res = invoke("--src", "10.244.1.5", "--dst", f"{CLUSTER_IP}:8080")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "hooks: filter-prerouting-pre-dnat → nat-prerouting → filter-forward → nat-postrouting" in out
    assert f"matched: element {CLUSTER_IP} . tcp . 8080 of map service-ips" in out
    assert "numgen random mod 2 = 0 (probability 50%)" in out and "numgen random mod 2 = 1" in out
    assert out.count("[random 50%]") == 2
    outcome = out.split("Outcome:")[1]
    assert all(f"50%  DNAT → {ep}; ACCEPT; not masqueraded" in outcome for ep in ENDPOINTS)


def test_nodeport_from_outside_is_masqueraded_json() -> None:
    res = invoke("--src", "203.0.113.9:5555", "--dst", f"{NODE1}:30000", "-o", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["packet"]["origin"] == "outside"
    assert sorted(o["destination"] for o in data["outcomes"]) == list(ENDPOINTS)
    assert [o["probability"] for o in data["outcomes"]] == [0.5, 0.5]
    assert all(o["masqueraded"] for o in data["outcomes"])
    reason = data["paths"][0]["masquerade_reason"]
    assert reason.startswith("yes:") and "mark-for-masquerade" in reason and "masquerade fully-random" in reason


def test_unknown_port_of_a_cluster_ip_is_rejected() -> None:
    res = invoke("--src", "10.244.1.5", "--dst", f"{CLUSTER_IP}:9999")
    assert res.exit_code == 0, res.output
    assert "Path 1 of 1 — probability 100%: not DNATed, REJECT" in res.output
    assert "ip kube-proxy/cluster-ips-check" in res.output


def test_node_origin_walks_the_output_hooks() -> None:
    res = invoke("--src", NODE1, "--dst", f"{CLUSTER_IP}:8080", "--only-matched")
    assert res.exit_code == 0, res.output
    assert "from node" in res.output
    assert "hooks: filter-output-pre-dnat → nat-output → filter-output → nat-postrouting" in res.output
    assert "non-matching rule" in res.output


@pytest.mark.parametrize(("args", "message"), [
    (("--src", "10.244.1.5", "--dst", "bad:1"), "--dst 'bad:1': expected IP:PORT"),
    (("--src", "10.244.1.5", "--dst", CLUSTER_IP), "needs a port"),
    (("--src", "10.244.1.5", "--dst", f"{CLUSTER_IP}:80", "--live"), "--live needs -i INVENTORY"),
])
def test_bad_input_is_a_usage_error(args: tuple[str, ...], message: str) -> None:
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)


def test_a_rule_form_the_tracer_does_not_know_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from svcnet.explain import nft

    real = nft.parse_table
    monkeypatch.setattr(nft, "parse_table", lambda text: real(text.replace("jump services", "tcp dport 1 accept")))
    res = invoke("--src", "10.244.1.5", "--dst", f"{CLUSTER_IP}:8080")
    assert res.exit_code == 1, res.output
    assert ("svcnet: node1: table ip kube-proxy: chain nat-prerouting rule 1: unknown rule form "
            "'tcp dport 1 accept'") in res.output and "Traceback" not in res.output
