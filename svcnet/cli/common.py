"""Helpers shared by the commands: loading a description and reporting its diagnostics."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import click

from svcnet.diagnostics import Diagnostic, errors
from svcnet.model.load import Checked, check_paths
from svcnet.model.types import Cluster

EXIT_INVALID = 1

files_option = click.option(
    "-f", "--filename", "paths", multiple=True, required=True, metavar="PATH",
    help="Description file or directory (repeatable), as kubectl -f.",
)


def print_diagnostics(diags: Sequence[Diagnostic], show_warnings: bool = True) -> None:
    for d in diags:
        if show_warnings or d.severity == "error":
            click.echo(str(d), err=True)


def diagnostic_json(d: Diagnostic) -> str:
    """One diagnostic as one line of JSON (for CI annotations)."""
    return json.dumps({"file": _printable(d.file), "line": d.line, "column": d.col, "path": _printable(d.path),
                       "severity": d.severity, "message": _printable(d.message)})


def _printable(text: str) -> str:
    # A file name that is not UTF-8 reaches Python as lone surrogates, which strict JSON readers
    # refuse: show its bytes as \xNN instead.
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def load_or_exit(paths: Sequence[str], show_warnings: bool = False) -> Cluster:
    """The model, or print every error (`file:line:col: path: message`) and exit 1."""
    checked: Checked = check_paths(paths)
    if not checked.ok:
        print_diagnostics(checked.diagnostics)
        n = len(errors(checked.diagnostics))
        click.echo(f"svcnet: the description is invalid ({n} error{'s' if n != 1 else ''})", err=True)
        sys.exit(EXIT_INVALID)
    print_diagnostics(checked.diagnostics, show_warnings=show_warnings)
    assert checked.build is not None
    return checked.build.cluster


def fail(message: str, code: int = 1) -> None:
    click.echo(f"svcnet: {message}", err=True)
    sys.exit(code)

