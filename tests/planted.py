"""Modules planted where a user can write (a home, the current directory): a Python that imports
one of them leaves a marker file beside it, then goes on with the real module, as an attacker's
would, so the run itself shows nothing."""

from __future__ import annotations

import shlex
from pathlib import Path

# Standard modules the agent's bootstrap, the agent and the traffic probe import from files
# (sys, marshal, os are built in or frozen: a planted copy would never be found first).
MODULES = ("json", "hashlib", "ipaddress", "shlex", "shutil", "subprocess", "socket")
MARKER = "svcnet-planted-module-ran"
SOURCE = f'''import os, sys
_here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(_here, "{MARKER}"), "a") as _f:
    _f.write("%s euid=%d pid=%d\\n" % (__name__, os.geteuid(), os.getpid()))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
del sys.modules[__name__]
import importlib
sys.modules[__name__] = importlib.import_module(__name__)
'''


def plant(directory: Path) -> None:
    """Plant the modules in a local directory."""
    for name in MODULES:
        (directory / f"{name}.py").write_text(SOURCE)


def plant_command(directory: str, owner: str = "") -> str:
    """A shell command planting the modules in `directory` on a lab machine (owned by `owner`)."""
    d = shlex.quote(directory)
    files = " ".join(shlex.quote(f"{directory}/{name}.py") for name in MODULES)
    steps = [f"for f in {files}; do printf %s {shlex.quote(SOURCE)} > \"$f\"; done", f"rm -f {d}/{MARKER}"]
    if owner:
        steps.append(f"chown {shlex.quote(owner)} {files}")
    return " && ".join(steps)


def marker_command(directory: str) -> str:
    """A shell command printing what the planted modules recorded in `directory` (empty: nothing ran)."""
    return f"cat {shlex.quote(directory + '/' + MARKER)} 2>/dev/null || true"


def ran(directory: Path) -> str:
    """What the planted modules in a local directory recorded ("" when none was imported)."""
    path = directory / MARKER
    return path.read_text() if path.exists() else ""
