"""Shared fixtures and collection rules for the whole suite.

`lab_factory` brings labs up for a test session and always tears them down. Tests marked `lab`
need root, network namespaces and sshd: without them they skip, except under CI, where the run
fails at once (see tests/prereq.py for why).
"""

from __future__ import annotations

import pytest
from prereq import in_ci

from svcnet.lab.pytest_fixtures import lab_factory, lab_unavailable_reason  # noqa: F401


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # By marker, not keyword: `"lab" in item.keywords` also matches the tests/lab/ directory.
    lab_items = [item for item in items if item.get_closest_marker("lab")]
    reason = lab_unavailable_reason() if lab_items else None
    if reason is None:
        return
    if in_ci():
        raise pytest.UsageError(f"CI: {len(lab_items)} lab tests cannot run: {reason}")
    for item in lab_items:
        item.add_marker(pytest.mark.skip(reason=reason))
