"""verify's checks per IP family, on a dual-stack model (no lab: the checks run against a fake context).

The CLI refuses IPv6 descriptions until svcnet applies IPv6 (svcnet/model/semantic/ipv6.py): the model
is built with the gate lifted (`check_paths(..., ipv6=True)`, as tests/render does), and the checks
are the functions `svcnet verify` runs, given what the context would give them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from svcnet.model.load import check_paths, load_cluster
from svcnet.model.types import Cluster, ServicePort
from svcnet.render.artifacts import node_artifacts
from svcnet.transport.protocol import DIFF_RULES, DIFF_RULES6
from svcnet.verify.checks import jumps, rules, traffic
from svcnet.verify.context import Outside, VerifyContext, VerifyError
from svcnet.verify.plugin import make_service_url
from svcnet.verify.suite import pytest_args, run_suite
from svcnet.verify.targets import Source, expected_pods, port_id, select_ports, sources, usable_endpoints

HERE = Path(__file__).resolve().parent
DUAL = HERE / "dualstack"
SEED = HERE.parents[1] / "examples" / "seed"
CLIENT4, CLIENT6 = "192.168.58.254", "fd00:58::fe"


def dual() -> Cluster:
    checked = check_paths([DUAL], ipv6=True)
    assert checked.build is not None, [str(d) for d in checked.diagnostics]
    return checked.build.cluster


def port(cluster: Cluster, selector: str, ident: str) -> ServicePort:
    return next(sp for sp in select_ports(cluster, selector) if port_id(sp) == ident)


class FakeContext:
    """What the checks ask of a VerifyContext: the model, the outside client, probes and the agent's
    check diff; each probe is answered by `answer(request)` and recorded."""

    def __init__(self, cluster: Cluster, answer: Callable[[dict], dict] | None = None,
                 diff: dict[str, str] | None = None):
        self.cluster = cluster
        self.nodes = [n.name for n in cluster.nodes]
        self.outside = Outside("lab", "client-ns", CLIENT4, sources=(CLIENT4, CLIENT6))
        self.answer = answer or (lambda req: {"ok": True})
        self.sent: list[tuple[str, dict]] = []
        self.diff = diff

    def probe(self, source: Source, request: dict) -> dict:
        self.sent.append((source.label, request))
        return self.answer(request)

    def probe_outside(self, request: dict) -> dict:
        self.sent.append(("outside", request))
        return self.answer(request)

    def close(self) -> None:
        pass

    def state_check(self, node: str) -> Any:
        return dataclasses.make_dataclass("Answer", ["diff"])(self.diff)


def ctx(fake: FakeContext) -> VerifyContext:
    return fake  # type: ignore[return-value]  # duck-typed: only what the checks use


def answered_by(*pods: str) -> Callable[[dict], dict]:
    """Every request answered, spread over `pods` (refused for a connect)."""
    def answer(req: dict) -> dict:
        if req["op"] == "connect":
            return {"ok": True, "outcome": "refused", "seconds": 0.01}
        n = int(req["count"])
        counts = {p: n // len(pods) + (1 if i < n % len(pods) else 0) for i, p in enumerate(pods)}
        extra = {"client_ips": [CLIENT6 if ":" in req["host"] else CLIENT4]} if req.get("whoami") else {}
        return {"ok": True, "sent": n, "answers": {p: c for p, c in counts.items() if c}, **extra}
    return answer


# -- what gets checked -------------------------------------------------------------------------
def test_each_family_of_a_service_port_is_checked_on_its_own() -> None:
    """IPv4 views first (with the ids they always had), then the IPv6 ones, `@IPv6` in their id; an
    IPv6-only Service only under IPv6; each view holds its family's ClusterIP and endpoints only."""
    cluster = dual()
    ids = {sel: [port_id(sp) for sp in select_ports(cluster, sel)] for sel in
           ("cluster_ip", "node_port", "local_node_port", "no_endpoints", "no_endpoints_node_port")}
    assert ids == {
        "cluster_ip": ["vd/local:http", "vd/web:http", "vd/local:http@IPv6", "vd/web:http@IPv6", "vd/web6:http@IPv6"],
        "node_port": ["vd/local:http", "vd/web:http", "vd/local:http@IPv6", "vd/web:http@IPv6"],
        "local_node_port": ["vd/local:http", "vd/local:http@IPv6"],
        "no_endpoints": ["vd/nobody:http", "vd/nobody:http@IPv6"],
        "no_endpoints_node_port": ["vd/nobody:http", "vd/nobody:http@IPv6"],
    }
    web4, web6 = port(cluster, "cluster_ip", "vd/web:http"), port(cluster, "cluster_ip", "vd/web:http@IPv6")
    assert (web4.cluster_ip, web6.cluster_ip) == ("10.100.0.10", "fd00:10:96::10")
    assert all(":" not in ep.ip for ep in web4.endpoints) and all(":" in ep.ip for ep in web6.endpoints)
    assert len(web4.endpoints) == len(web6.endpoints) == 2
    web_pods = sorted(p.name for p in cluster.pods if p.name.startswith("web-"))
    assert sorted(expected_pods(cluster, web6, usable_endpoints(web6))) == web_pods  # by the pods' IPv6 addresses


