"""Walk a first packet through a node's nftables table (kube-proxy's nftables mode), branch by branch.

The table is read from `nft -f` input of `add` commands (what `svcnet render` prints, `parse_table`) or
from `nft -s list table` after the agent's `nft_normal` (`--live`, `parse_listing`). Base chains
run per hook in priority order, in netfilter's hook order for a connection's first packet (as in
trace.py). A vmap lookup takes the element's verdict; `numgen random mod N vmap` splits the path
into N branches of probability 1/N each. Only the rule forms kube-proxy's nftables proxier writes
are understood: an unknown form is an error, never skipped.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace

from svcnet.explain.match import PacketState
from svcnet.explain.report import percent
from svcnet.explain.trace import (
    DELIVERED_LOCAL,
    FORWARDED,
    ORIGIN_NODE,
    SENT,
    Packet,
    Path,
    Step,
    Trace,
    TraceContext,
    TraceError,
)
from svcnet.render.chains import ACCEPT, DROP, NFT_MARK_FOR_MASQUERADE, NFT_NAT_POSTROUTING, REJECT

_ELEMENT_RE = re.compile(r'add element \S+ \S+ (\S+) \{ (.*?)(?: comment "[^"]*")?(?: : (.*))? \}$')
_COMMENT_RE = re.compile(r' comment "[^"]*"$')
_BASE_RE = re.compile(r"type (\w+) hook (\w+) priority (-?\d+)")
_FALL, _STOP, _NATDONE = "fall", "stop", "natdone"


class NftTraceError(TraceError):
    """A table the tracer cannot read, or a rule form it does not know."""


@dataclass(frozen=True, slots=True)
class BaseChain:
    name: str
    kind: str
    hook: str
    priority: int


@dataclass
class NftTable:
    family: str = "ip"
    name: str = "kube-proxy"
    rules: dict[str, list[str]] = field(default_factory=dict)
    base: list[BaseChain] = field(default_factory=list)
    sets: dict[str, set[str]] = field(default_factory=dict)
    dynamic: set[str] = field(default_factory=set)  # sets the data path fills (session affinity)
    maps: dict[str, dict[str, str]] = field(default_factory=dict)

    def hook_chains(self, hook: str) -> list[BaseChain]:
        return sorted((b for b in self.base if b.hook == hook), key=lambda b: b.priority)


def parse_table(text: str) -> NftTable:
    """The `add ...` lines of one table (render's output); other commands are ignored."""
    t = NftTable()
    for n, line in enumerate(text.splitlines(), 1):
        w = line.split(" ")
        if len(w) < 5 or w[0] != "add":
            continue
        kind, name = w[1], w[4]
        t.family, t.name = w[2], w[3]
        if kind == "chain":
            t.rules.setdefault(name, [])
            m = _BASE_RE.search(line)
            if m:
                t.base.append(BaseChain(name, m.group(1), m.group(2), int(m.group(3))))
        elif kind == "set":
            t.sets.setdefault(name, set())
            if "flags dynamic" in line:
                t.dynamic.add(name)
        elif kind == "map":
            t.maps.setdefault(name, {})
        elif kind == "rule":
            t.rules.setdefault(name, []).append(_COMMENT_RE.sub("", " ".join(w[5:])))
        elif kind == "element":
            m = _ELEMENT_RE.match(line)
            if not m:
                raise NftTraceError(f"line {n}: unreadable element {line!r}")
            owner, key, verdict = m.groups()
            if verdict is None:
                t.sets.setdefault(owner, set()).add(key)
            else:
                t.maps.setdefault(owner, {})[key] = verdict
    return t


_PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
_LISTED_PRIORITY_RE = re.compile(r"type (\w+) hook (\w+) priority ([a-z]+|-?\d+)(?: ([-+]) (\d+))?;")
# `nft list` spells some statements differently from the `nft -f` input kube-proxy writes.
_LISTED_SPELLINGS = (
    (re.compile(r"meta mark set meta mark \| (0x[0-9a-f]+)"), r"mark set mark or \1"),
    (re.compile(r"meta mark set meta mark \^ (0x[0-9a-f]+)"), r"mark set mark xor \1"),
    (re.compile(r"meta mark & (0x[0-9a-f]+) == (0x[0-9a-f]+)"), r"mark and \1 == \2"),
    (re.compile(r"\s*,\s+"), " , "),
)


def _listed_priority(m: re.Match[str]) -> int:
    base = int(m.group(3)) if m.group(3).lstrip("-").isdigit() else _PRIORITIES[m.group(3)]
    return base + (int(m.group(5)) * (1 if m.group(4) == "+" else -1) if m.group(4) else 0)


def parse_listing(text: str) -> NftTable:
    """A table as `nft -s list table` prints it, elements one per line (the agent's `nft_normal`)."""
    t = NftTable()
    kind = name = ""
    in_elements = False
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        head = line.split(" ")
        if not line or line.startswith("#"):
            continue
        if head[0] == "table" and len(head) >= 3:
            t.family, t.name = head[1], head[2]
        elif head[0] in ("chain", "set", "map") and line.endswith("{") and not in_elements:
            kind, name = head[0], head[1]
            if kind == "chain":
                t.rules.setdefault(name, [])
            elif kind == "set":
                t.sets.setdefault(name, set())
            else:
                t.maps.setdefault(name, {})
        elif line == "}":
            if in_elements:
                in_elements = False
            else:
                kind = ""
        elif kind in ("set", "map") and line.startswith("elements = {"):
            in_elements = not line.endswith("}")
            for item in ([] if in_elements else [line[len("elements = {"):-1]]):
                _add_listed_element(t, kind, name, item.strip().rstrip(","), n)
        elif in_elements:
            _add_listed_element(t, kind, name, line.rstrip(","), n)
        elif kind == "set" and line.startswith("flags ") and "dynamic" in line:
            t.dynamic.add(name)
        elif kind == "chain":
            m = _LISTED_PRIORITY_RE.match(line)
            if m:
                t.base.append(BaseChain(name, m.group(1), m.group(2), _listed_priority(m)))
            elif not line.startswith(("comment ", "policy ")):
                t.rules[name].append(_listed_rule(line))
    return t


def _listed_rule(line: str) -> str:
    line = _COMMENT_RE.sub("", line)
    for pattern, spelling in _LISTED_SPELLINGS:
        line = pattern.sub(spelling, line)
    return line


def _add_listed_element(t: NftTable, kind: str, name: str, item: str, n: int) -> None:
    if not item:
        return
    if kind == "set":
        t.sets[name].add(item)
        return
    key, sep, verdict = re.sub(r' comment "[^"]*"', "", item).partition(" : ")
    if not sep:
        raise NftTraceError(f"line {n}: map {name}: element {item!r} has no verdict")
    t.maps[name][key] = verdict


def _in_value(addr: str, value: str) -> bool:
    """addr in a literal address, CIDR or `{ a , b }` set."""
    a = ipaddress.ip_address(addr)
    for v in value.strip("{}").replace(",", " ").split():
        net = ipaddress.ip_network(v, strict=False)
        if net.version == a.version and a in net:
            return True
    return False


class _Walker:
    def __init__(self, table: NftTable, ctx: TraceContext):
        self.t, self.ctx, self.mc = table, ctx, ctx.match_context()
        self.tname = f"{table.family} {table.name}"

    # ---------------------------------------------------------------- chains

    def run_chain(self, path: Path, hook: str, chain: str, depth: int) -> list[tuple[Path, str]]:
        """Run `chain`: each resulting path with _FALL (returned/ended), _STOP (verdict) or _NATDONE."""
        if depth > self.ctx.max_depth:
            raise NftTraceError(f"chain {chain}: jumps nest deeper than {self.ctx.max_depth}")
        if chain not in self.t.rules:
            raise NftTraceError(f"chain {chain} is not in table {self.tname}")
        done: list[tuple[Path, str]] = []
        live = [path]
        for index, rule in enumerate(self.t.rules[chain], 1):
            still: list[Path] = []
            for p in live:
                for q, outcome in self._rule(p, hook, chain, index, rule, depth):
                    if outcome == "next":
                        still.append(q)
                    else:
                        done.append((q, outcome))
            live = still
            if len(done) + len(live) > self.ctx.max_paths:
                raise NftTraceError(f"more than {self.ctx.max_paths} paths")
        done.extend((p, _FALL) for p in live)
        return done

    def _step(self, path: Path, hook: str, chain: str, index: int, rule: str, matched: bool, reason: str,
              action: str = "", branch: float | None = None, notes: tuple[str, ...] = (), target: str = "") -> Step:
        s = Step(hook, self.tname, chain, index, rule, matched, reason, action, branch, notes, target)
        path.steps.append(s)
        return s

    def _rule(self, path: Path, hook: str, chain: str, index: int, rule: str,
              depth: int) -> list[tuple[Path, str]]:
        """The rule's expressions left to right; [(path, "next")] when evaluation goes on with the next rule."""
        w = rule.split(" ")
        reasons: list[str] = []
        notes: list[str] = []
        while w:
            pkt = path.packet
            try:
                matched = self._match(pkt, w)
            except (IndexError, ValueError):  # a truncated or malformed expression (a hand edit, --live)
                raise NftTraceError(f"chain {chain} rule {index}: unreadable rule {rule!r}") from None
            if matched is not None:
                used, hit, desc = matched
                if not hit:
                    return self._nomatch(path, hook, chain, index, rule, desc)
                reasons.append(desc)
                del w[:used]
            elif w[0] in ("ip", "ip6") and w[2:9] == [".", "meta", "l4proto", ".", "th", "dport", "vmap"]:
                return self._vmap(path, hook, chain, index, rule, reasons, w[9][1:],
                                  f"{pkt.dst} . {pkt.proto} . {pkt.dport}", depth)
            elif w[:6] == ["meta", "l4proto", ".", "th", "dport", "vmap"]:
                return self._vmap(path, hook, chain, index, rule, reasons, w[6][1:], f"{pkt.proto} . {pkt.dport}",
                                  depth)
            elif w[:3] in (["mark", "set", "mark"],) and w[3] in ("or", "xor"):
                m = int(w[4], 16)
                mark = pkt.mark | m if w[3] == "or" else pkt.mark ^ m
                path.packet = replace(pkt, mark=mark)
                notes.append(f"mark set to {mark:#x}")
                del w[:5]
            elif w[0] == "update":
                notes.append(f"records the client in {w[1]} (session affinity)")
                w = []
            elif w[:2] == ["dnat", "to"]:
                return [self._dnat(path, hook, chain, index, rule, reasons, notes, w[2])]
            elif w[0] == "masquerade":
                path.masquerade_step = self._step(path, hook, chain, index, rule, True, self._why(reasons),
                                                  "masquerade", notes=tuple(notes), target="MASQUERADE")
                return [(path, _STOP)]
            elif w[:3] == ["numgen", "random", "mod"] and w[4] == "vmap":
                return self._numgen(path, hook, chain, index, rule, reasons, int(w[3]), " ".join(w[6:-1]), depth)
            elif w[0] in ("jump", "goto", "drop", "reject", "return", "accept"):
                self._step(path, hook, chain, index, rule, True, self._why(reasons), " ".join(w[:2]),
                           notes=tuple(notes), target=w[1] if len(w) > 1 else w[0])
                return self._verdict(path, hook, " ".join(w), depth)
            else:
                raise NftTraceError(f"chain {chain} rule {index}: unknown rule form {' '.join(w)!r}")
        self._step(path, hook, chain, index, rule, True, self._why(reasons), "continue", notes=tuple(notes))
        return [(path, "next")]

    def _match(self, pkt: PacketState, w: list[str]) -> tuple[int, bool, str] | None:
        """(words used, hit, why) of the match expression `w` starts with; None if it starts with none."""
        if w[:3] == ["ct", "state", "new"]:
            return 3, True, "ct state new (first packet)"
        if w[0] in ("ip", "ip6") and w[1] in ("saddr", "daddr") and w[2] != ".":
            return self._match_addr(pkt, w)
        if w[0] == "fib" and w[2:4] == ["type", "local"]:
            addr = pkt.src if w[1] == "saddr" else pkt.dst
            local = self.mc.is_local(addr)
            return 4, local, f"{addr} is {'' if local else 'not '}local on the node"
        if w[0] in ("iif", "iifname"):
            negate = w[1] == "!="
            pattern = w[2 if negate else 1].strip('"')
            iface = pkt.in_iface or ""
            hit = iface.startswith(pattern[:-1]) if pattern.endswith("*") else iface == pattern
            return (3 if negate else 2), hit != negate, (
                f"input interface {iface or '(none)'} {'matches' if hit else 'does not match'} {pattern}")
        if w[:2] == ["mark", "and"] and w[3] == "==":
            hit = pkt.mark & int(w[2], 16) == int(w[4], 16)
            return 5, hit, f"mark {pkt.mark:#x} & {w[2]} {'==' if hit else '!='} {w[4]}"
        if w[:2] == ["meta", "l4proto"] and w[2] != ".":
            hit = w[2] == pkt.proto
            return 3, hit, f"protocol {pkt.proto}" if hit else f"protocol {pkt.proto} is not {w[2]}"
        return None

    def _match_addr(self, pkt: PacketState, w: list[str]) -> tuple[int, bool, str]:
        """`ip saddr|daddr [!=] ADDR|CIDR|{ ... }|@set`; a dynamic set (affinity) holds what --recorded says."""
        addr = pkt.src if w[1] == "saddr" else pkt.dst
        negate = w[2] == "!="
        i = 3 if negate else 2
        j = w.index("}", i) if w[i] == "{" else i
        value = " ".join(w[i:j + 1])
        if value.startswith("@"):
            name = value[1:]
            hit = self.mc.recorded(name) if name in self.t.dynamic else addr in self.t.sets.get(name, set())
        else:
            hit = _in_value(addr, value)
        what = "source" if w[1] == "saddr" else "destination"
        return j + 1, hit != negate, f"{what} {addr} {'in' if hit else 'not in'} {value}"

    @staticmethod
    def _why(reasons: list[str]) -> str:
        return "; ".join(reasons) or "matches every packet"

    def _nomatch(self, path: Path, hook: str, chain: str, index: int, rule: str, why: str) -> list[tuple[Path, str]]:
        w = rule.split(" ")
        target = w[-1] if len(w) > 1 and w[-2] in ("jump", "goto") else ""
        self._step(path, hook, chain, index, rule, False, why, target=target)
        return [(path, "next")]

    def _vmap(self, path: Path, hook: str, chain: str, index: int, rule: str, reasons: list[str], name: str,
              key: str, depth: int) -> list[tuple[Path, str]]:
        if name not in self.t.maps:
            raise NftTraceError(f"chain {chain} rule {index}: no map {name}")
        verdict = self.t.maps[name].get(key)
        if verdict is None:
            return self._nomatch(path, hook, chain, index, rule, f"no element {key} in map {name}")
        why = self._why([*reasons, f"element {key} of map {name}"])
        self._step(path, hook, chain, index, rule, True, why, verdict, target=verdict.split(" ")[-1])
        return self._verdict(path, hook, verdict, depth)

    def _numgen(self, path: Path, hook: str, chain: str, index: int, rule: str, reasons: list[str], n: int,
                body: str, depth: int) -> list[tuple[Path, str]]:
        branches = [b.split(" : ", 1) for b in re.split(r"\s*,\s*", body)]
        if len(branches) != n:
            raise NftTraceError(f"chain {chain} rule {index}: numgen mod {n} with {len(branches)} branches")
        out: list[tuple[Path, str]] = []
        for value, verdict in branches:
            p = path.fork(path.probability / n)
            why = self._why([*reasons, f"numgen random mod {n} = {value} (probability {percent(1 / n)})"])
            self._step(p, hook, chain, index, rule, True, why, verdict, branch=1 / n, target=verdict.split(" ")[-1])
            out.extend(self._verdict(p, hook, verdict, depth))
        return out

    def _dnat(self, path: Path, hook: str, chain: str, index: int, rule: str, reasons: list[str],
              notes: list[str], to: str) -> tuple[Path, str]:
        s = self._step(path, hook, chain, index, rule, True, self._why(reasons), f"dnat to {to}",
                       notes=tuple(notes), target="DNAT")
        host, _, port = to.rpartition(":")
        path.dnat, path.dnat_step = to, s
        path.packet = replace(path.packet, dst=host.strip("[]"), dport=int(port))
        return path, _NATDONE

    def _verdict(self, path: Path, hook: str, verdict: str, depth: int) -> list[tuple[Path, str]]:
        """A jump/goto/drop/reject/return/accept already recorded as a step: its effect."""
        w = verdict.split(" ")
        if w[0] in ("drop", "reject", "accept"):
            path.verdict = {"drop": DROP, "reject": REJECT, "accept": ACCEPT}[w[0]]
            path.verdict_step = path.steps[-1]
            return [(path, _STOP)]
        if w[0] == "return":
            return [(path, _FALL)]
        if w[0] not in ("jump", "goto"):
            raise NftTraceError(f"unknown verdict {verdict!r}")
        if w[1] == NFT_MARK_FOR_MASQUERADE:
            path.masq_marks.append(path.steps[-1])
        out: list[tuple[Path, str]] = []
        for p, outcome in self.run_chain(path, hook, w[1], depth + 1):
            # A chain that ends continues after a jump; after a goto it returns from this chain too.
            out.append((p, "next" if outcome == _FALL and w[0] == "jump" else outcome))
        return out

    # ---------------------------------------------------------------- hooks

    def run_hook(self, path: Path, hook: str) -> list[Path]:
        """Every base chain of the hook in priority order; a drop or reject ends the path there."""
        live, ended = [path], []
        for base in self.t.hook_chains(hook):
            label = f"{hook} ({base.kind}, priority {base.priority})"
            nxt: list[Path] = []
            for p in live:
                p.hooks.append(base.name)
                for q, outcome in self.run_chain(p, label, base.name, 0):
                    if q.verdict in (DROP, REJECT):
                        ended.append(q)
                        continue
                    if outcome == _FALL:
                        self._step(q, label, base.name, 0, "", True, "end of the base chain", "policy accept")
                    nxt.append(q)
            live = nxt
        return live + ended


def _walk(walker: _Walker, paths: list[Path], hooks: tuple[str, ...]) -> list[Path]:
    for hook in hooks:
        paths = [q for p in paths for q in ([p] if p.verdict != ACCEPT else walker.run_hook(p, hook))]
    return paths


def trace_nft(table: NftTable, packet: Packet, ctx: TraceContext) -> Trace:
    """Trace `packet` (first packet of a new connection) through the table: every path with its probability."""
    in_iface = None if packet.origin == ORIGIN_NODE else (packet.in_iface or ctx.external_iface)
    state = PacketState(packet.src, packet.src_port, packet.dst, packet.dst_port, packet.proto, in_iface, None)
    walker = _Walker(table, ctx)
    node = packet.origin == ORIGIN_NODE
    start = Path(1.0, [], state, mark_target=NFT_MARK_FOR_MASQUERADE, masq_hook=NFT_NAT_POSTROUTING,
                 masq_rule="masquerade")
    finished: list[Path] = []
    for p in _walk(walker, [start], ("output",) if node else ("prerouting",)):
        local = walker.mc.is_local(p.packet.dst)
        if node:
            rest: tuple[str, ...] = ("postrouting", "input") if local else ("postrouting",)
        else:
            rest = ("input",) if local else ("forward", "postrouting")
        for q in _walk(walker, [p], rest):
            if q.verdict == ACCEPT:
                q.delivered = DELIVERED_LOCAL if local else (SENT if node else FORWARDED)
            finished.append(q)
    return Trace(packet, finished, in_iface=in_iface)
