"""Topology: nodes' zones, EndpointSlice hints, and what asks the EndpointSlice controller for hints.

The API server's rules for hints (pkg/apis/discovery/validation `validateHints`) beyond the
schemas' (at most 8 of each, zone names label values, node names DNS subdomains): no name twice.
It accepts hints on any endpoint, ready or not, and zones no node has; kube-proxy then ignores
what does not apply (svcnet.desired.topology_mode).
"""

from __future__ import annotations

from collections.abc import Iterator

from svcnet.diagnostics import WARNING, Diagnostic
from svcnet.load import Document
from svcnet.model.build import Build
from svcnet.model.types import (
    ANNOTATION_TOPOLOGY_AWARE_HINTS,
    ANNOTATION_TOPOLOGY_MODE,
    LABEL_TOPOLOGY_ZONE,
    PREFER_CLOSE,
    PREFER_SAME_NODE,
    PREFER_SAME_ZONE,
)

_HINT_KINDS = ("forZones", "forNodes")


def _node_zones(b: Build) -> Iterator[Diagnostic]:
    """`zone` is the zone label written short: both, with different values, is a contradiction."""
    for i, raw in enumerate(b.cluster_doc.obj["spec"]["nodes"]):
        label = (raw.get("labels") or {}).get(LABEL_TOPOLOGY_ZONE)
        if "zone" in raw and label is not None and label != raw["zone"]:
            yield b.cluster_doc.diag(("spec", "nodes", i, "labels", LABEL_TOPOLOGY_ZONE),
                                     f"label {LABEL_TOPOLOGY_ZONE}={label!r} contradicts zone {raw['zone']!r} "
                                     "(zone is this label); give one of them")


def _hint_duplicates(doc: Document) -> Iterator[Diagnostic]:
    for i, ep in enumerate(doc.obj.get("endpoints") or ()):
        hints = ep.get("hints") if isinstance(ep, dict) else None
        if not isinstance(hints, dict):
            continue
        for kind in _HINT_KINDS:
            seen: set[str] = set()
            for j, hint in enumerate(hints.get(kind) or ()):
                name = str(hint.get("name", ""))
                if name in seen:
                    yield doc.diag(("endpoints", i, "hints", kind, j, "name"), f"Duplicate value: {name!r}")
                seen.add(name)


def _controller_hints(b: Build) -> Iterator[Diagnostic]:
    """What svcnet, in the EndpointSlice controller's place for selected pods, cannot do."""
    for svc in b.cluster.services:
        doc = b.service_docs[svc.key]
        if not svc.selector and svc.traffic_distribution:
            yield doc.diag(("spec", "trafficDistribution"),
                           "has no effect without a selector: the EndpointSlice controller writes hints only "
                           "for a selector's pods; give this Service's EndpointSlices hints.forZones/forNodes",
                           WARNING)
        if not svc.selector or not svc.topology_auto:
            continue
        annotations = doc.obj["metadata"]["annotations"]
        key = ANNOTATION_TOPOLOGY_AWARE_HINTS if ANNOTATION_TOPOLOGY_AWARE_HINTS in annotations \
            else ANNOTATION_TOPOLOGY_MODE
        yield doc.diag(("metadata", "annotations", key),
                       "svcnet sets no topology hints for Auto: the EndpointSlice controller allocates them "
                       "by each zone's allocatable CPU, which svcnet's nodes do not give, and without it sets "
                       "none; every endpoint gets traffic from every node (use spec.trafficDistribution "
                       f"{PREFER_SAME_ZONE} or {PREFER_SAME_NODE}, or EndpointSlices with hints)", WARNING)
        if svc.traffic_distribution in (PREFER_CLOSE, PREFER_SAME_ZONE, PREFER_SAME_NODE):
            yield doc.diag(("spec", "trafficDistribution"),
                           f"ignored: the {key} annotation takes precedence (as in the EndpointSlice "
                           "controller)", WARNING)


def check_topology(b: Build) -> list[Diagnostic]:
    """Nodes' zones, then Services' hint requests, then EndpointSlices' hints, in document order."""
    out = [*_node_zones(b), *_controller_hints(b)]
    for doc in b.slice_docs:
        out.extend(_hint_duplicates(doc))
    return out
