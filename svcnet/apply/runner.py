"""Run svcnet playbooks like ansible-playbook: plays, tasks across hosts, a PLAY RECAP.

Hosts run in parallel (bounded by `forks`), each over one SSH session for the whole run;
the confirmation of a guarded apply goes over a fresh connection, so a ruleset that cuts
the controller off is rolled back by the node's dead-man switch.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from svcnet.agent.protocol import (
    apply_request,
    desired_hashes,
    facts_from_probe,
    is_unchanged,
    preflight_request,
    request,
)
from svcnet.apply.client import NodeClient
from svcnet.desired import node_netconf
from svcnet.diagnostics import errors
from svcnet.model.load import check_paths
from svcnet.model.types import Cluster, NodeFacts
from svcnet.playbook import recap
from svcnet.playbook.model import NETWORK, RULES, Play, Task
from svcnet.playbook.select import select_tasks, serial_batches
from svcnet.render.artifacts import NodeArtifacts, node_artifacts_all
from svcnet.transport.inventory import Inventory
from svcnet.transport.ssh import SSHError

EXIT_INVALID = 1  # the description or inventory is invalid: nothing was attempted
DIFF_KEYS = {NETWORK: "netconf", RULES: "rules"}  # which diff of an apply belongs to which task


@dataclass
class Options:
    check: bool = False
    diff: bool = False
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    forks: int = 10
    verbose: int = 0
    accept_new_host_keys: bool = False
    confirm_timeout: float = 30.0
    lock_wait: float = 30.0
    connect_timeout: float = 10.0


@dataclass
class Outcome:
    """One task's result on one host."""

    status: str  # recap.OK, CHANGED, FAILED, UNREACHABLE, SKIPPED
    msg: str = ""
    diff: dict[str, str] = field(default_factory=dict)
    rolled_back: bool = False
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class HostState:
    """What the run knows about one host across tasks."""

    client: NodeClient
    facts: NodeFacts | None = None
    probe: dict[str, Any] | None = None
    dead: bool = False  # failed or unreachable: skipped for the rest of the play, as Ansible does
    done: dict[str, Outcome] = field(default_factory=dict)  # parts already applied with an earlier task
    # (desired artifacts, artifacts to send: desired + deletes of the probe's stale chains), until taken
    rendered: tuple[NodeArtifacts, NodeArtifacts] | None = None


