"""A testinfra backend over svcnet's own SSH session (strict host keys, the inventory's settings).

testinfra's paramiko backend accepts unknown host keys with a warning (WarningPolicy); svcnet's
`Session` refuses them (paramiko RejectPolicy against the inventory's known_hosts), reads the
inventory like `svcnet apply` does (ansible_* vars, `-F ssh_config`, ProxyCommand, become) and
keeps one connection per node for the whole run.
"""

from __future__ import annotations

from typing import Any

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

from svcnet.transport.ssh import Session

NAME = "svcnet"
COMMAND_TIMEOUT = 60.0


class SvcnetBackend(BaseBackend):
    """Runs testinfra commands through an open svcnet `Session`."""

    NAME = NAME

    def __init__(self, session: Session, *args: Any, **kwargs: Any):
        self.session = session
        super().__init__(session.host.name, *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        cmd = self.get_command(command, *args)
        result = self.session.run(cmd, timeout=COMMAND_TIMEOUT)
        return self.result(result.rc, self.encode(cmd), result.stdout, result.stderr)


def session_host(session: Session) -> testinfra.host.Host:
    """A testinfra Host whose commands run over `session`."""
    backend = SvcnetBackend(session)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
