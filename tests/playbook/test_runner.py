"""The runner's orchestration, with in-memory handlers and gateways: batches, forks, tags, failures, exit codes."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from fakegateway import Fleet

from svcnet.playbook import recap
from svcnet.playbook.model import NETWORK, PREFLIGHT, RULES, TEARDOWN, VALIDATE, VERBS, VERIFY, Play, Task
from svcnet.playbook.runner import EXIT_INVALID, Options, Outcome, Runner, TaskContext
from svcnet.transport.inventory import load_inventory
from svcnet.transport.ssh import BecomeError, SSHError

NODES = ("node1", "node2", "node3", "node4")


def cluster_file(tmp_path: Path, nodes: tuple[str, ...] = NODES) -> Path:
    lines = ["apiVersion: svcnet.dev/v1alpha1", "kind: Cluster", "metadata: {name: four}", "spec:",
             "  serviceCIDR: 10.96.0.0/16", "  clusterCIDR: 10.244.0.0/16", "  nodes:"]
    for i, n in enumerate(nodes, 1):
        lines += [f"    - name: {n}", f"      addresses: [192.0.2.{i}]", f"      podCIDR: 10.244.{i}.0/24"]
    path = tmp_path / "cluster.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def inventory(tmp_path: Path, hosts: tuple[str, ...] = NODES):
    (tmp_path / "hosts.ini").write_text("".join(f"{h}\n" for h in hosts))
    return load_inventory(tmp_path / "hosts.ini")


class Handlers:
    """A registry whose handlers record each call and give the scripted outcome (default: ok)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []  # (verb, host, step number)
        self.script: dict[tuple[str, str], Callable[[TaskContext], Outcome]] = {}
        self.lock = threading.Lock()

    def registry(self) -> dict[str, Callable[[TaskContext], Outcome]]:
        return {verb: self.handler(verb) for verb in VERBS}

    def handler(self, verb: str) -> Callable[[TaskContext], Outcome]:
        def handle(ctx: TaskContext) -> Outcome:
            with self.lock:
                self.calls.append((verb, ctx.host, ctx.step.number))
            scripted = self.script.get((verb, ctx.host))
            return scripted(ctx) if scripted else Outcome(recap.OK)
        return handle

    def hosts_of(self, verb: str) -> list[str]:
        return sorted(h for v, h, _ in self.calls if v == verb)


def task(verb: str, *tags: str) -> Task:
    return Task(name=verb, action=verb, tags=frozenset(tags))


SITE = (task(VALIDATE), task(PREFLIGHT), task(NETWORK, "network"), task(RULES, "rules"), task(VERIFY, "verify"))


def run(tmp_path: Path, handlers: Handlers, tasks: tuple[Task, ...] = SITE, fleet: Fleet | None = None,
        serial: int | None = None, hosts: tuple[str, ...] = NODES, plays: int = 1, **opts) -> tuple[int, str, Fleet]:
    fleet = fleet or Fleet(NODES)
    play = Play("p", "all", (cluster_file(tmp_path),), tasks, serial)
    out = io.StringIO()
    runner = Runner(inventory(tmp_path, hosts), Options(**opts), handlers.registry(), fleet.connect, out=out)
    code = runner.run([play] * plays)
    return code, out.getvalue(), fleet


def fail(status: str = recap.FAILED, **kw) -> Callable[[TaskContext], Outcome]:
    return lambda ctx: Outcome(status, f"{ctx.host} broke", **kw)


def raise_(exc: Exception) -> Callable[[TaskContext], Outcome]:
    def handle(ctx: TaskContext) -> Outcome:
        raise exc
    return handle


def recap_of(out: str) -> dict[str, dict[str, int]]:
    lines = out.split("PLAY RECAP")[1].splitlines()[1:]
    return {ln.split()[0]: {k: int(v) for k, v in (p.split("=") for p in ln.split(":", 1)[1].split())}
            for ln in lines if ln.strip()}


# -- exit codes ---------------------------------------------------------------------------------
def test_all_ok_is_exit_0_with_a_line_per_host_and_task(tmp_path):
    code, out, _ = run(tmp_path, Handlers())
    assert code == recap.EXIT_OK == 0
    assert out.count("ok: [node1]") == len(SITE)
    assert recap_of(out)["node4"] == {"ok": 5, "changed": 0, "unreachable": 0, "failed": 0, "skipped": 0,
                                      "rescued": 0, "ignored": 0}


