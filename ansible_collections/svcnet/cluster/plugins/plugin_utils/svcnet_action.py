# Copyright: svcnet contributors; Apache-2.0
"""What every svcnet.cluster action shares: run one of svcnet's own task handlers for one host.

Everything happens on the controller, in svcnet's Python package (install svcnet into the Python
that runs ansible-playbook): the description is read, validated and rendered here, and the node
receives only its artifacts and svcnet's agent. The agent runs as `svcnet apply` runs it
(`python3 -I -S -c BOOTSTRAP` from `/`, one JSON request on stdin), but through Ansible's own
connection plugin (`_low_level_execute_command`), so become, vault, bastions, Mitogen and AWX apply.
The handlers are svcnet's (`svcnet.cli.tasks.registry`): the same probe, guarded apply, dead-man
switch, confirmation and teardown; this module only turns a host's task into their TaskContext
and their Outcome into Ansible's result.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ansible.plugins.action import ActionBase

try:
    from svcnet.cli.tasks import registry
    from svcnet.diagnostics import errors
    from svcnet.model.load import check_paths
    from svcnet.playbook import recap
    from svcnet.playbook.model import VERIFY, Task
    from svcnet.playbook.runner import Options, Outcome, TaskContext, TaskStep
    from svcnet.transport.gateway import CommandGateway
    from svcnet.transport.hostpattern import ALL
    from svcnet.transport.inventory import Group, Inventory
    from svcnet.transport.protocol import new_run_id
    from svcnet.transport.ssh import Result, SSHError
    from svcnet.verify.context import LAB_VARS, OUTSIDE_AUTO, OUTSIDE_MODES
except ImportError as exc:  # reported per task, not at import: ansible-doc must still read the plugins
    SVCNET_IMPORT_ERROR: ImportError | None = exc
    CommandGateway = object  # type: ignore[misc,assignment]  # so this module still loads
else:
    SVCNET_IMPORT_ERROR = None

INTERPRETER_VAR = "ansible_python_interpreter"


def argument_spec(verb: str) -> dict[str, Any]:
    """The task's arguments, with svcnet's own defaults and choices (as `svcnet playbook` has them)."""
    defaults = Options()
    spec: dict[str, Any] = {
        "cluster": {"type": "list", "elements": "path", "required": True},
        "confirm_timeout": {"type": "float", "default": defaults.confirm_timeout},
        "lock_wait": {"type": "float", "default": defaults.lock_wait},
    }
    if verb == VERIFY:
        spec["outside"] = {"type": "str", "default": OUTSIDE_AUTO, "choices": list(OUTSIDE_MODES)}
    return spec


class AnsibleGateway(CommandGateway):
    """svcnet's Gateway over the action's Ansible connection (become applies: sudoable).

    A confirmation goes over a fresh connection, as svcnet's own: the connection plugin is reset
    first (ssh: its ControlPersist master is stopped), so a change that cut the node off is not
    confirmed and the node's dead-man switch rolls it back.
    """

    def __init__(self, action: ActionBase, name: str, python: str | None):
        super().__init__(name, python)
        self._action = action
        self._lock = threading.Lock()  # verify's checks may call from several threads; one connection

    def execute(self, command: str, stdin: bytes, timeout: float | None) -> Result:
        t0 = time.monotonic()
        with self._lock:
            res = self._action._low_level_execute_command(command, sudoable=True, in_data=stdin or None)
        return Result(int(res.get("rc", 1)), res.get("stdout", ""), res.get("stderr", ""), time.monotonic() - t0)

    def reconnect(self) -> None:
        with self._lock:
            self._action._connection.reset()


def svcnet_inventory(hosts: list[str], svcnet_vars: dict[str, Any]) -> Inventory:
    """svcnet's view of Ansible's inventory: the connection is Ansible's, so only the hosts and
    svcnet's own variables matter (the lab's `svcnet_lab`, for verify's outside client)."""
    group = Group(ALL, tuple(hosts), (), (), 0, 0, {})
    return Inventory(hosts=tuple(hosts), groups={ALL: group}, inline_host_vars={h: dict(svcnet_vars) for h in hosts})


