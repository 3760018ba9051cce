"""Helpers for the verify lab tests: the real `svcnet` command against a lab."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from svcnet.lab.state import Lab

REPO = Path(__file__).resolve().parents[2]
SEED = REPO / "examples" / "seed"
FEATURES = Path(__file__).resolve().parent / "features"


@dataclass
class Run:
    rc: int
    out: str
    err: str
    seconds: float = 0.0


def svcnet(*args: str, timeout: float = 300) -> Run:
    import time

    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "svcnet.cli.main", *args], capture_output=True, text=True,
                       timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL)
    return Run(p.returncode, p.stdout, p.stderr, time.monotonic() - t0)


def apply(lab: Lab, description: Path) -> Run:
    return svcnet("apply", "-i", str(lab.inventory_path), "-f", str(description), "--confirm-timeout", "15")


def verify(lab: Lab, description: Path, *extra: str) -> Run:
    return svcnet("verify", "-i", str(lab.inventory_path), "-f", str(description), *extra)