@pytest.mark.parametrize(("outcomes", "expected"), [
    ({"node2": fail()}, recap.EXIT_FAILED),
    ({"node2": fail(recap.UNREACHABLE)}, recap.EXIT_UNREACHABLE),
    ({"node2": fail(), "node3": fail(recap.UNREACHABLE)}, recap.EXIT_UNREACHABLE),  # 4 wins over 2
    ({"node2": fail(rolled_back=True), "node3": fail(recap.UNREACHABLE)}, recap.EXIT_ROLLBACK),  # 8 wins
    ({"node2": lambda ctx: Outcome(recap.CHANGED, rolled_back=True)}, recap.EXIT_ROLLBACK),
])
def test_the_exit_code_is_the_worst_outcome(tmp_path, outcomes, expected):
    assert (recap.EXIT_FAILED, recap.EXIT_UNREACHABLE, recap.EXIT_ROLLBACK) == (2, 4, 8)
    handlers = Handlers()
    handlers.script = {(NETWORK, h): o for h, o in outcomes.items()}
    code, out, _ = run(tmp_path, handlers)
    assert code == expected, out
    if expected == recap.EXIT_ROLLBACK:
        assert '"rolled_back": true' in out or "changed: [node2]" in out


def test_an_invalid_description_is_exit_1_and_no_handler_runs(tmp_path):
    handlers = Handlers()
    play = Play("p", "all", (tmp_path / "missing.yaml",), SITE)
    runner = Runner(inventory(tmp_path), Options(), handlers.registry(), Fleet(NODES).connect, out=io.StringIO())
    assert runner.run([play]) == EXIT_INVALID == 1
    assert handlers.calls == []
    assert "ERROR! the cluster description is invalid" in runner.out.getvalue()  # type: ignore[attr-defined]


def test_an_inventory_host_that_is_no_node_is_exit_1(tmp_path):
    handlers = Handlers()
    code, out, fleet = run(tmp_path, handlers, fleet=Fleet((*NODES, "stray")), hosts=(*NODES, "stray"))
    assert code == EXIT_INVALID and handlers.calls == [] and fleet.gateways == []
    assert "ERROR! inventory hosts stray are not nodes of cluster four" in out


def test_ssh_errors_are_unreachable_and_a_refused_become_is_failed(tmp_path):
    handlers = Handlers()
    handlers.script = {(PREFLIGHT, "node1"): raise_(SSHError("node1", "cannot connect")),
                       (PREFLIGHT, "node2"): raise_(BecomeError("node2", "sudo: a password is required"))}
    code, out, _ = run(tmp_path, handlers)
    assert code == recap.EXIT_UNREACHABLE
    assert ('fatal: [node1]: UNREACHABLE! => {"msg": "cannot connect"}' in out
            and 'fatal: [node2]: FAILED! => {"msg": "sudo: a password is required"}' in out), out
    assert (recap_of(out)["node1"]["unreachable"], recap_of(out)["node2"]["failed"]) == (1, 1)


# -- which hosts run which task ------------------------------------------------------------------
def test_a_failed_host_is_skipped_for_the_rest_of_the_play_and_the_next(tmp_path):
    handlers = Handlers()
    handlers.script = {(PREFLIGHT, "node2"): fail()}
    code, out, _ = run(tmp_path, handlers, plays=2)
    assert code == recap.EXIT_FAILED
    assert handlers.hosts_of(PREFLIGHT) == ["node1", "node1", "node2", "node3", "node3", "node4", "node4"]
    for verb in (NETWORK, RULES, VERIFY):
        assert "node2" not in handlers.hosts_of(verb)
    assert handlers.hosts_of(VALIDATE) == ["node1", "node1", "node2", "node3", "node3", "node4", "node4"]
    assert recap_of(out)["node2"] == {"ok": 1, "changed": 0, "unreachable": 0, "failed": 1, "skipped": 0,
                                      "rescued": 0, "ignored": 0}


def test_serial_batches_run_every_task_on_a_batch_before_the_next_batch(tmp_path):
    handlers = Handlers()
    run(tmp_path, handlers, tasks=(task(PREFLIGHT), task(RULES)), serial=2, forks=1)
    order = [(verb, host) for verb, host, _ in handlers.calls]
    assert order == [(PREFLIGHT, "node1"), (PREFLIGHT, "node2"), (RULES, "node1"), (RULES, "node2"),
                     (PREFLIGHT, "node3"), (PREFLIGHT, "node4"), (RULES, "node3"), (RULES, "node4")]
    assert len({step for _, _, step in handlers.calls}) == 4  # one step per task and batch


