"""Fast tests of verify's pure parts: the split test, diff reading, targets, the probe, the CLI's input errors."""

from __future__ import annotations

import contextlib
import errno
import random
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from svcnet.model.load import load_cluster
from svcnet.verify import probe
from svcnet.verify.checks.traffic import summary
from svcnet.verify.drift import netconf_drift, rules_drift, sort_drift
from svcnet.verify.plugin import make_service_url
from svcnet.verify.procnet import listening_ports
from svcnet.verify.stats import ALPHA, chi2_critical, chi2_sf, requests_for, split_test
from svcnet.verify.targets import (
    chain_owners,
    dataplane_skip_reason,
    external_addresses,
    in_source_ranges,
    node_cluster_endpoints,
    select_ports,
    sources,
)

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed"
FEATURES = Path(__file__).resolve().parent / "features"
PROTOCOLS = Path(__file__).resolve().parent / "protocols"
PODSERVER = REPO / "svcnet" / "agent" / "podserver.py"


# -- the split test ------------------------------------------------------------------------
@pytest.mark.parametrize(("x", "df", "p"), [(3.841459, 1, 0.05), (10.827566, 1, 0.001), (16.266236, 3, 0.001),
                                            (27.877165, 9, 0.001), (124.342, 100, 0.05)])
def test_chi2_sf_matches_table(x, df, p):
    assert chi2_sf(x, df) == pytest.approx(p, rel=1e-4)
    assert chi2_critical(p, df) == pytest.approx(x, rel=1e-4)


def test_skewed_split_is_flagged_and_fair_one_is_not():
    assert not split_test({"a": 140, "b": 60}, ["a", "b"]).ok  # chi2 = 32, p = 1.5e-8
    assert split_test({"a": 125, "b": 75}, ["a", "b"]).ok  # chi2 = 12.5, p = 4e-4: a fair sample can do this
    assert split_test({"a": 104, "b": 96}, ["a", "b"]).ok  # chi2 = 0.32
    dead = split_test({"a": 100, "b": 100}, ["a", "b", "c"])  # c got nothing
    assert not dead.ok and dead.p_value < ALPHA


def test_false_alarm_rate_is_about_alpha():
    """Fair samples (3 endpoints) are flagged about alpha of the time: checked at a measurable alpha."""
    rng = random.Random(7)
    names, alpha, trials = ["a", "b", "c"], 0.001, 3000
    n = requests_for(3, alpha)
    alarms = 0
    for _ in range(trials):
        counts: dict[str, int] = {}
        for _ in range(n):
            pick = rng.choice(names)
            counts[pick] = counts.get(pick, 0) + 1
        alarms += not split_test(counts, names, alpha).ok
    assert alarms <= 8  # expected 3 at alpha 0.001; P(>8) is about 0.4%


@pytest.mark.parametrize("k", [2, 3, 5, 10, 20])
def test_request_count_always_detects_a_silent_endpoint(k):
    """With one endpoint silent the statistic is >= n/(k-1) > critical, whatever the sample."""
    n = requests_for(k)
    assert n / (k - 1) > chi2_critical(ALPHA, k - 1)
    rng = random.Random(k)
    live = [f"e{i}" for i in range(k - 1)]
    counts: dict[str, int] = {}
    for _ in range(n):
        pick = rng.choice(live)
        counts[pick] = counts.get(pick, 0) + 1
    assert not split_test(counts, [*live, "dead"]).ok


# -- reading the agent's diffs ---------------------------------------------------------------
RULES_DIFF = """--- live rules
+++ desired rules
@@ -20,6 +20,7 @@
 *nat
 :KUBE-MARK-MASQ
--A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
 -A KUBE-SEP-RLSTDIELRTEAPY3D -s 10.244.1.240/32 -j KUBE-MARK-MASQ
--A KUBE-SEP-RLSTDIELRTEAPY3D -p tcp -m tcp -j DNAT --to-destination 10.244.1.240:8081
+-A KUBE-SEP-RLSTDIELRTEAPY3D -p tcp -m tcp -j DNAT --to-destination 10.244.1.240:8080
+-A KUBE-SERVICES -d 10.111.35.139/32 -p tcp -m comment --comment "k8s-test/service:http cluster IP" -j X
+-A KUBE-POSTROUTING -j MASQUERADE
 COMMIT
"""


