"""The one way to reach a node: a session that runs the agent, speaks its protocol and runs commands.

Apply, verify, `explain --live` and teardown all go through a `Gateway` (as pyinfra's tasks go
through a connector), so a test can put an in-memory one in its place. `SSHGateway` is the real
one: one SSH session per node, reused for the whole run, and on it one agent process serving
every request (a run pays the interpreter start-up once per node and connection, not once per
operation). A confirmation goes over a fresh connection instead: a change that cut the node off
is then not confirmed, and the node's dead-man switch rolls it back.

`Connector` resolves inventory hosts to gateways; it is the one place the become password is read.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from svcnet.transport.hostconfig import DEFAULT_TIMEOUT, HostConfig, SecretStr, become_password
from svcnet.transport.inventory import Inventory
from svcnet.transport.protocol import (
    AgentProtocolError,
    ConfirmAnswer,
    ConfirmRequest,
    Request,
    build_stdin,
    parse_response,
    python_command,
    remote_command,
    request_line,
)
from svcnet.transport.ssh import Result, Session, SSHError, Stream

A = TypeVar("A")
AGENT_TIMEOUT = 300.0  # seconds an agent request may take (an apply waits for locks, starts pods)
CONFIRM_TIMEOUT = 60.0
COMMAND_TIMEOUT = 60.0


class AgentReplyError(SSHError):
    """The agent's output was not its answer (it died, or printed something else)."""


class Gateway(Protocol):
    """A node as the controller sees it: the agent's requests, and plain commands."""

    @property
    def name(self) -> str: ...

    def open(self) -> Gateway:
        """Connect now (else the first request or command connects); SSHError if the node is not reached."""
        ...

    def ask(self, request: Request[A], timeout: float = AGENT_TIMEOUT) -> A:
        """Send one request to the node's agent; its typed answer (SSHError if the node is not reached)."""
        ...

    def confirm(self, run_id: str) -> ConfirmAnswer:
        """Confirm the run's pending change over a fresh connection."""
        ...

    def run(self, command: str, stdin: bytes = b"", timeout: float | None = COMMAND_TIMEOUT) -> Result:
        """Run one shell command on the node (as the inventory's become user)."""
        ...

    def python_command(self, code: str, prefix: Sequence[str] = ()) -> str:
        """A command running Python `code` isolated, with the node's interpreter (after `prefix` argv)."""
        ...

    def close(self) -> None: ...


