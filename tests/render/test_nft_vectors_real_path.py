"""Every kube-proxy nftables vector through the product's real path: description files → load →
validate (below the nftables gate) → model → desired → render (see nftrealpath.py).

Full-dump vectors are compared whole with kube-proxy's expected table after its canonical sort.
Every packet flow of an expressible vector is traced through the rendered table by `svcnet explain`'s
tracer (svcnet/explain/nft.py, via nftflows.py). The vectors the
real path cannot express (bad-ips, the IPv6 ones) are checked from direct inputs in
test_nft_vectors_direct.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import nftflows
import nftrealpath
import pytest

from svcnet.render.nftables import canonical_sort

ALL = nftrealpath.names()
EXPRESSIBLE = [n for n in ALL if n not in nftrealpath.CANNOT_EXPRESS]
FULL = [n for n in EXPRESSIBLE if nftrealpath.raw(n)["expect"] == "full-dump"]
FLOW_ONLY = [n for n in EXPRESSIBLE if nftrealpath.raw(n)["expect"] == "flow-only"]
FLOWS = [(n, f["name"]) for n in EXPRESSIBLE for f in nftrealpath.raw(n).get("packet_flow_tests") or ()]
# Packet flows not traced by `svcnet explain` through the real path: those of the inexpressible vectors
# (an IPv6 proxier), which test_nft_vectors_direct.py traces with the same tracer from direct inputs.
EXPLAIN_NOT_YET = sum(len(nftrealpath.raw(n).get("packet_flow_tests") or ()) for n in nftrealpath.CANNOT_EXPRESS)


@pytest.mark.parametrize("name", FULL)
def test_full_dump_vector_through_the_real_path(name: str, tmp_path: Path) -> None:
    result = nftrealpath.run(nftrealpath.raw(name), tmp_path)
    assert result.errors == ()
    assert canonical_sort(result.table) == nftrealpath.expected(name)


@pytest.mark.parametrize("name", FLOW_ONLY)
def test_flow_only_vector_renders_through_the_real_path(name: str, tmp_path: Path) -> None:
    result = nftrealpath.run(nftrealpath.raw(name), tmp_path)
    assert result.errors == ()
    assert result.script.endswith(result.table) and "add table ip kube-proxy {" in result.table


@pytest.mark.parametrize("name", sorted({n for n, _ in FLOWS}))
def test_packet_flows_through_the_real_path(name: str, tmp_path: Path) -> None:
    raw = nftrealpath.raw(name)
    result = nftrealpath.run(raw, tmp_path)
    assert result.errors == ()
    local = frozenset(raw.get("tracer_local_ips") or ())
    for flow in raw["packet_flow_tests"]:
        got = nftflows.vector_result(nftflows.explain(result.table, flow, local))
        assert got == (flow["output"], flow["masq"]), flow["name"]


def test_every_vector_is_run_or_named_as_inexpressible() -> None:
    assert set(FULL) | set(FLOW_ONLY) | set(nftrealpath.CANNOT_EXPRESS) == set(ALL)
    assert len(FULL) == 15 and len(ALL) == 52  # every one of the 15 full dumps upstream
    assert {"overall", "startup", *(f"repeated-{i}-" for i in range(1, 13))} <= {
        n if not n.startswith("repeated-") else n[:n.index("-", 9) + 1] for n in FULL}
    assert len(FLOWS) == 199 and EXPLAIN_NOT_YET == 8  # of 207: the 8 others are IPv6 (nodeports-ipv6*)


@pytest.mark.parametrize("name", sorted(nftrealpath.CANNOT_EXPRESS))
def test_inexpressible_vector_is_refused_for_the_stated_reason(name: str, tmp_path: Path) -> None:
    _, pattern = nftrealpath.CANNOT_EXPRESS[name]
    result = nftrealpath.run(nftrealpath.raw(name), tmp_path)
    assert result.errors
    assert all(re.search(pattern, e) for e in result.errors), result.errors


REWRITTEN = [(n, i) for n in EXPRESSIBLE for i in range(len(nftrealpath.rewrites(nftrealpath.raw(n))))]


@pytest.mark.parametrize(("name", "index"), REWRITTEN)
def test_each_rewrite_is_needed(name: str, index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any one rewrite, svcnet refuses the vector or renders another table."""
    import realpath

    raw = nftrealpath.raw(name)
    dropped = nftrealpath.rewrites(raw)[index]
    general = realpath.rewrites
    monkeypatch.setattr(realpath, "rewrites", lambda r: tuple(x for x in general(r) if x is not dropped))
    monkeypatch.setattr(nftrealpath, "REWRITES", {k: tuple(x for x in v if x is not dropped)
                                                  for k, v in nftrealpath.REWRITES.items()})
    result = nftrealpath.run(raw, tmp_path)
    if result.errors:
        return
    assert raw["expect"] == "full-dump", "a flow-only vector's rewrite must be needed to pass validation"
    assert canonical_sort(result.table) != nftrealpath.expected(name)
