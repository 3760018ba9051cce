"""One verify run's view of the cluster: the model, the inventory, and lazily opened node sessions.

Created per pytest session (stored on the config, never global). Everything reached over SSH is
cached for the run: one session per node, one agent check per node, one pod status per node.
A failure to reach a node is remembered, so every later check of that node fails at once.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from svcnet.model.types import Cluster
from svcnet.transport.inventory import Inventory
from svcnet.verify.targets import Source

OUTSIDE_AUTO, OUTSIDE_LOCAL, OUTSIDE_NONE = "auto", "local", "none"
OUTSIDE_MODES = (OUTSIDE_AUTO, OUTSIDE_LOCAL, OUTSIDE_NONE)
LAB_VARS = "svcnet_lab"
PROBE_PATH = Path(__file__).resolve().parent / "probe.py"
PROBE_BOOTSTRAP = (
    'import sys,json;d=json.load(sys.stdin);g={"__name__":"svcnet_probe"};'
    'exec(compile(d["probe"],"svcnet-probe","exec"),g);g["main_request"](d["request"])'
)
NETNS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
PROBE_SLACK = 15.0  # seconds allowed beyond a probe's own deadline (python start, SSH)
AGENT_TIMEOUT = 120.0
MAX_PARALLEL = 10  # nodes asked at once for their state check


class VerifyError(pytest.fail.Exception):  # type: ignore[misc,name-defined]
    """A check failure with a message naming node and object; shown without a traceback."""

    def __init__(self, msg: str):
        super().__init__(msg, pytrace=False)


@dataclass(frozen=True, slots=True)
class Outside:
    """Where traffic "from outside the cluster" is sent from."""

    mode: str  # "lab": the lab's client netns; "local": this machine; "none": skipped
    netns: str | None = None
    client_ip: str | None = None
    reason: str = ""


def resolve_outside(inventory: Inventory, nodes: Sequence[str], mode: str) -> Outside:
    """The lab's client namespace when the inventory is a lab's, this machine with `local`."""
    if mode == OUTSIDE_NONE:
        return Outside(OUTSIDE_NONE, reason="outside probes are disabled (--svcnet-outside none)")
    if mode == OUTSIDE_LOCAL:
        return Outside(OUTSIDE_LOCAL)
    lab = inventory.host_vars(nodes[0]).get(LAB_VARS) if nodes else None
    if isinstance(lab, dict) and lab.get("client_ns"):
        return Outside("lab", str(lab["client_ns"]), str(lab.get("client_ip") or "") or None)
    return Outside(OUTSIDE_NONE, reason="no outside client: the inventory is not a lab's (no all.vars."
                   f"{LAB_VARS}); pass --svcnet-outside local to send outside traffic from this machine")


def probe_stdin(request: dict) -> bytes:
    return json.dumps({"probe": PROBE_PATH.read_text(), "request": request}).encode()


def parse_probe(stdout: str, where: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    try:
        resp = json.loads(lines[-1]) if lines else None
    except ValueError:
        resp = None
    if not isinstance(resp, dict) or not resp.get("ok"):
        detail = resp.get("msg") if isinstance(resp, dict) else (lines[-1][:200] if lines else "no output")
        raise VerifyError(f"{where}: the traffic probe failed: {detail}")
    return resp


def netns_argv(netns: str | None) -> list[str]:
    """argv entering the network namespace `netns` (none for None)."""
    if netns is None:
        return []
    if not NETNS_RE.match(netns):
        raise VerifyError(f"invalid network namespace name {netns!r}")
    return ["ip", "netns", "exec", netns]


def netns_prefix(netns: str | None) -> str:
    argv = netns_argv(netns)
    return shlex.join(argv) + " " if argv else ""


class VerifyContext:
    """The cluster, the inventory, and the run's connections to nodes."""

    def __init__(self, cluster: Cluster, inventory: Inventory, nodes: Sequence[str] | None = None,
                 outside: str = OUTSIDE_AUTO, connect_timeout: float = 10.0, become_password: Any = None):
        self.cluster = cluster
        self.become_password = become_password
        self.inventory = inventory
        names = [n.name for n in cluster.nodes]
        unknown = [n for n in nodes or () if n not in names]
        if unknown:
            raise ValueError(f"--svcnet-node {', '.join(unknown)}: not a node of cluster {cluster.name} "
                             f"(nodes: {', '.join(names)})")
        missing = [n for n in names if n not in inventory.hosts]
        if missing:
            raise ValueError(f"cluster node(s) {', '.join(missing)} are not in the inventory "
                             f"(hosts: {', '.join(inventory.hosts) or 'none'})")
        self.nodes = [n for n in names if not nodes or n in nodes]
        self.outside = resolve_outside(inventory, names, outside)
        self.connect_timeout = connect_timeout
        self.run_id = "verify-" + time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self._sessions: dict[str, Any] = {}
        self._hosts: dict[str, Any] = {}
        self._unreachable: dict[str, str] = {}
        self._checks: dict[str, dict | str] = {}
        self._status: dict[str, dict] = {}

    # -- connections -----------------------------------------------------------------
    def session(self, node: str) -> Any:
        """The open svcnet Session to `node` (VerifyError if it cannot be reached)."""
        from svcnet.transport.hostconfig import become_password
        from svcnet.transport.ssh import Session, SSHError

        if node in self._unreachable:
            raise VerifyError(self._unreachable[node])
        if node not in self._sessions:
            try:
                secret = self.become_password or become_password(os.environ)
                config = self.inventory.host_config(node, secret)
                self._sessions[node] = Session(config, False, self.connect_timeout).open()
            except SSHError as exc:
                self._unreachable[node] = f"{node}: unreachable: {exc.message}"
                raise VerifyError(self._unreachable[node]) from None
        return self._sessions[node]

    def run(self, node: str, command: str, stdin: bytes = b"", timeout: float = 60.0) -> Any:
        from svcnet.transport.ssh import SSHError

        try:
            return self.session(node).run(command, stdin, timeout)
        except SSHError as exc:
            self._unreachable[node] = f"{node}: {exc.message}"
            raise VerifyError(self._unreachable[node]) from None

    def host(self, node: str) -> Any:
        """A testinfra Host for `node` over its svcnet session."""
        from svcnet.verify.backend import session_host

        if node not in self._hosts:
            self._hosts[node] = session_host(self.session(node))
        return self._hosts[node]

    # -- agent -----------------------------------------------------------------------
    def python(self, node: str) -> str | None:
        """The node's ansible_python_interpreter, if the inventory sets one."""
        python = self.inventory.host_vars(node).get("ansible_python_interpreter")
        return str(python) if python else None

    def agent(self, node: str, request: dict) -> dict:
        from svcnet.agent.protocol import AgentProtocolError, build_stdin, parse_response, remote_command

        result = self.run(node, remote_command(self.python(node)), build_stdin(request), AGENT_TIMEOUT)
        try:
            return parse_response(result.stdout, node)
        except AgentProtocolError as exc:
            raise VerifyError(f"{node}: {exc}") from None

    def state_check(self, node: str) -> dict:
        """The agent's check-mode diff of live vs rendered state (rules and netconf), once per run.

        The first call asks every checked node at once (one thread per node, bounded).
        """
        if node not in self._checks:
            todo = [n for n in dict.fromkeys([node, *self.nodes]) if n not in self._checks]
            with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(todo))) as pool:
                for n, result in zip(todo, pool.map(self._state_check_one, todo), strict=True):
                    self._checks[n] = result
        result = self._checks[node]
        if isinstance(result, str):
            raise VerifyError(result)
        return result

    def _state_check_one(self, node: str) -> dict | str:
        """The check response, or the failure message (raised later by the check of that node)."""
        from svcnet.agent.protocol import PARTS, apply_request, facts_from_probe, request
        from svcnet.render.artifacts import node_artifacts_all

        try:
            probe = self.agent(node, request("probe", self.run_id))
            if not probe.get("ok"):
                return f"{node}: agent probe failed: {probe.get('msg')}"
            facts = facts_from_probe(probe)
            cluster = replace(self.cluster, nodes=tuple(replace(n, facts=facts) if n.name == node else n
                                                        for n in self.cluster.nodes))
            art = node_artifacts_all(cluster, [node])[node]
            resp = self.agent(node, apply_request(art, self.run_id, check=True, parts=PARTS))
        except VerifyError as exc:
            return str(exc.msg)
        if not resp.get("ok") or not isinstance(resp.get("diff"), dict):
            return f"{node}: agent check failed: {resp.get('msg')}"
        return resp

    def pod_status(self, node: str) -> dict[str, dict]:
        """The agent's view of the node's pods: "ns/name" -> {running, pid, ...}."""
        from svcnet.agent.protocol import request

        if node not in self._status:
            resp = self.agent(node, request("status", self.run_id))
            self._status[node] = {p["pod"]: p for p in resp.get("pods") or [] if isinstance(p, dict)}
        return self._status[node]

    # -- traffic ---------------------------------------------------------------------
    def probe(self, source: Source, request: dict) -> dict:
        """Run the traffic probe on the source's node (inside the pod's netns for a pod source)."""
        from svcnet.agent.protocol import python_command

        command = python_command(PROBE_BOOTSTRAP, self.python(source.node), netns_argv(source.netns))
        timeout = float(request.get("deadline", request.get("timeout", 5))) + PROBE_SLACK
        result = self.run(source.node, command, probe_stdin(request), timeout)
        return parse_probe(result.stdout, source.label)

    def probe_outside(self, request: dict) -> dict:
        """Run the traffic probe outside the cluster (the lab's client netns, or this machine)."""
        out = self.outside
        if out.mode == OUTSIDE_NONE:
            pytest.skip(out.reason)
        from svcnet.agent.node import PYTHON_FLAGS

        argv = [sys.executable, *PYTHON_FLAGS, "-c", PROBE_BOOTSTRAP]  # isolated: cwd's modules stay out
        if out.netns:
            if not os.path.exists(f"/run/netns/{out.netns}") or not NETNS_RE.match(out.netns):
                raise VerifyError(f"outside client: network namespace {out.netns} does not exist (is the lab up?)")
            argv = [shutil.which("ip") or "ip", "netns", "exec", out.netns, *argv]
        timeout = float(request.get("deadline", request.get("timeout", 5))) + PROBE_SLACK
        try:
            proc = subprocess.run(argv, input=probe_stdin(request), capture_output=True, timeout=timeout, cwd="/")
        except subprocess.TimeoutExpired:
            raise VerifyError(f"outside client: the traffic probe did not finish in {timeout:g}s") from None
        return parse_probe(proc.stdout.decode(errors="replace"), "outside client")

    def close(self) -> None:
        for s in self._sessions.values():
            s.close()
        self._sessions.clear()
        self._hosts.clear()