class SSHGateway:
    """The node reached over one reused SSH session, with one agent process on it."""

    def __init__(self, host: HostConfig, accept_new_host_keys: bool = False, connect_timeout: float = DEFAULT_TIMEOUT):
        self.host = host
        self.accept_new = accept_new_host_keys
        self.connect_timeout = connect_timeout
        self.session: Session | None = None
        self.agent: Stream | None = None  # the agent process serving this gateway's requests
        python = host.vars.get("ansible_python_interpreter")
        self.python = str(python) if python else None
        self.agent_command = remote_command(self.python)

    @property
    def name(self) -> str:
        return self.host.name

    def _new_session(self) -> Session:
        return Session(self.host, self.accept_new, self.connect_timeout)

    def open(self) -> SSHGateway:
        """Connect now (otherwise the first request or command connects)."""
        self._connected()
        return self

    def _connected(self) -> Session:
        if self.session is None:
            self.session = self._new_session().open()
        return self.session

    def ask(self, request: Request[A], timeout: float = AGENT_TIMEOUT) -> A:
        return request.answer(self._call(request.to_wire(), timeout))

    def confirm(self, run_id: str) -> ConfirmAnswer:
        req = ConfirmRequest(run_id)
        with self._new_session() as s:
            result = s.run(self.agent_command, build_stdin(req.to_wire()), CONFIRM_TIMEOUT)
        return req.answer(self._parse(result.stdout, result.stderr))

    def _call(self, wire: dict[str, object], timeout: float) -> dict:
        """One request to the agent process this gateway keeps running (started by the first one)."""
        try:
            if self.agent is None:
                self.agent = self._connected().start(self.agent_command, build_stdin(wire, session=True))
            else:
                self.agent.send(request_line(wire))
            line = self.agent.read_line(timeout)
        except SSHError:
            self._drop_agent()  # the next request starts another
            raise
        if line is None:  # the agent ended (killed, or the node rebooted): the next request starts another
            stderr = self.agent.stderr.decode(errors="replace")
            self._drop_agent()
            return self._parse("", stderr)
        try:
            return self._parse(line, "")
        except SSHError:  # not its answer: the agent's output can no longer be paired with requests
            self._drop_agent()
            raise

    def _parse(self, stdout: str, stderr: str) -> dict:
        try:
            return parse_response(stdout, self.name)
        except AgentProtocolError as exc:
            detail = stderr.strip().splitlines()[-3:] if stderr.strip() else []
            raise AgentReplyError(self.name, f"{exc}{': ' + ' / '.join(detail) if detail else ''}") from None

    def run(self, command: str, stdin: bytes = b"", timeout: float | None = COMMAND_TIMEOUT) -> Result:
        return self._connected().run(command, stdin, timeout)

    def python_command(self, code: str, prefix: Sequence[str] = ()) -> str:
        return python_command(code, self.python, prefix)

    def _drop_agent(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None

    def close(self) -> None:
        self._drop_agent()
        if self.session is not None:
            self.session.close()
            self.session = None

    def __enter__(self) -> SSHGateway:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class CommandGateway:
    """A gateway over any way of running one command with stdin on a node: Ansible's connection
    plugins (the svcnet.cluster collection), testinfra's backends (`svcnet verify --connection
    ansible`). Each agent request is one agent process (the agent's compiled form is cached on the
    node, so it is not recompiled); `reconnect` makes the next command use a new connection, as a
    confirmation must. Subclasses give `execute` and `reconnect`.
    """

    def __init__(self, name: str, python: str | None = None):
        self._name = name
        self.python = python
        self.agent_command = remote_command(python)

    @property
    def name(self) -> str:
        return self._name

    def execute(self, command: str, stdin: bytes, timeout: float | None) -> Result:
        raise NotImplementedError

    def reconnect(self) -> None:
        raise NotImplementedError

    def open(self) -> CommandGateway:
        return self

    def ask(self, request: Request[A], timeout: float = AGENT_TIMEOUT) -> A:
        return request.answer(self._agent(request.to_wire(), timeout))

    def confirm(self, run_id: str) -> ConfirmAnswer:
        req = ConfirmRequest(run_id)
        self.reconnect()
        return req.answer(self._agent(req.to_wire(), CONFIRM_TIMEOUT))

    def _agent(self, wire: dict[str, object], timeout: float) -> dict:
        result = self.execute(self.agent_command, build_stdin(wire), timeout)
        try:
            return parse_response(result.stdout, self.name)
        except AgentProtocolError as exc:
            detail = result.stderr.strip().splitlines()[-3:]
            raise AgentReplyError(self.name, f"{exc}{': ' + ' / '.join(detail) if detail else ''}") from None

    def run(self, command: str, stdin: bytes = b"", timeout: float | None = COMMAND_TIMEOUT) -> Result:
        return self.execute(command, stdin, timeout)

    def python_command(self, code: str, prefix: Sequence[str] = ()) -> str:
        return python_command(code, self.python, prefix)

    def close(self) -> None:
        """The connection is the caller's to close."""


class Connector:
    """How to reach the hosts of an inventory (host keys, connect timeout, become password)."""

    def __init__(self, inventory: Inventory, become_password: SecretStr | None = None,
                 accept_new_host_keys: bool = False, connect_timeout: float = DEFAULT_TIMEOUT):
        self.inventory = inventory
        self.become_password = become_password
        self.accept_new_host_keys = accept_new_host_keys
        self.connect_timeout = connect_timeout

    @classmethod
    def from_env(cls, inventory: Inventory, *, ask: bool = False, accept_new_host_keys: bool = False,
                 connect_timeout: float = DEFAULT_TIMEOUT) -> Connector:
        """The become password from $SVCNET_BECOME_PASSWORD (or Ansible's), else asked for with `ask`."""
        return cls(inventory, become_password(os.environ, ask=ask), accept_new_host_keys, connect_timeout)

    def host_config(self, node: str) -> HostConfig:
        if node not in self.inventory.hosts:
            raise KeyError(f"host {node!r} is not in the inventory (hosts: {', '.join(self.inventory.hosts)})")
        return self.inventory.host_config(node, self.become_password)

    def gateway(self, node: str) -> SSHGateway:
        """The node's gateway (not connected yet)."""
        return SSHGateway(self.host_config(node), self.accept_new_host_keys, self.connect_timeout)


class Gateways:
    """The gateways of one run, one per node, each made on first use; `close` closes them all."""

    def __init__(self, connect: Callable[[str], Gateway]):
        self.connect = connect
        self.open: dict[str, Gateway] = {}
        self.lock = threading.Lock()  # verify asks its nodes from several threads

    def get(self, node: str) -> Gateway:
        with self.lock:
            if node not in self.open:
                self.open[node] = self.connect(node)
            return self.open[node]

    def close(self) -> None:
        for gw in self.open.values():
            gw.close()
        self.open.clear()
