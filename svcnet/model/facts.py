"""The cluster as seen on live nodes: what was gathered from them replaces the offline defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from svcnet.model.types import Cluster, NodeFacts


def with_facts(cluster: Cluster, facts_by_node: Mapping[str, NodeFacts]) -> Cluster:
    """`cluster` with each named node's gathered facts (nodes not named keep theirs)."""
    if not facts_by_node:
        return cluster
    return replace(cluster, nodes=tuple(replace(n, facts=facts_by_node[n.name]) if n.name in facts_by_node else n
                                        for n in cluster.nodes))
