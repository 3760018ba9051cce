"""What a test does when this machine lacks a prerequisite (root, a tool, a kernel module).

On a developer's machine it skips with the reason. Under CI (`CI` set, as `.ci/run` is run) it
fails: CI installs every prerequisite through scripts/bootstrap.sh, so a missing one there is a
broken install step, and a skip would let the suite stay green while testing less.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def unavailable(reason: str) -> NoReturn:
    """Skip (developer) or fail (CI) the calling test because `reason` is missing."""
    if in_ci():
        pytest.fail(f"prerequisite missing under CI: {reason}", pytrace=False)
    pytest.skip(reason)
