"""`svcnet demo`'s walk without a lab: the seed article's chains in each proxy mode, and the
command-line errors that come before any lab is brought up."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from svcnet.cli.demo_walk import walk_text
from svcnet.cli.main import cli
from svcnet.model.load import check_paths
from svcnet.model.types import Cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLIENT = "192.168.56.254"  # the lab client's address in the seed's network
SVC = "service-TA7VYVDI-k8s-test/service/tcp/http"
EP1 = "endpoint-QDALK7BT-k8s-test/service/tcp/http__10.244.1.240/8080"
EP2 = "endpoint-XWTIQ6QU-k8s-test/service/tcp/http__10.244.2.124/8080"
EXT = "external-TA7VYVDI-k8s-test/service/tcp/http"


def cluster_of(path: Path) -> Cluster:
    checked = check_paths([str(path)])
    assert checked.build is not None, checked.diagnostics
    return checked.build.cluster


def walk(path: Path) -> str:
    cluster = cluster_of(path)
    return walk_text(cluster, "node1", cluster.service_ports[0], CLIENT)


def test_the_iptables_walk_prints_what_it_always_printed() -> None:
    # The README's and the lab tests' walk, byte for byte (what demo printed before nftables mode).
    assert walk(EXAMPLES / "seed") == """
The path of a packet through the nat table (svcnet explain on node1):
from node1 to 10.111.35.139:8080/TCP (k8s-test/service:http):
  KUBE-SERVICES → KUBE-SVC-AEK5USLJ4PTM5AYE → KUBE-SEP-RLSTDIELRTEAPY3D → DNAT to 10.244.1.240:8080   (50%)
  KUBE-SERVICES → KUBE-SVC-AEK5USLJ4PTM5AYE → KUBE-SEP-XDFECEZKUTXNGVIM → DNAT to 10.244.2.124:8080   (50%)
"""


def sections(text: str) -> dict[str, list[str]]:
    """The walk's table pieces under the name of the article's chain they stand for."""
    pieces = text.split("\nThe path of a packet")[0]
    out: dict[str, list[str]] = {}
    for line in pieces.splitlines():
        if line.startswith("KUBE-"):
            out[line.split(":")[0]] = current = []
        elif line.startswith("  "):
            current.append(line.strip())
    return out


def test_the_nftables_walk_names_the_tables_pieces_for_each_of_the_articles_chains() -> None:
    text = walk(EXAMPLES / "seed-nftables")
    assert "The seed article's chains in nftables terms (table ip kube-proxy on node1," in text
    assert sections(text) == {
        "KUBE-SERVICES": [f"map service-ips: 10.111.35.139 . tcp . 8080 : goto {SVC}",
                          "chain services: ip daddr . meta l4proto . th dport vmap @service-ips"],
        "KUBE-SVC-…": [f"chain {SVC}: ip daddr 10.111.35.139 ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
                       f"chain {SVC}: numgen random mod 2 vmap {{ 0 : goto {EP1} , 1 : goto {EP2} }}"],
        "KUBE-SEP-…": [f"chain {EP1}: ip saddr 10.244.1.240 jump mark-for-masquerade",
                       f"chain {EP1}: meta l4proto tcp dnat to 10.244.1.240:8080",
                       f"chain {EP2}: ip saddr 10.244.2.124 jump mark-for-masquerade",
                       f"chain {EP2}: meta l4proto tcp dnat to 10.244.2.124:8080"],
        "KUBE-MARK-MASQ, KUBE-POSTROUTING": ["chain mark-for-masquerade: mark set mark or 0x00004000",
                                             "chain nat-postrouting: jump masquerading",
                                             "chain masquerading: mark and 0x00004000 == 0 return",
                                             "chain masquerading: mark set mark xor 0x00004000",
                                             "chain masquerading: masquerade fully-random"],
        "KUBE-NODEPORTS, KUBE-EXT-…": [
            f"map service-nodeports: tcp . 30000 : goto {EXT}",
            "chain services: fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap "
            "@service-nodeports",
            f"chain {EXT}: jump mark-for-masquerade", f"chain {EXT}: goto {SVC}"],
    }


def test_the_nftables_walk_traces_the_cluster_ip_and_the_node_port_through_them() -> None:
    paths = walk(EXAMPLES / "seed-nftables").split("\nThe path of a packet through table ip kube-proxy "
                                                   "(svcnet explain on node1):\n")[1]
    assert paths == f"""from node1 to 10.111.35.139:8080/TCP (k8s-test/service:http):
  services → {SVC} → {EP1} → DNAT to 10.244.1.240:8080 → masquerading   (50%)
  services → {SVC} → {EP2} → DNAT to 10.244.2.124:8080 → masquerading   (50%)
