"""`svcnet demo`, the README's main command, end to end in its own lab."""

from __future__ import annotations

import re

import pytest
from applylab import svcnet

from svcnet.lab.pytest_fixtures import unique_lab_name

pytestmark = pytest.mark.lab


def assert_both_pods_answer(out: str) -> None:
    """The traffic table: each of the two pods answered some of the 200 requests to the ClusterIP
    and some of the 200 to the NodePort."""
    rows = re.findall(r"^(k8s-test-\S+)\s+(\d+)/200 .*?(\d+)/200", out, re.MULTILINE)
    table = out[out.find("answered by"):]  # with a "(no answer)" row, if any
    assert len(rows) == 2, out
    assert sum(int(r[1]) for r in rows) == 200 and sum(int(r[2]) for r in rows) == 200, table
    assert all(int(r[1]) > 0 and int(r[2]) > 0 for r in rows), table  # both pods serve both paths


def test_demo_applies_the_seed_and_shows_both_pods_answering():
    name = unique_lab_name("demo")
    try:
        run = svcnet("demo", "--name", name, timeout=300)
        assert run.rc == 0, run.out + run.err
        assert re.search(r"node1\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", run.out), run.out
        assert "KUBE-SERVICES → KUBE-SVC-" in run.out and "DNAT to 10.244." in run.out
        assert_both_pods_answer(run.out)
        assert f"svcnet lab down --name {name}" in run.out
    finally:
        svcnet("lab", "down", "--name", name)


SVC_CHAIN = "service-TA7VYVDI-k8s-test/service/tcp/http"  # the seed's service port in nftables mode


def test_demo_in_nftables_mode_walks_the_kube_proxy_table_and_shows_both_pods_answering():
    name = unique_lab_name("demo-nft")
    try:
        run = svcnet("demo", "--mode", "nftables", "--name", name, timeout=300)
        assert run.rc == 0, run.out + run.err
        assert re.search(r"node1\s+: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", run.out), run.out
        walk, paths = run.out.split("The path of a packet through table ip kube-proxy (svcnet explain on node1):")
        element = f"10.111.35.139 . tcp . 8080 : goto {SVC_CHAIN}"
        for piece in (f"map service-ips: {element}", f"chain {SVC_CHAIN}: numgen random mod 2 vmap",
                      "dnat to 10.244.1.240:8080", "dnat to 10.244.2.124:8080",
                      "chain mark-for-masquerade: mark set mark or 0x00004000",
                      "chain masquerading: masquerade fully-random",
                      "map service-nodeports: tcp . 30000 : goto external-"):
            assert piece in walk, walk
        # Two paths of 50% each from node1 to the ClusterIP, and two from the client to the NodePort.
        assert len(re.findall(rf"^  services → {SVC_CHAIN} → endpoint-\S+ → DNAT to 10\.244\.\S+ → masquerading"
                              r"   \(50%\)$", paths, re.MULTILINE)) == 2, paths
        assert len(re.findall(rf"^  services → external-\S+ → {SVC_CHAIN} → endpoint-\S+ → DNAT to 10\.244\.\S+ "
                              r"→ masquerading   \(50%\)$", paths, re.MULTILINE)) == 2, paths
        assert_both_pods_answer(paths)
        assert "-- nft list table ip kube-proxy" in run.out
        # What the walk shows is what the node holds: the ClusterIP's element in the live table.
        live = svcnet("lab", "exec", "--name", name, "node1", "--", "nft", "list", "map", "ip", "kube-proxy",
                      "service-ips")
        assert live.rc == 0 and element in live.out, live.out + live.err
    finally:
        svcnet("lab", "down", "--name", name)
