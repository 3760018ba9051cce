"""Fixtures for the lab's integration tests: one lab per session, always torn down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from svcnet.lab import Lab
from svcnet.lab.pytest_fixtures import running_lab, unique_lab_name

CLUSTER = Path(__file__).parent / "cluster.yaml"


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The 3-node lab of tests/lab/cluster.yaml, shared by the session."""
    with running_lab(CLUSTER, unique_lab_name("s")) as running:
        yield running