class Runner:
    """Runs plays over an inventory and prints Ansible-style output."""

    def __init__(self, inventory: Inventory, options: Options, out: IO[str] | None = None,
                 become_password: Any = None):
        self.inventory = inventory
        self.opts = options
        self.out = out if out is not None else sys.stdout
        self.color = recap.use_color(self.out)
        self.stats = recap.Stats()
        self.become_password = become_password
        self.hosts: dict[str, HostState] = {}
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.invalid = False
        self.parts: tuple[str, ...] = ()  # the converge parts (network, rules) the play's tasks select
        self.render_queue: list[str] = []  # probed hosts of the current converge task not rendered yet
        self.render_lock = threading.Lock()

    # -- output -------------------------------------------------------------------------
    def echo(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def report(self, host: str, o: Outcome) -> None:
        self.stats.record(host, o.status)
        result: dict[str, Any] = {"msg": o.msg} if o.msg else {}
        if o.rolled_back:
            result["rolled_back"] = True
        show = o.status in (recap.FAILED, recap.UNREACHABLE) or (self.opts.verbose and result)
        self.echo(recap.host_line(o.status, host, result if show else None, color=self.color))
        if self.opts.diff:
            for name, text in o.diff.items():
                if text:
                    self.echo(f"--- {host}: {name} (live)\n+++ {host}: {name} (desired)")
                    self.echo(text.rstrip("\n"))

    # -- plays --------------------------------------------------------------------------
    def run(self, plays: Sequence[Play]) -> int:
        try:
            for play in plays:
                if not self.run_play(play):
                    break
        finally:
            for h in self.hosts.values():
                h.client.close()
        self.echo(recap.format_recap(self.stats, color=self.color))
        return EXIT_INVALID if self.invalid else self.stats.exit_code()

    def run_play(self, play: Play) -> bool:
        self.echo("\n" + recap.play_banner(play.name or play.hosts))
        checked = check_paths([str(p) for p in play.cluster])
        if not checked.ok:
            for d in checked.diagnostics:
                print(str(d), file=sys.stderr)
            n = len(errors(checked.diagnostics))
            self.echo(f"ERROR! the cluster description is invalid ({n} error(s)); no node was changed")
            self.invalid = True
            return False
        assert checked.build is not None
        cluster = checked.build.cluster
        hosts = self.inventory.select(play.hosts, self.opts.limit)
        if not hosts:
            self.echo("skipping: no hosts matched")
            return True
        unknown = [h for h in hosts if h not in {n.name for n in cluster.nodes}]
        if unknown:
            self.echo(f"ERROR! inventory hosts {', '.join(unknown)} are not nodes of cluster {cluster.name}")
            self.invalid = True
            return False
        for h in hosts:
            if h not in self.hosts:
                cfg = self.inventory.host_config(h, self.become_password)
                self.hosts[h] = HostState(NodeClient(cfg, self.opts.accept_new_host_keys, self.opts.connect_timeout))
            self.hosts[h].rendered = None  # a play has its own description
        tasks = select_tasks(play, self.opts.tags or None, self.opts.skip_tags or None)
        self.parts = tuple(dict.fromkeys(t.action for t in tasks if t.action in (NETWORK, RULES)))
        for batch in serial_batches(hosts, play.serial):
            for task in tasks:
                live = [h for h in batch if not self.hosts[h].dead]
                if not live:
                    break
                self.run_task(task, live, cluster)
        return True

    def run_task(self, task: Task, hosts: list[str], cluster: Cluster) -> None:
        self.echo("\n" + recap.task_banner(task.name or task.action))
        if task.action in (NETWORK, RULES):  # hosts whose artifacts can be rendered together (probed)
            self.render_queue = [h for h in hosts if self.hosts[h].probe is not None and self.hosts[h].rendered is None]
        fn: Callable[[str, Cluster, Task], Outcome] = getattr(self, f"task_{task.action}")

        def one(h: str) -> Outcome:
            try:
                return fn(h, cluster, task)
            except SSHError as exc:  # unreachable, or (sudo refused) failed as Ansible reports it
                return Outcome(recap.UNREACHABLE if exc.unreachable else recap.FAILED, exc.message)

        with ThreadPoolExecutor(max_workers=max(1, self.opts.forks)) as pool:
            results = list(pool.map(one, hosts))
        for h, o in zip(hosts, results, strict=True):
            if o.status in (recap.FAILED, recap.UNREACHABLE):
                self.hosts[h].dead = True
            if o.rolled_back:
                self.stats.rollback(h)
            self.report(h, o)

    # -- tasks --------------------------------------------------------------------------
    def task_validate(self, host: str, cluster: Cluster, task: Task) -> Outcome:
        return Outcome(recap.OK, f"{cluster.name}: {len(cluster.services)} service(s), {len(cluster.pods)} pod(s)")

    def _probe(self, host: str) -> dict[str, Any]:
        st = self.hosts[host]
        st.probe = st.client.call(request("probe", self.run_id))
        st.facts = facts_from_probe(st.probe)
        return st.probe

    def task_preflight(self, host: str, cluster: Cluster, task: Task) -> Outcome:
        st = self.hosts[host]
        resp = st.client.call(preflight_request(node_netconf(cluster, cluster.node(host)), self.run_id))
        if not resp.get("ok"):
            return Outcome(recap.FAILED, str(resp.get("msg")))
        st.probe = resp  # a passing preflight carries the probe's answer too
        st.facts = facts_from_probe(resp)
        return Outcome(recap.OK, str(resp.get("msg")), data={"facts": resp.get("facts")})

    def with_facts(self, cluster: Cluster, hosts: Sequence[str]) -> Cluster:
        """The cluster with the facts gathered from `hosts` (where known) on their nodes."""
        facts: dict[str, NodeFacts] = {}
        for h in hosts:
            known = self.hosts[h].facts
            if known is not None:
                facts[h] = known
        if not facts:
            return cluster
        return replace(cluster, nodes=tuple(replace(n, facts=facts[n.name]) if n.name in facts else n
                                            for n in cluster.nodes))

    def take_rendered(self, host: str, cluster: Cluster) -> tuple[NodeArtifacts, NodeArtifacts]:
        """The probed host's (desired, to send) artifacts, rendered if need be; dropped once taken.

        Nodes share most of their rules, and one pass renders what they share once (host by host,
        the worker threads would repeat it per host under the GIL). A pass covers this host and
        the next `forks - 1` queued ones, so at most about `forks` hosts' texts are held at a time.
        A host probed only now (e.g. `--tags rules`: no preflight) is not queued and renders alone.
        """
        with self.render_lock:
            st = self.hosts[host]
            if st.rendered is None:
                others = [h for h in self.render_queue if h != host]
                batch = [host, *others[: max(0, self.opts.forks - 1)]]
                self.render_queue = [h for h in self.render_queue if h not in batch]
                self.render_batch(cluster, batch)
            taken, st.rendered = st.rendered, None
            assert taken is not None
            return taken

    def render_batch(self, cluster: Cluster, todo: Sequence[str]) -> None:
        """Render the artifacts of `todo` (probed hosts) in one pass."""
        probes = {h: self.hosts[h].probe or {} for h in todo}
        rendered = self.with_facts(cluster, todo)
        desired = node_artifacts_all(rendered, list(todo))
        stale = {h: tuple(p.get("stale_chains") or ()) for h, p in probes.items() if p.get("stale_chains")}
        send = node_artifacts_all(rendered, list(stale), stale) if stale else {}
        for h in todo:
            self.hosts[h].rendered = (desired[h], send.get(h, desired[h]))

    def converge(self, host: str, cluster: Cluster, part: str) -> Outcome:
        """Bring `part` of the node to the desired state.

        The first converge task of a play applies every selected part that differs in ONE guarded
        apply (one lock, one backup, one confirmation, one rollback covering both); the later
        task reports its part's share of that result.
        """
        st = self.hosts[host]
        if part in st.done:
            return st.done.pop(part)
        group = self.parts if part in self.parts else (part,)
        probe = st.probe or self._probe(host)
        desired, send = self.take_rendered(host, cluster)
        want = desired_hashes(desired)  # stale chains are not desired state: hashed without them
        todo = tuple(p for p in group if self.opts.diff or not is_unchanged(probe, want, (p,)))
        results = {p: Outcome(recap.OK, "no change") for p in group}
        if todo:
            outcome = self._apply(host, send, todo, want)
            if outcome.status in (recap.FAILED, recap.UNREACHABLE):
                return outcome
            for p in todo:  # each task shows its own part's diff, and is changed only if that differs
                diff = {k: v for k, v in outcome.diff.items() if k == DIFF_KEYS[p]}
                same = DIFF_KEYS[p] in outcome.diff and not outcome.diff[DIFF_KEYS[p]].strip()
                status = recap.OK if outcome.status == recap.CHANGED and same else outcome.status
                results[p] = replace(outcome, status=status, diff=diff)
        st.done.update({p: o for p, o in results.items() if p != part})
        return results[part]

    def _apply(self, host: str, send: NodeArtifacts, parts: tuple[str, ...], want: dict[str, str]) -> Outcome:
        st = self.hosts[host]
        guard = 0.0 if self.opts.check else self.opts.confirm_timeout
        req = apply_request(send, self.run_id, confirm_timeout=guard, check=self.opts.check,
                            diff=self.opts.diff, lock_wait=self.opts.lock_wait, parts=parts, hashes=want)
        resp = st.client.call(req)
        st.probe = None  # the node changed: probe again before the next converge
        diff = resp.get("diff") or {}
        if not resp.get("ok"):
            return Outcome(recap.FAILED, str(resp.get("msg")), diff, bool(resp.get("rolled_back")))
        failed = self._confirm(host, "applied", guard, diff) if resp.get("pending") else None
        if failed is not None:
            return failed
        status = recap.CHANGED if resp.get("changed") else recap.OK
        return Outcome(status, str(resp.get("msg")), diff)

    def _confirm(self, host: str, done: str, guard: float, diff: dict[str, str] | None = None) -> Outcome | None:
        """Confirm the run's guarded change on `host` over a fresh connection; the failure, if any."""
        try:
            conf = self.hosts[host].client.call(request("confirm", self.run_id), fresh=True, timeout=60)
        except SSHError as exc:
            return Outcome(recap.FAILED, f"{done} but could not confirm over a fresh connection "
                           f"({exc.message}); the node rolls itself back after {guard:g}s", diff or {}, True)
        if not conf.get("ok"):
            return Outcome(recap.FAILED, str(conf.get("msg")), diff or {}, bool(conf.get("rolled_back")))
        return None

    def task_network(self, host: str, cluster: Cluster, task: Task) -> Outcome:
        return self.converge(host, cluster, NETWORK)

    def task_rules(self, host: str, cluster: Cluster, task: Task) -> Outcome:
        return self.converge(host, cluster, RULES)

    def task_teardown(self, host: str, cluster: Cluster, task: Task) -> Outcome:
        if self.opts.check:
            return Outcome(recap.SKIPPED, "teardown is skipped in check mode")
        guard = self.opts.confirm_timeout  # guarded like an apply: rolled back unless confirmed anew
        resp = self.hosts[host].client.call(request("teardown", self.run_id, lock_wait=self.opts.lock_wait,
                                                    confirm_timeout=guard))
        if not resp.get("ok"):
            return Outcome(recap.FAILED, str(resp.get("msg")), rolled_back=bool(resp.get("rolled_back")))
        failed = self._confirm(host, "removed", guard) if resp.get("pending") else None
        if failed is not None:
            return failed
        return Outcome(recap.CHANGED if resp.get("changed") else recap.OK, str(resp.get("msg")))

    def task_verify(self, host: str, cluster: Cluster, task: Task) -> Outcome:
        if self.opts.check:  # the node may not be in the desired state: --check changed nothing
            return Outcome(recap.SKIPPED, "verify is skipped in check mode")
        from svcnet.verify.task import verify_host

        return verify_host(self, host, cluster, task)


def playbook_path(name: str) -> Path:
    """A playbook given by path, or by name from the shipped `playbooks/` directory."""
    p = Path(name)
    if p.exists():
        return p
    shipped = Path(__file__).resolve().parents[2] / "playbooks" / name
    return shipped if shipped.exists() else p

