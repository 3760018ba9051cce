"""The iptables-nft cliff: the expected restore cost, the per-backend thresholds, the warning and the
progress lines of `svcnet apply` (over in-memory gateways; test_apply_cliff.py runs the real path)."""

from __future__ import annotations

import re

import pytest
from cliffdesc import WARNING, cliff_description
from fakegateway import Fleet
from test_converge import run

from svcnet.agent.node import CMD_TIMEOUT
from svcnet.apply import cliff
from svcnet.model.types import MODE_IPTABLES, MODE_NFTABLES
from svcnet.transport.ssh import SSHError


def test_the_fit_grows_faster_on_nf_tables_and_each_backend_has_its_own_threshold():
    nft, legacy = cliff.FITS[cliff.BACKEND_NFT], cliff.FITS[cliff.BACKEND_LEGACY]
    assert nft.power > 1.2  # the cliff: superlinear on nf_tables
    for lines in (5_000, 25_000, 75_000):
        assert nft.seconds(lines) > legacy.seconds(lines)
    assert cliff.THRESHOLDS[cliff.BACKEND_NFT] < cliff.THRESHOLDS[cliff.BACKEND_LEGACY]
    for backend, fit in cliff.FITS.items():  # the threshold is where the expected cost reaches WARN_SECONDS
        at = cliff.THRESHOLDS[backend]
        assert fit.seconds(at - 1) < cliff.WARN_SECONDS <= fit.seconds(at)


@pytest.mark.parametrize("backend", [cliff.BACKEND_NFT, cliff.BACKEND_LEGACY])
def test_warning_only_at_or_above_the_backends_threshold_in_iptables_mode(backend):
    at = cliff.THRESHOLDS[backend]
    assert cliff.cliff_warning(backend, at - 1, MODE_IPTABLES) is None
    message = cliff.cliff_warning(backend, at, MODE_IPTABLES)
    assert message is not None
    assert f"{at} iptables rule lines on the {backend} backend" in message
    assert f"about {cliff.FITS[backend].seconds(at):.0f} s" in message and "proxy.mode: nftables" in message
    assert ("iptables-legacy" in message) == (backend == cliff.BACKEND_NFT)
    assert cliff.cliff_warning(backend, 10 * at, MODE_NFTABLES) is None  # no iptables restore at all


def test_no_warning_for_a_backend_not_measured():
    assert cliff.cliff_warning("", 10**6, MODE_IPTABLES) is None
    assert cliff.expected_seconds("", 10**6) is None


def test_rule_lines_count_both_families():
    assert cliff.rule_lines(("a\nb\n", None)) == 2
    assert cliff.rule_lines(("a\n", "b\nc\n")) == 3


# -- through the apply tasks ----------------------------------------------------------------------
def fleet_on(backend: str) -> Fleet:
    fleet = Fleet(("node1", "node2"))
    for node in fleet.nodes.values():
        answer = node.op_preflight({})
        node.answers["preflight"] = {**answer, "facts": {**answer["facts"], "iptables_backend": backend}}
    return fleet


SMALL, LARGE = 2, 40  # services: about 90 and 950 rule lines per node


@pytest.fixture
def low_thresholds(monkeypatch):
    """Thresholds a small description crosses (the real ones need ~700 services: test_apply_cliff.py)."""
    monkeypatch.setitem(cliff.THRESHOLDS, cliff.BACKEND_NFT, 500)
    monkeypatch.setitem(cliff.THRESHOLDS, cliff.BACKEND_LEGACY, 5_000)
    monkeypatch.setattr(cliff, "PROGRESS_LINES", 500)


def test_a_large_ruleset_on_nf_tables_warns_per_node_located_and_shows_progress(tmp_path, low_thresholds):
    desc = cliff_description(tmp_path, LARGE)
    code, out = run(tmp_path, fleet_on(cliff.BACKEND_NFT), description=desc)
    assert code == 0, out
    found = WARNING.findall(out)
    assert sorted((f[2], f[3], f[5]) for f in found) == [("0", "node1", "nf_tables"), ("1", "node2", "nf_tables")]
    assert all(f[0] == str(desc) and int(f[4]) >= 500 for f in found)
    lines = desc.read_text().splitlines()
    assert all(lines[int(f[1]) - 1].strip() == f"- name: {f[3]}" for f in found), found  # at the node's entry
    for host in ("node1", "node2"):  # the restore's start and end, per node, before the task's result
        start = re.search(rf"^{host}: applying (\d+) rule lines \.\.\.$", out, re.M)
        end = re.search(rf"^{host}: (\d+) rule lines applied in \d+\.\d s$", out, re.M)
        assert start and end and start.start() < end.start() < out.index(f"changed: [{host}]"), out
    assert out.index("[WARNING]") < out.index("applying")  # warned before the restore starts


def test_the_same_ruleset_does_not_warn_on_legacy_nor_in_nftables_mode_nor_when_small(tmp_path, low_thresholds):
    desc = cliff_description(tmp_path, LARGE)
    code, out = run(tmp_path, fleet_on(cliff.BACKEND_LEGACY), description=desc)
    assert code == 0 and "[WARNING]" not in out, out  # below legacy's own threshold
    assert "node1: applying" in out  # a large restore shows its progress whatever the backend
    nft = cliff_description(tmp_path, LARGE, MODE_NFTABLES)
    code, out = run(tmp_path, fleet_on(cliff.BACKEND_NFT), description=nft)
    assert code == 0 and "[WARNING]" not in out, out
    small = cliff_description(tmp_path, SMALL)
    code, out = run(tmp_path, fleet_on(cliff.BACKEND_NFT), description=small)
    assert code == 0 and "[WARNING]" not in out and "applying" not in out, out


def test_check_mode_warns_without_progress_lines(tmp_path, low_thresholds):
    desc = cliff_description(tmp_path, LARGE)
    code, out = run(tmp_path, fleet_on(cliff.BACKEND_NFT), description=desc, check=True)
    assert code == 0 and len(WARNING.findall(out)) == 2 and "applying" not in out, out


def test_a_restore_expected_beyond_the_agents_command_limit_says_the_apply_may_fail():
    fit = cliff.FITS[cliff.BACKEND_NFT]
    under, over = fit.lines_for(CMD_TIMEOUT) - 1, fit.lines_for(CMD_TIMEOUT) + 1
    assert "the apply may fail" not in str(cliff.cliff_warning(cliff.BACKEND_NFT, under, MODE_IPTABLES))
    assert f"beyond the agent's {CMD_TIMEOUT:.0f} s limit per command: the apply may fail" in str(
        cliff.cliff_warning(cliff.BACKEND_NFT, over, MODE_IPTABLES))


def test_a_node_that_does_not_answer_its_large_apply_ends_its_progress_too(tmp_path, low_thresholds):
    fleet = fleet_on(cliff.BACKEND_LEGACY)
    fleet.nodes["node2"].raises["apply"] = SSHError("node2", "no answer within 300s")
    code, out = run(tmp_path, fleet, description=cliff_description(tmp_path, LARGE))
    assert code == 4, out
    assert re.search(r"^node2: \d+ rule lines: no answer after \d+\.\d s$", out, re.M), out
    assert re.search(r"^node1: \d+ rule lines applied in \d+\.\d s$", out, re.M), out
