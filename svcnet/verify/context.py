"""One verify run's view of the cluster: the model, the inventory, and the gateways to its nodes.

Created per pytest session (stored on the config, never global). Everything asked of a node is
cached for the run: one agent check per node, one pod status per node (and one gateway, so one
session and one agent process, per node). A failure to reach a node is remembered, so every
later check of that node fails at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from svcnet.agent.node import PYTHON_FLAGS
from svcnet.model.facts import with_facts
from svcnet.model.types import Cluster
from svcnet.render.artifacts import node_artifacts_all
from svcnet.transport.gateway import AgentReplyError, Gateway
from svcnet.transport.inventory import Inventory
from svcnet.transport.protocol import (
    ApplyAnswer,
    ApplyRequest,
    PodStatus,
    ProbeRequest,
    Request,
    StatusRequest,
    new_run_id,
)
from svcnet.transport.ssh import Result, SSHError
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
A = TypeVar("A")


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
    sources: tuple[str, ...] = ()  # the lab client's addresses (traffic may be sent from each)
    routes: tuple[tuple[str, str], ...] = ()  # (address, node): the lab client sends it to that node


def resolve_outside(inventory: Inventory, nodes: Sequence[str], mode: str) -> Outside:
    """The lab's client namespace when the inventory is a lab's, this machine with `local`."""
    if mode == OUTSIDE_NONE:
        return Outside(OUTSIDE_NONE, reason="outside probes are disabled (--svcnet-outside none)")
    if mode == OUTSIDE_LOCAL:
        return Outside(OUTSIDE_LOCAL)
    lab = inventory.host_vars(nodes[0]).get(LAB_VARS) if nodes else None
    if isinstance(lab, dict) and lab.get("client_ns"):
        client_ip = str(lab.get("client_ip") or "") or None
        addresses, routes = lab.get("client_addresses"), lab.get("routes")
        sources = tuple(map(str, addresses)) if isinstance(addresses, list) else (client_ip,) if client_ip else ()
        pairs = tuple((str(k), str(v)) for k, v in routes.items()) if isinstance(routes, dict) else ()
        return Outside("lab", str(lab["client_ns"]), client_ip, sources=sources, routes=pairs)
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
    """The cluster, the inventory, and the run's gateways to nodes.

    `gateway(node)` gives the node's gateway; whoever made them closes them (the CLI, the
    plugin, or the playbook's runner). `run_id`: the run's (a new one by default).
    """

    def __init__(self, cluster: Cluster, inventory: Inventory, gateway: Callable[[str], Gateway],
                 nodes: Sequence[str] | None = None, outside: str = OUTSIDE_AUTO, run_id: str | None = None):
        self.cluster = cluster
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
        self.run_id = run_id or new_run_id("verify")
        self._gateway = gateway
        self._hosts: dict[str, Any] = {}
        self._unreachable: dict[str, str] = {}
        self._checks: dict[str, ApplyAnswer | str] = {}
        self._status: dict[str, dict[str, PodStatus]] = {}

    # -- connections -----------------------------------------------------------------
    def gateway(self, node: str) -> Gateway:
        """The node's gateway (VerifyError if the node could not be reached before)."""
        if node in self._unreachable:
            raise VerifyError(self._unreachable[node])
        return self._gateway(node)

    @contextlib.contextmanager
    def reaching(self, node: str) -> Iterator[Gateway]:
        """The node's gateway, connected; a failure to reach the node is remembered (VerifyError)."""
        gw = self.gateway(node)
        try:
            gw.open()
        except SSHError as exc:
            self._unreachable[node] = f"{node}: unreachable: {exc.message}"
            raise VerifyError(self._unreachable[node]) from None
        try:
            yield gw
        except AgentReplyError as exc:  # the node answered: only this call failed
            raise VerifyError(f"{node}: {exc.message}") from None
        except SSHError as exc:
            self._unreachable[node] = f"{node}: {exc.message}"
            raise VerifyError(self._unreachable[node]) from None

    def run(self, node: str, command: str, stdin: bytes = b"", timeout: float = 60.0) -> Result:
        with self.reaching(node) as gw:
            return gw.run(command, stdin, timeout)

    def host(self, node: str) -> Any:
        """A testinfra Host for `node` over its gateway."""
        from svcnet.verify.backend import gateway_host

        if node not in self._hosts:
            with self.reaching(node) as gw:
                self._hosts[node] = gateway_host(gw)
        return self._hosts[node]

    # -- agent -----------------------------------------------------------------------
    def agent(self, node: str, request: Request[A]) -> A:
        with self.reaching(node) as gw:
            return gw.ask(request, AGENT_TIMEOUT)

    def state_check(self, node: str) -> ApplyAnswer:
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

    def _state_check_one(self, node: str) -> ApplyAnswer | str:
        """The check answer, or the failure message (raised later by the check of that node)."""
        try:
            probe = self.agent(node, ProbeRequest(self.run_id))
            if not probe.ok or probe.facts is None:
                return f"{node}: agent probe failed: {probe.msg}"
            art = node_artifacts_all(with_facts(self.cluster, {node: probe.facts}), [node])[node]
            answer = self.agent(node, ApplyRequest(self.run_id, art, check=True, proxy_mode=self.cluster.proxy.mode))
        except VerifyError as exc:
            return str(exc.msg)
        if not answer.ok or answer.diff is None:
            return f"{node}: agent check failed: {answer.msg}"
        return answer

    def pod_status(self, node: str) -> dict[str, PodStatus]:
        """The agent's view of the node's pods: "ns/name" -> its status."""
        if node not in self._status:
            answer = self.agent(node, StatusRequest(self.run_id))
            self._status[node] = {p.pod: p for p in answer.pods}
        return self._status[node]

    # -- traffic ---------------------------------------------------------------------
    def probe(self, source: Source, request: dict) -> dict:
        """Run the traffic probe on the source's node (inside the pod's netns for a pod source)."""
        command = self.gateway(source.node).python_command(PROBE_BOOTSTRAP, netns_argv(source.netns))
        timeout = float(request.get("deadline", request.get("timeout", 5))) + PROBE_SLACK
        result = self.run(source.node, command, probe_stdin(request), timeout)
        return parse_probe(result.stdout, source.label)

    def probe_outside(self, request: dict) -> dict:
        """Run the traffic probe outside the cluster (the lab's client netns, or this machine)."""
        out = self.outside
        if out.mode == OUTSIDE_NONE:
            pytest.skip(out.reason)
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
        self._hosts.clear()
