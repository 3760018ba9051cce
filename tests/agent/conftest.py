"""Fixtures of the agent tests: `snode`, a scratch node torn down whatever happens."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentnode import ScratchNode, scratch_node

# tests/render's vector converter (nftrealpath), for the incremental apply's tests
_RENDER_TESTS = str(Path(__file__).resolve().parents[1] / "render")
if _RENDER_TESTS not in sys.path:
    sys.path.append(_RENDER_TESTS)


@pytest.fixture
def snode(tmp_path: Path) -> Iterator[ScratchNode]:
    with scratch_node(tmp_path) as node:
        yield node
