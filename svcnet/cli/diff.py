"""`svcnet diff`: what a change to a description changes on each node, offline (for review and CI)."""

from __future__ import annotations

import sys
from collections.abc import Iterable

import click

from svcnet.cli.common import EXIT_INVALID, fail, print_diagnostics
from svcnet.diagnostics import errors
from svcnet.model.load import Checked, check_paths
from svcnet.model.types import Cluster
from svcnet.review import report
from svcnet.review.diff import diff_clusters
from svcnet.review.gitrev import RevisionError, Snapshot, snapshot

EXIT_SAME, EXIT_CHANGED, EXIT_USAGE = 0, 1, 2  # as `git diff --exit-code`


@click.command(name="diff")
@click.argument("sides", nargs=-1, metavar="OLD NEW | REV")
@click.option("-f", "--filename", "paths", multiple=True, metavar="PATH",
              help="With REV: the description (repeatable; default: the current directory), read at REV "
                   "from git and from the work tree.")
@click.option("--stat", is_flag=True, help="Print counts of changed lines per node and service port only.")
@click.option("-U", "--unified", "context", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Unchanged lines of the same service port shown around each change.")
def diff(sides: tuple[str, ...], paths: tuple[str, ...], stat: bool, context: int) -> None:
    """Compare two descriptions offline: per node, the rules of which service ports change
    (a unified diff of the rendered rules, grouped by service port), the jump rules and the
    address config.

    OLD NEW are two descriptions (files or directories). REV compares the description as it was
    at a git revision (HEAD~1, main, a commit) with the work tree. Exit 0: no change, 1: changes
    (or an invalid description, as svcnet validate), 2: usage error.
    """
    if len(sides) == 2 and not paths:
        _compare((sides[0], check_paths([sides[0]])), (sides[1], check_paths([sides[1]])), stat, context)
        return
    if len(sides) != 1:
        fail("give two descriptions (svcnet diff OLD NEW) or one git revision (svcnet diff REV [-f PATH]...)",
             EXIT_USAGE)
    rev, where = sides[0], list(paths or ["."])
    try:
        with snapshot(rev, where) as snap:
            old = _at_revision(snap)
    except RevisionError as exc:
        fail(str(exc), EXIT_USAGE)
    _compare((rev, old), ("in the work tree", check_paths(where)), stat, context)


def _at_revision(snap: Snapshot) -> Checked:
    """The description at the revision, its diagnostics naming files as `REV:path`."""
    checked = check_paths(list(snap.paths))
    diags = [snap.located(d) for d in checked.diagnostics] + list(snap.problems)
    return Checked(None if snap.problems else checked.build, diags)


def _compare(old: tuple[str, Checked], new: tuple[str, Checked], stat: bool, context: int) -> None:
    bad = [(name, c) for name, c in (old, new) if not c.ok]
    for _, c in bad:
        print_diagnostics(c.diagnostics)
    for name, c in bad:
        n = len(errors(c.diagnostics))
        click.echo(f"svcnet: the description {name} is invalid ({n} error{'s' if n != 1 else ''})", err=True)
    if bad:
        sys.exit(EXIT_INVALID)
    diffs = diff_clusters(_cluster(old[1]), _cluster(new[1]), context)
    _emit(report.stat(diffs) if stat else report.unified(diffs))
    total = report.totals(diffs)
    if stat:
        click.echo(total)
    else:
        click.echo(f"svcnet diff: {total}", err=True)
    sys.exit(EXIT_CHANGED if any(d.changed for d in diffs) else EXIT_SAME)


def _cluster(c: Checked) -> Cluster:
    assert c.build is not None
    return c.build.cluster


def _emit(lines: Iterable[str], chunk: int = 4096) -> None:
    """Write in chunks: a diff of every rule of 10,000 services is millions of lines."""
    buf: list[str] = []
    for line in lines:
        buf.append(line)
        if len(buf) >= chunk:
            click.echo("\n".join(buf))
            buf = []
    if buf:
        click.echo("\n".join(buf))