def test_rules_drift_is_sorted_by_service_jump_and_rest():
    cluster = load_cluster([SEED])
    owners = chain_owners(cluster)
    lines = rules_drift(RULES_DIFF)
    assert [ln.table for ln in lines] == ["nat"] * 5
    drift = sort_drift(lines, owners)
    (spn,) = drift.by_service
    assert spn == "k8s-test/service:http"
    sep = [ln for ln in drift.by_service[spn] if ln.chain.startswith("KUBE-SEP-")]
    assert [ln.sign for ln in sep] == ["-", "+"] and "8081" in sep[0].text
    assert any(ln.chain == "KUBE-SERVICES" for ln in drift.by_service[spn])  # attributed by its comment
    assert [ln.chain for ln in drift.jumps] == ["PREROUTING"]
    assert [ln.chain for ln in drift.other] == ["KUBE-POSTROUTING"]
    assert "KUBE-SEP-RLSTDIELRTEAPY3D" in owners  # the SEP chain hash matches the rendered name


def test_netconf_drift_by_kind():
    diff = ("--- live netconf\n+++ desired netconf\n@@ -1,3 +1,3 @@\n-bridge cni0 10.244.1.1/24 down\n"
            "+bridge cni0 10.244.1.1/24 up\n sysctl net.ipv4.ip_forward = 1\n-route 10.244.2.0/24 via 1.2.3.4\n")
    assert netconf_drift(diff, "bridge") == ["-bridge cni0 10.244.1.1/24 down", "+bridge cni0 10.244.1.1/24 up"]
    assert netconf_drift(diff, "route") == ["-route 10.244.2.0/24 via 1.2.3.4"]
    assert netconf_drift(diff, "sysctl") == []


def test_listening_ports_from_proc_net():
    tcp = ("  sl  local_address rem_address   st\n"
           "   0: 00000000:1F90 00000000:0000 0A 00000000:00000000\n"
           "   1: 0100007F:0016 0100007F:D431 01 00000000:00000000\n")
    assert listening_ports(tcp) == {8080}
    udp = "   0: 00000000:0035 00000000:0000 07 00000000:00000000\n"
    assert listening_ports(udp, udp=True) == {53} and listening_ports(udp) == set()


# -- what gets checked -------------------------------------------------------------------------
def test_targets_of_the_feature_cluster():
    cluster = load_cluster([FEATURES])
    spns = {sel: [sp.spn for sp in select_ports(cluster, sel)] for sel in
            ("split", "affinity", "local_node_port", "no_endpoints", "no_endpoints_node_port")}
    assert spns == {"split": ["vf/local:http", "vf/outside:http", "vf/split:http"], "affinity": ["vf/sticky:http"],
                    "local_node_port": ["vf/local:http"], "no_endpoints": ["vf/nobody:http"],
                    "no_endpoints_node_port": ["vf/nobody:http"]}
    outside = next(sp for sp in cluster.service_ports if sp.name == "outside")
    reason = dataplane_skip_reason(cluster, outside)
    assert reason and "203.0.113.10:8080" in reason and "rules only" in reason
    assert dataplane_skip_reason(cluster, next(sp for sp in cluster.service_ports if sp.name == "split")) is None
    assert [s.label for s in sources(cluster, ["node1"])] == ["node1", "node1/" + min(
        p.name for p in cluster.pods if p.node_name == "node1")]