from the client {CLIENT} to the NodePort 192.168.56.11:30000/TCP:
  services → {EXT} → {SVC} → {EP1} → DNAT to 10.244.1.240:8080 → masquerading   (50%)
  services → {EXT} → {SVC} → {EP2} → DNAT to 10.244.2.124:8080 → masquerading   (50%)
"""


def test_with_node_port_addresses_the_walk_shows_the_nodeport_ips_set(tmp_path: Path) -> None:
    desc = tmp_path / "seed"
    shutil.copytree(EXAMPLES / "seed-nftables", desc)
    cluster_yaml = desc / "cluster.yaml"
    cluster_yaml.write_text(cluster_yaml.read_text().replace(
        "    detectLocalMode: ClusterCIDR\n",
        "    detectLocalMode: ClusterCIDR\n    nodePortAddresses: [192.168.56.0/24]\n"))
    nodeports = sections(walk(desc))["KUBE-NODEPORTS, KUBE-EXT-…"]
    assert nodeports[:3] == [
        f"map service-nodeports: tcp . 30000 : goto {EXT}",
        "chain services: ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        "set nodeport-ips: 192.168.56.11"]


def test_a_local_external_policy_shows_the_local_chain_the_node_port_goes_through(tmp_path: Path) -> None:
    desc = tmp_path / "seed"
    shutil.copytree(EXAMPLES / "seed-nftables", desc)
    service = desc / "service.yaml"
    service.write_text(service.read_text().replace("  selector:", "  externalTrafficPolicy: Local\n  selector:"))
    text = walk(desc)
    local = "local-TA7VYVDI-k8s-test/service/tcp/http"
    assert f"chain {local}: numgen random mod 1 vmap {{ 0 : goto {EP1} }}" in sections(text)["KUBE-SVC-…"]
    assert f"chain {EXT}: goto {local}" in sections(text)["KUBE-NODEPORTS, KUBE-EXT-…"]
    assert f"  services → {EXT} → {local} → {EP1} → DNAT to 10.244.1.240:8080   (100%)\n" in text


def test_a_service_without_a_node_port_has_no_nodeport_section(tmp_path: Path) -> None:
    desc = tmp_path / "seed"
    shutil.copytree(EXAMPLES / "seed-nftables", desc)
    service = desc / "service.yaml"
    text = re.sub(r"\n\s*nodePort: 30000", "", service.read_text()).replace("type: NodePort", "type: ClusterIP")
    service.write_text(text)
    out = walk(desc)
    assert "KUBE-NODEPORTS" not in out and "NodePort" not in out
    assert out.count("→ DNAT to 10.244.") == 2


@pytest.mark.parametrize(("args", "message"), [
    (("--mode", "bogus"), "Invalid value for '--mode': 'bogus' is not one of 'iptables', 'nftables'"),
    (("-f", str(EXAMPLES / "seed"), "--mode", "nftables"),
     "--mode nftables: the description sets proxy.mode: iptables"),
    (("-f", str(EXAMPLES / "seed-nftables"), "--mode", "iptables"),
     "--mode iptables: the description sets proxy.mode: nftables"),
])
def test_a_mode_it_cannot_show_is_a_usage_error_before_any_lab(args: tuple[str, ...], message: str) -> None:
    from svcnet.lab import LabError, load_lab

    res = CliRunner().invoke(cli, ["demo", *args, "--name", "s14-never-created"])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    with pytest.raises(LabError):
        load_lab("s14-never-created")
