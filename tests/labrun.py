"""The real `svcnet` command against a lab, shared by the apply and verify integration tests."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from svcnet.lab.layout import LabLayout
from svcnet.lab.spec import BASTION_NAME
from svcnet.lab.state import Lab

REPO = Path(__file__).resolve().parents[1]
SEED = REPO / "examples" / "seed"
DUAL_STACK = REPO / "examples" / "dual-stack"
RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.MULTILINE)


@dataclass
class Run:
    rc: int
    out: str
    err: str
    seconds: float = 0.0

    def recap(self) -> dict[str, dict[str, int]]:
        return {m[1]: {"ok": int(m[2]), "changed": int(m[3]), "unreachable": int(m[4]), "failed": int(m[5])}
                for m in RECAP.finditer(self.out)}


def svcnet(*args: str, timeout: float = 180) -> Run:
    """The real `svcnet` command in a subprocess (no terminal)."""
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "svcnet.cli.main", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL)
    return Run(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def apply(lab: Lab, *paths: Path | str, extra: tuple[str, ...] = ()) -> Run:
    args = ["apply", "-i", str(lab.inventory_path), "--confirm-timeout", "15", *extra]
    for p in paths:
        args += ["-f", str(p)]
    return svcnet(*args)


def verify(lab: Lab, description: Path, *extra: str) -> Run:
    return svcnet("verify", "-i", str(lab.inventory_path), "-f", str(description), *extra, timeout=300)


def applied_lab(lab_factory: Callable[..., Lab], description: Path) -> Lab:
    """A lab for `description`, with it applied (the module fixtures' common start)."""
    lab = lab_factory(description)
    first = apply(lab, description)
    assert first.rc == 0, first.out + first.err
    return lab


def inventory_trusting(lab: Lab, directory: Path, known_hosts: str) -> Path:
    """Copies of the lab's inventory and ssh_config that trust only `known_hosts` (its text); the inventory."""
    (directory / "known_hosts").write_text(known_hosts)
    config = lab.ssh_config_path.read_text().replace(str(lab.known_hosts_path), str(directory / "known_hosts"))
    (directory / "ssh_config").write_text(config)
    text = lab.inventory_path.read_text().replace(str(lab.ssh_config_path), str(directory / "ssh_config"))
    (directory / "inventory.yaml").write_text(text)
    return directory / "inventory.yaml"


def bastion_log(lab: Lab) -> str:
    """What the lab bastion's sshd logged (each connection it forwarded among it)."""
    return (LabLayout(lab.name, lab.dir.parent).node_dir(BASTION_NAME) / "sshd.log").read_text()
