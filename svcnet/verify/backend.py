"""A testinfra backend over a svcnet gateway (strict host keys, the inventory's settings).

testinfra's paramiko backend accepts unknown host keys with a warning (WarningPolicy); svcnet's
gateway refuses them (paramiko RejectPolicy against the inventory's known_hosts), reads the
inventory like `svcnet apply` does (ansible_* vars, `-F ssh_config`, ProxyCommand, become) and
keeps one connection per node for the whole run.
"""

from __future__ import annotations

from typing import Any

import testinfra.host
from testinfra.backend.base import BaseBackend, CommandResult

from svcnet.transport.gateway import Gateway

NAME = "svcnet"
COMMAND_TIMEOUT = 60.0


class SvcnetBackend(BaseBackend):
    """Runs testinfra commands through a svcnet `Gateway`."""

    NAME = NAME

    def __init__(self, gateway: Gateway, *args: Any, **kwargs: Any):
        self.gateway = gateway
        super().__init__(gateway.name, *args, **kwargs)

    def run(self, command: str, *args: str, **kwargs: Any) -> CommandResult:
        cmd = self.get_command(command, *args)
        result = self.gateway.run(cmd, timeout=COMMAND_TIMEOUT)
        return self.result(result.rc, self.encode(cmd), result.stdout, result.stderr)


def gateway_host(gateway: Gateway) -> testinfra.host.Host:
    """A testinfra Host whose commands run through `gateway`."""
    backend = SvcnetBackend(gateway)
    host = testinfra.host.Host(backend)
    backend.set_host(host)
    return host
