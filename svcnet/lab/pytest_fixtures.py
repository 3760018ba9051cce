"""Reusable pytest helpers: a lab that is always torn down, for any test suite.

Use `running_lab(spec, name)` as a context manager, or expose the fixtures:
    from svcnet.lab.pytest_fixtures import lab_factory  # noqa: F401  (in a conftest.py)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from svcnet.lab.down import lab_down
from svcnet.lab.errors import LabError
from svcnet.lab.node_ops import node_exec_argv
from svcnet.lab.prereq import missing_tools
from svcnet.lab.spec import LabNode, LabRoute, lab_nodes_from_files, lab_routes_from_files
from svcnet.lab.state import Lab
from svcnet.lab.up import lab_up

Spec = Sequence[LabNode] | str | Path | Sequence[str | Path]
_counter = itertools.count()


def lab_unavailable_reason() -> str | None:
    """Why this machine cannot run a lab (not root, tools missing), or None."""
    if os.geteuid() != 0:
        return "the lab needs root"
    missing = missing_tools()
    if missing:
        return "the lab needs " + ", ".join(sorted(set(missing.values())))
    return None


def unique_lab_name(prefix: str = "t") -> str:
    """A lab name unique to this process and call (parallel test runs never collide)."""
    return f"{prefix}{os.getpid()}x{next(_counter)}"


def _files(spec: Spec) -> list[str | Path] | None:
    """The description files of `spec`, or None when it lists LabNodes."""
    if isinstance(spec, str | Path):
        return [spec]
    items = list(spec)
    if items and all(isinstance(item, LabNode) for item in items):
        return None
    return items  # type: ignore[return-value]


def _nodes(spec: Spec) -> list[LabNode]:
    files = _files(spec)
    return list(spec) if files is None else lab_nodes_from_files(files)  # type: ignore[arg-type]


def _routes(spec: Spec) -> list[LabRoute]:
    """The client's routes to the description's LoadBalancer and external IPs (none for bare LabNodes)."""
    files = _files(spec)
    return [] if files is None else lab_routes_from_files(files)


@contextlib.contextmanager
def running_lab(
    spec: Spec, name: str | None = None, inventory_dir: str | Path | None = None, bastion: bool = False
) -> Iterator[Lab]:
    """Bring a lab up for the block and always tear it down (also if the block fails).

    spec: LabNodes, or cluster YAML path(s). The inventory goes to a temporary directory unless
    inventory_dir is given. `bastion`: the nodes are reached only through a jump host.
    """
    name = name or unique_lab_name()
    tmp = None if inventory_dir else tempfile.mkdtemp(prefix="svcnet-lab-inv-")
    try:
        lab = lab_up(_nodes(spec), name, inventory_dir or str(tmp), bastion=bastion, routes=_routes(spec))
        try:
            yield lab
        finally:
            lab_down(name)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def lab_factory() -> Iterator[Callable[..., Lab]]:
    """A function `make(spec, name=None, bastion=False) -> Lab`; every lab it made is torn down at session end."""
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with contextlib.ExitStack() as stack:

        def make(spec: Spec, name: str | None = None, bastion: bool = False) -> Lab:
            try:
                return stack.enter_context(running_lab(spec, name, bastion=bastion))
            except LabError as exc:
                pytest.fail(f"lab up failed: {exc}", pytrace=False)

        yield make


def node_run(lab: Lab, node: str, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a shell command on a lab machine (node, 'client' or 'bastion') as `svcnet lab exec` does."""
    return subprocess.run(
        node_exec_argv(lab, node, ["sh", "-c", command]),
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )
