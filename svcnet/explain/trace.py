"""Walk a first packet through the nat and filter hooks of an iptables dump, branch by branch.

Hook order follows netfilter for a connection's first packet:

* node-originated: nat OUTPUT → filter OUTPUT → nat POSTROUTING → (local destination) filter INPUT;
* from a pod or from outside: nat PREROUTING → routing → filter INPUT (local destination) or
  filter FORWARD → nat POSTROUTING.

`statistic` rules split a path (p takes the jump, 1-p continues); every other rule either
matches or not. Each resulting path carries its probability, every step with the reason, the
DNAT destination, the final verdict and whether (and why) the packet is masqueraded.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from svcnet.desired import FAMILIES
from svcnet.explain.match import BRANCH, NOMATCH, MatchContext, PacketState, evaluate, parse_mark
from svcnet.explain.rules import Rule, RuleError, parse_rule, rule_text
from svcnet.render.chains import (
    ACCEPT,
    DNAT,
    DROP,
    FORWARD,
    INPUT,
    KUBE_MARK_MASQ,
    MARK,
    MASQUERADE,
    NON_TERMINATING_TARGETS,
    OUTPUT,
    POSTROUTING,
    PREROUTING,
    REDIRECT,
    REJECT,
    RETURN,
    SNAT,
    TABLE_FILTER,
    TABLE_NAT,
)
from svcnet.render.dump import Dump

ORIGIN_POD, ORIGIN_NODE, ORIGIN_OUTSIDE = "pod", "node", "outside"
ORIGINS = (ORIGIN_POD, ORIGIN_NODE, ORIGIN_OUTSIDE)
PROTOCOLS = ("tcp", "udp", "sctp")
ERROR = "ERROR"
LOOPBACK_NETS = tuple(f.loopback_net for f in FAMILIES.values())
DELIVERED_LOCAL, FORWARDED, SENT = "local", "forwarded", "sent"

# Internal outcomes of running a chain.
_FALL, _CONTINUE, _NATDONE = "fall", "continue", "natdone"


class TraceError(ValueError):
    """Bad packet or context (e.g. an unparseable address)."""


@dataclass(frozen=True, slots=True)
class Packet:
    src: str
    src_port: int
    dst: str
    dst_port: int
    proto: str = "tcp"
    origin: str = ORIGIN_POD
    in_iface: str | None = None  # default: the context's pod or external interface

    def __post_init__(self) -> None:
        for what, ip in (("source", self.src), ("destination", self.dst)):
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise TraceError(f"{what} {ip!r} is not an IP address") from None
        if ipaddress.ip_address(self.src).version != ipaddress.ip_address(self.dst).version:
            raise TraceError("source and destination are of different IP families")
        for what, port in (("source port", self.src_port), ("destination port", self.dst_port)):
            if not 0 <= port <= 65535:
                raise TraceError(f"{what} {port} is out of range")
        if self.proto not in PROTOCOLS:
            raise TraceError(f"protocol {self.proto!r} is not one of {', '.join(PROTOCOLS)}")
        if self.origin not in ORIGINS:
            raise TraceError(f"origin {self.origin!r} is not one of {', '.join(ORIGINS)}")

    def describe(self) -> str:
        return f"{self.proto} {hostport(self.src, self.src_port)} -> {hostport(self.dst, self.dst_port)}"


@dataclass(frozen=True)
class TraceContext:
    """Node facts: LOCAL addresses (IPs or CIDRs; loopback is always added), interfaces, affinity."""

    local_ips: frozenset[str] = frozenset()
    pod_iface: str = "cni0"
    external_iface: str = "eth0"
    pod_cidrs: tuple[str, ...] = ()  # destinations routed to pod_iface
    recent_recorded: frozenset[str] = frozenset()  # recent lists the client is in ("*" = all)
    max_depth: int = 64
    max_paths: int = 4096

    def match_context(self) -> MatchContext:
        nets = []
        for item in (*self.local_ips, *LOOPBACK_NETS):
            try:
                nets.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise TraceError(f"local address {item!r} is not an IP or CIDR") from None
        return MatchContext(tuple(nets), self.recent_recorded)

    def out_iface(self, dst: str) -> str:
        addr = ipaddress.ip_address(dst)
        for cidr in self.pod_cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            if net.version == addr.version and addr in net:
                return self.pod_iface
        return self.external_iface


@dataclass(frozen=True, slots=True)
class Step:
    """One rule (or chain policy, index 0) a path met, with what happened."""

    hook: str  # e.g. "nat PREROUTING"
    table: str
    chain: str
    index: int  # 1-based rule number in the chain; 0 for the policy
    rule: str
    matched: bool
    reason: str
    action: str = ""
    branch: float | None = None  # statistic: probability of taking this rule
    notes: tuple[str, ...] = ()
    target: str = ""  # the rule's -j/-g target


@dataclass(frozen=True, slots=True)
class FilterVerdict:
    hook: str
    verdict: str
    step: Step
    by_policy: bool


@dataclass
class Path:
    """One possible fate of the packet."""

    probability: float
    steps: list[Step]
    packet: PacketState
    hooks: list[str] = field(default_factory=list)
    dnat: str | None = None  # --to-destination value
    dnat_step: Step | None = None
    masq_marks: list[Step] = field(default_factory=list)  # rules that jumped to KUBE-MARK-MASQ
    mark_steps: list[Step] = field(default_factory=list)  # MARK targets applied
    masquerade_step: Step | None = None  # MASQUERADE/SNAT applied in nat POSTROUTING
    filter_verdicts: list[FilterVerdict] = field(default_factory=list)
    verdict: str = ACCEPT
    verdict_step: Step | None = None
    delivered: str = ""
    notes: list[str] = field(default_factory=list)
    # How this ruleset spells masquerading (nftables mode: mark-for-masquerade, the nat-postrouting chain).
    mark_target: str = KUBE_MARK_MASQ
    masq_hook: str = "nat POSTROUTING"
    masq_rule: str = MASQUERADE

    @property
    def masqueraded(self) -> bool:
        return self.masquerade_step is not None

    def fork(self, probability: float) -> Path:
        return replace(
            self, probability=probability, steps=list(self.steps), hooks=list(self.hooks),
            masq_marks=list(self.masq_marks), mark_steps=list(self.mark_steps),
            filter_verdicts=list(self.filter_verdicts), notes=list(self.notes),
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    destination: str | None
    verdict: str
    masqueraded: bool
    probability: float
    paths: tuple[int, ...]  # indexes into Trace.paths


@dataclass
class Trace:
    packet: Packet
    paths: list[Path]
    warnings: list[str] = field(default_factory=list)
    in_iface: str | None = None  # effective input interface (None: locally generated)

    def outcomes(self) -> list[Outcome]:
        """Paths grouped by (DNAT destination, verdict, masquerade), in first-seen order."""
        groups: dict[tuple[str | None, str, bool], list[int]] = {}
        for i, p in enumerate(self.paths):
            groups.setdefault((p.dnat, p.verdict, p.masqueraded), []).append(i)
        return [
            Outcome(dest, verdict, masq, sum(self.paths[i].probability for i in idx), tuple(idx))
            for (dest, verdict, masq), idx in groups.items()
        ]

    def destinations(self) -> dict[str, float]:
        """DNAT destination -> total probability."""
        out: dict[str, float] = {}
        for p in self.paths:
            if p.dnat:
                out[p.dnat] = out.get(p.dnat, 0.0) + p.probability
        return out


def hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def split_hostport(value: str) -> tuple[str, int | None]:
    """`10.0.0.1:80`, `[fd00::1]:80`, `10.0.0.1` -> (ip, port or None); ranges keep the first."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    host = host.split("-")[0]
    port = port.split("-")[0]
    return host, int(port) if port else None


