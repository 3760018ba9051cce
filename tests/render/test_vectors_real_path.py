"""Every kube-proxy vector through the product's real path: description files → load → validate
→ model → desired → render (see realpath.py), compared with kube-proxy's own expectation.

Full-sync vectors are compared whole (or the one chain they scope). Partial-sync vectors
(`repeated-2..8`, kube-proxy's MinimizeIPTablesRestore) are compared whole too: the agent's
partial restore (`ipt_partial_restore`) from the record of the step before to the step's full render.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import realpath
import yaml
from vectors import load_vector, vector_dir, vector_names

from svcnet.agent.node import ipt_partial_restore, ipt_record
from svcnet.diagnostics import errors, warnings
from svcnet.explain.combine import combine
from svcnet.explain.compat import kube_proxy_view
from svcnet.explain.trace import ORIGIN_NODE, ORIGIN_OUTSIDE, ORIGIN_POD, Packet, TraceContext, trace
from svcnet.model import family
from svcnet.model.load import check_paths
from svcnet.render.dump import canonical_sort, parse_dump
from svcnet.render.jumps import jump_rules

ALL = vector_names()
EXPRESSIBLE = ALL
PARTIAL = [n for n in EXPRESSIBLE if load_vector(n).sync_mode == "partial"]
FULL = [n for n in EXPRESSIBLE if n not in PARTIAL]


def _raw(name: str) -> realpath.Raw:
    return yaml.safe_load((vector_dir() / f"{name}.input.yaml").read_text())


def _run(name: str, tmp_path: Path, rewrite: bool = True) -> realpath.RealPath:
    return realpath.run(_raw(name), tmp_path, rewrite)


def _chain_rules(text: str, table: str, chain: str) -> list[str]:
    found = parse_dump(text).chain(table, chain)
    return [f"-A {chain} {rule}" for rule in found.rules] if found else []


@pytest.mark.parametrize("name", FULL)
def test_full_sync_vector_through_the_real_path(name: str, tmp_path: Path) -> None:
    vec = load_vector(name)
    result = _run(name, tmp_path)
    assert result.errors == ()
    if vec.expect_scope is None:
        assert canonical_sort(result.restore) == vec.expected
    else:
        table, chain = vec.expect_scope
        assert _chain_rules(result.restore, table, chain) == [ln for ln in vec.expected.splitlines() if ln.strip()]


def _previous(name: str) -> str:
    """The vector before a `repeated-N-*` step (its sequence's state before this sync)."""
    number = int(name.split("-")[1])
    return next(n for n in ALL if n.startswith(f"repeated-{number - 1}-"))


def _without_stale_chains(name: str) -> realpath.Raw:
    """The vector with no chains said to exist: what is removed must come from the applied record."""
    raw = _raw(name)
    raw["sync"].pop("existing_nat_chains", None)
    return raw


@pytest.mark.parametrize("name", PARTIAL)
def test_partial_sync_vector_through_the_real_path_and_the_agents_partial_restore(name: str, tmp_path: Path) -> None:
    """The agent's partial restore (kube-proxy's MinimizeIPTablesRestore) from the record of the
    previous step's full render to this step's full render is kube-proxy's partial restore input:
    the changed services' chains, the fixed chains in full, `-X` for the removed ones."""
    (tmp_path / "before").mkdir()
    before = realpath.run(_without_stale_chains(_previous(name)), tmp_path / "before")
    after = realpath.run(_without_stale_chains(name), tmp_path)
    assert before.errors == after.errors == ()
    text, kept = ipt_partial_restore(after.restore, ipt_record(before.restore))
    assert canonical_sort(text) == load_vector(name).expected
    assert kept <= set(load_vector(name).raw["sync"]["existing_nat_chains"])


def test_every_vector_is_run_or_named_as_inexpressible() -> None:
    assert set(FULL) | set(PARTIAL) == set(ALL)
    assert {"overall", "bad-ips", "repeated-1-full", "repeated-9-full-resync"} <= set(FULL)
    assert {f"repeated-{i}-" for i in range(2, 9)} == {n[:11] for n in PARTIAL}


def test_every_rewrite_names_the_rule_that_stops_the_vector_as_written() -> None:
    """What is still rewritten is what an API server would never store (or svcnet's IPv6 limit);
    the API's spelling rules (leading zeros, padded source ranges) need no rewrite any more."""
    named = [r for n in ALL for r in realpath.rewrites(_raw(n))]
    assert named and all(r.rule for r in named)
    assert all(r.rule.startswith(("the API server", "ValidateService", "svcnet's own")) for r in named)
    assert realpath.rewrites(_raw("bad-ips")) == ()


# The API server's warnings for bad-ips (GetWarningsForIP/GetWarningsForCIDR), in document order.
BAD_IPS_WARNINGS = [
    "spec.clusterIP: warning: non-standard IP address \"172.30.0.041\" will be considered invalid in a "
    "future Kubernetes release: use \"172.30.0.41\"",
    "spec.externalIPs[0]: warning: non-standard IP address \"192.168.099.022\"",
    "spec.loadBalancerSourceRanges[0]: warning: non-standard CIDR value \"203.0.113.000/025\" will be "
    "considered invalid in a future Kubernetes release: use \"203.0.113.0/25\"",
    "status.loadBalancer.ingress[0].ip: warning: non-standard IP address \"1.2.3.004\"",
    "endpoints[0].addresses[0]: warning: non-standard IP address \"10.180.00.001\"",
]


def test_bad_ips_spellings_go_through_as_written_with_located_warnings(tmp_path: Path) -> None:
    docs, reasons = realpath.describe(_raw("bad-ips"))
    path = realpath.write(docs, tmp_path)
    text = path.read_text()
    assert reasons == ()
    assert all(v in text for v in ("172.30.0.041", "192.168.099.022", "203.0.113.000/025", "1.2.3.004",
                                   "10.180.00.001"))
    checked = check_paths([path])
    assert errors(checked.diagnostics) == []
    found = [str(d) for d in warnings(checked.diagnostics)]
    assert len(found) == len(BAD_IPS_WARNINGS)
    lines = text.splitlines()
    for got, want in zip(found, BAD_IPS_WARNINGS, strict=True):
        where, _, rest = got.partition(": ")
        assert rest.startswith(want), got
        file, line, col = where.rsplit(":", 2)
        value = rest.split('"')[1]
        assert file == str(path) and lines[int(line) - 1][int(col) - 1:].lstrip("'\"").startswith(value), got


def test_overall_keeps_its_space_padded_source_range(tmp_path: Path) -> None:
    docs, _ = realpath.describe(_raw("overall"))
    svc5 = next(d for d in docs if d["metadata"].get("name") == "svc5")
    assert svc5["spec"]["loadBalancerSourceRanges"] == [" 203.0.113.0/25"]



REWRITTEN = [(n, i) for n in EXPRESSIBLE for i in range(len(realpath.rewrites(_raw(n))))]


@pytest.mark.parametrize(("name", "index"), REWRITTEN)
def test_each_rewrite_is_needed(name: str, index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any one rewrite, svcnet refuses the vector or renders other rules."""
    raw = _raw(name)
    kept = tuple(r for i, r in enumerate(realpath.rewrites(raw)) if i != index)
    monkeypatch.setattr(realpath, "rewrites", lambda _raw: kept)
    result = realpath.run(raw, tmp_path)
    vec = load_vector(name)
    if result.errors:
        return
    if vec.expect_scope is None:
        assert canonical_sort(result.restore) != vec.expected
    else:
        table, chain = vec.expect_scope
        assert _chain_rules(result.restore, table, chain) != [ln for ln in vec.expected.splitlines() if ln.strip()]


SCOPED = [n for n in FULL if load_vector(n).expect_scope is not None]
SCOPED_FLOWS = [(n, i) for n in SCOPED for i in range(len(load_vector(n).packet_flow_tests))]


@pytest.mark.parametrize(("name", "index"), SCOPED_FLOWS, ids=[f"{n}-{i}" for n, i in SCOPED_FLOWS])
def test_single_chain_vector_packet_flows_through_the_real_path(name: str, index: int, tmp_path: Path) -> None:
    """A single-chain vector (`nodeports-*`) compares one chain; its packet flows check the whole
    ruleset the real path renders (for the IPv6 ones: the node's ip6tables-restore input), traced
    with the vector's node addresses as kube-proxy's own test traces them."""
    vec = load_vector(name)
    flow = vec.packet_flow_tests[index]
    result = _run(name, tmp_path)
    assert result.errors == ()
    cidr = vec.settings.local_detector.cidr
    ctx = TraceContext(local_ips=frozenset(vec.tracer_local_ips), pod_cidrs=(cidr,) if cidr else ())
    if ctx.match_context().is_local(flow.source_ip):
        origin = ORIGIN_NODE
    elif cidr and family.contains(ipaddress.ip_network(cidr), ipaddress.ip_address(flow.source_ip)):
        origin = ORIGIN_POD
    else:
        origin = ORIGIN_OUTSIDE
    tr = trace(combine(result.restore, jump_rules(vec.settings)),
               Packet(flow.source_ip, 40000, flow.dest_ip, flow.dest_port, flow.protocol.lower(), origin), ctx)
    assert not tr.warnings
    assert kube_proxy_view(tr) == (flow.output, flow.masq), flow.name


def test_the_ipv6_vectors_run_through_the_real_path() -> None:
    assert {"nodeports-ipv6-localhost-off", "nodeports-ipv6-localhost-on", "nodeports-ipv6-npa-multiple"} <= set(SCOPED)


def test_overall_as_written_is_refused_by_the_rule_its_rewrite_names(tmp_path: Path) -> None:
    """Without its rewrites `overall` fails in svcnet only on ns5/svc5's healthCheckNodePort, with
    the message of the API rule the rewrite names (svc4's missing nodePort is allocated, as the API
    server allocates it)."""
    assert realpath.STRAY_HEALTH_CHECK_NODE_PORT in realpath.rewrites(_raw("overall"))
    rule = realpath.STRAY_HEALTH_CHECK_NODE_PORT.rule
    quoted = rule.split('"')[1].replace("`", "").replace("'", "")
    assert _run("overall", tmp_path, rewrite=False).errors == (
        f"spec.healthCheckNodePort: healthCheckNodePort {quoted} (not externalTrafficPolicy Cluster)",)
