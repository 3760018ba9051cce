"""`svcnet verify --connection ansible`: the nodes as testinfra's `ansible://` backend reaches them.

Ansible reads the inventory (`ansible-inventory --list`, from ansible-core on PATH), so whatever
Ansible can read works: inventory plugins and scripts, vaulted variables, `ansible.cfg`. testinfra
turns each host's variables into its ssh (or local) backend, as `pytest --hosts=ansible://all
--ansible-inventory=INV` does; svcnet runs its commands and agent requests over that backend's
own command line, with stdin (testinfra's `run` has none, and the agent reads its request there).
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

from svcnet.transport.gateway import CommandGateway
from svcnet.transport.hostpattern import ALL
from svcnet.transport.inventory import Group, Inventory
from svcnet.transport.ssh import Result, SSHError

CONNECTION_SVCNET, CONNECTION_ANSIBLE = "svcnet", "ansible"
CONNECTIONS = (CONNECTION_SVCNET, CONNECTION_ANSIBLE)
SSH_UNREACHABLE = 255  # ssh's exit code when it could not connect or authenticate
INTERPRETER_VAR = "ansible_python_interpreter"


class AnsibleInventoryError(ValueError):
    """ansible-inventory could not read the inventory (or is not installed)."""


class AnsibleHosts:
    """An inventory as Ansible reads it, and testinfra's host for each of its hosts."""

    def __init__(self, path: str):
        from testinfra.utils.ansible_runner import AnsibleRunner

        self.runner = AnsibleRunner(path)
        try:
            self.hosts = self.runner.get_hosts(ALL)
        except Exception as exc:  # testinfra asserts on ansible-inventory's exit code, or it is missing
            raise AnsibleInventoryError(f"ansible-inventory could not read {path} (ansible-core must be on PATH): "
                                        f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r}") from None

    def host_vars(self, host: str) -> dict[str, Any]:
        return dict(self.runner.inventory["_meta"].get("hostvars", {}).get(host, {}))

    def inventory(self) -> Inventory:
        """svcnet's view of it: the hosts and their variables (svcnet reads its own, e.g. `svcnet_lab`)."""
        group = Group(ALL, tuple(self.hosts), (), (), 0, 0, {})
        return Inventory(hosts=tuple(self.hosts), groups={ALL: group},
                         inline_host_vars={h: self.host_vars(h) for h in self.hosts})

    def gateway(self, node: str) -> TestinfraGateway:
        python = self.host_vars(node).get(INTERPRETER_VAR)
        python = str(python) if python and not str(python).startswith("auto") else None
        return TestinfraGateway(node, self.runner.get_host(node), python)


class TestinfraGateway(CommandGateway):
    """A node reached through the backend testinfra's ansible:// made of its inventory entry."""

    def __init__(self, name: str, host: Any, python: str | None):
        super().__init__(name, python)
        self.backend = host.backend if host is not None else None

    def execute(self, command: str, stdin: bytes, timeout: float | None) -> Result:
        from testinfra.backend.local import LocalBackend
        from testinfra.backend.ssh import SshBackend

        backend = self.backend
        wrapped = backend.get_command(command) if backend is not None else command  # become: testinfra's sudo
        if isinstance(backend, SshBackend):
            argv, args = backend._build_ssh_command(wrapped)  # testinfra's own ssh command line for the host
            line = backend.quote(" ".join(argv), *args)
        elif isinstance(backend, LocalBackend):
            line = wrapped
        else:
            kind = backend.NAME if backend is not None else "this ansible_connection"
            raise SSHError(self.name, f"testinfra's {kind} backend is not supported by svcnet (ssh, local)")
        t0 = time.monotonic()
        try:
            p = subprocess.run(line, shell=True, input=stdin, capture_output=True, timeout=timeout, cwd="/")
        except subprocess.TimeoutExpired:
            raise SSHError(self.name, f"no answer within {timeout:g}s") from None
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        if isinstance(backend, SshBackend) and p.returncode == SSH_UNREACHABLE:
            raise SSHError(self.name, " / ".join(err.strip().splitlines()[-2:]) or "ssh could not connect")
        return Result(p.returncode, out, err, time.monotonic() - t0)

    def reconnect(self) -> None:
        """Each command is its own ssh process (testinfra's ControlMaster is off unless configured)."""
