"""nftables mode reads topology hints as kube-proxy's nftables proxier does (`CategorizeEndpoints`,
pkg/proxy/topology.go, the same call as in iptables mode): a node balances over the endpoints hinted
for its zone (or itself, PreferSameNode), and over every ready endpoint when the hints are
incomplete or name nothing of it. The description is the iptables golden
tests/golden/topology-zones.yaml in nftables mode, plus a node in a zone nothing is hinted for and
a Service with one unhinted endpoint; the expectations mirror that golden's KUBE-SVC rules."""

from __future__ import annotations

from pathlib import Path

from svcnet.desired import desired_nodes
from svcnet.model.load import check_paths
from svcnet.render import nftables
from svcnet.render.artifacts import node_artifacts

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "topology-zones.yaml"

EXTRA = """\
---
apiVersion: v1
kind: Service
metadata: {name: partial, namespace: ns1}
spec:
  clusterIP: 10.96.0.12
  ports:
    - {name: http, port: 80, targetPort: 8080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: partial-1
  namespace: ns1
  labels: {kubernetes.io/service-name: partial}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
  - addresses: [10.244.1.7]
    nodeName: node1
    hints: {forZones: [{name: zone-a}]}
  - addresses: [10.244.2.8]
    nodeName: node2
"""

WEB = "service-DK7ABAZC-ns1/web/tcp/http"
API = "service-RQTQXDSS-ns1/api/tcp/http"
PARTIAL = "service-KBIPWBCZ-ns1/partial/tcp/http"


def _vmap(chain: str, *targets: str) -> str:
    gotos = " , ".join(f"{i} : goto {t}" for i, t in enumerate(targets))
    return f"add rule ip kube-proxy {chain} numgen random mod {len(targets)} vmap {{ {gotos} }}"


WEB_A = "endpoint-XBVINTKS-ns1/web/tcp/http__10.244.1.5/8080"
WEB_B5 = "endpoint-43JIA7G6-ns1/web/tcp/http__10.244.2.5/8080"
WEB_B6 = "endpoint-JKGOHBZO-ns1/web/tcp/http__10.244.2.6/8080"
API_1 = "endpoint-5L5XWT2S-ns1/api/tcp/http__10.244.1.9/8080"
API_2 = "endpoint-4A7Y6FOW-ns1/api/tcp/http__10.244.2.9/8080"
PARTIAL_1 = "endpoint-BWQWEYC7-ns1/partial/tcp/http__10.244.1.7/8080"
PARTIAL_2 = "endpoint-LOWU4A2O-ns1/partial/tcp/http__10.244.2.8/8080"

# Per node, its service chains' numgen vmaps (by hand: topologyModeFromHints then
# availableForTopology; 10.244.2.7 is not ready, so neither its hint nor it counts).
EXPECTED = {
    # zone-a: web's one zone-a endpoint; api its own pod; partial every ready endpoint (one unhinted).
    "node1": {WEB: _vmap(WEB, WEB_A), API: _vmap(API, API_1), PARTIAL: _vmap(PARTIAL, PARTIAL_1, PARTIAL_2)},
    # zone-b: web's two zone-b endpoints.
    "node2": {WEB: _vmap(WEB, WEB_B5, WEB_B6), API: _vmap(API, API_2), PARTIAL: _vmap(PARTIAL, PARTIAL_1, PARTIAL_2)},
    # zone-c: no hint names it or the node: every ready endpoint.
    "node3": {WEB: _vmap(WEB, WEB_A, WEB_B5, WEB_B6), API: _vmap(API, API_1, API_2),
              PARTIAL: _vmap(PARTIAL, PARTIAL_1, PARTIAL_2)},
}


def _description(tmp_path: Path) -> Path:
    text = GOLDEN.read_text()
    spec = "spec:\n  serviceCIDR: 10.96.0.0/12\n"
    node3 = "    - {name: node3, addresses: [192.168.56.13], podCIDR: 10.244.3.0/24, zone: zone-c}\n"
    assert spec in text and "      labels: {topology.kubernetes.io/zone: zone-b, rack: r2}\n" in text
    text = text.replace(spec, spec + "  proxy: {mode: nftables}\n")
    text = text.replace("      labels: {topology.kubernetes.io/zone: zone-b, rack: r2}\n",
                        "      labels: {topology.kubernetes.io/zone: zone-b, rack: r2}\n" + node3)
    path = tmp_path / "topology-zones-nft.yaml"
    path.write_text(text + EXTRA)
    return path


def _numgen(table: str, chain: str) -> list[str]:
    return [ln for ln in table.splitlines() if ln.startswith(f"add rule ip kube-proxy {chain} numgen ")]


def test_each_node_balances_over_its_zones_endpoints(tmp_path: Path) -> None:
    checked = check_paths([_description(tmp_path)])
    assert checked.build is not None, [str(d) for d in checked.diagnostics]
    cluster = checked.build.cluster
    settings = {name: d.proxier for name, d in desired_nodes(cluster, None).items()}
    assert sorted(settings) == sorted(EXPECTED)
    for node, chains in EXPECTED.items():
        table = node_artifacts(cluster, node).nft_table
        # The direct single-node path, as `svcnet render --node` and apply write it.
        alone = nftables.render_buffers(settings[node], cluster.service_ports).dump()
        script = nftables.render_script(settings[node], cluster.service_ports)
        for text in (table, alone, script):
            assert text is not None
            for chain, line in chains.items():
                assert _numgen(text, chain) == [line], (node, chain)
