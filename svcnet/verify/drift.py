"""Read the agent's check-mode diffs (live vs rendered, kernel-normalised) into per-object drift.

The rules diff is a unified diff of the owned rules' normal form (`*table`, `:CHAIN`, `-A CHAIN ...`
lines, see svcnet/agent/node.py `normal_form`), then in nftables mode of svcnet's nft tables (`nft list
table` text, `nft_normal`; each hunk header names the blocks open at its start, `nft_hunk_context`,
so every line is put in its chain, set or map); the netconf diff one of the address-config facts
(`sysctl ...`, `bridge ...`, `route ...`, `pod ...`). Pure functions.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from svcnet.agent.node import NFT_CONTEXT_SEP, NFT_HUNK_RE, nft_heads_step
from svcnet.model.types import ServicePort
from svcnet.render.chains import (
    ALL_BUILTIN_CHAINS,
    EXT_PREFIX,
    FORWARD,
    FW_PREFIX,
    INPUT,
    KUBE_EXTERNAL_SERVICES,
    KUBE_FIREWALL,
    KUBE_FORWARD,
    KUBE_MARK_MASQ,
    KUBE_POSTROUTING,
    KUBE_PROXY_FIREWALL,
    POSTROUTING,
    PREROUTING,
    SEP_PREFIX,
    SVC_PREFIX,
    SVL_PREFIX,
    TABLE_FILTER,
    TABLE_NAT,
)

LEGEND = "(- only on the node, + rendered but missing on the node)"
_NAT_ONLY = (SVC_PREFIX, SVL_PREFIX, EXT_PREFIX, FW_PREFIX, SEP_PREFIX, KUBE_MARK_MASQ, KUBE_POSTROUTING,
             PREROUTING, POSTROUTING)
_FILTER_ONLY = (KUBE_EXTERNAL_SERVICES, KUBE_FORWARD, KUBE_PROXY_FIREWALL, KUBE_FIREWALL, INPUT, FORWARD)


@dataclass(frozen=True, slots=True)
class DiffLine:
    sign: str  # "-" live only, "+" desired only
    text: str
    table: str  # "" when it cannot be told; "ip kube-proxy" for an nft line
    block: str = ""  # an nft line's block: "chain NAME", "set NAME", "map NAME" or "table ..."

    @property
    def chain(self) -> str:
        return self.block.split(" ", 1)[-1] if self.block else rule_chain(self.text)

    @property
    def where(self) -> str:
        return self.block or f"chain {self.chain}"

    def show(self) -> str:
        return f"{self.sign}{self.text}"


def changed_lines(diff: str) -> list[tuple[str, str, str]]:
    """(sign, text, context-table) of each changed line of a unified diff ('' table if unseen)."""
    out = []
    table = ""
    for raw in diff.splitlines():
        if raw.startswith(("---", "+++", "@@")) or not raw:
            continue
        sign, text = raw[0], raw[1:]
        if text.startswith("*"):
            table = text[1:]
        if sign in "+-":
            out.append((sign, text, table))
    return out


def rule_chain(text: str) -> str:
    """The chain a normal-form line is about: `:CHAIN` or `-A CHAIN ...`; '' for others."""
    if text.startswith(":"):
        return text[1:].split()[0] if len(text) > 1 else ""
    if text.startswith("-A "):
        parts = text.split()
        return parts[1] if len(parts) > 1 else ""
    return ""


def guess_table(chain: str, seen: str) -> str:
    if chain.startswith(_NAT_ONLY):
        return TABLE_NAT
    if chain.startswith(_FILTER_ONLY):
        return TABLE_FILTER
    return seen


def rules_drift(diff: str) -> list[DiffLine]:
    """The changed rule and chain lines of a rules diff (iptables table headers and COMMIT dropped),
    each nft line with its block: the live side ('-' and context lines) and the rendered side ('+'
    and context) are walked from each hunk header's blocks."""
    out = []
    table = ""
    sides: dict[str, list[str]] = {"-": [], "+": []}
    for raw in diff.splitlines():
        if raw.startswith(("---", "+++")) or not raw:
            continue
        m = NFT_HUNK_RE.match(raw)
        if m:
            context = raw[m.end():].strip()
            heads = context.split(NFT_CONTEXT_SEP) if context else []
            sides = {"-": heads, "+": heads}
            continue
        sign, text = raw[0], raw[1:]
        if text.startswith("*"):
            table = text[1:]
        deepest: list[str] = []
        for side in ("-", "+") if sign == " " else (sign,) if sign in sides else ():
            before = sides[side]
            sides[side] = nft_heads_step(before, text)
            deepest = max(before, sides[side], key=len)
        if sign not in "+-":
            continue
        chain = rule_chain(text)
        if deepest:
            out.append(nft_line(sign, text, deepest))
        elif chain:
            out.append(DiffLine(sign, text, guess_table(chain, table)))
    return out


