"""Description-to-rules goldens: each proxy setting and Service feature, through the whole product.

Each `NAME.yaml` here is a small description; each `NAME.NODE.rules` is the restore input
expected on NODE, written by hand from kube-proxy's `syncProxyRules` (pkg/proxy/iptables/
proxier.go: buffer and write order, rule texts), `CategorizeEndpoints` (pkg/proxy/topology.go)
and `endpointslicecache.go` (condition defaults), and checked against the upstream vectors in
tests/render/kube-proxy-vectors. Only the chain names were computed, with kube-proxy's
`portProtoHash` (the first 16 characters of base32(sha256(...))), independently of svcnet. The
comparison is byte for byte with what `svcnet render --node NODE` writes: kube-proxy's rules,
services in svcnet's documented (namespace, name, port name, protocol) order.

A dual-stack description also has `NAME.NODE.rules6`, the ip6tables-restore input of the node's
IPv6 proxier (kube-proxy's dual-stack mode: one proxier per family, each seeing its family's
ClusterIPs and endpoints); goldens run with the IPv6 gate off (svcnet renders IPv6, applies it not yet).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from svcnet.diagnostics import errors
from svcnet.model.load import check_paths
from svcnet.render.artifacts import node_artifacts

HERE = Path(__file__).resolve().parent
EXPECTED = sorted([*HERE.glob("*.rules"), *HERE.glob("*.rules6")])


def _golden(path: Path) -> tuple[Path, str]:
    """`NAME.NODE.rules` (or `.rules6`) -> (NAME.yaml, NODE)."""
    name, node, _ = path.name.rsplit(".", 2)
    return HERE / f"{name}.yaml", node


@pytest.mark.parametrize("expected", EXPECTED, ids=lambda p: p.name.removesuffix(".rules"))
def test_description_renders_the_hand_written_rules(expected: Path) -> None:
    description, node = _golden(expected)
    checked = check_paths([description], ipv6=True)
    assert not errors(checked.diagnostics), [str(d) for d in checked.diagnostics]
    assert checked.build is not None
    art = node_artifacts(checked.build.cluster, node)
    rendered = art.restore6 if expected.suffix == ".rules6" else art.restore
    assert rendered == expected.read_text()


def test_a_single_stack_description_has_no_ipv6_rules() -> None:
    checked = check_paths([HERE / "nodeport.yaml"])
    assert checked.build is not None
    assert node_artifacts(checked.build.cluster, "node1").restore6 is None


def test_every_description_has_expected_rules() -> None:
    descriptions = {p.name for p in HERE.glob("*.yaml")}
    covered = {_golden(p)[0].name for p in EXPECTED}
    assert descriptions == covered
    assert len(descriptions) >= 20
