"""Build the ruleset a node really runs from svcnet's artifacts, or from `iptables-save`.

The restore input has no rules in the built-in chains: kube-proxy ensures its jump rules
separately, each with `-I CHAIN 1` in list order (svcnet/render/jumps.py), so on a fresh node a
built-in chain holds them in the reverse of their list order. `combine` reproduces that final state so
tracing can start at the built-in hooks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from svcnet.explain.trace import Packet, Trace, TraceContext, trace
from svcnet.render.chains import ACCEPT, BUILTIN_CHAINS
from svcnet.render.dump import Chain, Dump, parse_dump

_COUNTERS = re.compile(r"^\[\d+:\d+\]\s+")
DEFAULT_POLICY = ACCEPT


class JumpRuleLike(Protocol):
    """What `combine` needs of `svcnet.render.jumps.JumpRule`."""

    @property
    def table(self) -> str: ...
    @property
    def chain(self) -> str: ...
    @property
    def args(self) -> tuple[str, ...]: ...


def _quote(arg: str) -> str:
    if not arg or any(ch.isspace() for ch in arg) or '"' in arg:
        return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return arg


def args_text(args: Iterable[str]) -> str:
    """An argument list as restore-style rule text (multi-word values in double quotes)."""
    return " ".join(_quote(a) for a in args)


def _ensure_builtins(dump: Dump) -> None:
    for table, chains in BUILTIN_CHAINS.items():
        t = dump.table(table)
        for name in chains:
            c = t.chains.get(name)
            if c is None:
                t.chains[name] = Chain(name, policy=DEFAULT_POLICY)
            elif c.policy == "-":
                c.policy = DEFAULT_POLICY


def combine(restore_text: str, jump_rules: Iterable[JumpRuleLike]) -> Dump:
    """The restore input plus the jump rules, prepended one by one as kube-proxy does.

    Chains deleted by `-X` in the restore input are dropped; built-in chains get policy ACCEPT.
    """
    dump = parse_dump(restore_text, strict=False)
    for table in dump.tables.values():
        for name in [n for n, c in table.chains.items() if c.deleted]:
            del table.chains[name]
    _ensure_builtins(dump)
    for jr in jump_rules:
        chain = dump.table(jr.table).chains.setdefault(jr.chain, Chain(jr.chain, policy=DEFAULT_POLICY))
        text = args_text(jr.args)
        if text not in chain.rules:  # `-C` first: an existing rule is not inserted again
            chain.rules.insert(0, text)
    return dump


def parse_live(iptables_save_text: str) -> Dump:
    """`iptables-save` output (with or without `-c` counters) as a Dump with built-in chains."""
    lines = [_COUNTERS.sub("", line) for line in iptables_save_text.splitlines()]
    dump = parse_dump("\n".join(lines) + "\n", strict=False)
    _ensure_builtins(dump)
    return dump


def trace_live_text(iptables_save_text: str, packet: Packet, ctx: TraceContext) -> Trace:
    """Trace a packet through what `iptables-save` printed on a node (the `--live` engine part)."""
    return trace(parse_live(iptables_save_text), packet, ctx)
