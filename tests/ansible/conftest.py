"""The Ansible tests' session: real ansible-core in its own venv, and the collection built and installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ansiblevenv import Ansible, ansible_venv, setup


@pytest.fixture(scope="session")
def ansible(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ansible]:
    venv = ansible_venv()
    ans, _ = setup(venv, tmp_path_factory.mktemp("ansible"))
    try:
        yield ans
    finally:
        ans.stop_control_masters()
