"""Run svcnet playbooks like ansible-playbook: plays, tasks across hosts, a PLAY RECAP.

Hosts run in parallel (bounded by `forks`) in `serial` batches, each through its own gateway
(one session for the whole run); a host that fails is left out of the rest of the play, as
Ansible does. What a task does on a host is its handler's: a registry maps each verb to one
(assembled in svcnet/cli/tasks.py). A handler gets a small TaskContext, never the runner, and
returns an Outcome; the runner turns outcomes into Ansible's output, the recap and the exit code.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from svcnet.diagnostics import errors
from svcnet.model.load import check_paths
from svcnet.model.types import Cluster
from svcnet.playbook import recap
from svcnet.playbook.model import Play, Task
from svcnet.playbook.select import select_tasks, serial_batches
from svcnet.transport.gateway import Gateway, Gateways
from svcnet.transport.inventory import Inventory
from svcnet.transport.protocol import new_run_id
from svcnet.transport.ssh import SSHError

EXIT_INVALID = 1  # the description or inventory is invalid: nothing was attempted


@dataclass(frozen=True)
class Options:
    check: bool = False
    diff: bool = False
    limit: str | None = None
    tags: tuple[str, ...] = ()
    skip_tags: tuple[str, ...] = ()
    forks: int = 10
    verbose: int = 0
    confirm_timeout: float = 30.0
    lock_wait: float = 30.0


@dataclass(frozen=True)
class Outcome:
    """One task's result on one host."""

    status: str  # recap.OK, CHANGED, FAILED, UNREACHABLE, SKIPPED
    msg: str = ""
    diff: Mapping[str, str] = field(default_factory=dict)  # name -> unified diff, shown with --diff
    rolled_back: bool = False


@dataclass(frozen=True)
class TaskStep:
    """One task run over one batch of hosts: what the handlers of its hosts share."""

    number: int  # counts the steps of the run: a handler tells one step's hosts from the next's
    play: int  # counts the plays of the run (each play has its own description)
    hosts: tuple[str, ...]  # the hosts this step runs on (in order)
    verbs: tuple[str, ...]  # the verbs of the play's selected tasks, in order


def quiet(line: str) -> None:
    """A TaskContext's `note` that shows nothing."""


@dataclass(frozen=True)
class TaskContext:
    """What a handler gets for one task on one host."""

    host: str
    cluster: Cluster
    task: Task
    options: Options
    gateway: Gateway  # the host's
    run_id: str
    inventory: Inventory
    step: TaskStep
    note: Callable[[str], None] = quiet  # shows a line at once, while the task still runs (progress, warnings)


class Handler(Protocol):
    def __call__(self, ctx: TaskContext, /) -> Outcome: ...


Registry = Mapping[str, Handler]  # verb -> what it does on one host


class Runner:
    """Runs plays over an inventory and prints Ansible-style output."""

    def __init__(self, inventory: Inventory, options: Options, registry: Registry,
                 connect: Callable[[str], Gateway], out: IO[str] | None = None):
        self.inventory = inventory
        self.opts = options
        self.registry = registry
        self.gateways = Gateways(connect)
        self.out = out if out is not None else sys.stdout
        self.color = recap.use_color(self.out)
        self.stats = recap.Stats()
        self.run_id = new_run_id()
        self.dead: set[str] = set()  # failed or unreachable: skipped for the rest of the play, as Ansible does
        self.invalid = False
        self.out_lock = threading.Lock()  # handlers' notes come from the worker threads
        self.plays = 0
        self.steps = 0

    # -- output -------------------------------------------------------------------------
    def echo(self, text: str = "") -> None:
        with self.out_lock:
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
            self.gateways.close()
        self.echo(recap.format_recap(self.stats, color=self.color))
        return EXIT_INVALID if self.invalid else self.stats.exit_code()

    def run_play(self, play: Play) -> bool:
        self.echo("\n" + recap.play_banner(play.name or play.hosts))
        self.plays += 1
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
        tasks = select_tasks(play, self.opts.tags or None, self.opts.skip_tags or None)
        verbs = tuple(t.action for t in tasks)
        for batch in serial_batches(hosts, play.serial):
            for task in tasks:
                live = [h for h in batch if h not in self.dead]
                if not live:
                    break
                self.steps += 1
                self.run_task(task, cluster, TaskStep(self.steps, self.plays, tuple(live), verbs))
        return True

    def run_task(self, task: Task, cluster: Cluster, step: TaskStep) -> None:
        self.echo("\n" + recap.task_banner(task.name or task.action))
        handler = self.registry[task.action]
        contexts = [TaskContext(h, cluster, task, self.opts, self.gateways.get(h), self.run_id, self.inventory, step,
                                self.echo)
                    for h in step.hosts]

        def one(ctx: TaskContext) -> Outcome:
            try:
                return handler(ctx)
            except SSHError as exc:  # unreachable, or (sudo refused) failed as Ansible reports it
                return Outcome(recap.UNREACHABLE if exc.unreachable else recap.FAILED, exc.message)

        with ThreadPoolExecutor(max_workers=max(1, self.opts.forks)) as pool:
            results = list(pool.map(one, contexts))
        for h, o in zip(step.hosts, results, strict=True):
            if o.status in (recap.FAILED, recap.UNREACHABLE):
                self.dead.add(h)
            if o.rolled_back:
                self.stats.rollback(h)
            self.report(h, o)