def test_targets_of_the_protocols_cluster():
    """UDP and SCTP ports of podserver pods get traffic checks; LoadBalancer IPs split by source ranges."""
    cluster = load_cluster([PROTOCOLS])
    assert all(dataplane_skip_reason(cluster, sp) is None for sp in cluster.service_ports)
    assert [sp.spn for sp in select_ports(cluster, "no_endpoints")] == ["vp/nobody:dns"]
    labels = {sel: [a.label for a in external_addresses(cluster, sel)] for sel in ("all", "open", "source_ranges")}
    assert labels == {"all": ["192.168.59.30-vp/ext:http", "192.168.59.11-vp/guarded:http", "192.168.59.10-vp/lb:dns"],
                      "open": ["192.168.59.30-vp/ext:http", "192.168.59.10-vp/lb:dns"],
                      "source_ranges": ["192.168.59.11-vp/guarded:http"]}
    guarded = next(sp for sp in cluster.service_ports if sp.name == "guarded")
    assert in_source_ranges("192.168.58.254", guarded) and not in_source_ranges("192.168.58.253", guarded)
    assert not in_source_ranges("fd00::1", guarded)


def test_a_port_podserver_is_not_told_to_answer_is_checked_for_rules_only(tmp_path):
    """A UDP (SCTP) container port of a podserver started without --udp (--sctp) gets no traffic."""
    text = (PROTOCOLS / "workloads.yaml").read_text()
    assert '"--udp", "--sctp"' in text
    for d in ("cluster.yaml", "services.yaml"):
        (tmp_path / d).write_text((PROTOCOLS / d).read_text())
    (tmp_path / "workloads.yaml").write_text(text.replace('"--udp", "--sctp"', '"--sctp"'))
    cluster = load_cluster([tmp_path])
    by_name = {sp.name: sp for sp in cluster.service_ports}
    reason = dataplane_skip_reason(cluster, by_name["dns"])
    assert reason and "not svcnet pods running podserver --udp with a UDP container port" in reason
    assert dataplane_skip_reason(cluster, by_name["assoc"]) is None  # --sctp is still there
    assert dataplane_skip_reason(cluster, by_name["ext"]) is None  # TCP needs no flag


def test_service_url():
    cluster = load_cluster([SEED])
    assert make_service_url(cluster, "service", "k8s-test") == "http://10.111.35.139:8080"
    assert make_service_url(cluster, "service", "k8s-test", via="nodeport", node="node2") == "http://192.168.56.12:30000"
    with pytest.raises(LookupError, match="no service k8s-test/nope"):
        make_service_url(cluster, "nope", "k8s-test")
    with pytest.raises(LookupError, match="no port named 'x'"):
        make_service_url(cluster, "service", "k8s-test", port_name="x")


# -- the probe, against a real podserver on loopback --------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def podserver():
    """A podserver on loopback answering HTTP and UDP on one free port (free for both: UDP is bound first)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        port = udp.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(PODSERVER), "--host", "127.0.0.1",
                             "--port", str(port), "--udp"], env={"POD_NAME": "pod-a", "PATH": "/usr/bin:/bin"},
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while probe.op_connect({"host": "127.0.0.1", "port": port, "timeout": 0.5})["outcome"] != "connected":
            assert time.monotonic() < deadline, "podserver did not start"
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_probe_counts_answers_and_whoami(podserver):
    got = probe.handle({"op": "http", "host": "127.0.0.1", "port": podserver, "count": 5, "timeout": 2})
    assert got["answers"] == {"pod-a": 5} and got["errors"] == {} and got["sent"] == 5
    who = probe.handle({"op": "http", "host": "127.0.0.1", "port": podserver, "path": "/whoami", "count": 2})
    assert who["answers"] == {"pod-a": 2} and who["client_ips"] == ["127.0.0.1"]


def test_probe_asks_over_udp_and_from_a_chosen_source(podserver):
    got = probe.handle({"op": "udp", "host": "127.0.0.1", "port": podserver, "count": 5, "timeout": 2})
    assert got["answers"] == {"pod-a": 5} and got["errors"] == {} and got["sent"] == 5, got
    who = probe.handle({"op": "udp", "host": "127.0.0.1", "port": podserver, "count": 2, "whoami": True,
                        "source": "127.0.0.2"})
    assert who["answers"] == {"pod-a": 2} and who["client_ips"] == ["127.0.0.2"], who
    http = probe.handle({"op": "http", "host": "127.0.0.1", "port": podserver, "whoami": True, "source": "127.0.0.3"})
    assert http["answers"] == {"pod-a": 1} and http["client_ips"] == ["127.0.0.3"], http
    bad = probe.handle({"op": "udp", "host": "127.0.0.1", "port": podserver, "source": "192.0.2.1"})
    assert bad["ok"] is False and "cannot send from 192.0.2.1" in bad["msg"]


def test_probe_sees_a_udp_port_refused():
    """A REJECT's ICMP port unreachable (here: the kernel's, for a closed port) is a refusal, not a timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    got = probe.handle({"op": "connect", "protocol": "udp", "host": "127.0.0.1", "port": port, "timeout": 3})
    assert got["outcome"] == "refused", got
    many = probe.handle({"op": "udp", "host": "127.0.0.1", "port": port, "count": 3, "timeout": 1})
    assert many["errors"] == {"refused": 3} and many["answers"] == {}, many


