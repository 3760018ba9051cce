"""Semantic checks: what the schemas cannot see, each problem located at the field to change.

One module per concern: `cluster` (serviceCIDR/clusterCIDR, the bridge, nodes), `pods`,
`services` (ClusterIPs and externalIPs, then `ports`, then `endpoints`), `endpoints` (selectors,
EndpointSlices), `topology` (zones and hints) and `ipv6` (what IPv6 is refused until applied).
`addresses` holds what they share: the addresses Kubernetes forbids as endpoints. They read the
model (which says what the user gave
and what svcnet allocated) and use the documents only to locate a problem or to quote a value
as written.
"""

from __future__ import annotations

from svcnet.diagnostics import Diagnostic
from svcnet.model.build import Build
from svcnet.model.semantic.cluster import check_bridge, check_cluster_ranges, check_nodes
from svcnet.model.semantic.endpoints import check_slices
from svcnet.model.semantic.pods import check_pod_security, check_pods
from svcnet.model.semantic.ports import check_node_port_range
from svcnet.model.semantic.services import check_services
from svcnet.model.semantic.topology import check_topology


def check(b: Build) -> list[Diagnostic]:
    """Every semantic problem of a built description: the Cluster first, then pods, Services and
    EndpointSlices, each in document order."""
    return [*check_cluster_ranges(b), *check_bridge(b), *check_node_port_range(b), *check_nodes(b),
            *check_pods(b), *check_pod_security(b), *check_services(b), *check_slices(b), *check_topology(b)]
