"""Located diagnostics: `FILE:LINE:COL: PATH: message`, as compilers and linters print them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

ERROR, WARNING = "error", "warning"

PathT = tuple[str | int, ...]


def format_path(path: Sequence[str | int]) -> str:
    """`('spec', 'ports', 0, 'port')` -> `spec.ports[0].port` (kubectl's field paths)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    file: str
    line: int
    col: int
    path: str
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == WARNING else ""
        return f"{self.file}:{self.line}:{self.col}: {self.path}: {prefix}{self.message}"


def errors(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diags if d.severity == ERROR]


def warnings(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diags if d.severity == WARNING]


class DescriptionError(Exception):
    """The description is invalid; carries every diagnostic found."""

    def __init__(self, diagnostics: Sequence[Diagnostic]):
        super().__init__(f"{len(errors(diagnostics))} error(s) in the cluster description")
        self.diagnostics = list(diagnostics)
