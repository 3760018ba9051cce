"""`svcnet explain --live` in nftables mode reads the node's table as `nft -s list table` prints it
(then the agent's `nft_normal`): every kube-proxy packet flow gives the same result through the
listing of the real kernel's table as through the rendered `nft -f` input.

Each table is loaded by the real `nft` into a fresh network namespace of its own (`unshare -n`), never
the host's; skipped where nft or unshare is missing or not root."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import nftflows
import nftrealpath
import pytest

from svcnet.agent.node import nft_normal
from svcnet.explain.nft import parse_listing, parse_table, trace_nft

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
    reason="needs root, nft and unshare for a scratch network namespace")

FLOWS = sorted(n for n in nftrealpath.names()
               if n not in nftrealpath.CANNOT_EXPRESS and nftrealpath.raw(n).get("packet_flow_tests"))


def _listing(script: str) -> str:
    proc = subprocess.run(["unshare", "-n", "sh", "-c", "nft -f - && nft -s list table ip kube-proxy"],
                          input=script, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("name", FLOWS)
def test_flows_through_the_kernels_listing_match_the_rendered_table(name: str, tmp_path: Path) -> None:
    raw = nftrealpath.raw(name)
    result = nftrealpath.run(raw, tmp_path)
    assert result.errors == ()
    listed = parse_listing(nft_normal(_listing(result.script)))
    rendered = parse_table(result.table)
    assert set(listed.rules) == set(rendered.rules) and listed.maps == rendered.maps
    local = frozenset(raw.get("tracer_local_ips") or ())
    for flow in raw["packet_flow_tests"]:
        packet = nftflows.explain(result.table, flow, local).packet
        ctx = nftflows.context(local)
        got = nftflows.vector_result(trace_nft(listed, packet, ctx))
        assert got == (flow["output"], flow["masq"]), flow["name"]