class SvcnetAction(ActionBase):
    """Base of the svcnet.cluster actions: VERB names the svcnet task it runs."""

    VERB = ""
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: Any = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        result = super().run(tmp, task_vars)
        task_vars = task_vars or {}
        if SVCNET_IMPORT_ERROR is not None:
            return {**result, "failed": True, "msg": "svcnet.cluster needs the svcnet Python package in the Python "
                    f"that runs Ansible on the controller: {SVCNET_IMPORT_ERROR}"}
        _, args = self.validate_argument_spec(argument_spec=argument_spec(self.VERB))
        paths = [self._loader.path_dwim(str(p)) for p in args["cluster"]]
        checked = check_paths(paths)
        if not checked.ok or checked.build is None:
            found = [str(d) for d in errors(checked.diagnostics)]
            return {**result, "failed": True, "errors": found, "changed": False,
                    "msg": f"the cluster description is invalid ({len(found)} error(s)); no node was changed:\n"
                    + "\n".join(found)}
        cluster = checked.build.cluster
        host = str(task_vars.get("inventory_hostname"))
        if host not in {n.name for n in cluster.nodes}:
            return {**result, "failed": True, "changed": False,
                    "msg": f"host {host} is not a node of cluster {cluster.name}"}
        outcome = self._outcome(host, cluster, args, task_vars)
        return {**result, **ansible_result(outcome)}

    def _outcome(self, host: str, cluster: Any, args: dict[str, Any], task_vars: dict[str, Any]) -> Outcome:
        options = Options(check=bool(self._task.check_mode), diff=bool(self._task.diff),
                          confirm_timeout=float(args["confirm_timeout"]), lock_wait=float(args["lock_wait"]))
        task_options = {k: v for k, v in args.items() if k == "outside"}  # verify's own option
        task = Task(name=self.VERB, action=self.VERB, tags=frozenset(), options=task_options)
        lab = task_vars.get(LAB_VARS)
        known = set(task_vars.get("groups", {}).get(ALL, ())) | {host}
        nodes = [n.name for n in cluster.nodes if n.name in known]
        inventory = svcnet_inventory(nodes, {LAB_VARS: self._templar.template(lab)} if lab else {})
        ctx = TaskContext(host, cluster, task, options, AnsibleGateway(self, host, self._interpreter(task_vars)),
                          new_run_id(), inventory, TaskStep(1, 1, (host,), (self.VERB,)))
        try:
            return registry()[self.VERB](ctx)
        except SSHError as exc:  # the agent's answer was not one (it died); as svcnet's runner reports it
            return Outcome(recap.UNREACHABLE if exc.unreachable else recap.FAILED, exc.message)

    def _interpreter(self, task_vars: dict[str, Any]) -> str | None:
        """The inventory's ansible_python_interpreter, when it names one (`auto*`: svcnet's default)."""
        value = task_vars.get(INTERPRETER_VAR)
        python = str(self._templar.template(value)) if value else ""
        return python if python and not python.startswith("auto") else None


def ansible_result(outcome: Outcome) -> dict[str, Any]:
    """svcnet's Outcome as Ansible reports a task: changed/failed/skipped/unreachable, msg, diff."""
    out: dict[str, Any] = {"changed": outcome.status == recap.CHANGED, "msg": outcome.msg}
    if outcome.status == recap.FAILED:
        out["failed"] = True
    elif outcome.status == recap.UNREACHABLE:
        out["unreachable"] = True
    elif outcome.status == recap.SKIPPED:
        out["skipped"] = True
        out["skip_reason"] = outcome.msg
    if outcome.rolled_back:
        out["rolled_back"] = True
    diffs = [{"prepared": text.rstrip("\n")} for text in outcome.diff.values() if text]  # headed by the agent
    if diffs:
        out["diff"] = diffs
    return out


__all__ = ["AnsibleGateway", "SvcnetAction", "ansible_result", "argument_spec"]
