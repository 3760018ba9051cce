"""The nftables renderer (render/nftables.py) on hand-built inputs, its canonical sort, the script's
shape, `svcnet render` in nftables mode, and the script loaded by the real `nft` in a scratch netns."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import nftrealpath
import pytest
from click.testing import CliRunner

from svcnet.model.types import (
    DETECT_BRIDGE,
    DETECT_IFACE_PREFIX,
    DETECT_NONE,
    LOAD_BALANCER,
    Endpoint,
    LocalDetector,
    ProxierSettings,
    ServicePort,
)
from svcnet.render.iptables import RenderError
from svcnet.render.nftables import KUBE_PROXY_VERSION, canonical_sort, render_buffers, render_script, script

SETTINGS = ProxierSettings(
    node_name="test-node", node_ips=("192.168.0.2",), masquerade_mark="0x4000",
    local_detector=LocalDetector(cidr="10.0.0.0/8"), nodeport_addresses=("192.168.0.2/32",),
    proxy_mode="nftables", service_cidrs=("172.30.0.0/16",),
)
SVC1 = ServicePort("ns1", "svc1", "p80", "TCP", 80, "172.30.0.41", endpoints=(Endpoint("10.180.0.1", 80),))


def _rules(table: str, chain: str) -> list[str]:
    head = f"add rule ip kube-proxy {chain} "
    return [ln.removeprefix(head) for ln in table.splitlines() if ln.startswith(head)]


# --------------------------------------------------------------------------- canonical sort


def test_sort_orders_by_kind_then_name_and_keeps_rule_order() -> None:
    text = "\n".join([
        "# a comment",
        "add element ip kube-proxy cluster-ips { 172.30.0.2 }",
        "add rule ip kube-proxy b z-first",
        "add element ip kube-proxy cluster-ips { 172.30.0.1 }",
        "",
        "add map ip kube-proxy m { type inet_proto . inet_service : verdict ; }",
        "add rule ip kube-proxy a only",
        "add rule ip kube-proxy b a-second",
        "add set ip kube-proxy s { type ipv4_addr ; }",
        "add chain ip kube-proxy b",
        "add chain ip kube-proxy a",
        "add table ip kube-proxy { comment \"rules for kube-proxy\" ; }",
    ])
    assert canonical_sort(text).split("\n") == [
        'add table ip kube-proxy { comment "rules for kube-proxy" ; }',
        "add chain ip kube-proxy a",
        "add chain ip kube-proxy b",
        "add rule ip kube-proxy a only",
        "add rule ip kube-proxy b z-first",  # rules keep their order within a chain
        "add rule ip kube-proxy b a-second",
        "add set ip kube-proxy s { type ipv4_addr ; }",
        "add map ip kube-proxy m { type inet_proto . inet_service : verdict ; }",
        "add element ip kube-proxy cluster-ips { 172.30.0.1 }",
        "add element ip kube-proxy cluster-ips { 172.30.0.2 }",
    ]


def test_sort_compares_bytes_not_words() -> None:
    # "a-b" < "a/b" < "ab" byte-wise (0x2d < 0x2f < 0x62): the name decides before the rest of the line.
    lines = ["add chain ip kube-proxy ab", "add chain ip kube-proxy a/b", "add chain ip kube-proxy a-b"]
    assert canonical_sort("\n".join(lines)).split("\n") == sorted(lines)


DUMPS = [n for n in nftrealpath.names() if (nftrealpath.NFT_VECTOR_DIR / f"{n}.expected.nft").exists()]


@pytest.mark.parametrize("name", DUMPS)
def test_sort_is_idempotent_on_the_upstream_dumps(name: str) -> None:
    expected = nftrealpath.expected(name)
    assert canonical_sort(expected) == expected


def test_sort_refuses_the_script_preamble() -> None:
    with pytest.raises(ValueError, match="not a table dump line"):
        canonical_sort("add table ip kube-proxy\ndelete table ip kube-proxy")


# --------------------------------------------------------------------------- the script


def test_script_replaces_only_svcnets_table_and_names_the_mode() -> None:
    text = render_script(SETTINGS, [SVC1])
    lines = text.splitlines()
    assert lines[0].startswith("# svcnet: kube-proxy nftables mode") and KUBE_PROXY_VERSION in lines[0]
    body = [ln for ln in lines if not ln.startswith("#")]
    assert body[:3] == ["add table ip kube-proxy", "delete table ip kube-proxy",
                        'add table ip kube-proxy { comment "rules for kube-proxy" ; }']
    for ln in body:  # every statement is about table ip kube-proxy, nothing else on the node
        verb, kind, family, table = ln.split(" ")[:4]
        assert (verb, family, table) in {("add", "ip", "kube-proxy"), ("delete", "ip", "kube-proxy")}, ln
        assert kind in {"table", "chain", "set", "map", "element", "rule"}, ln


def test_script_declares_before_it_refers() -> None:
    """Load order: table, chains, sets, maps, elements, rules (a fresh table loads in one pass)."""
    body = [ln.split(" ")[1] for ln in render_script(SETTINGS, [SVC1]).splitlines()[4:]]
    order = ["table", "chain", "set", "map", "element", "rule"]
    assert [order.index(k) for k in body] == sorted(order.index(k) for k in body)


def test_cluster_ip_of_a_multi_port_service_is_one_element() -> None:
    p443 = dataclasses.replace(SVC1, port_name="p443", port=443)
    table = render_buffers(SETTINGS, [SVC1, p443]).dump()
    assert table.count("add element ip kube-proxy cluster-ips { 172.30.0.41 }") == 1
    assert "add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 443 : goto service-" in table


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(("detector", "rule"), [
    (LocalDetector(cidr="10.0.0.0/8"), "ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade"),
    (LocalDetector(DETECT_BRIDGE, interface="cni0"), "ip daddr 172.30.0.41 iif != cni0 jump mark-for-masquerade"),
    (LocalDetector(DETECT_IFACE_PREFIX, interface="veth"),
     "ip daddr 172.30.0.41 iifname != veth* jump mark-for-masquerade"),
])
def test_local_detectors_spell_kube_proxys_nft_matches(detector: LocalDetector, rule: str) -> None:
    table = render_buffers(dataclasses.replace(SETTINGS, local_detector=detector), [SVC1]).dump()
    assert _rules(table, "service-ULMVA6XW-ns1/svc1/tcp/p80")[0] == rule


def test_no_detector_no_clusterip_masquerade_unless_masquerade_all() -> None:
    none = dataclasses.replace(SETTINGS, local_detector=LocalDetector(DETECT_NONE))
    assert _rules(render_buffers(none, [SVC1]).dump(), "service-ULMVA6XW-ns1/svc1/tcp/p80") == [
        "numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }"]
    all_ = dataclasses.replace(none, masquerade_all=True)
    assert _rules(render_buffers(all_, [SVC1]).dump(), "service-ULMVA6XW-ns1/svc1/tcp/p80")[0] == \
        "ip daddr 172.30.0.41 jump mark-for-masquerade"


def test_nodeport_addresses_matching_all_drop_the_nodeport_ips_set() -> None:
    table = render_buffers(dataclasses.replace(SETTINGS, nodeport_addresses=()), [SVC1]).dump()
    assert "nodeport-ips" not in table
    assert _rules(table, "services")[1] == \
        "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports"
    assert _rules(table, "nodeport-endpoints-check") == [
        "ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports"]


def test_nodeport_ips_skip_loopback_and_other_addresses() -> None:
    s = dataclasses.replace(SETTINGS, node_ips=("192.168.0.2", "127.0.0.1", "192.168.1.2", "10.9.9.9"),
                            nodeport_addresses=("192.168.0.0/16", "127.0.0.0/8"))
    table = render_buffers(s, [SVC1]).dump()
    elements = [ln for ln in table.splitlines() if "element ip kube-proxy nodeport-ips" in ln]
    assert elements == ["add element ip kube-proxy nodeport-ips { 192.168.0.2 }",
                        "add element ip kube-proxy nodeport-ips { 192.168.1.2 }"]


def test_no_service_cidr_no_unallocated_drop() -> None:
    table = render_buffers(dataclasses.replace(SETTINGS, service_cidrs=()), [SVC1]).dump()
    assert _rules(table, "cluster-ips-check") == [
        'ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"']


def test_source_ranges_containing_the_node_allow_the_lb_ips() -> None:
    lb = dataclasses.replace(SVC1, type=LOAD_BALANCER, node_port=30080, lb_ips=("1.2.3.4",),
                             lb_source_ranges=("192.168.0.0/24", "203.0.113.0/25"))
    table = render_buffers(SETTINGS, [lb]).dump()
    assert _rules(table, "firewall-ULMVA6XW-ns1/svc1/tcp/p80") == [
        "ip saddr != { 192.168.0.0/24 , 203.0.113.0/25 , 1.2.3.4 } drop"]
    away = render_buffers(dataclasses.replace(SETTINGS, node_ips=("192.168.7.2",)), [lb]).dump()
    assert _rules(away, "firewall-ULMVA6XW-ns1/svc1/tcp/p80") == [
        "ip saddr != { 192.168.0.0/24 , 203.0.113.0/25 } drop"]


@pytest.mark.parametrize(("change", "message"), [
    ({"masquerade_mark": "0x4000; flush ruleset"}, "masquerade mark"),
    ({"local_detector": LocalDetector(DETECT_BRIDGE, interface='cni0" accept')}, "local detector argument"),
])
def test_unsafe_settings_are_refused(change: dict, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render_buffers(dataclasses.replace(SETTINGS, **change), [SVC1])


@pytest.mark.parametrize(("change", "message"), [
    ({"name": 'svc1" ; flush ruleset ; "'}, "invalid namespace, name or port name"),
    ({"cluster_ip": "172.30.0.41 } ; flush ruleset"}, "not a canonical IP"),
    ({"protocol": "ICMP"}, "unsupported protocol"),
])
def test_unsafe_service_values_are_refused(change: dict, message: str) -> None:
    with pytest.raises(RenderError, match=message):
        render_buffers(SETTINGS, [dataclasses.replace(SVC1, **change)])


# --------------------------------------------------------------------------- the CLI and the gate

CLUSTER = """\
apiVersion: svcnet.dev/v1alpha1
kind: Cluster
metadata: {name: t}
spec:
  serviceCIDR: 172.30.0.0/16
  proxy:
    mode: nftables
  nodes:
    - {name: node1, addresses: [192.168.56.11], podCIDR: 10.244.1.0/24}
