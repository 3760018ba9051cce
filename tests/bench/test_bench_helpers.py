"""The benchmark scripts import, and their pure helpers hold (nothing is timed here: timings live in
bench/, run by hand; see bench/README.md)."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import dataplane_bench as dp  # noqa: E402
import nft_load_bench  # noqa: E402, F401 (it must import: it reuses render_bench's helpers)
import render_bench as rb  # noqa: E402

from svcnet.model.load import load_cluster  # noqa: E402
from svcnet.render.artifacts import node_artifacts  # noqa: E402
from svcnet.render.jumps import render_jump_rules  # noqa: E402


def test_render_bench_ratio_and_show_mark_stopped_measurements() -> None:
    assert rb.ratio(3.0, 1.5, budget=300) == "2.00x"
    assert rb.ratio(rb.STOPPED, 1.5, budget=300) == "> 200.0x"  # a lower bound, from the budget
    assert rb.ratio(2.0, rb.STOPPED, budget=300) == "-"  # no ratio to a stopped reference
    assert rb.ratio(None, 1.0, budget=300) == "-"
    assert rb.show(rb.STOPPED, 300) == "> 300 s (stopped)"
    assert rb.show(None, 300) == "n/a"
    assert rb.show(0.25, 300) == "0.250 s"


def test_render_bench_renders_both_modes_for_a_node(tmp_path: Path) -> None:
    rb.generate(20, tmp_path / "d.yaml")
    cluster = load_cluster([tmp_path / "d.yaml"])
    node = cluster.nodes[0]
    settings = rb.nft_settings({node.name: rb.proxier_settings(cluster, node)})
    script = rb.render_nft(settings, cluster.service_ports)[node.name]
    # As `svcnet render --node` prints it in nftables mode (the same description with the mode set).
    text = (tmp_path / "d.yaml").read_text().replace("spec:\n", "spec:\n  proxy: {mode: nftables}\n", 1)
    (tmp_path / "n.yaml").write_text(text)
    assert script == node_artifacts(load_cluster([tmp_path / "n.yaml"]), node.name).nft
    assert rb.LOADERS[0][0] == rb.REFERENCE_LOADER


@pytest.fixture(scope="module")
def dataplane_node(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("dp") / "d.yaml"
    path.write_text(dp.description(12, nftables=False))
    return node_artifacts(load_cluster([path]), dp.NODE)


def test_dataplane_targets_the_last_service_rule_of_kube_services(dataplane_node) -> None:
    # Services are svc-00000.. from 10.96.0.10 on; the last of 12 in KUBE-SERVICES is svc-00011.
    assert dp.last_service_ip(dataplane_node.restore) == "10.96.0.21"
    with pytest.raises(ValueError):
        dp.last_service_ip("*nat\nCOMMIT\n")


def test_dataplane_endpoints_are_the_backend_addresses(dataplane_node) -> None:
    dnat = {line.rsplit(" ", 1)[1] for line in dataplane_node.restore.splitlines() if "-j DNAT" in line}
    assert dnat == {f"{ip}:{dp.TARGET_PORT}" for ip in dp.BACKENDS}


def test_dataplane_jump_rules_go_first_into_their_tables_in_the_agents_order(dataplane_node) -> None:
    jumps = render_jump_rules(list(dataplane_node.jump_rules))
    text = dp.with_jumps(dataplane_node.restore, jumps)
    sections = {part.split("\n", 1)[0]: part for part in text.split("*")[1:]}
    nat = sections["nat"].splitlines()
    inserted = [line for line in nat if line.startswith("-I ")]
    assert inserted == ['-I OUTPUT 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
                        '-I PREROUTING 1 -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
                        '-I POSTROUTING 1 -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING']
    assert nat[-1] == "COMMIT" and nat.index(inserted[0]) > max(i for i, line in enumerate(nat)
                                                               if line.startswith("-A "))
    filter_inserted = [line for line in sections["filter"].splitlines() if line.startswith("-I ")]
    assert len(filter_inserted) + len(inserted) == len(jumps.splitlines())
    assert text.replace("".join(f"{line}\n" for line in inserted), "").count("\n") == \
        dataplane_node.restore.count("\n") + len(filter_inserted)


def test_dataplane_jump_rules_need_their_table_in_the_restore_input() -> None:
    with pytest.raises(ValueError, match="raw"):
        dp.with_jumps("*nat\nCOMMIT\n", "-t raw -A PREROUTING -j X\n")
    with pytest.raises(ValueError, match="unexpected"):
        dp.with_jumps("*nat\nCOMMIT\n", "-I PREROUTING -j X\n")


def test_dataplane_nftables_description_renders_the_script(tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(dp.description(3, nftables=True))
    art = node_artifacts(load_cluster([path]), dp.NODE)
    assert art.nftables_mode and "10.96.0.12" in art.nft and not art.restore


def test_dataplane_ratio_and_percentile() -> None:
    assert dp.cost_ratio(100.0, 150.0) == 1.5
    assert dp.cost_ratio(None, 1.0) is None and dp.cost_ratio(0.0, 1.0) is None
    assert dp.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.9) == 5.0
    assert dp.percentile([1.0], 0.5) == 1.0


def test_render_bench_stops_a_measurement_at_its_budget() -> None:
    assert rb.timed(lambda: sum(range(10)), 3, budget=60) >= 0
    assert rb.timed(lambda: time.sleep(5), 1, budget=0.05) == rb.STOPPED  # interrupted, not waited for
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
