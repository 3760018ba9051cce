"""Render a Trace as text (one block per hook, ✓/✗ per rule, then the outcome) or as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from svcnet.explain.trace import DELIVERED_LOCAL, ORIGIN_NODE, Path, Step, Trace
from svcnet.render.chains import ACCEPT

OK, NO = "✓", "✗"


def percent(p: float) -> str:
    """0.5 -> '50%', 1/3 -> '33.33%'."""
    text = f"{p * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _step_ref(s: Step) -> str:
    return f"{s.table}/{s.chain} rule {s.index}" if s.index else f"{s.table}/{s.chain} policy"


def masquerade_reason(path: Path) -> str:
    """Whether the path is masqueraded, and which rules decided it."""
    marks = "; ".join(f"marked by {_step_ref(s)} `{s.rule}` ({s.reason})" for s in path.masq_marks)
    if path.masquerade_step is not None:
        s = path.masquerade_step
        return f"yes: {marks + '; ' if marks else ''}{s.action} by {_step_ref(s)} `{s.rule}`"
    if path.masq_marks:
        if path.delivered == DELIVERED_LOCAL and path.masq_hook not in path.hooks:
            return f"no: {marks}, but the packet is delivered locally ({path.masq_hook} is not traversed)"
        if path.masq_hook not in path.hooks:
            return f"no: {marks}, but the packet never reaches {path.masq_hook} ({path.verdict})"
        return f"no: {marks}, but no {path.masq_rule} rule matched in {path.masq_hook}"
    missed = [s for s in path.steps if s.target == path.mark_target and not s.matched]
    if missed:
        why = "; ".join(f"{_step_ref(s)} did not match ({s.reason})" for s in missed)
        return f"no: no {path.mark_target} rule matched: {why}"
    return f"no: no {path.mark_target} rule on the path"


def path_summary(path: Path) -> str:
    dest = f"DNAT to {path.dnat}" if path.dnat else "not DNATed"
    where = f", delivered {path.delivered}" if path.delivered and path.verdict == ACCEPT else ""
    masq = "masqueraded" if path.masqueraded else "not masqueraded"
    return f"{dest}, {path.verdict}{where}, {masq}"


def _common_prefix(a: list[Step], b: list[Step]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _step_lines(s: Step) -> list[str]:
    if s.index == 0:
        return [f"      → {s.action} ({s.reason})"]
    branch = f"  [random {percent(s.branch)}]" if s.branch is not None else ""
    if s.matched:
        lines = [f"    {OK} {s.index:>3} {s.rule}{branch}",
                 f"          matched: {s.reason}", f"          → {s.action}"]
    else:
        lines = [f"    {NO} {s.index:>3} {s.rule}{branch}", f"          no match: {s.reason}"]
    lines.extend(f"          note: {n}" for n in s.notes)
    return lines


def _path_lines(path: Path, start: int, only_matched: bool) -> list[str]:
    out: list[str] = []
    hook: str | None = None
    chain: tuple[str, str] | None = None
    hidden = 0

    def flush() -> None:
        nonlocal hidden
        if hidden:
            out.append(f"      ({hidden} non-matching rule{'s' if hidden > 1 else ''} hidden)")
            hidden = 0

    for s in path.steps[start:]:
        if s.hook != hook:
            flush()
            out.append(f"  == {s.hook} ==")
            hook, chain = s.hook, None
        if (s.table, s.chain) != chain:
            flush()
            out.append(f"    {s.table}/{s.chain}")
            chain = (s.table, s.chain)
        if only_matched and not s.matched and s.branch is None:
            hidden += 1
            continue
        flush()
        out.extend(_step_lines(s))
    flush()
    return out


def render_text(tr: Trace, only_matched: bool = False) -> str:
    """The human explanation of a trace."""
    pkt = tr.packet
    iface = "" if pkt.origin == ORIGIN_NODE else f" (input interface {tr.in_iface})"
    lines = [f"Packet: {pkt.describe()} from {pkt.origin}{iface}, first packet of a new connection", ""]
    for i, path in enumerate(tr.paths):
        lines.append(f"Path {i + 1} of {len(tr.paths)} — probability {percent(path.probability)}: "
                     f"{path_summary(path)}")
        lines.append(f"  hooks: {' → '.join(path.hooks)}")
        start = 0
        if i:
            start = _common_prefix(tr.paths[i - 1].steps, path.steps)
            if start:
                lines.append(f"  (first {start} steps as in path {i})")
        lines.extend(_path_lines(path, start, only_matched))
        for note in path.notes:
            lines.append(f"  note: {note}")
        lines.append("")
    lines.append("Outcome:")
    for o in tr.outcomes():
        dest = f"DNAT → {o.destination}" if o.destination else "no DNAT"
        masq = "masqueraded" if o.masqueraded else "not masqueraded"
        paths = ", ".join(str(i + 1) for i in o.paths)
        lines.append(f"  {percent(o.probability):>7}  {dest}; {o.verdict}; {masq}  (path {paths})")
    lines.append("Masquerade:")
    reasons: dict[str, list[str]] = {}
    for i, path in enumerate(tr.paths):
        reasons.setdefault(masquerade_reason(path), []).append(str(i + 1))
    for why, nums in reasons.items():
        lines.append(f"  path{'s' if len(nums) > 1 else ''} {', '.join(nums)}: {why}")
    for w in tr.warnings:
        lines.append(f"warning: {w}")
    return "\n".join(lines) + "\n"


def trace_dict(tr: Trace) -> dict[str, Any]:
    """A JSON-ready form of the trace."""
    return {
        "packet": asdict(tr.packet),
        "paths": [
            {
                "probability": p.probability,
                "hooks": p.hooks,
                "dnat": p.dnat,
                "verdict": p.verdict,
                "verdict_step": asdict(p.verdict_step) if p.verdict_step else None,
                "delivered": p.delivered,
                "masqueraded": p.masqueraded,
                "masquerade_reason": masquerade_reason(p),
                "masq_mark_rules": [asdict(s) for s in p.masq_marks],
                "steps": [asdict(s) for s in p.steps],
                "notes": p.notes,
            }
            for p in tr.paths
        ],
        "outcomes": [
            {"destination": o.destination, "verdict": o.verdict, "masqueraded": o.masqueraded,
             "probability": o.probability, "paths": [i + 1 for i in o.paths]}
            for o in tr.outcomes()
        ],
        "warnings": tr.warnings,
    }


def render_json(tr: Trace) -> str:
    return json.dumps(trace_dict(tr), indent=2, ensure_ascii=False) + "\n"