---
apiVersion: v1
kind: Service
metadata: {name: svc1, namespace: ns1}
spec:
  clusterIP: 172.30.0.41
  ports: [{name: p80, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc1-1, namespace: ns1, labels: {kubernetes.io/service-name: svc1}}
addressType: IPv4
ports: [{name: p80, port: 80, protocol: TCP}]
endpoints: [{addresses: [10.180.0.1]}]
"""


@pytest.fixture
def description(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(CLUSTER)
    return path


def test_validate_accepts_nftables_mode(description: Path) -> None:
    from svcnet.cli.main import cli

    run = CliRunner().invoke(cli, ["validate", str(description)])
    assert run.exit_code == 0, run.output


def test_render_prints_the_nft_script_and_its_canonical_table(description: Path) -> None:
    from svcnet.cli.main import cli

    plain = CliRunner().invoke(cli, ["render", "-f", str(description), "--node", "node1"])
    canonical = CliRunner().invoke(cli, ["render", "-f", str(description), "--node", "node1", "--canonical"])
    assert plain.exit_code == canonical.exit_code == 0, plain.output + canonical.output
    assert plain.output.startswith("# svcnet: kube-proxy nftables mode")
    assert "add table ip kube-proxy\ndelete table ip kube-proxy\n" in plain.output
    table = [ln for ln in plain.output.splitlines()[4:]]
    assert canonical.output == canonical_sort("\n".join(table)) + "\n"
    assert sorted(canonical.output.splitlines()) == sorted(table) != canonical.output.splitlines()
    assert "add rule ip kube-proxy masquerading mark and 0x00004000 == 0 return" in table  # bit 14, %#08x
    jumps = CliRunner().invoke(cli, ["render", "-f", str(description), "--node", "node1", "--jumps"])
    assert jumps.exit_code == 2 and "nftables mode, which has no jump rules" in jumps.output


def test_render_out_writes_rules_nft_instead_of_the_iptables_files(description: Path, tmp_path: Path) -> None:
    from svcnet.cli.main import cli

    out = tmp_path / "out"
    run = CliRunner().invoke(cli, ["render", "-f", str(description), "--out", str(out)])
    assert run.exit_code == 0, run.output
    assert sorted(p.name for p in (out / "node1").iterdir()) == [
        "health.json", "netconf.sh", "netconf.state", "rules.nft"]
    plain = CliRunner().invoke(cli, ["render", "-f", str(description), "--node", "node1"])
    assert (out / "node1" / "rules.nft").read_text() == plain.output


def test_nftables_masquerade_settings_come_from_proxy_nftables(description: Path) -> None:
    from svcnet.cli.main import cli

    description.write_text(CLUSTER.replace("    mode: nftables\n", "    mode: nftables\n"
                                           "    iptables: {masqueradeBit: 3, masqueradeAll: false}\n"
                                           "    nftables: {masqueradeBit: 5, masqueradeAll: true}\n"))
    run = CliRunner().invoke(cli, ["render", "-f", str(description), "--node", "node1"])
    assert run.exit_code == 0, run.output
    assert "add rule ip kube-proxy mark-for-masquerade mark set mark or 0x00000020\n" in run.output
    assert "ip daddr 172.30.0.41 jump mark-for-masquerade\n" in run.output


# --------------------------------------------------------------------------- the real nft


def _nft_in_scratch_netns(script: str) -> subprocess.CompletedProcess[str]:
    """Load `script`, list the table, load it again and list again, in a network namespace of its own
    (gone on exit); prints the tables, the first listing, and `same` if the second equals it."""
    if shutil.which("nft") is None or shutil.which("unshare") is None:
        pytest.skip("needs nft and unshare")
    family = "ip6" if "delete table ip6 " in script else "ip"
    return subprocess.run(
        ["unshare", "--net", "sh", "-ec",
         'd=$(mktemp -d); trap \'rm -rf "$d"\' EXIT; cat > "$d/s"; '
         f'nft -f "$d/s"; nft list table {family} kube-proxy > "$d/a"; '
         f'nft -f "$d/s"; nft list table {family} kube-proxy > "$d/b"; '
         'nft list tables; cat "$d/a"; cmp -s "$d/a" "$d/b" && echo same'],
        input=script, text=True, capture_output=True, timeout=120, check=False)


def _check_loads(script: str, table: str, family: str = "ip") -> None:
    run = _nft_in_scratch_netns(script)
    if run.returncode and "Operation not permitted" in run.stderr:
        pytest.skip("needs CAP_NET_ADMIN (root) for a network namespace")
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"table {family} kube-proxy\n")  # the only table there
    assert run.stdout.endswith("\nsame\n")
    listed = run.stdout
    for line in table.splitlines():  # every chain and set the script adds is in the kernel's table
        kind, name_ = line.split(" ")[1], line.split(" ")[4]
        if kind in ("chain", "set", "map"):
            assert f"\t{kind} {name_} {{" in listed, line


@pytest.mark.parametrize("name", ["overall", "load-balancer", "internal-external-masquerade-masquerade-all",
                                  "repeated-9-empty-endpoints"])
def test_nft_loads_the_script_twice_into_a_fresh_namespace(name: str, tmp_path: Path) -> None:
    """The script is one valid `nft -f` transaction, and replaying it replaces the table with the same
    one; the root namespace's ruleset is never touched (unshare --net)."""
    result = nftrealpath.run(nftrealpath.raw(name), tmp_path)
    assert result.errors == ()
    _check_loads(result.script, result.table)


def test_nft_loads_an_ipv6_script() -> None:
    from test_nft_vectors_direct import _table

    table = _table("nodeports-ipv6")
    _check_loads(script("test-node", table, 6), table, "ip6")
