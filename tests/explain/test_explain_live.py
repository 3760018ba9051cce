"""`svcnet explain --live` reads iptables-save over SSH from a lab node and traces it."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from svcnet.cli.main import cli
from svcnet.lab.pytest_fixtures import node_run
from svcnet.model.load import load_cluster
from svcnet.render.artifacts import node_artifacts

pytestmark = pytest.mark.lab
SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"


def explain_args(description: Path) -> list[str]:
    """A pod on node1 to the seed's ClusterIP, as JSON."""
    return ["explain", "-f", str(description), "--node", "node1", "--src", "10.244.1.50",
            "--dst", "10.111.35.139:8080", "-o", "json"]


def assert_live_matches_rendered(lab, cluster, args: list[str]) -> None:
    """`--live` traces the node's rules to the same outcomes as the rendered ones: each endpoint at 50%."""
    rendered = json.loads(CliRunner().invoke(cli, args).output)
    live = CliRunner().invoke(cli, [*args, "--live", "-i", str(lab.inventory_path)])
    assert live.exit_code == 0, live.output
    live_doc = json.loads(live.output)
    assert live_doc["outcomes"] == rendered["outcomes"]
    assert sorted((o["destination"], o["probability"]) for o in live_doc["outcomes"]) == sorted(
        (f"{ep.ip}:8080", 0.5) for sp in cluster.service_ports for ep in sp.endpoints)


def test_live_trace_matches_rendered_then_sees_a_manual_change(lab_factory):
    lab = lab_factory(SEED)
    cluster = load_cluster([SEED])
    art = node_artifacts(cluster, "node1")
    node_run(lab, "node1", f"printf %s {shlex.quote(art.restore)} | iptables-restore --noflush")
    for rule in art.jump_rules:
        node_run(lab, "node1", "iptables " + shlex.join(rule.prepend_args()))
    args = explain_args(SEED)
    assert_live_matches_rendered(lab, cluster, args)

    # A hand edit on the node (the KUBE-SVC chain flushed) shows up only in live mode.
    svc_chain = next(line.split()[0][1:] for line in art.restore.splitlines() if line.startswith(":KUBE-SVC-"))
    node_run(lab, "node1", f"iptables -t nat -F {svc_chain}")
    live = json.loads(CliRunner().invoke(cli, [*args, "--live", "-i", str(lab.inventory_path)]).output)
    assert [o["destination"] for o in live["outcomes"]] == [None]  # no DNAT any more


SEED_NFT = SEED.parent / "seed-nftables"


def test_live_nftables_trace_matches_rendered_then_sees_a_manual_change(lab_factory):
    """nftables mode: `--live` reads `nft -s list table ip kube-proxy` from the node."""
    lab = lab_factory(SEED_NFT)
    cluster = load_cluster([SEED_NFT])
    art = node_artifacts(cluster, "node1")
    node_run(lab, "node1", f"printf %s {shlex.quote(art.nft)} | nft -f -")
    args = explain_args(SEED_NFT)
    assert_live_matches_rendered(lab, cluster, args)

    # A hand edit on the node (the ClusterIP's service-ips element deleted) shows up only in live mode:
    # the ClusterIP is still in cluster-ips, so filter-forward's cluster-ips-check rejects it.
    node_run(lab, "node1", "nft delete element ip kube-proxy service-ips '{ 10.111.35.139 . tcp . 8080 }'")
    live = json.loads(CliRunner().invoke(cli, [*args, "--live", "-i", str(lab.inventory_path)]).output)
    assert [(o["destination"], o["verdict"]) for o in live["outcomes"]] == [(None, "REJECT")]
