"""Talk to the svcnet agent on one node: one SSH command per operation."""

from __future__ import annotations

from collections.abc import Mapping

from svcnet.agent.protocol import AgentProtocolError, build_stdin, parse_response, remote_command
from svcnet.transport.hostconfig import HostConfig
from svcnet.transport.ssh import Session, SSHError


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
        self.command = remote_command(host.vars.get("ansible_python_interpreter"))

    @property
    def name(self) -> str:
        return self.host.name

    def _session(self) -> Session:
        if self.session is None:
            self.session = Session(self.host, self.accept_new, self.timeout).open()
        return self.session

    def call(self, request: Mapping[str, object], timeout: float = 300.0, fresh: bool = False) -> dict:
        """Send one request; returns the response dict. `fresh` uses a new connection (confirm)."""
        stdin = build_stdin(request)
        if fresh:
            with Session(self.host, self.accept_new, self.timeout) as s:
                result = s.run(self.command, stdin, timeout)
        else:
            result = self._session().run(self.command, stdin, timeout)
        try:
            return parse_response(result.stdout, self.name)
        except AgentProtocolError as exc:
            detail = result.stderr.strip().splitlines()[-3:] if result.stderr.strip() else []
            raise SSHError(self.name, f"{exc}{': ' + ' / '.join(detail) if detail else ''}") from None

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None
