"""`svcnet diff`'s output: per node a summary line and a unified diff grouped by service port, or counts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from svcnet.review.diff import ADDED, ADDRESS_CONFIG, JUMP_RULES, REMOVED, FileDiff, NodeDiff
from svcnet.review.owners import NODE_WIDE


def summary(d: NodeDiff) -> str:
    """`node node1: rules of 1 service port change (ns/a:http); address config unchanged`."""
    parts = []
    services = d.services()
    if services:
        parts.append(f"rules of {_n(len(services), 'service port')} change ({', '.join(services)})")
    else:
        parts.append("no service's rules change")
    if d.rules and NODE_WIDE in d.rules.owners():
        parts.append("node-wide rules change")
    parts.append("jump rules change" if d.jumps else "jump rules unchanged")
    parts.append("address config changes" if d.address else "address config unchanged")
    state = {ADDED: " (added)", REMOVED: " (removed)"}.get(d.status, "")
    return f"node {d.node}{state}: " + "; ".join(parts)


def unified(diffs: Sequence[NodeDiff]) -> Iterator[str]:
    """Lines of the full report: changed nodes only, each summary followed by its diffs."""
    for d in diffs:
        if not d.changed:
            continue
        yield summary(d)
        for f in d.files():
            if f is d.rules and d.rules_as:
                yield f"(the rules change as on node {d.rules_as})"
                continue
            yield from _file_lines(d, f)


def _file_lines(d: NodeDiff, f: FileDiff) -> Iterator[str]:
    yield "--- /dev/null" if d.status == ADDED else f"--- a/{d.node}/{f.file}"
    yield "+++ /dev/null" if d.status == REMOVED else f"+++ b/{d.node}/{f.file}"
    for owner in f.owners():  # grouped by service port, each group in the order of the text
        for h in f.hunks:
            if h.owner == owner:
                yield h.header()
                yield from h.lines


def stat(diffs: Sequence[NodeDiff]) -> Iterator[str]:
    """One line per node and service port (or node-wide rules, jump rules, address config)."""
    rows = []
    for d in diffs:
        for f in d.files():
            for owner in f.owners():
                added, removed = f.counts(owner)
                rows.append((d.node, owner, added, removed))
    width_node = max((len(r[0]) for r in rows), default=0)
    width_owner = max((len(r[1]) for r in rows), default=0)
    for node, owner, added, removed in rows:
        yield f"{node:<{width_node}}  {owner:<{width_owner}}  +{added} -{removed}"


def totals(diffs: Sequence[NodeDiff]) -> str:
    """`2 of 3 node(s) change: rules of 1 service port(s), address config on 1 node(s); +4 -2 lines`."""
    changed = [d for d in diffs if d.changed]
    if not changed:
        return f"no change on any of {_n(len(diffs), 'node')}"
    services = {s for d in changed for s in d.services()}
    on = [f"rules of {_n(len(services), 'service port')}"]
    for what, nodes in (
        ("node-wide rules", [d for d in changed if d.rules and NODE_WIDE in d.rules.owners()]),
        (JUMP_RULES.strip("()"), [d for d in changed if d.jumps]),
        (ADDRESS_CONFIG.strip("()"), [d for d in changed if d.address]),
    ):
        if nodes:
            on.append(f"{what} on {_n(len(nodes), 'node')}")
    added = sum(h.added for d in changed for f in d.files() for h in f.hunks)
    removed = sum(h.removed for d in changed for f in d.files() for h in f.hunks)
    return f"{len(changed)} of {_n(len(diffs), 'node')} change: {', '.join(on)}; +{added} -{removed} lines"


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"