def test_a_silent_udp_server_times_out():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        got = probe.handle({"op": "connect", "protocol": "udp", "host": "127.0.0.1", "port": port, "timeout": 1})
        assert got["outcome"] == "timeout", got
        asked = probe.handle({"op": "udp", "host": "127.0.0.1", "port": port, "count": 3, "timeout": 0.3,
                              "max_timeouts": 2})
        assert asked["errors"] == {"timeout": 2} and asked["stopped"] == "2 timeouts", asked


def test_sctp_halves_speak_to_each_other_over_a_stream():
    """podserver's SCTP server loop and the probe's SCTP request, over TCP (the same one-to-one stream
    API; this kernel may have no SCTP), so what they exchange is tested wherever the tests run."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("podserver_under_test", PODSERVER)
    assert spec and spec.loader
    server = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(server)
    sock = server.listen("127.0.0.1", 0, socket.SOCK_STREAM)
    threading.Thread(target=server.serve_stream, args=(sock,), daemon=True).start()
    port = sock.getsockname()[1]
    try:
        req = {"host": "127.0.0.1", "port": port}
        assert probe.ask_sctp(req, 2.0, proto=0) == ("ok", {"pod": server.pod_name()})
        kind, info = probe.ask_sctp({**req, "whoami": True, "source": "127.0.0.4"}, 2.0, proto=0)
        assert kind == "ok" and info["client_ip"] == "127.0.0.4", info
    finally:
        sock.close()


def test_a_kernel_without_sctp_is_reported_not_failed(monkeypatch):
    real = socket.socket

    def no_sctp(family=-1, kind=-1, proto=0, *args):
        if proto == probe.IPPROTO_SCTP:
            raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")
        return real(family, kind, proto, *args)

    monkeypatch.setattr(socket, "socket", no_sctp)
    for req in ({"op": "sctp", "host": "127.0.0.1", "port": 9}, {"op": "connect", "protocol": "sctp",
                                                                  "host": "127.0.0.1", "port": 9}):
        reason = "the kernel where the probe runs has no SCTP sockets (Protocol not supported)"
        assert probe.handle(req) == {"ok": True, "unsupported": reason}


def test_probe_reports_refused_fast():
    port = _free_port()  # nothing listens: the kernel refuses at once
    got = probe.handle({"op": "connect", "host": "127.0.0.1", "port": port, "timeout": 3})
    # refused by the kernel, not timed out: the outcome says which (how fast is no test's business)
    assert got["outcome"] == "refused", got
    many = probe.handle({"op": "http", "host": "127.0.0.1", "port": port, "count": 4})
    assert many["errors"] == {"refused": 4} and many["answers"] == {}
    assert probe.handle({"op": "http"})["ok"] is False


def test_probe_retries_a_timed_out_request_once_when_asked():
    """A server that leaves its first connection unanswered, then answers every later one."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(10)
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            first, _ = srv.accept()
            held.append(first)  # accepted, never answered: the client times out
            while True:
                conn, _ = srv.accept()
                with conn:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.0 200 OK\r\n\r\npod-b\n")

    threading.Thread(target=serve, daemon=True).start()
    port = srv.getsockname()[1]
    try:
        got = probe.handle({"op": "http", "host": "127.0.0.1", "port": port, "count": 3, "timeout": 0.5,
                            "retry_timeouts": 1})
        assert got["answers"] == {"pod-b": 3} and got["errors"] == {} and got["retried"] == 1, got
        assert "retried after a timeout x1" in summary(got)
    finally:
        srv.close()
        for c in held:
            c.close()


