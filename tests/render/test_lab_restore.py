"""Load rendered rulesets into real iptables inside a scratch network namespace (never the host's)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator

import pytest
from prereq import unavailable
from render_helpers import make_port, make_settings

from svcnet.model.types import Endpoint, NodeFacts
from svcnet.render.chains import is_service_chain, service_chain_names
from svcnet.render.dump import parse_dump
from svcnet.render.iptables import render_restore
from svcnet.render.jumps import jump_rules

pytestmark = pytest.mark.lab

NS = f"svcnet-render-{os.getpid()}"


def _run(*args: str, stdin: str | None = None) -> str:
    """Run a command inside the scratch namespace (argument list, no shell)."""
    proc = subprocess.run(["ip", "netns", "exec", NS, *args], input=stdin, capture_output=True,
                          text=True, timeout=30, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables-restore"):
        unavailable("needs root, iproute2 and iptables")
    subprocess.run(["ip", "netns", "add", NS], check=True, timeout=10)
    try:
        _run("ip", "link", "set", "lo", "up")
        yield NS
    finally:
        subprocess.run(["ip", "netns", "delete", NS], check=False, timeout=10)


def _ports():
    eps3 = tuple(Endpoint(ip=f"10.180.0.{i}", port=8080, node_name="lab-node" if i == 1 else "other")
                 for i in (1, 2, 3))
    return [
        make_port(name="affinity", endpoints=eps3[:2], affinity_timeout=10800),
        make_port(name="empty", eps=0, cluster_ip="172.30.0.50"),
        make_port(name="lb", endpoints=eps3, type="LoadBalancer", node_port=30080, lb_ips=("5.6.7.8",),
                  lb_source_ranges=("203.0.113.0/25",), external_ips=("192.168.99.22",), cluster_ip="172.30.0.42"),
        make_port(name="local", endpoints=eps3, type="NodePort", node_port=30081, cluster_ip="172.30.0.43",
                  external_traffic_policy="Local"),
        make_port(name="stat", endpoints=eps3, cluster_ip="172.30.0.44", protocol="UDP", port_name="dns"),
    ]


def _kube_rule_counts(text: str, table: str) -> Counter[str]:
    dump = parse_dump(text, strict=False)
    t = dump.tables.get(table)
    return Counter({name: len(ch.rules) for name, ch in t.chains.items() if name.startswith("KUBE-")} if t else {})


def test_rendered_ruleset_loads_in_real_iptables(netns: str) -> None:
    settings = make_settings(node_name="lab-node", masquerade_mark="0x00004000",
                             facts=NodeFacts(random_fully=True))
    ports = _ports()
    text = render_restore(settings, ports)
    _run("iptables-restore", "--test", "--noflush", stdin=text)
    _run("iptables-restore", "--noflush", stdin=text)

    nat = _run("iptables-save", "-t", "nat")
    svc = service_chain_names(ports[0])[0]
    assert f":{svc} " in nat
    assert "--random-fully" in nat and "-m recent" in nat and "-m statistic" in nat
    assert _kube_rule_counts(nat, "nat") == _kube_rule_counts(text, "nat")
    filt = _run("iptables-save", "-t", "filter")
    assert _kube_rule_counts(filt, "filter") == _kube_rule_counts(text, "filter")
    assert "-j REJECT" in filt

    # Jump rules: applied in file order with -C / -I CHAIN 1, as kube-proxy's EnsureRule(Prepend).
    for rule in jump_rules(settings):
        check = subprocess.run(["ip", "netns", "exec", NS, "iptables", *rule.check_args()],
                               capture_output=True, timeout=10, check=False)
        if check.returncode != 0:
            _run("iptables", *rule.prepend_args())
    inp = [ln for ln in _run("iptables-save", "-t", "filter").splitlines() if ln.startswith("-A INPUT ")]
    assert [ln.rsplit("-j ", 1)[1] for ln in inp] == [
        "KUBE-FIREWALL", "KUBE-PROXY-FIREWALL", "KUBE-NODEPORTS", "KUBE-EXTERNAL-SERVICES"]

    # Second sync without two services: their chains become stale and are deleted.
    existing = [name for name in parse_dump(nat, strict=False).tables["nat"].chains if is_service_chain(name)]
    remaining = [p for p in ports if p.name not in ("affinity", "lb")]
    second = render_restore(settings, remaining, existing)
    _run("iptables-restore", "--noflush", stdin=second)
    nat2 = _run("iptables-save", "-t", "nat")
    assert f":{svc} " not in nat2
    assert f":{service_chain_names(ports[2])[3]} " not in nat2  # KUBE-FW of the LB service
    assert f":{service_chain_names(ports[4])[0]} " in nat2
    assert _kube_rule_counts(nat2, "nat") == _kube_rule_counts(second, "nat")


EMPTY6 = """\
apiVersion: v1
kind: Service
metadata: {name: empty6, namespace: ns1}
spec:
  ipFamilies: [IPv6]
  clusterIP: "fd00:10:96::30"
  ports: [{name: http, port: 80}]
"""


def test_the_ipv6_restore_loads_into_ip6tables_and_rejects_with_icmpv6(netns: str, tmp_path) -> None:
    """The rules6 a dual-stack description renders load with ip6tables-restore (the IPv6 local
    detector, [ip]:port DNAT targets, `! -d ::1/128`), and a Service without endpoints is
    refused as ip6tables writes it: kube-proxy's `-j REJECT` becomes an ICMPv6 port unreachable."""
    from pathlib import Path

    from svcnet.model.load import check_paths
    from svcnet.render.artifacts import node_artifacts

    if not shutil.which("ip6tables-restore"):
        unavailable("needs ip6tables")
    extra = tmp_path / "empty6.yaml"
    extra.write_text(EMPTY6)
    golden = Path(__file__).resolve().parents[1] / "golden" / "dual-stack.yaml"
    checked = check_paths([golden, extra], ipv6=True)
    assert checked.ok and checked.build is not None, [str(d) for d in checked.diagnostics]
    restore6 = node_artifacts(checked.build.cluster, "node1").restore6
    assert restore6 is not None
    _run("ip6tables-restore", "--test", "--noflush", stdin=restore6)
    _run("ip6tables-restore", "--noflush", stdin=restore6)
    saved = _run("ip6tables-save")
    assert ('-A KUBE-SERVICES -d fd00:10:96::30/128 -p tcp -m comment --comment "ns1/empty6:http has no endpoints" '
            "-m tcp --dport 80 -j REJECT --reject-with icmp6-port-unreachable") in saved
    assert "--to-destination [fd00:10:244:1::5]:8080" in saved
    assert "! -s fd00:10:244::/56" in saved
    assert ('-A KUBE-SERVICES ! -d ::1/128 -m comment --comment "kubernetes service nodeports; NOTE: this must be '
            'the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS') in saved
    # The IPv4 tables stay as they were: the IPv6 ruleset is ip6tables' own.
    assert "KUBE-" not in _run("iptables-save")