def test_a_single_stack_cluster_keeps_its_checks_and_ids() -> None:
    cluster = load_cluster([SEED])
    assert [port_id(sp) for sp in select_ports(cluster, "all")] == [sp.spn for sp in cluster.service_ports]
    assert select_ports(cluster, "all") == list(cluster.service_ports)


def test_the_generated_suite_lists_each_family(tmp_path: Path) -> None:
    """What `svcnet verify` collects on a dual-stack cluster: every traffic check once per family."""
    collected: list[str] = []

    class Collector:
        def pytest_collection_finish(self, session: pytest.Session) -> None:
            collected.extend(item.nodeid.split("::", 1)[1] for item in session.items)

    code = run_suite(ctx(FakeContext(dual())), pytest_args(extra=["--collect-only", "-q", "-p", "no:randomly"]),
                     plugins=[Collector()])
    assert code == 0
    assert "test_cluster_ip_answers[node1-vd/web6:http@IPv6]" in collected
    assert "test_cluster_ip_answers[node1/" + next(p.name for p in dual().pods if p.node_name == "node1"
                                                   and p.name < "web") + "-vd/web:http@IPv6]" in collected
    assert "test_endpoints_share_traffic_evenly[node2-vd/web:http@IPv6]" in collected
    assert "test_node_port_answers[node1-vd/web:http@IPv6]" in collected
    assert "test_node_port_preserves_client_ip[node1-vd/local:http@IPv6]" in collected
    assert "test_no_endpoints_rejected[node2-vd/nobody:http@IPv6]" in collected
    assert "test_no_endpoints_node_port_rejected[node2-vd/nobody:http@IPv6]" in collected
    assert "test_service_rules_match_rendered[node1-vd/web6:http@IPv6]" in collected
    assert "test_cluster_ip_answers[node1-vd/web:http]" in collected


# -- the traffic each check sends ----------------------------------------------------------------
def run(check: Callable[..., None], *args: Any) -> None:
    """Run a check that must not skip itself here (a skip would hide that it sent nothing)."""
    try:
        check(*args)
    except pytest.skip.Exception as exc:
        pytest.fail(f"{check.__name__} skipped: {exc.msg}")


def test_cluster_ip_traffic_goes_to_the_ipv6_cluster_ip_and_expects_both_pods() -> None:
    cluster = dual()
    web_pods = sorted(p.name for p in cluster.pods if p.name.startswith("web-"))
    fake = FakeContext(cluster, answered_by(*web_pods))
    run(traffic.test_cluster_ip_answers, ctx(fake), Source("node1"), port(cluster, "cluster_ip", "vd/web6:http@IPv6"))
    run(traffic.test_endpoints_share_traffic_evenly, ctx(fake), "node2", port(cluster, "split", "vd/web:http@IPv6"))
    assert [(src, req["host"], req["port"]) for src, req in fake.sent] == [
        ("node1", "fd00:10:96::20", 80), ("node2", "fd00:10:96::10", 80)]


def test_an_ipv4_answer_to_ipv6_traffic_is_a_failure() -> None:
    """The IPv6 view expects the same pods, reached at their IPv6 addresses: a stranger fails it."""
    cluster = dual()
    fake = FakeContext(cluster, answered_by("somebody-else"))
    with pytest.raises(VerifyError, match=r"node1 -> \[fd00:10:96::10\]:80 \(vd/web:http\).*unexpected answers"):
        run(traffic.test_cluster_ip_answers, ctx(fake), Source("node1"),
            port(cluster, "cluster_ip", "vd/web:http@IPv6"))


