"""Helpers for the verify lab tests: the real `svcnet` command against a lab."""

from __future__ import annotations

from pathlib import Path

from labrun import REPO, SEED, Run, applied_lab, apply, svcnet, verify  # noqa: F401  (shared with the apply tests)

FEATURES = Path(__file__).resolve().parent / "features"
PROTOCOLS = Path(__file__).resolve().parent / "protocols"
