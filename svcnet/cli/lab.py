"""`svcnet lab`: up / down / status / exec for the local namespace lab."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import click

from svcnet.lab import LabError, lab_down, lab_down_all, lab_nodes_from_files, lab_status, lab_up, load_lab
from svcnet.lab.node_ops import node_exec_argv
from svcnet.lab.prereq import require_root
from svcnet.lab.procs import tool_env
from svcnet.lab.spec import cluster_name_from_files, lab_routes_from_files
from svcnet.lab.status import resolve_name

DEFAULT_LAB = "lab"
NAME_HELP = "lab name (may be left out when only one lab exists)"


def _fail(exc: LabError | OSError) -> None:
    message = str(exc) if isinstance(exc, LabError) else f"{exc.filename or ''}: {exc.strerror}"
    raise click.ClickException(message) from None


@click.group("lab")
def lab() -> None:
    """A local lab: cluster nodes as network namespaces with their own sshd (needs root)."""


@lab.command("up")
@click.option(
    "-f",
    "--filename",
    "files",
    multiple=True,
    required=True,
    type=click.Path(),
    help="cluster description file or directory (as kubectl -f); repeatable",
)
@click.option("--name", help="lab name [default: the Cluster's metadata.name, else 'lab']")
@click.option(
    "--inventory-dir",
    default="inventory",
    show_default=True,
    type=click.Path(file_okay=False),
    help="where inventory/<LAB>.yaml is written",
)
@click.option("--bastion", is_flag=True, help="add a jump host `bastion`; the nodes are reachable only through it")
def up(files: tuple[str, ...], name: str | None, inventory_dir: str, bastion: bool) -> None:
    """Create one namespace machine per cluster node, plus a `client` machine (and a `bastion`)."""
    try:
        nodes = lab_nodes_from_files(files)
        name = name or cluster_name_from_files(files) or DEFAULT_LAB
        routes = lab_routes_from_files(files)
        started = time.monotonic()
        result = lab_up(nodes, name, inventory_dir, bastion=bastion, routes=routes)
    except (LabError, OSError) as exc:
        _fail(exc)
        return
    click.echo(f"lab {result.name}: {len(result.nodes)} nodes up in {time.monotonic() - started:.1f}s")
    for node, (ns, address) in result.nodes.items():
        click.echo(f"  {node:<20} {address:<16} netns {ns}")
    click.echo(f"  {'client':<20} {result.client_ip:<16} netns {result.client_ns}")
    for dest, node, _ in result.state.client_routes:
        click.echo(f"  {'':<20} routes {dest} to {node} (a LoadBalancer or external IP)")
    if result.bastion:
        click.echo(f"  {'bastion':<20} {result.bastion[1]:<16} netns {result.bastion[0]}   (the nodes' ProxyJump)")
    click.echo(f"inventory:   {_relative(result.inventory_path)}")
    click.echo(f"ssh config:  {result.ssh_config_path}   (ssh -F {result.ssh_config_path} NODE)")


@lab.command("down")
@click.option("--name", help=NAME_HELP)
@click.option("--all", "all_labs", is_flag=True, help="remove every lab on this host")
def down(name: str | None, all_labs: bool) -> None:
    """Remove every namespace, process and file of the lab."""
    try:
        if all_labs:
            removed = lab_down_all()
            click.echo(f"removed {len(removed)} lab(s){': ' + ', '.join(removed) if removed else ''}")
            return
        name = resolve_name(name)
        lab_down(name)
    except (LabError, OSError) as exc:
        _fail(exc)
        return
    click.echo(f"lab {name} removed")


@lab.command("status")
@click.option("--name", help=NAME_HELP)
def status(name: str | None) -> None:
    """List the nodes and whether each one's sshd answers."""
    try:
        rows = lab_status(name)
        current = load_lab(name)
    except (LabError, OSError) as exc:
        _fail(exc)
        return
    click.echo(f"lab {current.name} ({current.dir})")
    for row in rows:
        state = "ssh ok" if row.ssh_answers else ("sshd down" if row.anchor_alive else "node down")
        click.echo(f"  {row.name:<20} {row.address:<16} {row.ns:<16} {state}")
    click.echo(f"  {'client':<20} {current.client_ip:<16} {current.client_ns:<16}")
    if not all(r.ssh_answers for r in rows):
        raise SystemExit(1)


@lab.command("exec", context_settings={"ignore_unknown_options": True})
@click.option("--name", help=NAME_HELP)
@click.argument("node")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(name: str | None, node: str, argv: tuple[str, ...]) -> None:
    """Run a command on NODE (or on `client`): svcnet lab exec NODE -- CMD ARGS..."""
    try:
        require_root()
        host_argv = node_exec_argv(load_lab(name), node, list(argv))
    except (LabError, OSError) as exc:
        _fail(exc)
        return
    try:
        rc = subprocess.run(host_argv, check=False, env=tool_env()).returncode
    except KeyboardInterrupt:
        rc = 130
    raise SystemExit(rc)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    lab()