def test_a_batch_whose_hosts_all_failed_stops_and_the_next_batch_runs(tmp_path):
    handlers = Handlers()
    handlers.script = {(PREFLIGHT, "node1"): fail(), (PREFLIGHT, "node2"): fail(recap.UNREACHABLE)}
    code, out, _ = run(tmp_path, handlers, tasks=(task(PREFLIGHT), task(RULES)), serial=2)
    assert code == recap.EXIT_UNREACHABLE
    assert handlers.hosts_of(RULES) == ["node3", "node4"]
    assert out.count("TASK [rules]") == 1  # not shown for the batch with no host left


def most_at_once(tmp_path: Path, forks: int) -> int:
    """How many hosts a run with `forks` works on at once (each waits until `forks` hosts are in)."""
    # Generous: on a loaded machine the pool may take a while to start its threads.
    barrier = threading.Barrier(forks, timeout=30)
    busy, peak, lock = [0], [0], threading.Lock()

    def meet(ctx: TaskContext) -> Outcome:
        with lock:
            busy[0] += 1
            peak[0] = max(peak[0], busy[0])
        barrier.wait()  # broken (the test fails) unless `forks` hosts run at the same time
        with lock:
            busy[0] -= 1
        return Outcome(recap.OK)

    handlers = Handlers()
    handlers.script = {(RULES, h): meet for h in NODES}
    code, out, _ = run(tmp_path, handlers, tasks=(task(RULES),), forks=forks)
    assert code == 0, out
    return peak[0]


def test_forks_bound_the_hosts_worked_on_at_once(tmp_path):
    assert most_at_once(tmp_path, 1) == 1
    assert most_at_once(tmp_path, 2) == 2
    assert most_at_once(tmp_path, 4) == 4


@pytest.mark.parametrize(("tags", "skip", "verbs"), [
    ((), (), [VALIDATE, PREFLIGHT, NETWORK, RULES, VERIFY]),
    (("rules",), (), [RULES]),
    (("rules", "network"), (), [NETWORK, RULES]),
    ((), ("verify",), [VALIDATE, PREFLIGHT, NETWORK, RULES]),
    (("never",), (), []),
])
def test_tags_and_skip_tags_select_the_tasks(tmp_path, tags, skip, verbs):
    handlers = Handlers()
    run(tmp_path, handlers, tags=tags, skip_tags=skip)
    assert list(dict.fromkeys(v for v, _, _ in handlers.calls)) == verbs


def test_limit_narrows_the_hosts(tmp_path):
    handlers = Handlers()
    run(tmp_path, handlers, tasks=(task(RULES),), limit="node2:node3")
    assert handlers.hosts_of(RULES) == ["node2", "node3"]


# -- what a handler gets and what is shown -------------------------------------------------------
def test_each_handler_gets_its_host_gateway_the_run_id_and_the_step(tmp_path):
    seen: list[TaskContext] = []
    lock = threading.Lock()

    def remember(ctx: TaskContext) -> Outcome:
        with lock:
            seen.append(ctx)
        return Outcome(recap.OK)

    handlers = Handlers()
    handlers.script = {(v, h): remember for v in (PREFLIGHT, TEARDOWN) for h in NODES}
    code, _, fleet = run(tmp_path, handlers, tasks=(task(PREFLIGHT), task(TEARDOWN, "teardown")), serial=3)
    assert code == 0
    assert {c.gateway.name for c in seen} == set(NODES) and all(c.gateway.name == c.host for c in seen)
    assert len(fleet.gateways) == len(NODES) and all(gw.closed for gw in fleet.gateways)  # one per host, closed
    assert len({c.run_id for c in seen}) == 1
    assert {c.step.hosts for c in seen} == {("node1", "node2", "node3"), ("node4",)}
    assert all(c.step.verbs == (PREFLIGHT, TEARDOWN) for c in seen)


def test_verbose_shows_results_and_diff_shows_each_diff(tmp_path):
    handlers = Handlers()
    handlers.script = {(RULES, "node1"): lambda ctx: Outcome(recap.CHANGED, "applied", {"rules": "-a\n+b\n",
                                                                                      "netconf": ""})}
    _, quiet, _ = run(tmp_path, handlers, tasks=(task(RULES),), hosts=("node1",))
    assert "changed: [node1]\n" in quiet and "+++" not in quiet
    _, loud, _ = run(tmp_path, handlers, tasks=(task(RULES),), hosts=("node1",), verbose=1, diff=True)
    shown = 'changed: [node1] => {"msg": "applied"}\n--- node1: rules (live)\n+++ node1: rules (desired)\n-a\n+b\n'
    assert shown in loud
    assert "netconf (live)" not in loud  # an empty diff is not shown