NFT_BLOCK_KINDS = ("chain ", "set ", "map ")


def nft_line(sign: str, text: str, heads: list[str]) -> DiffLine:
    """A changed line inside nft blocks `heads` (those open on its side, the deeper of before and after it)."""
    table = heads[0].removeprefix("table ")
    named = [h for h in heads[1:] if h.startswith(NFT_BLOCK_KINDS)]
    return DiffLine(sign, text, table, named[-1] if named else heads[0])


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def rule_target(text: str) -> str:
    words = _words(text)
    for flag in ("-j", "-g", "--jump", "--goto"):
        if flag in words[:-1]:
            return words[words.index(flag) + 1]
    return ""


def rule_comment(text: str) -> str:
    words = _words(text)
    return words[words.index("--comment") + 1] if "--comment" in words[:-1] else ""


def owner_of(line: DiffLine, owners: Mapping[str, ServicePort], spns: Iterable[str]) -> str | None:
    """The service port (spn) a drifted line belongs to: by its chain, its jump target or its comment
    (an nft line: by its block, or a chain, set or comment it names)."""
    words = [w.strip('",;{}') for w in line.text.split()] if line.block else []
    for chain in (line.chain, rule_target(line.text), *words):
        if chain in owners:
            return owners[chain].spn
    words = rule_comment(line.text).split()
    if words and words[0] in set(spns):
        return words[0]
    return None


def is_jump(line: DiffLine) -> bool:
    return not line.block and line.chain in ALL_BUILTIN_CHAINS


def by_chain(lines: Iterable[DiffLine]) -> dict[tuple[str, str], list[DiffLine]]:
    groups: dict[tuple[str, str], list[DiffLine]] = {}
    for line in lines:
        groups.setdefault((line.table, line.where), []).append(line)
    return groups


def describe_chains(node: str, lines: Iterable[DiffLine], owner: str = "", tool: str = "") -> str:
    """One paragraph per drifted chain: 'node1: nat chain KUBE-SVC-X (ns/svc:port) differs ...'
    (`tool`, e.g. 'ip6tables ', names the IPv6 rules: 'node1: ip6tables nat chain ...')."""
    parts = []
    for (table, _), group in by_chain(lines).items():
        where = group[0].where
        table = "" if where.startswith("table ") else table
        what = f"{tool}{table + ' ' if table else ''}{where}{f' ({owner})' if owner else ''}"
        body = "\n".join("    " + ln.show() for ln in group)
        parts.append(f"{node}: {what} differs from the rendered rules {LEGEND}:\n{body}")
    return "\n".join(parts)


def netconf_drift(diff: str, kind: str) -> list[str]:
    """Changed address-config lines whose fact is `kind` (sysctl, bridge, route, pod), signed."""
    return [sign + text for sign, text, _ in changed_lines(diff) if text.split(" ", 1)[0] == kind]


@dataclass(frozen=True)
class RulesDrift:
    """A node's rule drift sorted into per-service lines, jump rules and everything else."""

    by_service: dict[str, list[DiffLine]]
    jumps: list[DiffLine]
    other: list[DiffLine]


def sort_drift(lines: Iterable[DiffLine], owners: Mapping[str, ServicePort]) -> RulesDrift:
    spns = {sp.spn for sp in owners.values()}
    by_service: dict[str, list[DiffLine]] = {}
    jumps, other = [], []
    for line in lines:
        if is_jump(line):
            jumps.append(line)
            continue
        owner = owner_of(line, owners, spns)
        if owner is None:
            other.append(line)
        else:
            by_service.setdefault(owner, []).append(line)
    return RulesDrift(by_service, jumps, other)