def test_node_port_traffic_goes_to_the_nodes_ipv6_address() -> None:
    cluster = dual()
    solo = next(p.name for p in cluster.pods if p.name.startswith("solo-"))
    web_pods = sorted(p.name for p in cluster.pods if p.name.startswith("web-"))
    fake = FakeContext(cluster, answered_by(*web_pods))
    run(traffic.test_node_port_answers, ctx(fake), "node2", port(cluster, "node_port", "vd/web:http@IPv6"))
    fake.answer = answered_by(solo)
    run(traffic.test_node_port_preserves_client_ip, ctx(fake), "node1",
        port(cluster, "local_node_port", "vd/local:http@IPv6"))
    assert [(src, req["host"], req["port"], req["whoami"]) for src, req in fake.sent] == [
        ("outside", "fd00:58::12", 30080, False), ("outside", "fd00:58::11", 30082, True)]


def test_the_client_address_kept_by_etp_local_is_the_clients_ipv6_one() -> None:
    cluster = dual()
    solo = next(p.name for p in cluster.pods if p.name.startswith("solo-"))

    def wrong(req: dict) -> dict:
        return {**answered_by(solo)(req), "client_ips": ["fd00:58::11"]}  # the node's: masqueraded

    with pytest.raises(VerifyError, match=r"source IP was not preserved.*expected fd00:58::fe"):
        run(traffic.test_node_port_preserves_client_ip, ctx(FakeContext(cluster, wrong)), "node1",
            port(cluster, "local_node_port", "vd/local:http@IPv6"))


def test_an_ipv6_service_without_endpoints_must_refuse() -> None:
    cluster = dual()
    fake = FakeContext(cluster, answered_by("x"))
    run(traffic.test_no_endpoints_rejected, ctx(fake), Source("node1"),
        port(cluster, "no_endpoints", "vd/nobody:http@IPv6"))
    run(traffic.test_no_endpoints_node_port_rejected, ctx(fake), "node2",
        port(cluster, "no_endpoints_node_port", "vd/nobody:http@IPv6"))
    assert [(req["op"], req["host"]) for _, req in fake.sent] == [
        ("connect", port(cluster, "no_endpoints", "vd/nobody:http@IPv6").cluster_ip), ("connect", "fd00:58::12")]
    fake.answer = lambda req: {"ok": True, "outcome": "timeout", "seconds": 3.0}
    with pytest.raises(VerifyError, match="expected REJECT"):
        run(traffic.test_no_endpoints_rejected, ctx(fake), Source("node1"),
            port(cluster, "no_endpoints", "vd/nobody:http@IPv6"))


def test_a_source_without_an_ipv6_address_is_skipped_for_ipv6_traffic() -> None:
    cluster = dual()
    node_src = next(s for s in sources(cluster, ["node1"]) if s.pod)
    assert node_src.pod is not None
    v4_only = Source("node1", dataclasses.replace(node_src.pod, ips=(node_src.pod.ip,)))
    fake = FakeContext(cluster, answered_by("x"))
    with pytest.raises(pytest.skip.Exception, match="has no IPv6 address"):
        traffic.test_cluster_ip_answers(ctx(fake), v4_only, port(cluster, "cluster_ip", "vd/web:http@IPv6"))
    assert fake.sent == []


def test_service_url_of_each_family() -> None:
    cluster = dual()
    assert make_service_url(cluster, "web", "vd") == "http://10.100.0.10:80"
    assert make_service_url(cluster, "web", "vd", family=6) == "http://[fd00:10:96::10]:80"
    assert make_service_url(cluster, "web", "vd", via="nodeport", node="node2", family=6) == "http://[fd00:58::12]:30080"
    with pytest.raises(LookupError, match="no IPv4 cluster IP"):
        make_service_url(cluster, "web6", "vd", family=4)


# -- the rule checks of each family ---------------------------------------------------------------
def drifted(restore: str, needle: str) -> str:
    """A rules diff (the agent's form) where the live copy of the first rule holding `needle` differs."""
    line = next(ln for ln in restore.splitlines() if needle in ln)
    return f"--- live rules\n+++ desired rules\n@@ -1,3 +1,3 @@\n *nat\n-{line.replace('8080', '8081')}\n+{line}\n"


