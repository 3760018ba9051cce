"""What changes on each node between two descriptions: rules by service port, jump rules, address config.

Each side is rendered once for all its nodes (the renderer shares the work between nodes, and
nodes with the same output share one text). A node whose texts are equal on both sides costs one
comparison; a pair of texts is diffed once however many nodes share it.

This is the one module of the review that reads the artifacts of `svcnet.desired`.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from svcnet.desired import NetConf, PodNet
from svcnet.model.types import Cluster, ProcessSecurity, ServicePort
from svcnet.render.artifacts import (
    JUMPS_FILE,
    NETSTATE_FILE,
    NFT_FILE,
    RESTORE_FILE,
    NodeArtifacts,
    node_artifacts_all,
)
from svcnet.render.jumps import render_jump_rules
from svcnet.render.netconf import state_lines
from svcnet.review.linediff import Hunk, hunks, regions
from svcnet.review.owners import LineOwners, NftOwners

JUMP_RULES = "(jump rules)"
ADDRESS_CONFIG = "(address config)"
ADDED, REMOVED, CHANGED, UNCHANGED = "added", "removed", "changed", "unchanged"


@dataclass(frozen=True, slots=True)
class FileDiff:
    """The hunks of one artifact of one node (`file` as under `svcnet render --out DIR/<node>/`)."""

    file: str
    hunks: tuple[Hunk, ...]

    def owners(self) -> list[str]:
        """Service port names in order, then what belongs to no service."""
        seen = dict.fromkeys(h.owner for h in self.hunks)
        return sorted(seen, key=lambda o: (o.startswith("("), o))

    def counts(self, owner: str) -> tuple[int, int]:
        """(lines added, lines removed) of one owner."""
        mine = [h for h in self.hunks if h.owner == owner]
        return sum(h.added for h in mine), sum(h.removed for h in mine)


@dataclass(frozen=True, slots=True)
class NodeDiff:
    node: str
    status: str  # ADDED, REMOVED, CHANGED or UNCHANGED
    rules: FileDiff | None = None
    jumps: FileDiff | None = None
    address: FileDiff | None = None
    rules_as: str | None = None  # an earlier node with the very same rules diff

    @property
    def changed(self) -> bool:
        return self.status != UNCHANGED

    def services(self) -> list[str]:
        """The service ports whose rules change on this node."""
        return [o for o in self.rules.owners() if not o.startswith("(")] if self.rules else []

    def files(self) -> list[FileDiff]:
        return [f for f in (self.rules, self.jumps, self.address) if f is not None]


def changed_ports(old: Cluster, new: Cluster) -> list[ServicePort]:
    """Both versions of the service ports added, removed or changed (endpoints included)."""
    before = {(sp.spn, sp.proto): sp for sp in old.service_ports}
    after = {(sp.spn, sp.proto): sp for sp in new.service_ports}
    out = [sp for key, sp in after.items() if before.get(key) != sp]
    out += [sp for key, sp in before.items() if after.get(key) != sp]
    return out


def diff_clusters(old: Cluster, new: Cluster, context: int = 3) -> list[NodeDiff]:
    """Per node (the new description's order, then removed nodes), what changes from old to new."""
    old_arts = node_artifacts_all(old)
    new_arts = node_artifacts_all(new)
    owners = LineOwners(changed_ports(old, new), [*old.service_ports, *new.service_ports])
    nft_owners = NftOwners([*old.service_ports, *new.service_ports])
    names = list(new_arts) + [n for n in old_arts if n not in new_arts]
    seen: dict[tuple[int, int], tuple[str, FileDiff | None]] = {}
    out = []
    for name in names:
        before, after = old_arts.get(name), new_arts.get(name)
        old_text, new_text = _rules_text(before), _rules_text(after)
        key = (id(old_text), id(new_text))
        rules_as = None
        if key in seen:
            rules_as, rules = seen[key]
        elif _nft(before) or _nft(after):
            # nftables mode on either side: the nft scripts (a mode switch shows the restore input
            # going as the script's lines come, each in its own file's terms)
            rules = _nft_diff(old_text, new_text, before, after, nft_owners, owners, context)
            seen[key] = (name, rules)
        else:
            rules = _rules_diff(old_text, new_text, owners, context)
            seen[key] = (name, rules)
        jumps = _lines_diff(JUMPS_FILE, _jump_lines(before), _jump_lines(after), JUMP_RULES, context)
        address = _lines_diff(NETSTATE_FILE, _address_lines(before), _address_lines(after), ADDRESS_CONFIG,
                              context)
        status = ADDED if before is None else REMOVED if after is None else CHANGED
        if status == CHANGED and not (rules or jumps or address):
            status = UNCHANGED
        out.append(NodeDiff(name, status, rules, jumps, address, rules_as if rules else None))
    return out


def _nft(art: NodeArtifacts | None) -> bool:
    return art is not None and art.nftables_mode


def _rules_text(art: NodeArtifacts | None) -> str:
    """The node's rules file: the nft script in nftables mode, else the restore input."""
    return "" if art is None else art.nft if art.nftables_mode else art.restore


def _nft_diff(old_text: str, new_text: str, before: NodeArtifacts | None, after: NodeArtifacts | None,
              nft_owners: NftOwners, owners: LineOwners, context: int) -> FileDiff | None:
    """The rules diff when either side is in nftables mode, under the name of the new side's file."""
    if old_text == new_text:
        return None
    a, b = old_text.splitlines(), new_text.splitlines()

    def owner(line: str) -> str:
        return nft_owners(line) if line.startswith(NFT_VERB_PREFIXES) else owners(line)

    file = NFT_FILE if _nft(after) or after is None else RESTORE_FILE
    return FileDiff(file, tuple(hunks(a, b, regions(a, b), owner, context=context)))


NFT_VERB_PREFIXES = ("add ", "delete ", "flush ", "create ", "insert ", "replace ")


def _parts(lines: Sequence[str]) -> list[int]:
    """Where the parts of a restore text begin: each table's rules, the nat table, its rules."""
    if not lines or lines[0] != "*filter" or "*nat" not in lines:
        return []
    nat = lines.index("*nat")
    return [_first_rule(lines, 1, nat), nat, _first_rule(lines, nat + 1, len(lines))]


def _first_rule(lines: Sequence[str], lo: int, hi: int) -> int:
    """The first line in lines[lo:hi] after the `:CHAIN` declarations (they all come first)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if lines[mid].startswith(":"):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _rules_diff(old_text: str, new_text: str, owners: LineOwners, context: int) -> FileDiff | None:
    if old_text == new_text:
        return None
    a, b = old_text.splitlines(), new_text.splitlines()
    pa, pb = _parts(a), _parts(b)
    nat_a = pa[1] if pa else None
    nat_b = pb[1] if pb else None

    def where(new: bool, i: int) -> str:
        nat = nat_b if new else nat_a
        if nat is None:
            return _table_by_scan(b if new else a, i)
        return "*nat" if i >= nat else "*filter"

    found = regions(a, b, pa, pb)
    return FileDiff(RESTORE_FILE, tuple(hunks(a, b, found, owners, where, context, owners.belongs)))


def _table_by_scan(lines: Sequence[str], i: int) -> str:
    for k in range(min(i, len(lines) - 1), -1, -1):
        if lines[k].startswith("*"):
            return lines[k]
    return ""


def _lines_diff(file: str, a: list[str], b: list[str], owner: str, context: int) -> FileDiff | None:
    if a == b:
        return None
    return FileDiff(file, tuple(hunks(a, b, regions(a, b), lambda _line: owner, context=context)))


def _jump_lines(art: NodeArtifacts | None) -> list[str]:
    return render_jump_rules(list(art.jump_rules)).splitlines() if art else []


def _address_lines(art: NodeArtifacts | None) -> list[str]:
    """The address config as facts, one per line: netconf.state's, then how each pod's process runs."""
    if art is None:
        return []
    conf: NetConf = art.netconf
    return state_lines(conf) + [_process_line(p) for p in conf.pods if p.command]


def _process_line(pod: PodNet) -> str:
    ports = ",".join(map(str, pod.ports)) or "none"
    return f"process {pod.namespace}/{pod.name} runs {shlex.join(pod.command)} ports {ports} as {_as(pod.security)}"


def _as(sec: ProcessSecurity | None) -> str:
    if sec is None:
        return "root with every capability (no securityContext)"
    caps = "every capability" if sec.capabilities is None else ",".join(sec.capabilities) or "no capability"
    groups = ",".join(map(str, sec.groups)) or "none"
    flags = [name for name, on in (("no_new_privs", sec.no_new_privs), ("read-only root", sec.read_only_root)) if on]
    ambient = ",".join(sec.ambient) or "none"
    return f"uid {sec.uid} gid {sec.gid} groups {groups} capabilities {caps} ambient {ambient}" + (
        f" {' '.join(flags)}" if flags else "")

