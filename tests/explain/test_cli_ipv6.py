"""`svcnet explain` traces IPv6 packets through the node's rules6.restore (iptables mode).

The CLI refuses IPv6 descriptions until svcnet applies IPv6 (svcnet/model/semantic/ipv6.py), so the
dual-stack traces go through `trace_packet`, the function the command prints, with a model built with
the gate lifted (`check_paths(..., ipv6=True)`, as tests/render does).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from svcnet.cli.explain import SAVE_COMMANDS, _save_command, explain, trace_packet
from svcnet.explain.report import render_json
from svcnet.model.load import check_paths
from svcnet.model.types import Cluster

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "dual-stack.yaml"
SEED = ROOT / "examples" / "seed"
WEB_V4, WEB_V6, WEB6 = "10.96.0.10", "fd00:10:96::10", "fd00:10:96::20"  # the golden's ClusterIPs
POD_V4, POD_V6 = "10.244.1.5", "fd00:10:244:1::5"
NODE_V6 = "fd00:56::11"
LONELY = """\
---
apiVersion: v1
kind: Service
metadata: {name: lonely, namespace: ns1}
spec:
  ipFamilies: [IPv6]
  clusterIP: "fd00:10:96::30"
  selector: {app: nobody}
  ports:
    - {name: http, port: 80, targetPort: 8080}
"""


def cluster(*extra: Path) -> Cluster:
    checked = check_paths([GOLDEN, *extra], ipv6=True)
    assert checked.build is not None, checked.diagnostics
    return checked.build.cluster


def outcomes(c: Cluster, src: tuple[str, int], dst: tuple[str, int], origin: str | None = None) -> dict:
    return render_json_dict(trace_packet(c, "node1", src, dst, "tcp", origin, (), (), None))


def render_json_dict(tr) -> dict:  # type: ignore[no-untyped-def]
    import json

    return json.loads(render_json(tr))


def test_pod_to_an_ipv6_cluster_ip_is_dnated_to_the_pods_ipv6_address() -> None:
    data = outcomes(cluster(), ("fd00:10:244:1::9", 40000), (WEB_V6, 80))
    assert data["packet"]["origin"] == "pod" and data["packet"]["in_iface"] == "cni0"
    assert [(o["destination"], o["verdict"], o["masqueraded"]) for o in data["outcomes"]] == [
        (f"[{POD_V6}]:8080", "ACCEPT", False)]


def test_an_ipv6_only_service_is_found_in_the_ipv6_rules() -> None:
    data = outcomes(cluster(), (NODE_V6, 40000), (WEB6, 80))
    assert data["packet"]["origin"] == "node"
    assert [o["destination"] for o in data["outcomes"]] == [f"[{POD_V6}]:8080"]


def test_ipv6_node_port_from_outside_is_masqueraded() -> None:
    data = outcomes(cluster(), ("2001:db8::9", 5555), (NODE_V6, 30080))
    assert data["packet"]["origin"] == "outside"
    assert [(o["destination"], o["masqueraded"]) for o in data["outcomes"]] == [(f"[{POD_V6}]:8080", True)]


def test_the_ipv4_family_of_the_same_service_still_goes_through_the_ipv4_rules() -> None:
    data = outcomes(cluster(), ("10.244.1.9", 40000), (WEB_V4, 80))
    assert [o["destination"] for o in data["outcomes"]] == [f"{POD_V4}:8080"]


def test_an_ipv6_service_without_endpoints_is_rejected(tmp_path: Path) -> None:
    extra = tmp_path / "lonely.yaml"
    extra.write_text(LONELY)
    data = outcomes(cluster(extra), ("fd00:10:244:1::9", 40000), ("fd00:10:96::30", 80))
    assert [o["verdict"] for o in data["outcomes"]] == ["REJECT"]
    assert "ns1/lonely:http has no endpoints" in data["paths"][0]["verdict_step"]["rule"]


def test_live_ipv6_reads_ip6tables_save() -> None:
    assert _save_command(6) == "ip6tables-save -t filter && ip6tables-save -t nat"
    assert _save_command(4) == "iptables-save -t filter && iptables-save -t nat"
    assert SAVE_COMMANDS == {4: "iptables-save", 6: "ip6tables-save"}


@pytest.mark.parametrize(("args", "message"), [
    (("--src", "fd00::9", "--dst", "[fd00::10]:80"), "node node1 has no IPv6 rules"),
    (("--src", "fd00::9", "--dst", "fd00::10:80"), "needs a port (IP:PORT)"),
])
def test_an_ipv4_only_cluster_has_no_ipv6_rules_to_trace(args: tuple[str, ...], message: str) -> None:
    res = CliRunner().invoke(explain, ["-f", str(SEED), "--node", "node1", *args])
    assert res.exit_code in (1, 2) and message in res.output and "Traceback" not in res.output


def test_nftables_mode_refuses_an_ipv6_packet(tmp_path: Path) -> None:
    nft = tmp_path / "dual-nft.yaml"
    nft.write_text(GOLDEN.read_text().replace("mode: iptables", "mode: nftables"))
    checked = check_paths([nft], ipv6=True)
    assert checked.build is not None, checked.diagnostics
    with pytest.raises(SystemExit) as exc:
        trace_packet(checked.build.cluster, "node1", ("fd00:10:244:1::9", 1), (WEB_V6, 80), "tcp", None, (), (), None)
    assert exc.value.code == 1