class _Walker:
    def __init__(self, dump: Dump, ctx: TraceContext):
        self.dump = dump
        self.ctx = ctx
        self.mctx = ctx.match_context()
        self.warnings: list[str] = []
        self._rules: dict[tuple[str, str], list[Rule | RuleError]] = {}

    def rules(self, table: str, chain: str) -> list[Rule | RuleError]:
        key = (table, chain)
        if key not in self._rules:
            c = self.dump.chain(table, chain)
            parsed: list[Rule | RuleError] = []
            for args in c.rules if c else []:
                try:
                    parsed.append(parse_rule(args))
                except RuleError as exc:
                    parsed.append(exc)
                    self.warnings.append(f"{table}/{chain}: cannot parse '{args}': {exc}")
            self._rules[key] = parsed
        return self._rules[key]

    def has_chain(self, table: str, chain: str) -> bool:
        c = self.dump.chain(table, chain)
        return c is not None and not c.deleted

    # -- chains ---------------------------------------------------------------------------------

    def run_chain(self, path: Path, table: str, hook: str, chain: str, depth: int) -> list[tuple[Path, str]]:
        """Run `chain` from its first rule; returns (path, outcome) for every branch."""
        if depth > self.ctx.max_depth:
            path.notes.append(f"jump depth limit {self.ctx.max_depth} reached at {table}/{chain} (loop?)")
            return [(path, ERROR)]
        rules = self.rules(table, chain)
        out: list[tuple[Path, str]] = []
        pending: list[tuple[Path, int]] = [(path, 0)]
        while pending:
            cur, i = pending.pop()
            while True:
                if i >= len(rules):
                    out.append((cur, _FALL))
                    break
                rule = rules[i]
                text = rule_text(chain, self.dump.chain(table, chain).rules[i])  # type: ignore[union-attr]
                if isinstance(rule, RuleError):
                    cur.steps.append(Step(hook, table, chain, i + 1, text, False, f"unparseable: {rule}"))
                    i += 1
                    continue
                ev = evaluate(rule, cur.packet, self.mctx)
                if ev.result == NOMATCH:
                    cur.steps.append(Step(hook, table, chain, i + 1, text, False, ev.reason, notes=ev.notes,
                                          target=rule.target))
                    i += 1
                    continue
                branch = None
                if ev.result == BRANCH:
                    branch = ev.probability
                    miss = cur.fork(cur.probability * (1.0 - branch))
                    miss.steps.append(Step(hook, table, chain, i + 1, text, False,
                                           f"random: not taken (probability {1.0 - branch:.4g})",
                                           branch=branch, target=rule.target))
                    if miss.probability > 0:
                        pending.append((miss, i + 1))
                    cur.probability *= branch
                    if cur.probability <= 0:
                        break
                results = self.apply_target(cur, rule, text, ev.reason, ev.notes, branch,
                                            table, hook, chain, i, depth)
                conts = [p for p, kind in results if kind == _CONTINUE]
                out.extend((p, kind) for p, kind in results if kind != _CONTINUE)
                pending.extend((p, i + 1) for p in reversed(conts[1:]))
                if not conts:
                    break
                cur, i = conts[0], i + 1
            if len(out) + len(pending) > self.ctx.max_paths:
                self.warnings.append(f"more than {self.ctx.max_paths} paths: trace truncated")
                break
        return out

    def apply_target(self, path: Path, rule: Rule, text: str, reason: str, notes: tuple[str, ...],
                     branch: float | None, table: str, hook: str, chain: str, i: int,
                     depth: int) -> list[tuple[Path, str]]:
        target = rule.target

        def step(action: str, extra: tuple[str, ...] = ()) -> Step:
            s = Step(hook, table, chain, i + 1, text, True, reason, action, branch, notes + extra, target)
            path.steps.append(s)
            return s

        if rule.find("recent", "--set"):
            name = rule.find("recent", "--name")
            path.packet = replace(path.packet, recent_set=path.packet.recent_set | {
                name.value if name else "DEFAULT"})
        if not target:
            step("no target: only counts, continue")
            return [(path, _CONTINUE)]
        if target in (ACCEPT, DROP, REJECT):
            step(target)
            return [(path, target)]
        if target == RETURN:
            step("RETURN to the calling chain")
            return [(path, _FALL)]
        if target == DNAT:
            return self._dnat(path, rule, step)
        if target in (SNAT, MASQUERADE):
            s = step(f"{target} (source NAT)" + (f" to {rule.target_opt('--to-source')}"
                                                 if target == SNAT else ""))
            path.masquerade_step = s
            path.packet = replace(path.packet, ctstate=path.packet.ctstate | {"SNAT"})
            return [(path, _NATDONE)]
        if target == REDIRECT:
            port = rule.target_opt("--to-ports")
            local = FAMILIES[ipaddress.ip_address(path.packet.dst).version].loopback_ip
            s = step(f"REDIRECT to this node port {port or path.packet.dport}")
            new_port = split_hostport(f"x:{port}")[1] if port else path.packet.dport
            path.dnat, path.dnat_step = hostport(local, new_port or path.packet.dport), s
            path.packet = replace(path.packet, dst=local, dport=new_port or path.packet.dport,
                                  ctstate=path.packet.ctstate | {"DNAT"})
            return [(path, _NATDONE)]
        if target == MARK:
            return self._mark(path, rule, step)
        if self.has_chain(table, target):
            s = step(("goto " if rule.goto else "jump to ") + target)
            if target == KUBE_MARK_MASQ:
                path.masq_marks.append(s)
            results = self.run_chain(path, table, hook, target, depth + 1)
            if rule.goto:
                return results
            return [(p, _CONTINUE if kind == _FALL else kind) for p, kind in results]
        if target in NON_TERMINATING_TARGETS:
            step(f"{target}: does not change the packet's fate, continue")
            return [(path, _CONTINUE)]
        self.warnings.append(f"{table}/{chain} rule {i + 1}: target {target} is not modelled (continued)")
        step(f"target {target} not modelled: assumed non-terminating, continue")
        return [(path, _CONTINUE)]

    def _dnat(self, path: Path, rule: Rule, step) -> list[tuple[Path, str]]:  # type: ignore[no-untyped-def]
        to = rule.target_opt("--to-destination") or rule.target_opt("--to") or ""
        ip, port = split_hostport(to)
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            self.warnings.append(f"DNAT target {to!r} is not an address")
            step(f"DNAT to {to!r} (unparseable)")
            return [(path, ERROR)]
        s = step(f"DNAT to {to}")
        path.dnat, path.dnat_step = to, s
        path.packet = replace(path.packet, dst=ip, dport=port if port is not None else path.packet.dport,
                              ctstate=path.packet.ctstate | {"DNAT"})
        return [(path, _NATDONE)]

    def _mark(self, path: Path, rule: Rule, step) -> list[tuple[Path, str]]:  # type: ignore[no-untyped-def]
        old = mark = path.packet.mark
        for opt, vals in rule.target_args:
            value = " ".join(vals)
            if opt in ("--set-mark", "--set-xmark"):
                v, m = parse_mark(value)
                mark = (mark & ~m) ^ v if opt == "--set-xmark" else (mark & ~m) | v
            elif opt == "--or-mark":
                mark |= int(value, 0)
            elif opt == "--xor-mark":
                mark ^= int(value, 0)
            elif opt == "--and-mark":
                mark &= int(value, 0)
        mark &= 0xFFFFFFFF
        s = step(f"MARK {old:#x} -> {mark:#x}, continue")
        path.mark_steps.append(s)
        path.packet = replace(path.packet, mark=mark)
        return [(path, _CONTINUE)]

    # -- hooks ----------------------------------------------------------------------------------

    def run_hook(self, path: Path, table: str, chain: str) -> list[tuple[Path, str]]:
        """Run a built-in chain; returns (path, ACCEPT|DROP|REJECT|ERROR) per branch."""
        hook = f"{table} {chain}"
        path.hooks.append(hook)
        out: list[tuple[Path, str]] = []
        for p, kind in self.run_chain(path, table, hook, chain, 0):
            if kind == _FALL:
                c = self.dump.chain(table, chain)
                policy = c.policy if c and c.policy in (ACCEPT, DROP) else ACCEPT
                why = "no rule decided" if c and c.rules else "chain has no rules"
                s = Step(hook, table, chain, 0, f"policy {policy}", True, why, f"policy {policy}")
                p.steps.append(s)
                if table == TABLE_FILTER:
                    p.filter_verdicts.append(FilterVerdict(hook, policy, s, True))
                    p.verdict, p.verdict_step = policy, s
                out.append((p, policy))
                continue
            verdict = ACCEPT if kind == _NATDONE else kind
            if table == TABLE_FILTER or verdict != ACCEPT:
                s = p.steps[-1]
                if table == TABLE_FILTER:
                    p.filter_verdicts.append(FilterVerdict(hook, verdict, s, False))
                p.verdict, p.verdict_step = verdict, s
            out.append((p, verdict))
        return out


