"""The playbook's validate, preflight, network, rules and teardown tasks: make a node match the description.

A guarded change goes to the node's agent in one request (lock, backup, rollback on failure,
dead-man switch) and is confirmed over a fresh connection, so a ruleset that cuts the
controller off is rolled back by the node itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from svcnet.agent.node import PART_NETWORK, PART_RULES
from svcnet.apply import cliff
from svcnet.desired import node_netconf
from svcnet.model.facts import with_facts
from svcnet.model.types import Cluster, NodeFacts
from svcnet.playbook import recap
from svcnet.playbook.model import NETWORK, RULES
from svcnet.playbook.runner import Outcome, TaskContext
from svcnet.render.artifacts import NodeArtifacts, node_artifacts_all
from svcnet.transport.protocol import (
    DIFF_KEYS,
    PART_DIFF_KEYS,
    ApplyAnswer,
    ApplyRequest,
    PreflightRequest,
    ProbeAnswer,
    ProbeRequest,
    TeardownRequest,
    desired_hashes,
)
from svcnet.transport.ssh import SSHError

PART_OF_VERB = {NETWORK: PART_NETWORK, RULES: PART_RULES}  # the part of the node each converge task owns


def validate(ctx: TaskContext) -> Outcome:
    cluster = ctx.cluster
    return Outcome(recap.OK, f"{cluster.name}: {len(cluster.services)} service(s), {len(cluster.pods)} pod(s)")


@dataclass
class HostState:
    """What the run knows about one host across tasks."""

    probe: ProbeAnswer | None = None  # the node's svcnet state, until it changes
    facts: NodeFacts | None = None  # gathered by the last probe
    done: dict[str, Outcome] = field(default_factory=dict)  # parts already applied with an earlier task
    # (desired artifacts, artifacts to send: desired + deletes of the probe's stale chains), until taken
    rendered: tuple[NodeArtifacts, NodeArtifacts] | None = None


class Converge:
    """The handlers that change nodes, and what they share over one run (one instance per run)."""

    def __init__(self) -> None:
        self.hosts: dict[str, HostState] = {}
        self.lock = threading.Lock()  # guards the host states and the render queue across hosts
        self.play = 0
        self.step = 0
        self.render_queue: list[str] = []  # probed hosts of the current converge step not rendered yet

    def state(self, host: str) -> HostState:
        with self.lock:
            return self.hosts.setdefault(host, HostState())

    def _enter(self, ctx: TaskContext) -> None:
        """Once per step, before any of its hosts probes: which hosts can be rendered together."""
        with self.lock:
            if ctx.step.play != self.play:  # a play has its own description
                self.play = ctx.step.play
                for st in self.hosts.values():
                    st.rendered = None
            if ctx.step.number != self.step:
                self.step = ctx.step.number
                self.render_queue = [h for h in ctx.step.hosts if h in self.hosts
                                     and self.hosts[h].probe is not None and self.hosts[h].rendered is None]

    # -- handlers -------------------------------------------------------------------------
    def preflight(self, ctx: TaskContext) -> Outcome:
        self._enter(ctx)
        req = PreflightRequest(ctx.run_id, node_netconf(ctx.cluster, ctx.cluster.node(ctx.host)),
                               proxy_mode=ctx.cluster.proxy.mode)
        answer = ctx.gateway.ask(req)
        if not answer.ok:
            return Outcome(recap.FAILED, answer.msg)
        self._record_probe(ctx.host, answer)  # a passing preflight carries the probe's answer too
        return Outcome(recap.OK, answer.msg)

    def network(self, ctx: TaskContext) -> Outcome:
        return self.converge(ctx, PART_OF_VERB[NETWORK])

    def rules(self, ctx: TaskContext) -> Outcome:
        return self.converge(ctx, PART_OF_VERB[RULES])

    def teardown(self, ctx: TaskContext) -> Outcome:
        self._enter(ctx)
        if ctx.options.check:
            return Outcome(recap.SKIPPED, "teardown is skipped in check mode")
        guard = ctx.options.confirm_timeout  # guarded like an apply: rolled back unless confirmed anew
        answer = ctx.gateway.ask(TeardownRequest(ctx.run_id, lock_wait=ctx.options.lock_wait, confirm_timeout=guard))
        if not answer.ok:
            return Outcome(recap.FAILED, answer.msg, rolled_back=answer.rolled_back)
        failed = confirm(ctx, "removed", guard) if answer.pending else None
        if failed is not None:
            return failed
        return Outcome(recap.CHANGED if answer.changed else recap.OK, answer.msg)

    # -- converge -------------------------------------------------------------------------
    def converge(self, ctx: TaskContext, part: str) -> Outcome:
        """Bring `part` of the node to the desired state.

        The first converge task of a play applies every selected part that differs in ONE guarded
        apply (one lock, one backup, one confirmation, one rollback covering both); the later
        task reports its part's share of that result.
        """
        self._enter(ctx)
        st = self.state(ctx.host)
        if part in st.done:
            return st.done.pop(part)
        parts = tuple(dict.fromkeys(PART_OF_VERB[v] for v in ctx.step.verbs if v in PART_OF_VERB))
        group = parts if part in parts else (part,)
        probe = st.probe or self._probe(ctx)
        if not probe.ok:
            return Outcome(recap.FAILED, probe.msg)
        desired, send = self.take_rendered(ctx.host, ctx.cluster, ctx.options.forks)
        want = desired_hashes(desired)  # stale chains are not desired state: hashed without them
        todo = tuple(p for p in group if ctx.options.diff or not probe.unchanged(want, (p,)))
        results = {p: Outcome(recap.OK, "no change") for p in group}
        if todo:
            warning = cliff_warning(ctx, send, probe) if PART_RULES in todo else None
            outcome = self._apply(ctx, send, todo, want, warning)
            if outcome.status in (recap.FAILED, recap.UNREACHABLE):
                return outcome
            for p in todo:  # each task shows its own part's diff, and is changed only if that differs
                diff = {k: v for k, v in outcome.diff.items() if k in PART_DIFF_KEYS[p]}
                same = DIFF_KEYS[p] in outcome.diff and not any(v.strip() for v in diff.values())
                status = recap.OK if outcome.status == recap.CHANGED and same else outcome.status
                results[p] = replace(outcome, status=status, diff=diff)
        st.done.update({p: o for p, o in results.items() if p != part})
        return results[part]

    def _probe(self, ctx: TaskContext) -> ProbeAnswer:
        answer = ctx.gateway.ask(ProbeRequest(ctx.run_id))
        if answer.ok:
            self._record_probe(ctx.host, answer)
        return answer

    def _record_probe(self, host: str, answer: ProbeAnswer) -> None:
        st = self.state(host)
        with self.lock:  # facts and probe together: a render batch of another host reads both
            st.facts, st.probe = answer.facts, answer

    def _apply(self, ctx: TaskContext, send: NodeArtifacts, parts: tuple[str, ...], want: Mapping[str, str],
               warning: str | None = None) -> Outcome:
        opts = ctx.options
        guard = 0.0 if opts.check else opts.confirm_timeout
        req = ApplyRequest(ctx.run_id, send, parts=parts, hashes=want, confirm_timeout=guard, check=opts.check,
                           diff=opts.diff, lock_wait=opts.lock_wait, proxy_mode=ctx.cluster.proxy.mode)
        lines = rules_lines(send) if PART_RULES in parts and not opts.check else 0
        answer = ask_with_progress(ctx, req, lines) if lines >= cliff.PROGRESS_LINES else ctx.gateway.ask(req)
        self.state(ctx.host).probe = None  # the node changed: probe again before the next converge
        diff = dict(answer.diff or {})
        note = f"; {warning}" if warning else ""
        if not answer.ok:
            return Outcome(recap.FAILED, answer.msg + note, diff, answer.rolled_back)
        failed = confirm(ctx, "applied", guard, diff) if answer.pending else None
        if failed is not None:
            return failed
        return Outcome(recap.CHANGED if answer.changed else recap.OK,
                       answer.msg + conntrack_note(answer) + note, diff)


    # -- rendering ------------------------------------------------------------------------
    def take_rendered(self, host: str, cluster: Cluster, forks: int) -> tuple[NodeArtifacts, NodeArtifacts]:
        """The probed host's (desired, to send) artifacts, rendered if need be; dropped once taken.

        Nodes share most of their rules, and one pass renders what they share once (host by host,
        the worker threads would repeat it per host under the GIL). A pass covers this host and
        the next `forks - 1` queued ones, so at most about `forks` hosts' texts are held at a time.
        A host probed only now (e.g. `--tags rules`: no preflight) is not queued and renders alone.
        """
        with self.lock:
            st = self.hosts[host]
            if st.rendered is None:
                others = [h for h in self.render_queue if h != host]
                batch = [host, *others[: max(0, forks - 1)]]
                self.render_queue = [h for h in self.render_queue if h not in batch]
                self._render_batch(cluster, batch)
            taken, st.rendered = st.rendered, None
            assert taken is not None
            return taken

    def _render_batch(self, cluster: Cluster, todo: Sequence[str]) -> None:
        """Render the artifacts of `todo` (probed hosts) in one pass."""
        states = {h: self.hosts[h] for h in todo}
        facts = {h: st.facts for h, st in states.items() if st.facts is not None}
        rendered = with_facts(cluster, facts)
        desired = node_artifacts_all(rendered, list(todo))
        stale = {h: st.probe.stale_chains for h, st in states.items() if st.probe and st.probe.stale_chains}
        send = node_artifacts_all(rendered, list(stale), stale) if stale else {}
        for h in todo:
            states[h].rendered = (desired[h], send.get(h, desired[h]))


def ask_with_progress(ctx: TaskContext, req: ApplyRequest, lines: int) -> ApplyAnswer:
    """The apply, with a line as the node starts it and one as it ends (a large restore takes a while)."""
    ctx.note(f"{ctx.host}: applying {lines} rule lines ...")
    started = time.monotonic()
    try:
        answer = ctx.gateway.ask(req)
    except SSHError:
        ctx.note(f"{ctx.host}: {lines} rule lines: no answer after {time.monotonic() - started:.1f} s")
        raise
    ctx.note(f"{ctx.host}: {lines} rule lines {'applied' if answer.ok else 'failed'} "
             f"in {time.monotonic() - started:.1f} s")
    return answer


def cliff_warning(ctx: TaskContext, send: NodeArtifacts, probe: ProbeAnswer) -> str | None:
    """The iptables-nft cliff's warning for this node, shown at once (before its restore starts), or None."""
    backend = str((probe.facts_wire or {}).get("iptables_backend", ""))
    message = cliff.cliff_warning(backend, rules_lines(send), ctx.cluster.proxy.mode)
    if message is not None:
        ctx.note(f"[WARNING]: {cliff.located(ctx.cluster, ctx.host, message)}")
    return message


def rules_lines(art: NodeArtifacts) -> int:
    """The rule lines an apply of the rules part sends the node (the mode's rule files)."""
    return cliff.rule_lines((art.nft,) if art.nftables_mode else (art.restore, art.restore6))


def conntrack_note(answer: ApplyAnswer) -> str:
    """What the node's conntrack cleanup did, for the task's message (shown with -v)."""
    if answer.conntrack_deleted is None:
        return ""
    note = f"; {answer.conntrack_deleted} stale conntrack entries deleted"
    return note + (f" (cleanup stopped: {answer.conntrack_error})" if answer.conntrack_error else "")


def confirm(ctx: TaskContext, done: str, guard: float, diff: Mapping[str, str] | None = None) -> Outcome | None:
    """Confirm the run's guarded change on the host over a fresh connection; the failure, if any."""
    try:
        answer = ctx.gateway.confirm(ctx.run_id)
    except SSHError as exc:
        return Outcome(recap.FAILED, f"{done} but could not confirm over a fresh connection "
                       f"({exc.message}); the node rolls itself back after {guard:g}s", diff or {}, True)
    if not answer.ok:
        return Outcome(recap.FAILED, answer.msg, diff or {}, answer.rolled_back)
    return None
