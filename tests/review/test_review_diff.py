"""`svcnet.review.diff` on rendered descriptions: per node, the service ports whose rules change are
exactly those whose lines differ (checked against sorting every line of both texts), the hunks turn
the old rules into the new ones, and jump rules and address config are reported apart."""

from __future__ import annotations

import itertools
import shutil
import sys
from pathlib import Path

import pytest

from svcnet.model.load import load_cluster
from svcnet.model.types import Cluster
from svcnet.render.artifacts import node_artifacts_all
from svcnet.review import linediff
from svcnet.review.diff import ADDED, ADDRESS_CONFIG, CHANGED, JUMP_RULES, UNCHANGED, NodeDiff, diff_clusters
from svcnet.review.owners import NODE_WIDE, UNKNOWN_SERVICE, LineOwners

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"
# The IPv4-only goldens (review's golden diff keeps to them; a dual-stack one has `.rules6`).
GOLDEN = sorted(p for p in (ROOT / "tests" / "golden").glob("*.yaml") if not list(p.parent.glob(f"{p.stem}.*.rules6")))
SPN = "k8s-test/service:http"

sys.path.insert(0, str(ROOT / "tests" / "review"))
from test_review_linediff import apply  # noqa: E402


def by_owner(text: str, owners: LineOwners) -> dict[str, list[tuple[str, str]]]:
    """Every line of a restore text with its table, sorted by owner: the slow, obvious way."""
    out: dict[str, list[tuple[str, str]]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("*"):
            table = line
        elif line != "COMMIT":
            out.setdefault(owners(line), []).append((table, line))
    return out


def check_against_full_sort(old: Cluster, new: Cluster) -> list[NodeDiff]:
    """diff_clusters' answer, checked node by node against the full texts."""
    diffs = diff_clusters(old, new)
    before, after = node_artifacts_all(old), node_artifacts_all(new)
    ports = [*old.service_ports, *new.service_ports]
    owners = LineOwners(ports, ports)
    for d in diffs:
        a = before[d.node].restore if d.node in before else ""
        b = after[d.node].restore if d.node in after else ""
        ga, gb = by_owner(a, owners), by_owner(b, owners)
        expected = {o for o in ga.keys() | gb.keys() if ga.get(o) != gb.get(o)}
        assert set(d.rules.owners() if d.rules else ()) == expected, d.node
        if d.rules:
            assert apply(a.splitlines(), d.rules.hunks) == b.splitlines()
            for h in d.rules.hunks:
                assert all(owners(line[1:]) == h.owner for line in h.lines)
                assert h.where in ("*filter", "*nat")
        assert UNKNOWN_SERVICE not in expected
    return diffs


def variant(tmp_path: Path, name: str, **edits: str) -> Path:
    """A copy of the seed example with `old text => new text` edits in its files."""
    dest = tmp_path / name
    shutil.copytree(SEED, dest)
    for file, change in edits.items():
        path = dest / f"{file}.yaml"
        old, new = change.split(" => ")
        text = path.read_text()
        assert old in text, (file, old)
        path.write_text(text.replace(old, new))
    return dest


def diff_seed(tmp_path: Path, **edits: str) -> dict[str, NodeDiff]:
    new = load_cluster([variant(tmp_path, "new", **edits)])
    return {d.node: d for d in check_against_full_sort(load_cluster([SEED]), new)}


def test_no_change_means_every_node_unchanged() -> None:
    cluster = load_cluster([SEED])
    assert [(d.node, d.status) for d in diff_clusters(cluster, cluster)] == [("node1", UNCHANGED), ("node2", UNCHANGED)]


def test_a_third_replica_changes_the_service_on_both_nodes_and_one_address_config(tmp_path: Path) -> None:
    d = diff_seed(tmp_path, deployment="replicas: 2 => replicas: 3")
    assert d["node1"].services() == d["node2"].services() == [SPN]
    assert d["node2"].rules_as == "node1"  # one rules text on both nodes: diffed once, printed once
    assert d["node1"].address is None and d["node1"].jumps is None
    assert d["node2"].address is not None and d["node2"].address.owners() == [ADDRESS_CONFIG]
    added = [line for h in d["node2"].address.hunks for line in h.lines if line.startswith("+")]
    assert [line.split()[0] for line in added] == ["+pod", "+process"]


def test_a_new_node_port_changes_only_that_service(tmp_path: Path) -> None:
    d = diff_seed(tmp_path, service="nodePort: 30000 => nodePort: 30001")
    for node in ("node1", "node2"):
        assert d[node].status == CHANGED and d[node].services() == [SPN]
        assert d[node].rules is not None and NODE_WIDE not in d[node].rules.owners()
        (hunk,) = d[node].rules.hunks
        assert [line[:1] for line in hunk.lines if "--dport 300" in line] == ["-", "+"]


def test_a_proxy_setting_changes_node_wide_rules(tmp_path: Path) -> None:
    d = diff_seed(tmp_path, cluster="detectLocalMode: ClusterCIDR => detectLocalMode: NodeCIDR")
    assert d["node1"].services() == [SPN]  # its masquerade rule names the node's podCIDR now
    d = diff_seed(tmp_path / "2", cluster="mode: iptables => mode: iptables\n    iptables: {masqueradeBit: 15}")
    assert d["node1"].rules is not None and NODE_WIDE in d["node1"].rules.owners()


def test_localhost_nodeports_off_changes_jump_rules_and_address_config(tmp_path: Path) -> None:
    d = diff_seed(tmp_path, cluster="mode: iptables => mode: iptables\n    iptables: {localhostNodePorts: false}")
    assert d["node1"].jumps is not None and d["node1"].jumps.owners() == [JUMP_RULES]
    assert d["node1"].address is not None  # route_localnet is no longer set


def test_an_added_node_and_its_routes(tmp_path: Path) -> None:
    d = diff_seed(tmp_path, cluster="      podCIDR: 10.244.2.0/24 => "
                  "      podCIDR: 10.244.2.0/24\n    - name: node3\n      addresses: [192.168.56.13]\n"
                  "      podCIDR: 10.244.3.0/24")
    assert d["node3"].status == ADDED and d["node3"].services() == [SPN]
    assert d["node3"].rules is not None and all(h.removed == 0 for h in d["node3"].rules.hunks)
    assert d["node1"].address is not None
    assert "+route 10.244.3.0/24 via 192.168.56.13" in d["node1"].address.hunks[-1].lines


@pytest.mark.parametrize(("old", "new"), [
    *itertools.pairwise(GOLDEN), *itertools.pairwise(reversed(GOLDEN)), (GOLDEN[0], GOLDEN[-1]),
], ids=lambda p: p.stem)
@pytest.mark.parametrize("small", [linediff._SMALL, 1])
def test_golden_descriptions_against_each_other(old: Path, new: Path, small: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Other services, other settings, other endpoints: every kind of line changes somewhere (and
    with every region cut at anchors, as in rulesets of 100,000s of lines)."""
    monkeypatch.setattr(linediff, "_SMALL", small)
    check_against_full_sort(load_cluster([old]), load_cluster([new]))


def test_large_cluster_mode_endpoint_rules_without_comments_belong_to_their_service(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from generate import cluster_yaml, services_yaml

    nodes = [("node1", "192.168.56.11", "10.244.1.0/24"), ("node2", "192.168.56.12", "10.244.2.0/24")]

    def place(k: int) -> tuple[str, str]:
        return f"10.244.{k % 2 + 1}.{k // 2 % 250 + 2}", f"node{k % 2 + 1}"

    text = cluster_yaml("big", "10.244.0.0/16", nodes) + services_yaml(201, 5, place)  # 1005 endpoints
    (tmp_path / "old.yaml").write_text(text)
    moved = text.replace("  - addresses: [10.244.2.2]\n", "  - addresses: [10.244.2.251]\n", 1)
    assert moved != text
    (tmp_path / "new.yaml").write_text(moved)
    diffs = check_against_full_sort(load_cluster([tmp_path / "old.yaml"]), load_cluster([tmp_path / "new.yaml"]))
    assert [d.services() for d in diffs] == [["bench/svc-00000:http"]] * 2
    changed = [line for h in diffs[0].rules.hunks for line in h.lines if line[0] in "+-"]  # type: ignore[union-attr]
    assert any("--comment" not in line and "-j DNAT" in line for line in changed)  # large mode: no comments


def test_nftables_mode_diffs_the_nft_scripts_by_service(tmp_path):
    """In nftables mode the rules are the nft script (restore is empty): a changed targetPort shows
    in rules.nft, every changed line owned by the service port, and the hunks rebuild the new script;
    a switch from iptables mode shows the restore input going and the script coming."""
    from svcnet.render.artifacts import NFT_FILE, RESTORE_FILE

    nft_seed = ROOT / "examples" / "seed-nftables"
    new_dir = tmp_path / "new"
    shutil.copytree(nft_seed, new_dir)
    svc = new_dir / "service.yaml"
    svc.write_text(svc.read_text().replace("targetPort: 8080", "targetPort: 8081"))
    old, new = load_cluster([nft_seed]), load_cluster([new_dir])
    diffs = diff_clusters(old, new)
    before, after = node_artifacts_all(old), node_artifacts_all(new)
    for d in diffs:
        assert d.status == CHANGED and d.rules is not None and d.rules.file == NFT_FILE, d
        assert d.rules.owners() == [SPN], d.rules.hunks
        a, b = before[d.node].nft.splitlines(), after[d.node].nft.splitlines()
        assert apply(a, d.rules.hunks) == b
    switch = diff_clusters(load_cluster([SEED]), old)
    assert all(d.rules is not None and d.rules.file == NFT_FILE for d in switch)
    back = diff_clusters(old, load_cluster([SEED]))
    assert all(d.rules is not None and d.rules.file == RESTORE_FILE and SPN in d.rules.owners() for d in back)