def _first_hooks(origin: str) -> tuple[str, str]:
    return (TABLE_NAT, OUTPUT) if origin == ORIGIN_NODE else (TABLE_NAT, PREROUTING)


def _route(path: Path, origin: str, walker: _Walker) -> list[tuple[str, str]]:
    """The hooks after the first nat hook, from the (possibly DNATed) destination."""
    local = walker.mctx.is_local(path.packet.dst)
    out_iface = "lo" if local else walker.ctx.out_iface(path.packet.dst)
    path.packet = replace(path.packet, out_iface=out_iface)
    if origin == ORIGIN_NODE:
        path.delivered = DELIVERED_LOCAL if local else SENT
        rest = [(TABLE_FILTER, OUTPUT), (TABLE_NAT, POSTROUTING)]
        return [*rest, (TABLE_FILTER, INPUT)] if local else rest
    path.delivered = DELIVERED_LOCAL if local else FORWARDED
    return [(TABLE_FILTER, INPUT)] if local else [(TABLE_FILTER, FORWARD), (TABLE_NAT, POSTROUTING)]


def trace(dump: Dump, packet: Packet, ctx: TraceContext) -> Trace:
    """Every path `packet` (a connection's first packet) can take through `dump`."""
    walker = _Walker(dump, ctx)
    if packet.origin == ORIGIN_NODE:
        in_iface = None
    else:
        in_iface = packet.in_iface or (ctx.pod_iface if packet.origin == ORIGIN_POD else ctx.external_iface)
    state = PacketState(packet.src, packet.src_port, packet.dst, packet.dst_port, packet.proto,
                        in_iface, None)
    start = Path(probability=1.0, steps=[], packet=state)
    done: list[Path] = []
    work: list[tuple[Path, list[tuple[str, str]]]] = [(start, [_first_hooks(packet.origin)])]
    while work:
        path, hooks = work.pop(0)
        if not hooks:
            done.append(path)
            continue
        table, chain = hooks[0]
        first = not path.hooks
        results = walker.run_hook(path, table, chain)
        for p, verdict in results:
            if verdict != ACCEPT:
                done.append(p)
                continue
            rest = _route(p, packet.origin, walker) if first else hooks[1:]
            if (table, chain) == (TABLE_NAT, POSTROUTING) and len(rest) == 1 and rest[0] == (TABLE_FILTER, INPUT):
                p.packet = replace(p.packet, in_iface="lo")  # looped back to this node
            work.append((p, rest))
    return Trace(packet, done, walker.warnings, in_iface)


def parse_local_ips(values: list[str] | tuple[str, ...]) -> frozenset[str]:
    """Validate addresses/CIDRs given by a caller."""
    out = set()
    for v in values:
        try:
            ipaddress.ip_network(v, strict=False)
        except ValueError:
            raise TraceError(f"{v!r} is not an IP address or CIDR") from None
        out.add(v)
    return frozenset(out)