def test_ipv6_rule_drift_is_named_per_service_and_family() -> None:
    cluster = dual()
    art = node_artifacts(cluster, "node1")
    assert art.restore6 is not None
    # the live copy of web6's DNAT rule sends to port 8081
    diff6 = drifted(art.restore6, "--comment vd/web6:http -m tcp")
    fake = FakeContext(cluster, diff={DIFF_RULES: "", DIFF_RULES6: diff6})
    web6, spn = port(cluster, "all", "vd/web6:http@IPv6"), "vd/web6:http"
    with pytest.raises(VerifyError, match=rf"node1: ip6tables nat chain KUBE-SEP-\w+ \({spn}\) differs"):
        rules.test_service_rules_match_rendered(ctx(fake), "node1", web6)
    rules.test_service_rules_match_rendered(ctx(fake), "node1", port(cluster, "all", "vd/web:http@IPv6"))
    rules.test_service_rules_match_rendered(ctx(fake), "node1", port(cluster, "all", "vd/web:http"))
    rules.test_owned_chains_match_rendered(ctx(fake), "node1")
    jumps.test_jump_rules_present(ctx(fake), "node1")


def test_ipv6_drift_outside_service_chains_and_in_jumps_is_named_ip6tables() -> None:
    cluster = dual()
    diff6 = ("--- live rules\n+++ desired rules\n@@ -1,4 +1,3 @@\n *nat\n"
             "--A KUBE-POSTROUTING -j MASQUERADE\n-A PREROUTING -j STRAY\n"
             "+-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n")
    fake = FakeContext(cluster, diff={DIFF_RULES: "", DIFF_RULES6: diff6})
    with pytest.raises(VerifyError, match="node1: ip6tables nat chain KUBE-POSTROUTING differs"):
        rules.test_owned_chains_match_rendered(ctx(fake), "node1")
    with pytest.raises(VerifyError, match=r"node1: ip6tables jump rules into svcnet's chains differ .*1 missing"):
        jumps.test_jump_rules_present(ctx(fake), "node1")


def test_a_check_answer_without_the_ipv6_rules_diff_fails_rather_than_passes() -> None:
    """An agent that does not compare the ip6tables rules must not make their check pass."""
    cluster = dual()
    fake = FakeContext(cluster, diff={DIFF_RULES: ""})
    with pytest.raises(VerifyError, match="reported no IPv6 rules diff"):
        rules.test_owned_chains_match_rendered(ctx(fake), "node1")
    rules.test_service_rules_match_rendered(ctx(fake), "node1", port(cluster, "all", "vd/web:http"))


def test_a_single_stack_cluster_needs_no_ipv6_rules_diff() -> None:
    cluster = load_cluster([SEED])
    fake = FakeContext(cluster, diff={DIFF_RULES: ""})
    rules.test_owned_chains_match_rendered(ctx(fake), "node1")
    jumps.test_jump_rules_present(ctx(fake), "node1")


# -- the pods' addresses ----------------------------------------------------------------------------
class FakeHost:
    """A testinfra Host whose pod netns holds `addresses` on eth0 (as `ip -j addr` prints them)."""

    def __init__(self, addresses: list[str]):
        self.addresses = addresses

    def run(self, command: str, *args: str) -> Any:
        import json

        info = [{"local": a} for a in self.addresses]
        out = json.dumps([{"ifname": "eth0", "flags": ["UP"], "addr_info": info}])
        return dataclasses.make_dataclass("Out", ["succeeded", "stdout", "stderr"])(True, out, "")


def test_a_dual_stack_pod_must_hold_both_its_addresses() -> None:
    from svcnet.verify.checks import pods

    cluster = dual()
    pod = next(p for p in cluster.pods if p.name.startswith("web-"))
    assert len(pod.all_ips) == 2
    fake = FakeContext(cluster)
    fake.host = lambda node: FakeHost(list(pod.all_ips))  # type: ignore[attr-defined]
    pods.test_pod_has_its_ip(ctx(fake), pod)
    fake.host = lambda node: FakeHost([pod.ip])  # type: ignore[attr-defined]
    with pytest.raises(VerifyError, match=rf"has no address {pod.all_ips[1]} on eth0 \(has: {pod.ip}\)"):
        pods.test_pod_has_its_ip(ctx(fake), pod)
