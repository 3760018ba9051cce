"""Run the generated check suite in-process with pytest.main (the CLI and the playbook task)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from svcnet.verify.context import VerifyContext
from svcnet.verify.plugin import Preloaded

VERIFY_DIR = Path(__file__).resolve().parent
CHECKS_DIR = VERIFY_DIR / "checks"
CHECK_MODULES = ("rules", "jumps", "addresses", "pods", "health", "traffic")
PLUGIN_MODULE = "svcnet.verify.plugin"
ENTRY_POINT_NAME = "svcnet"


def check_paths() -> list[str]:
    return [str(CHECKS_DIR / f"{name}.py") for name in CHECK_MODULES]


def pytest_args(junitxml: str | None = None, keyword: str | None = None, verbose: bool = True,
                extra: Sequence[str] = ()) -> list[str]:
    """pytest's argv for the suite: our plugin loaded once, no ini file or cache of the caller's."""
    args = [
        *check_paths(),
        "-p", f"no:{ENTRY_POINT_NAME}", "-p", PLUGIN_MODULE,  # loaded by module, whether installed or not
        "-p", "no:cacheprovider",
        "-c", os.devnull, "--rootdir", str(VERIFY_DIR),
        "--tb=short", "-rfEs", "--no-header",
        "-W", "ignore::pytest.PytestAssertRewriteWarning",  # the plugin is imported before pytest starts
        "-v" if verbose else "-q",
    ]
    if junitxml:
        args += ["--junitxml", junitxml]
    if keyword:
        args += ["-k", keyword]
    return [*args, *extra]


@dataclass(eq=False)  # pluggy keeps plugins in sets: hash by identity
class Recorder:
    """A pytest plugin object collecting each check's outcome."""

    passed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (test id, message)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        name = report.nodeid.rsplit("::", 1)[-1]
        if report.failed:
            self.failed.append((name, report.longreprtext.strip()))
        elif report.skipped:
            self.skipped.append(name)
        elif report.when == "call":
            self.passed.append(name)


def run_suite(context: VerifyContext, args: Sequence[str], plugins: Sequence[object] = ()) -> int:
    """pytest.main over the checks with `context` handed to the plugin; pytest's exit code."""
    return int(pytest.main(list(args), plugins=[Preloaded(context), *plugins]))
