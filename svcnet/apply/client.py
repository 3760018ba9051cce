"""Talk to the svcnet agent on one node: one agent process per SSH session, one line per operation."""

from __future__ import annotations

from collections.abc import Mapping

from svcnet.agent.protocol import AgentProtocolError, build_stdin, parse_response, remote_command, request_line
from svcnet.transport.hostconfig import HostConfig
from svcnet.transport.ssh import Session, SSHError, Stream


class AgentFailure(Exception):
    """The agent ran but reported a failure (`response` holds its answer)."""

    def __init__(self, node: str, response: Mapping[str, object]):
        super().__init__(f"{node}: {response.get('msg') or 'failed'}")
        self.response = dict(response)


class NodeClient:
    """The agent on one node, reached over one reused SSH session."""

    def __init__(self, host: HostConfig, accept_new_host_keys: bool = False, timeout: float = 10.0):
        self.host = host
        self.accept_new = accept_new_host_keys
        self.timeout = timeout
        self.session: Session | None = None
        self.agent: Stream | None = None  # the agent process serving this client's calls
        self.command = remote_command(host.vars.get("ansible_python_interpreter"))

    @property
    def name(self) -> str:
        return self.host.name

    def _session(self) -> Session:
        if self.session is None:
            self.session = Session(self.host, self.accept_new, self.timeout).open()
        return self.session

    def call(self, request: Mapping[str, object], timeout: float = 300.0, fresh: bool = False) -> dict:
        """Send one request; returns the response dict. `fresh` uses a new connection (confirm).

        Otherwise the request goes to the agent process this client keeps running on its
        session (started by the first call), so a run pays the interpreter start-up once per
        node and connection, not once per operation.
        """
        if fresh:
            with Session(self.host, self.accept_new, self.timeout) as s:
                result = s.run(self.command, build_stdin(request), timeout)
            return self._parse(result.stdout, result.stderr)
        try:
            if self.agent is None:
                self.agent = self._session().start(self.command, build_stdin(request, session=True))
            else:
                self.agent.send(request_line(request))
            line = self.agent.read_line(timeout)
        except SSHError:
            self._drop_agent()  # the next call starts another agent
            raise
        if line is None:  # the agent ended (killed, or the node rebooted): the next call starts another
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
            raise SSHError(self.name, f"{exc}{': ' + ' / '.join(detail) if detail else ''}") from None

    def _drop_agent(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None

    def close(self) -> None:
        self._drop_agent()
        if self.session is not None:
            self.session.close()
            self.session = None
