"""`svcnet playbook` and `svcnet apply`: make the nodes match the description, like ansible-playbook."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from svcnet.cli.common import fail
from svcnet.cli.tasks import registry
from svcnet.playbook.load import PlaybookError, load_playbook, playbook_path
from svcnet.playbook.model import Play, Task
from svcnet.playbook.runner import EXIT_INVALID, Options, Runner
from svcnet.transport.gateway import Connector
from svcnet.transport.hostpattern import PatternError
from svcnet.transport.inventory import InventoryError, load_inventory

SITE_TASKS = ("validate", "preflight", "network", "rules", "verify")


def run_options(f):  # type: ignore[no-untyped-def]
    """The options shared by `playbook` and `apply` (ansible-playbook's names)."""
    for opt in reversed([
        click.option("-i", "--inventory", "inventory", required=True, metavar="PATH",
                     help="Ansible-style inventory file or directory."),
        click.option("-C", "--check", is_flag=True, help="Change nothing; report what would change."),
        click.option("-D", "--diff", is_flag=True, help="Show diffs of owned chains and address config."),
        click.option("-l", "--limit", metavar="PATTERN", help="Further limit hosts (Ansible host pattern)."),
        click.option("-t", "--tags", metavar="TAGS", default="", help="Only tasks with these tags (comma list)."),
        click.option("--skip-tags", metavar="TAGS", default="", help="Skip tasks with these tags."),
        click.option("--forks", type=click.IntRange(1, 500), default=10, show_default=True,
                     help="Hosts worked on in parallel."),
        click.option("-v", "--verbose", count=True),
        click.option("--accept-new-host-keys", is_flag=True,
                     help="Trust unknown host keys on first use and record them (changed keys are refused)."),
        click.option("--confirm-timeout", type=click.FloatRange(0, 3600), default=30.0, show_default=True,
                     help="Seconds a node waits for confirmation over a fresh connection before it rolls "
                          "itself back (0: no dead-man switch)."),
        click.option("--lock-wait", type=click.FloatRange(0, 3600), default=30.0, show_default=True,
                     help="Seconds to wait for another apply's lock on a node."),
        click.option("-K", "--ask-become-pass", is_flag=True,
                     help="Prompt for the become password (else $SVCNET_BECOME_PASSWORD)."),
        click.option("-T", "--timeout", "connect_timeout", type=click.FloatRange(1, 300), default=10.0,
                     show_default=True, help="SSH connect timeout in seconds."),
    ]):
        f = opt(f)
    return f


def _split(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def execute(plays: list[Play], inventory: str, **kw: object) -> None:
    try:
        inv = load_inventory(inventory)
    except InventoryError as exc:
        for d in exc.diagnostics:
            click.echo(str(d), err=True)
        fail(f"invalid inventory {inventory}", EXIT_INVALID)
        return
    limit = kw.get("limit")
    try:  # a bad --limit (regex, unreadable @file) is an input error before any play runs
        inv.select("all", str(limit) if limit else None)
    except PatternError as exc:
        fail(f"invalid --limit: {exc}", EXIT_INVALID)
    timeout = kw.pop("connect_timeout")
    assert isinstance(timeout, float)
    connector = Connector.from_env(inv, ask=bool(kw.pop("ask_become_pass")),
                                   accept_new_host_keys=bool(kw.pop("accept_new_host_keys")), connect_timeout=timeout)
    opts = Options(tags=_split(str(kw.pop("tags"))), skip_tags=_split(str(kw.pop("skip_tags"))), **kw)  # type: ignore[arg-type]
    sys.exit(Runner(inv, opts, registry(), connector.gateway).run(plays))


@click.command()
@click.argument("playbook")
@run_options
def playbook(playbook: str, inventory: str, **kw: object) -> None:
    """Run a playbook of svcnet tasks against an inventory, as ansible-playbook does.

    Exit codes: 0 ok, 1 invalid input, 2 a host failed, 4 a host was unreachable, 8 a node was
    rolled back.
    """
    try:
        plays = load_playbook(playbook_path(playbook))
    except PlaybookError as exc:
        for d in exc.diagnostics:
            click.echo(str(d), err=True)
        fail(f"invalid playbook {playbook}", EXIT_INVALID)
        return
    execute(plays, inventory, **kw)


@click.command()
@click.option("-f", "--filename", "paths", multiple=True, required=True, metavar="PATH",
              help="Description file or directory (repeatable).")
@run_options
def apply(paths: tuple[str, ...], inventory: str, **kw: object) -> None:
    """Apply a description to every node: the short form of playbooks/site.yaml."""
    tasks = tuple(Task(name=t, action=t, tags=frozenset({t})) for t in SITE_TASKS)  # --skip-tags verify
    play = Play(name="svcnet apply", hosts="all", cluster=tuple(Path(p) for p in paths), tasks=tasks)
    execute([play], inventory, **kw)
