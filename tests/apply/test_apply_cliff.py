"""The iptables-nft cliff through the real path: the real agent's preflight reports the node's
iptables backend, svcnet renders the rules, and `svcnet apply --check` warns per node, located,
when the full restore is expected to be slow there (and only then)."""

from __future__ import annotations

import pytest
from applylab import apply
from cliffdesc import SERVICES_ABOVE_NFT, WARNING, cliff_description

from svcnet.apply import cliff
from svcnet.lab.pytest_fixtures import node_run
from svcnet.model.types import MODE_NFTABLES

pytestmark = pytest.mark.lab

NODES = ("node1", "node2")
LEGACY_MULTI, NFT_MULTI = "/usr/sbin/xtables-legacy-multi", "/usr/sbin/xtables-nft-multi"


def test_a_large_ruleset_warns_on_nf_tables_only(lab_factory, tmp_path):
    big = cliff_description(tmp_path, SERVICES_ABOVE_NFT)
    lab = lab_factory(big)
    if "nf_tables" not in node_run(lab, "node1", "iptables --version").stdout:
        pytest.skip("the host's iptables is not the nf_tables backend")
    # check mode: the warning comes from the real preflight's facts and the rendered rules, nothing is applied
    run = apply(lab, big, extra=("--check",))
    assert run.rc == 0, run.out + run.err
    found = WARNING.findall(run.out)
    assert sorted((f[3], f[5]) for f in found) == [(n, cliff.BACKEND_NFT) for n in NODES], run.out
    assert all(f[0] == str(big) and int(f[4]) >= cliff.THRESHOLDS[cliff.BACKEND_NFT] for f in found)
    assert "proxy.mode: nftables" in run.out

    small = apply(lab, cliff_description(tmp_path, 20), extra=("--check",))
    assert small.rc == 0 and "[WARNING]" not in small.out, small.out + small.err
    nft = apply(lab, cliff_description(tmp_path, SERVICES_ABOVE_NFT, MODE_NFTABLES), extra=("--check",))
    assert nft.rc == 0 and "[WARNING]" not in nft.out, nft.out + nft.err

    if node_run(lab, "node1", f"test -x {LEGACY_MULTI}", check=False).returncode != 0:
        pytest.skip("iptables-legacy is not installed")
    for node in NODES:  # legacy iptables in the node's own mount namespace only (the host keeps its own)
        node_run(lab, node, f"mount --bind {LEGACY_MULTI} {NFT_MULTI}")
    try:
        assert "legacy" in node_run(lab, "node1", "iptables --version").stdout
        legacy = apply(lab, big, extra=("--check",))
        assert legacy.rc == 0 and "[WARNING]" not in legacy.out, legacy.out + legacy.err  # below its threshold
    finally:
        for node in NODES:
            node_run(lab, node, f"umount {NFT_MULTI}", check=False)
