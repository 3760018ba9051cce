"""Fixtures of the agent tests: `snode`, a scratch node torn down whatever happens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from agentnode import ScratchNode, scratch_node


@pytest.fixture
def snode(tmp_path: Path) -> Iterator[ScratchNode]:
    with scratch_node(tmp_path) as node:
        yield node