def test_probe_without_retries_counts_the_timeout():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)  # never accepts: the request times out waiting for an answer
    try:
        got = probe.handle({"op": "http", "host": "127.0.0.1", "port": srv.getsockname()[1], "count": 2,
                            "timeout": 0.3, "max_timeouts": 5})
        assert got["errors"] == {"timeout": 2} and got["retried"] == 0, got
        again = probe.handle({"op": "http", "host": "127.0.0.1", "port": srv.getsockname()[1], "count": 1,
                              "timeout": 0.3, "retry_timeouts": 1, "max_timeouts": 5})
        assert again["errors"] == {"timeout": 1} and again["retried"] == 1, again  # a lasting fault still fails
    finally:
        srv.close()


# -- the command's input errors ------------------------------------------------------------------
def _svcnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "svcnet.cli.main", *args], capture_output=True, text=True,
                          timeout=60, cwd=REPO, stdin=subprocess.DEVNULL)


def test_verify_cli_rejects_bad_input_without_traceback(tmp_path):
    inv = tmp_path / "inv.yaml"
    inv.write_text("all:\n  hosts:\n    node1: {ansible_host: 127.0.0.1}\n")
    missing = _svcnet("verify", "-f", str(SEED), "-i", str(inv))
    assert missing.returncode == 4 and "node2 are not in the inventory" in missing.stderr
    bad = tmp_path / "svc.yaml"
    bad.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 99999}]}\n")
    invalid = _svcnet("verify", "-f", str(SEED), "-f", str(bad), "-i", str(inv))
    assert invalid.returncode == 4 and f"{bad}:4:" in invalid.stderr
    assert "Traceback" not in missing.stderr + invalid.stderr


def test_the_traffic_probes_run_isolated_from_root(podserver, tmp_path, monkeypatch):
    """No module planted in the current directory is imported by a probe, here or on a node."""
    from planted import plant, ran

    from svcnet.transport.gateway import Connector
    from svcnet.transport.inventory import load_inventory
    from svcnet.transport.ssh import Result
    from svcnet.verify.context import PROBE_BOOTSTRAP, VerifyContext
    from svcnet.verify.targets import Source

    cluster = load_cluster([SEED])
    (tmp_path / "inv.yaml").write_text("all:\n  hosts:\n    node1: {}\n"
                                       "    node2: {ansible_python_interpreter: /opt/py}\n")
    inventory = load_inventory(tmp_path / "inv.yaml")
    ctx = VerifyContext(cluster, inventory, Connector(inventory).gateway, outside="local")
    home = tmp_path / "home"
    home.mkdir()
    plant(home)
    monkeypatch.chdir(home)
    got = ctx.probe_outside({"op": "http", "host": "127.0.0.1", "port": podserver, "count": 2, "timeout": 2})
    assert got["answers"] == {"pod-a": 2} and ran(home) == ""

    sent: list[str] = []
    monkeypatch.setattr(ctx, "run", lambda node, command, stdin=b"", timeout=60: sent.append(command) or Result(
        0, '{"ok": true}\n', "", 0.0))
    pod = next(p for p in cluster.pods if p.node_name == "node2")
    ctx.probe(Source("node2", pod), {"op": "connect", "host": "127.0.0.1", "port": 1})
    ctx.probe(Source("node1"), {"op": "connect", "host": "127.0.0.1", "port": 1})
    isolated = ["-I", "-S", "-c", PROBE_BOOTSTRAP]
    assert [shlex.split(c) for c in sent] == [
        ["cd", "/", "&&", "exec", "ip", "netns", "exec", Source("node2", pod).netns, "/opt/py", *isolated],
        ["cd", "/", "&&", "exec", "/usr/bin/python3", *isolated]]


def test_traffic_checks_expect_each_nodes_topology() -> None:
    """With hints, a node's ClusterIP answers come only from the endpoints its topology allows
    (CategorizeEndpoints); a source svcnet cannot place (None) may see any usable endpoint."""
    cluster = load_cluster([REPO / "tests" / "golden" / "topology-zones.yaml"])
    ports = {sp.name: sp for sp in cluster.service_ports}

    def hps(sp, node):
        return sorted(ep.hostport for ep in node_cluster_endpoints(cluster, sp, node))

    web, api = ports["web"], ports["api"]
    assert hps(web, "node1") == ["10.244.1.5:8080"]
    assert hps(web, "node2") == ["10.244.2.5:8080", "10.244.2.6:8080"]
    assert hps(web, None) == ["10.244.1.5:8080", "10.244.2.5:8080", "10.244.2.6:8080"]
    assert hps(api, "node1") == ["10.244.1.9:8080"]
    assert hps(api, "node2") == ["10.244.2.9:8080"]


def nft_listing(svc: str, ep: str, rules: list[str], elements: list[str]) -> list[str]:
    """An `ip kube-proxy` table in the agent's normal form (nft_normal) with one long service chain."""
    return ["table ip kube-proxy {", "\tcomment \"rules for kube-proxy\"",
            "\tmap service-ips {", "\t\ttype ipv4_addr . inet_proto . inet_service : verdict",
            "\t\telements = {", *elements, "\t\t}", "\t}",
            "\tchain services {", "\t\tip daddr . meta l4proto . th dport vmap @service-ips", "\t}",
            f"\tchain {svc} {{", *rules, "\t}",
            f"\tchain {ep} {{", "\t\tjump mark-for-masquerade", "\t}", "}"]


def test_nft_rules_drift_names_the_chain_and_service_deep_in_a_table():
    """A drift line many lines below its chain's head (outside a hunk's 3 context lines) and a map
    element are attributed to their chain / map and their service port, through the agent's diff."""
    from svcnet.agent.node import PART_RULES, part_diff

    sp = load_cluster([SEED]).service_ports[0]
    owners = chain_owners(load_cluster([SEED]))
    svc, ep = next(n for n in owners if n.startswith("service-")), next(n for n in owners if n.startswith("endpoint-"))
    rules = [f"\t\tip saddr 10.0.0.{i} counter" for i in range(12)]
    element = f"\t\t\t10.111.35.139 . tcp . 8080 : goto {svc}"
    want = nft_listing(svc, ep, rules, [element])
    live = nft_listing(svc, ep, rules[:8] + rules[9:], [])  # a rule gone deep in the chain, an element gone
    diff = part_diff(PART_RULES, live, want)
    lines = rules_drift(diff)
    assert [(ln.sign, ln.table, ln.where) for ln in lines] == [
        ("+", "ip kube-proxy", "map service-ips"), ("+", "ip kube-proxy", f"chain {svc}")]
    drift = sort_drift(lines, owners)
    assert list(drift.by_service) == [sp.spn] and len(drift.by_service[sp.spn]) == 2
    assert not drift.jumps and not drift.other
    gone = rules_drift(part_diff(PART_RULES, want, [*want[:-4], "}"]))  # the endpoint chain gone live
    assert {ln.where for ln in gone} == {f"chain {ep}"} and {ln.sign for ln in gone} == {"-"}
    assert sort_drift(gone, owners).by_service.keys() == {sp.spn}
